import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One MCP request through the gateway, on its client connection's event loop: token check, rate
/// limits, session routing (the signed session id names the replica) or balancing, the exchange with
/// the replica over a pooled connection, the session id rewritten both ways, the response streamed
/// back (JSON or SSE) while tool calls are counted, and the access log line.
final class ProxyExchange: UpstreamDelegate {
    unowned let handler: GatewayHTTPHandler
    let route: Route
    let head: HTTPRequestHead
    let body: ByteBuffer?
    let started: ContinuousClock.Instant
    let requestID: String
    private var server: GatewayServer { handler.server }

    private var rpc = JSONRPCInspector.Request()
    private var pending: [String: (tool: String, start: ContinuousClock.Instant)] = [:]
    private var backend: Backend?
    private var upstreamSession: String?
    private var sessionBound = false
    /// A GET event stream is long-lived: it is not an outstanding request for balancing.
    private var counted = false
    private var tried: Set<String> = []
    private var connection: UpstreamConnection?
    private var reusedConnection = false
    private var timeout: Scheduled<Void>?
    private var status = 0
    private var bytesOut = 0
    private var sse: SSEParser?
    private var json: [UInt8]?
    private var responseStarted = false
    private var unflushed = false
    private var done = false
    private var failureReason: String?
    /// Set for a `tools/list` on a server with `spec.tools`: its answer is rewritten (ToolFilter).
    private var toolList: ToolFilter.ListRewriter?

    init(handler: GatewayHTTPHandler, route: Route, head: HTTPRequestHead, body: ByteBuffer?, started: ContinuousClock.Instant) {
        self.handler = handler
        self.route = route
        self.head = head
        self.body = body
        self.started = started
        requestID = Self.requestID(head.headers, using: &handler.random)
    }

    /// The client's `X-Request-Id` when it is short and plain, else a new one.
    static func requestID<G: RandomNumberGenerator>(_ headers: HTTPHeaders, using random: inout G) -> String {
        if let given = headers.first(name: "x-request-id"), (1...64).contains(given.utf8.count),
           given.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }) {
            return given
        }
        return hex16(random.next())
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hex16(_ v: UInt64) -> String {
        String(unsafeUninitializedCapacity: 16) { out in
            for k in 0..<16 { out[k] = hexDigits[Int(v >> UInt64(60 - 4 * k) & 0xf)] }
            return 16
        }
    }

    // MARK: Admission and routing

    func start() {
        let policy = route.policy
        if !policy.tokens.isEmpty && !policy.tokens.accepts(authorization: head.headers.first(name: "authorization")) {
            server.metrics.rejected(scope: "tenant", reason: "unauthorized")
            refuse(.unauthorized, "a valid bearer token for tenant \(route.tenant) is required", extra: [("WWW-Authenticate", "Bearer realm=\"mcpfleet\"")],
                   reason: "unauthorized")
            return
        }
        if let (scope, wait) = server.state.rateLimit(route) {
            server.metrics.rejected(scope: scope, reason: "rate-limited")
            let seconds = max(1, Int(wait.rounded(.up)))
            refuse(.tooManyRequests, "the \(scope) request rate limit is exceeded; retry in \(seconds) s", extra: [("Retry-After", String(seconds))],
                   reason: "rate-limited (\(scope))")
            return
        }
        switch head.method {
        case .POST:
            if let body, body.readableBytes > 0 {
                rpc = body.withUnsafeReadableBytes { JSONRPCInspector.request($0) }
            }
        case .GET, .DELETE:
            break
        default:
            refuse(.methodNotAllowed, "MCP endpoints take POST, GET and DELETE", extra: [("Allow", "GET, POST, DELETE")])
            return
        }
        // A tool filter fails closed: a body it cannot read for sure (not JSON, or a method, params or
        // tool name given twice, which a server could read the other way) and a denied tool called as a
        // notification (no id, so no JSON-RPC answer) are refused before any replica sees them.
        if let access = policy.tools, head.method == .POST, let body, body.readableBytes > 0 {
            if !rpc.readable {
                server.metrics.rejected(scope: "server", reason: "tool-denied")
                refuse(.badRequest, "the body is not JSON-RPC the gateway can read, and server \(route.server) filters its tools (spec.tools)",
                       reason: "tool-denied: unreadable body")
                return
            }
            if let tool = rpc.calledTools.first(where: { !access.permits($0) }), !rpc.calls.contains(where: { $0.tool == tool }) {
                server.metrics.rejected(scope: "server", reason: "tool-denied")
                refuse(.forbidden, "tool `\(tool)` is not allowed on server \(route.server) (spec.tools)", reason: "tool-denied: \(tool)")
                return
            }
        }
        if let access = policy.tools, let call = ToolFilter.denied(rpc.calls, access: access) {
            server.metrics.rejected(scope: "server", reason: "tool-denied")
            failureReason = "tool-denied: \(call.tool)"
            status = 200
            respondFromGateway(.ok, body: ToolFilter.errorBody(call, server: route.server))
            finish(failed: nil)
            return
        }
        if let presented = head.headers.first(name: "mcp-session-id") {
            guard let claims = handler.verify(presented), claims.route == route.server else {
                refuse(.notFound, "unknown session; initialize a new one", reason: "unknown-session")
                return
            }
            counted = head.method != .GET
            guard let b = server.state.session(route, replica: claims.replica, countRequest: counted) else {
                counted = false
                refuse(.notFound, "the session's replica is gone; initialize a new session", reason: "replica-gone")
                return
            }
            sessionBound = true
            upstreamSession = claims.upstreamSession
            send(to: b)
        } else {
            if head.method == .DELETE {
                refuse(.badRequest, "DELETE needs an Mcp-Session-Id header")
                return
            }
            pickAndSend()
        }
    }

    private func pickAndSend() {
        guard let b = server.state.pick(route, excluding: tried) else {
            server.metrics.rejected(scope: "server", reason: "no-replica")
            refuse(.serviceUnavailable, "no healthy replica of \(route.server) is available", extra: [("Retry-After", "1")], reason: "no-replica")
            return
        }
        counted = true
        send(to: b)
    }

    private func send(to b: Backend) {
        backend = b
        tried.insert(b.id)
        let now = ContinuousClock.now
        for c in rpc.calls { pending[c.id] = (c.tool, now) }
        handler.pool.acquire(host: b.host, port: b.port).assumeIsolated().whenComplete { [self] result in
            guard !done else {
                if case .success(let (c, _)) = result { c.abandon() }
                return
            }
            switch result {
            case .success(let (c, reused)):
                connection = c
                reusedConnection = reused
                let t = server.state.configuration.upstreamTimeout.nanoseconds
                timeout = handler.pool.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(t)) { [self] in timedOut() }
                c.send(head: upstreamHead(b), body: body, to: self)
            case .failure(let error):
                connectFailed(b, error)
            }
        }
    }

    static let hopByHop = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"]
    /// Request headers the gateway sets itself (the client's are dropped).
    static let replacedOnRequest = ["host", "content-length", "mcp-session-id", "x-request-id"]

    /// `headers` without the named ones, in one pass (names lowercase ASCII).
    static func without(_ headers: HTTPHeaders, _ lists: [String]..., extra: String? = nil, adding: Int = 0) -> HTTPHeaders {
        var out = HTTPHeaders()
        out.reserveCapacity(headers.count + adding)
        for (name, value) in headers {
            if let extra, equalsLowercased(name, extra) { continue }
            if lists.contains(where: { $0.contains { equalsLowercased(name, $0) } }) { continue }
            out.add(name: name, value: value)
        }
        return out
    }

    /// ASCII case-insensitive `name == lower` (`lower` already lowercase).
    static func equalsLowercased(_ name: String, _ lower: String) -> Bool {
        guard name.utf8.count == lower.utf8.count else { return false }
        return zip(name.utf8, lower.utf8).allSatisfy { a, b in a == b || (a >= 0x41 && a <= 0x5a && a | 0x20 == b) }
    }

    private func upstreamHead(_ b: Backend) -> HTTPRequestHead {
        // The gateway's own credential never reaches a server.
        var headers = Self.without(head.headers, Self.hopByHop, Self.replacedOnRequest,
                                   extra: route.policy.tokens.isEmpty ? nil : "authorization", adding: 4)
        headers.add(name: "Host", value: b.hostHeader)
        headers.add(name: "X-Request-Id", value: requestID)
        if let upstreamSession { headers.add(name: "Mcp-Session-Id", value: upstreamSession) }
        if head.method == .POST { headers.add(name: "Content-Length", value: String(body?.readableBytes ?? 0)) }
        let query = head.uri.firstIndex(of: "?").map { String(head.uri[$0...]) } ?? ""
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: b.path + query, headers: headers)
    }

    private func connectFailed(_ b: Backend, _ error: any Error) {
        server.state.finished(server: route.server, replica: b.id, counted: counted, failed: true)
        server.metrics.upstreamFailure(server: route.server, replica: b.id)
        counted = false
        if sessionBound {
            // Nothing listens where the session's replica was: its sessions are gone with it.
            if Self.refused(error) {
                refuse(.notFound, "the session's replica is gone; initialize a new session", reason: "replica-gone")
            } else {
                refuse(.badGateway, "cannot reach the session's replica", reason: "connect: \(error)")
            }
            return
        }
        // Nothing was sent: a new session or session-less request can go to another replica.
        if tried.count < 3 {
            pickAndSend()
        } else {
            refuse(.badGateway, "cannot reach a replica of \(route.server)", reason: "connect: \(error)")
        }
    }

    static func refused(_ error: any Error) -> Bool {
        if let io = error as? IOError { return io.errnoCode == ECONNREFUSED }
        if let c = error as? NIOConnectionError {
            return !c.connectionErrors.isEmpty && c.connectionErrors.allSatisfy { ($0.error as? IOError)?.errnoCode == ECONNREFUSED }
        }
        return false
    }

    // MARK: Upstream response

    func upstreamHead(_ h: HTTPResponseHead) {
        timeout?.cancel()
        timeout = nil
        guard let b = backend else { return }
        status = Int(h.status.code)
        responseStarted = true
        var headers = Self.without(h.headers, Self.hopByHop, extra: "mcp-session-id", adding: 3)
        if let upstream = h.headers.first(name: "mcp-session-id") {
            headers.add(name: "Mcp-Session-Id", value: handler.sign(.init(route: route.server, replica: b.id, upstreamSession: upstream)))
            if !sessionBound && (200..<300).contains(status) { server.state.sessionOpened(server: route.server, replica: b.id) }
        }
        if sessionBound && (status == 404 || (head.method == .DELETE && (200..<300).contains(status))) {
            server.state.sessionClosed(server: route.server, replica: b.id)
        }
        headers.add(name: "X-Request-Id", value: requestID)
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        let type = h.headers.first(name: "content-type")?.lowercased() ?? ""
        if let access = route.policy.tools, rpc.method == "tools/list", (200..<300).contains(status) {
            toolList = ToolFilter.ListRewriter(access: access, sse: type.hasPrefix("text/event-stream"))
            headers.remove(name: "content-length")
        }
        if type.hasPrefix("text/event-stream") {
            sse = SSEParser()
        } else if !pending.isEmpty && type.hasPrefix("application/json") {
            json = []
        }
        handler.context?.write(handler.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: h.status, headers: headers))), promise: nil)
        unflushed = true
    }

    func upstreamReadComplete() {
        // Event streams go out as they come; a JSON answer is flushed with its end.
        if unflushed && sse != nil { handler.context?.flush() }
        unflushed = false
    }

    func upstreamBody(_ buffer: ByteBuffer) {
        bytesOut += buffer.readableBytes
        if sse != nil && !pending.isEmpty {
            buffer.withUnsafeReadableBytes { bytes in
                sse!.feed(bytes) { data in observe(data) }
            }
        } else if json != nil {
            if json!.count + buffer.readableBytes <= 4 << 20 {
                buffer.withUnsafeReadableBytes { json!.append(contentsOf: $0) }
            } else {
                json = nil
            }
        }
        if toolList != nil {
            let out = buffer.withUnsafeReadableBytes { toolList!.feed($0) }
            if !out.isEmpty { handler.context?.write(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: out)))), promise: nil) }
        } else {
            handler.context?.write(handler.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        unflushed = true
    }

    func upstreamEnd() {
        if let bytes = json { bytes.withUnsafeBytes { observe($0) } }
        if toolList != nil, case let rest = toolList!.finish(), !rest.isEmpty {
            handler.context?.write(handler.wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: rest)))), promise: nil)
        }
        connection = nil
        let close = !head.isKeepAlive
        if let context = handler.context {
            let done = context.writeAndFlush(handler.wrapOutboundOut(.end(nil)))
            if close {
                let channel = context.channel
                done.assumeIsolated().whenComplete { _ in channel.close(promise: nil) }
            }
        }
        finish(failed: status >= 500)
    }

    func upstreamFailed(_ error: any Error, responseStarted: Bool) {
        timeout?.cancel()
        timeout = nil
        connection = nil
        guard !done else { return }
        if !self.responseStarted, reusedConnection, let b = backend {
            // A pooled connection the replica had closed: the request never got an answer; send it
            // once more on a fresh connection.
            reusedConnection = false
            tried.remove(b.id)
            send(to: b)
            return
        }
        if !self.responseStarted, !sessionBound, rpc.method == "initialize" || head.method == .GET, tried.count < 3, let b = backend {
            // A replica dying as a session starts (reset before any answer): a new session is safe to
            // start elsewhere; a tool call without a session is not retried (it may have run).
            server.state.finished(server: route.server, replica: b.id, counted: counted, failed: true)
            server.metrics.upstreamFailure(server: route.server, replica: b.id)
            counted = false
            pickAndSend()
            return
        }
        failureReason = "upstream: \(error)"
        if self.responseStarted {
            // Mid-stream: the client sees its connection end, as it would with the replica itself.
            handler.context?.close(promise: nil)
            finish(failed: true)
        } else {
            status = 502
            respondFromGateway(.badGateway, "the replica failed: \(error)")
            finish(failed: true)
        }
    }

    private func timedOut() {
        guard !done, !responseStarted else { return }
        connection?.abandon()
        connection = nil
        failureReason = "upstream timeout"
        status = 504
        respondFromGateway(.gatewayTimeout, "the replica did not answer within \(server.state.configuration.upstreamTimeout)")
        finish(failed: true)
    }

    /// Tool-call responses in one JSON text (a message, a batch, or one SSE event's data).
    private func observe(_ data: UnsafeRawBufferPointer) {
        guard !pending.isEmpty, let b = backend else { return }
        for (id, isError) in JSONRPCInspector.responses(data) {
            guard let call = pending.removeValue(forKey: id) else { continue }
            server.metrics.toolCall(server: route.server, revision: b.revision, tool: call.tool, error: isError, duration: ContinuousClock.now - call.start)
        }
    }

    // MARK: Client side

    func clientClosed() {
        guard !done else { return }
        connection?.abandon()
        connection = nil
        timeout?.cancel()
        failureReason = failureReason ?? "client closed"
        if status == 0 { status = 499 }
        finish(failed: nil)
    }

    func clientWritable(_ writable: Bool) {
        connection?.pause(!writable)
    }

    private func refuse(_ status: HTTPResponseStatus, _ message: String, extra: [(String, String)] = [], reason: String? = nil) {
        done = true
        handler.respond(head, route: route, status: status, message: message, extraHeaders: extra, reason: reason, requestID: requestID, rpcMethod: rpc.method)
        handler.exchangeEnded(self)
    }

    private func respondFromGateway(_ status: HTTPResponseStatus, _ message: String) {
        respondFromGateway(status, body: "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\(AccessLog.quote(message))}}")
    }

    private func respondFromGateway(_ status: HTTPResponseStatus, body: String) {
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(body.utf8.count)), ("X-Request-Id", requestID)])
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        handler.writeResponse(HTTPResponseHead(version: head.version, status: status, headers: headers), body: ByteBuffer(string: body), close: !head.isKeepAlive)
    }

    private func finish(failed: Bool?) {
        guard !done else { return }
        done = true
        if let b = backend {
            server.state.finished(server: route.server, replica: b.id, counted: counted, failed: failed)
            if failed == true { server.metrics.upstreamFailure(server: route.server, replica: b.id) }
        }
        // Calls the replica never answered (stream cut, timeout) count as failed calls.
        if let b = backend, status != 499 {
            for (_, call) in pending {
                server.metrics.toolCall(server: route.server, revision: b.revision, tool: call.tool, error: true, duration: ContinuousClock.now - call.start)
            }
        }
        pending = [:]
        server.metrics.request(server: route.server, code: status)
        if server.accessLog.isEnabled { server.accessLog.write(AccessLog.Entry(
            time: Date(), requestID: requestID, method: head.method.rawValue, path: String(GatewayHTTPHandler.path(head.uri)), server: route.server,
            tenant: route.tenant, replica: backend?.id, revision: backend?.revision, status: status, durationMs: GatewayHTTPHandler.ms(since: started),
            bytesIn: body?.readableBytes ?? 0, bytesOut: bytesOut, rpcMethod: rpc.method, tools: rpc.calls.map(\.tool), reason: failureReason)) }
        handler.exchangeEnded(self)
    }
}
