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
    /// The server's whole surface, for MCP probes that read it (docs/designs/0010-tool-contracts.md).
    public var contract: ServerContract?

    public init(success: Bool, latencyMs: Double, message: String? = nil, tools: [String]? = nil, contract: ServerContract? = nil) {
        self.success = success
        self.latencyMs = latencyMs
        self.message = message
        self.tools = tools ?? contract?.toolNames
        self.contract = contract
    }
}

/// Health probes: HTTP (GET → 2xx), TCP (connect) and MCP (the official Swift SDK's client over
/// streamable HTTP: `initialize` with protocol-version negotiation, then every page of `tools/list`,
/// `prompts/list` and `resources/templates/list`; required tools; the surface as a contract).
public struct Prober: Sendable {
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

    /// The MCP handshake a client performs, then the server's whole surface (see `ProbeSurface`).
    public func mcp(url: String, timeoutMs: Int64, requireTools: [String]) async -> ProbeResult {
        let contract: ServerContract
        do {
            contract = try await ProbeSurface.read(url: url, http: transport, timeoutMs: timeoutMs)
        } catch {
            return ProbeResult(success: false, latencyMs: 0, message: "MCP probe of \(url): \(error)")
        }
        let tools = contract.toolNames
        let missing = requireTools.filter { !tools.contains($0) }
        if !missing.isEmpty {
            return ProbeResult(success: false, latencyMs: 0, message: "required tool(s) missing: \(missing.joined(separator: ", ")) (server offers \(tools.joined(separator: ", ")))", contract: contract)
        }
        return ProbeResult(success: true, latencyMs: 0, contract: contract)
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
