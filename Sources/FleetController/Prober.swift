import FleetCore
import FleetHTTP
import Foundation

/// The outcome of one probe of one instance.
public struct ProbeResult: Sendable, Hashable {
    public var success: Bool
    public var latencyMs: Double
    /// Why it failed (never contains secrets: probes send none).
    public var message: String?
    /// Tool names, for MCP probes that got as far as `tools/list`.
    public var tools: [String]?

    public init(success: Bool, latencyMs: Double, message: String? = nil, tools: [String]? = nil) {
        self.success = success
        self.latencyMs = latencyMs
        self.message = message
        self.tools = tools
    }
}

/// Health probes: HTTP (GET → 2xx), TCP (connect) and MCP (`initialize`, `notifications/initialized`,
/// `tools/list` over streamable HTTP, JSON or SSE responses, session header, required tools).
public struct Prober: Sendable {
    public static let protocolVersion = "2025-06-18"

    let transport: any HTTPTransport

    public init(transport: any HTTPTransport) {
        self.transport = transport
    }

    public func probe(_ endpoint: Endpoint, health: DesiredHealth, path: String) async -> ProbeResult {
        let clock = ContinuousClock()
        let start = clock.now
        var result: ProbeResult
        switch health.probe {
        case .tcp:
            result = await Prober.tcp(host: endpoint.host, port: endpoint.port, timeoutMs: health.timeoutMs)
        case .http:
            let url = Endpoint(instance: endpoint.instance, host: endpoint.host, port: endpoint.port, path: health.path ?? path).url
            result = await http(url: url, timeoutMs: health.timeoutMs)
        case .mcp:
            let url = Endpoint(instance: endpoint.instance, host: endpoint.host, port: endpoint.port, path: health.path ?? path).url
            result = await mcp(url: url, timeoutMs: health.timeoutMs, requireTools: health.requireTools)
        }
        let elapsed = clock.now - start
        result.latencyMs = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
        return result
    }

    public func http(url: String, timeoutMs: Int64) async -> ProbeResult {
        do {
            let response = try await transport.send(HTTPRequest(method: "GET", url: url, timeout: .milliseconds(timeoutMs)))
            let ok = (200..<300).contains(response.status)
            return ProbeResult(success: ok, latencyMs: 0, message: ok ? nil : "GET \(url) answered \(response.status)")
        } catch {
            return ProbeResult(success: false, latencyMs: 0, message: "\(error)")
        }
    }

    /// A TCP connect with a deadline, on its own thread (a blocking `poll` must not hold a pool thread).
    public static func tcp(host: String, port: Int, timeoutMs: Int64) async -> ProbeResult {
        await withCheckedContinuation { (c: CheckedContinuation<ProbeResult, Never>) in
            Thread.detachNewThread {
                c.resume(returning: tcpBlocking(host: host, port: port, timeoutMs: timeoutMs))
            }
        }
    }

    static func tcpBlocking(host: String, port: Int, timeoutMs: Int64) -> ProbeResult {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &res) == 0, let first = res else {
            return ProbeResult(success: false, latencyMs: 0, message: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(res) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return ProbeResult(success: false, latencyMs: 0, message: "socket: errno \(errno)") }
        defer { close(fd) }
        if connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 {
            return ProbeResult(success: true, latencyMs: 0)
        }
        guard errno == EINPROGRESS else {
            return ProbeResult(success: false, latencyMs: 0, message: "connect to \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let n = poll(&pfd, 1, Int32(clamping: timeoutMs))
        guard n > 0 else { return ProbeResult(success: false, latencyMs: 0, message: "connect to \(host):\(port) timed out after \(timeoutMs)ms") }
        var err: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
        return err == 0 ? ProbeResult(success: true, latencyMs: 0)
            : ProbeResult(success: false, latencyMs: 0, message: "connect to \(host):\(port): \(String(cString: strerror(err)))")
    }

    struct ProbeFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// The MCP handshake a client performs, then `tools/list`.
    public func mcp(url: String, timeoutMs: Int64, requireTools: [String]) async -> ProbeResult {
        do {
            let initialize: [String: Any] = [
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": [
                    "protocolVersion": Prober.protocolVersion, "capabilities": [String: Any](),
                    "clientInfo": ["name": "mcpfleet", "version": "0.1.0"],
                ] as [String: Any],
            ]
            let (initResult, headers) = try await rpc(url: url, body: initialize, id: 1, session: nil, timeoutMs: timeoutMs)
            guard initResult["protocolVersion"] != nil || initResult["serverInfo"] != nil else {
                throw ProbeFailure(description: "initialize result has neither protocolVersion nor serverInfo")
            }
            let session = headers.first(name: "Mcp-Session-Id")
            defer {
                if let session { Task { await self.endSession(url: url, session: session) } }
            }
            try await notify(url: url, body: ["jsonrpc": "2.0", "method": "notifications/initialized"], session: session, timeoutMs: timeoutMs)
            let (toolsResult, _) = try await rpc(url: url, body: ["jsonrpc": "2.0", "id": 2, "method": "tools/list"], id: 2, session: session, timeoutMs: timeoutMs)
            let tools = (toolsResult["tools"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
            let missing = requireTools.filter { !tools.contains($0) }
            if !missing.isEmpty {
                return ProbeResult(success: false, latencyMs: 0, message: "required tool(s) missing: \(missing.joined(separator: ", ")) (server offers \(tools.joined(separator: ", ")))", tools: tools)
            }
            return ProbeResult(success: true, latencyMs: 0, tools: tools)
        } catch {
            return ProbeResult(success: false, latencyMs: 0, message: "MCP probe of \(url): \(error)")
        }
    }

    func headers(session: String?) -> HTTPHeaders {
        var h: HTTPHeaders = ["Accept": "application/json, text/event-stream", "Content-Type": "application/json"]
        if let session {
            h.add(name: "Mcp-Session-Id", value: session)
            h.add(name: "MCP-Protocol-Version", value: Prober.protocolVersion)
        }
        return h
    }

    /// Sends one JSON-RPC request and returns its `result`, reading a JSON body or an SSE stream up to
    /// the response with our id (the stream may stay open afterwards; it is dropped, which closes it).
    func rpc(url: String, body: [String: Any], id: Int, session: String?, timeoutMs: Int64) async throws -> ([String: Any], HTTPHeaders) {
        let data = try JSONSerialization.data(withJSONObject: body)
        let request = HTTPRequest(method: "POST", url: url, headers: headers(session: session), body: Array(data), timeout: .milliseconds(timeoutMs))
        let response = try await transport.stream(request)
        guard (200..<300).contains(response.status) else {
            var collected: [UInt8] = []
            for try await chunk in response.body { collected += chunk; if collected.count > 4096 { break } }
            throw ProbeFailure(description: "\(body["method"] ?? "request") answered HTTP \(response.status): \(String(decoding: collected.prefix(200), as: UTF8.self))")
        }
        let contentType = (response.header("Content-Type") ?? "").lowercased()
        var buffer: [UInt8] = []
        var sse = SSEParser()
        for try await chunk in response.body {
            if contentType.hasPrefix("text/event-stream") {
                for event in sse.feed(chunk) {
                    if let message = try Prober.match(Data(event.utf8), id: id) { return (message, response.headers) }
                }
            } else {
                buffer += chunk
            }
        }
        if contentType.hasPrefix("text/event-stream") {
            for event in sse.finish() {
                if let message = try Prober.match(Data(event.utf8), id: id) { return (message, response.headers) }
            }
            throw ProbeFailure(description: "the event stream ended without a response to \(body["method"] ?? "request")")
        }
        guard let message = try Prober.match(Data(buffer), id: id) else {
            throw ProbeFailure(description: "no JSON-RPC response with id \(id) to \(body["method"] ?? "request")")
        }
        return (message, response.headers)
    }

    /// The `result` of the JSON-RPC response with `id` in `data` (an object or a batch); JSON-RPC errors throw.
    static func match(_ data: Data, id: Int) throws -> [String: Any]? {
        guard !data.isEmpty else { return nil }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data) } catch {
            throw ProbeFailure(description: "response is not JSON: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
        let messages = (json as? [[String: Any]]) ?? [(json as? [String: Any]) ?? [:]]
        for m in messages where (m["id"] as? Int) == id || (m["id"] as? String) == String(id) {
            if let error = m["error"] as? [String: Any] {
                throw ProbeFailure(description: "JSON-RPC error \(error["code"] ?? "?"): \(error["message"] ?? "")")
            }
            return m["result"] as? [String: Any] ?? [:]
        }
        return nil
    }

    func notify(url: String, body: [String: Any], session: String?, timeoutMs: Int64) async throws {
        let data = try JSONSerialization.data(withJSONObject: body)
        let response = try await transport.send(HTTPRequest(method: "POST", url: url, headers: headers(session: session), body: Array(data), timeout: .milliseconds(timeoutMs)))
        guard (200..<300).contains(response.status) else {
            throw ProbeFailure(description: "notifications/initialized answered HTTP \(response.status)")
        }
    }

    /// Ends the probe's session so servers do not accumulate them (best effort: 405 means unsupported).
    func endSession(url: String, session: String) async {
        var h = HTTPHeaders()
        h.add(name: "Mcp-Session-Id", value: session)
        h.add(name: "MCP-Protocol-Version", value: Prober.protocolVersion)
        _ = try? await transport.send(HTTPRequest(method: "DELETE", url: url, headers: h, timeout: .seconds(2)))
    }
}

/// Incremental `text/event-stream` parsing: returns the data of each complete event.
struct SSEParser {
    private var pending: [UInt8] = []
    private var data: [String] = []

    mutating func feed(_ bytes: [UInt8]) -> [String] {
        pending += bytes
        var events: [String] = []
        while let nl = pending.firstIndex(of: 0x0A) {
            var line = Array(pending[..<nl])
            pending.removeSubrange(...nl)
            if line.last == 0x0D { line.removeLast() }
            if let e = handle(String(decoding: line, as: UTF8.self)) { events.append(e) }
        }
        return events
    }

    mutating func finish() -> [String] {
        var events: [String] = []
        if !pending.isEmpty, let e = handle(String(decoding: pending, as: UTF8.self)) { events.append(e) }
        pending = []
        if let e = handle("") { events.append(e) }
        return events
    }

    private mutating func handle(_ line: String) -> String? {
        if line.isEmpty {
            defer { data = [] }
            return data.isEmpty ? nil : data.joined(separator: "\n")
        }
        if line.hasPrefix("data:") {
            var v = line.dropFirst(5)
            if v.first == " " { v = v.dropFirst() }
            data.append(String(v))
        }
        return nil
    }
}
