import FleetHTTP
import Foundation
import Logging
import MCP

/// The MCP Swift SDK's `Transport` over FleetHTTP (libcurl), for the SDK's `Client` to speak streamable
/// HTTP (docs/designs/0010-tool-contracts.md). The SDK's own HTTP transport does not stream on Linux;
/// this one posts each message and feeds the answer back to the client, from a JSON body or from an SSE
/// stream read up to the response with the request's id (the stream may stay open after it; dropping it
/// closes it). It keeps the session id the server assigns and, once `initialize` is answered, sends the
/// negotiated `MCP-Protocol-Version` with every later request.
public actor ProbeTransport: MCP.Transport {
    public nonisolated let logger: Logger

    let url: String
    let http: any HTTPTransport
    let timeout: Duration
    private(set) var session: String?
    /// The protocol version `initialize` settled on (nil until it is answered).
    private(set) var negotiatedVersion: String?
    private let stream: AsyncThrowingStream<Data, any Swift.Error>
    private let continuation: AsyncThrowingStream<Data, any Swift.Error>.Continuation

    public init(url: String, http: any HTTPTransport, timeout: Duration, logger: Logger = Logger(label: "mcpfleet.probe")) {
        self.url = url
        self.http = http
        self.timeout = timeout
        self.logger = logger
        (stream, continuation) = AsyncThrowingStream<Data, any Swift.Error>.makeStream()
    }

    public func connect() async throws {}

    /// Ends the server's session (best effort: a server that does not support it answers 405) and the
    /// client's receive loop.
    public func disconnect() async {
        if let session {
            var h = HTTPHeaders()
            h.add(name: "Mcp-Session-Id", value: session)
            if let negotiatedVersion { h.add(name: "MCP-Protocol-Version", value: negotiatedVersion) }
            _ = try? await http.send(HTTPRequest(method: "DELETE", url: url, headers: h, timeout: .seconds(2)))
            self.session = nil
        }
        continuation.finish()
    }

    public nonisolated func receive() -> AsyncThrowingStream<Data, any Swift.Error> { stream }

    public func send(_ data: Data) async throws {
        let message = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        let method = message?["method"] as? String ?? "message"
        let id = message?["id"].flatMap(Self.idText)
        var headers: HTTPHeaders = ["Accept": "application/json, text/event-stream", "Content-Type": "application/json"]
        if let session { headers.add(name: "Mcp-Session-Id", value: session) }
        if let negotiatedVersion { headers.add(name: "MCP-Protocol-Version", value: negotiatedVersion) }
        let request = HTTPRequest(method: "POST", url: url, headers: headers, body: Array(data), timeout: timeout)

        guard let id else {
            // A notification (or a response to the server): 202 Accepted, no body to read.
            let response = try await http.send(request)
            guard (200..<300).contains(response.status) else {
                throw ProbeTransportError(description: "\(method) answered HTTP \(response.status)")
            }
            return
        }
        let response = try await http.stream(request)
        guard (200..<300).contains(response.status) else {
            var collected: [UInt8] = []
            for try await chunk in response.body {
                collected += chunk
                if collected.count > 4096 { break }
            }
            let text = String(decoding: collected.prefix(200), as: UTF8.self)
            throw ProbeTransportError(description: "\(method) answered HTTP \(response.status)" + (text.isEmpty ? "" : ": \(text)"))
        }
        if let s = response.header("Mcp-Session-Id") { session = s }
        let contentType = (response.header("Content-Type") ?? "").lowercased()
        if contentType.hasPrefix("text/event-stream") {
            var parser = SSEParser()
            for try await chunk in response.body {
                for event in parser.feed(chunk) where deliver(Data(event.utf8), answering: id, method: method) { return }
            }
            for event in parser.finish() where deliver(Data(event.utf8), answering: id, method: method) { return }
            throw ProbeTransportError(description: "the event stream ended without a response to \(method)")
        }
        var body: [UInt8] = []
        for try await chunk in response.body { body += chunk }
        guard !body.isEmpty else { throw ProbeTransportError(description: "\(method) answered HTTP \(response.status) with an empty body") }
        guard deliver(Data(body), answering: id, method: method) else {
            throw ProbeTransportError(description: "no JSON-RPC response to \(method) with its id (the answer was: \(String(decoding: body.prefix(200), as: UTF8.self)))")
        }
    }

    /// Passes one message to the client; true when it is (or a batch holding) the response to `id`.
    private func deliver(_ data: Data, answering id: String, method: String) -> Bool {
        guard !data.isEmpty else { return false }
        let json = try? JSONSerialization.jsonObject(with: data)
        let messages = (json as? [[String: Any]]) ?? [(json as? [String: Any]) ?? [:]]
        var answered = false
        for m in messages where m["id"].flatMap(Self.idText) == id && (m["result"] != nil || m["error"] != nil) {
            answered = true
            if method == "initialize", let result = m["result"] as? [String: Any], let version = result["protocolVersion"] as? String {
                negotiatedVersion = version
            }
        }
        continuation.yield(data)
        return answered
    }

    static func idText(_ v: Any) -> String? {
        if let s = v as? String { return "s:" + s }
        if let n = v as? NSNumber { return "n:" + n.stringValue }
        return nil
    }
}

public struct ProbeTransportError: Error, CustomStringConvertible, Sendable {
    public var description: String
}
