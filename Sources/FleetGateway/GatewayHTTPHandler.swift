import Foundation
import NIOCore
import NIOHTTP1

/// One client connection: reads a request (the body up to the size limit), then answers it itself
/// (operational endpoints, refusals) or hands it to a `ProxyExchange`. Pipelined requests wait in
/// NIO's pipelining handler, so one request is in hand at a time.
final class GatewayHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let server: GatewayServer
    let pool: UpstreamPool
    let mcp: Bool
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var bodyBytes = 0
    private var refused = false
    private var started: ContinuousClock.Instant = .now
    var exchange: ProxyExchange?
    private(set) var context: ChannelHandlerContext?

    /// Request ids need to be unique, not secret: one draw from the system's generator per
    /// connection seeds a cheap one (no `getrandom` call per request).
    var random: SplitMix64 = {
        var system = SystemRandomNumberGenerator()
        return SplitMix64(seed: system.next())
    }()

    init(server: GatewayServer, pool: UpstreamPool, mcp: Bool) {
        self.server = server
        self.pool = pool
        self.mcp = mcp
    }

    /// The last session id verified and signed on this connection: a client sends the same one on
    /// every request, and a replica answers with the same upstream id, so each is computed once.
    private var verified: (token: String, claims: SessionSigner.Claims)?
    private var signed: (claims: SessionSigner.Claims, token: String)?

    func verify(_ token: String) -> SessionSigner.Claims? {
        if let v = verified, v.token == token { return v.claims }
        guard let claims = server.signer.verify(token) else { return nil }
        verified = (token, claims)
        return claims
    }

    func sign(_ claims: SessionSigner.Claims) -> String {
        if let s = signed, s.claims == claims { return s.token }
        let token = server.signer.sign(claims)
        signed = (claims, token)
        verified = (token, claims)
        return token
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            bodyBytes = 0
            refused = false
            started = .now
            if let length = h.headers.first(name: "content-length").flatMap(Int.init), length > server.state.configuration.maxBodyBytes {
                refuseTooLarge(h)
            }
        case .body(var chunk):
            guard !refused, head != nil else { return }
            bodyBytes += chunk.readableBytes
            if bodyBytes > server.state.configuration.maxBodyBytes {
                refuseTooLarge(head!)
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
        case .end:
            guard !refused, let h = head else { return }
            head = nil
            dispatch(context, h, body)
        }
    }

    /// 413 before the body is read (by Content-Length) or as soon as it passes the limit; the
    /// connection is closed after the answer, so the rest of the body is never read.
    private func refuseTooLarge(_ h: HTTPRequestHead) {
        refused = true
        server.metrics.rejected(scope: "request", reason: "body-too-large")
        let route = mcp ? server.state.route(forPath: Self.path(h.uri)) : nil
        respond(h, route: route, status: .payloadTooLarge, message: "the request body exceeds \(server.state.configuration.maxBodyBytes) bytes",
                close: true, reason: "body-too-large")
    }

    static func path(_ uri: String) -> Substring {
        if let q = uri.firstIndex(of: "?") { return uri[..<q] }
        return Substring(uri)
    }

    private func dispatch(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, _ body: ByteBuffer?) {
        let path = Self.path(h.uri)
        if OpsEndpoints.paths.contains(String(path)) {
            guard h.method == .GET || h.method == .HEAD else {
                respond(h, route: nil, status: .methodNotAllowed, message: "use GET", extraHeaders: [("Allow", "GET, HEAD")])
                return
            }
            serveOps(context, h, String(path))
            return
        }
        let route = mcp ? server.state.route(forPath: path) : nil
        if route == nil, let routes = server.ops.routes, routes.handles(String(path)) {
            guard h.method == .GET || h.method == .HEAD else {
                respond(h, route: nil, status: .methodNotAllowed, message: "use GET", extraHeaders: [("Allow", "GET, HEAD")])
                return
            }
            serveRoutes(context, h, routes, String(path))
            return
        }
        guard let route else {
            respond(h, route: nil, status: .notFound, message: "no MCP server is routed at \(path)")
            return
        }
        let exchange = ProxyExchange(handler: self, route: route, head: h, body: body, started: started)
        self.exchange = exchange
        exchange.start()
    }

    private func serveOps(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, _ path: String) {
        let promise = context.eventLoop.makePromise(of: OpsEndpoints.Response.self)
        let ops = server.ops, state = server.state
        promise.completeWithTask { await ops.respond(path: path, replicas: { state.replicaStatus() }) }
        promise.futureResult.assumeIsolated().whenSuccess { [self] r in
            var headers = HTTPHeaders([("Content-Type", r.contentType), ("Content-Length", String(r.body.utf8.count))])
            if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
            writeResponse(HTTPResponseHead(version: h.version, status: .init(statusCode: r.status), headers: headers),
                          body: h.method == .HEAD ? nil : ByteBuffer(string: r.body), close: !h.isKeepAlive)
        }
    }

    /// The stream of server-sent events in hand on this connection (ended when the client goes).
    private var events: Task<Void, Never>?

    private func serveRoutes(_ context: ChannelHandlerContext, _ h: HTTPRequestHead, _ routes: OpsRoutes, _ path: String) {
        let promise = context.eventLoop.makePromise(of: OpsRoutes.Reply.self)
        let query = h.uri.firstIndex(of: "?").map { String(h.uri[h.uri.index(after: $0)...]) }
        promise.completeWithTask { await routes.respond(path, query) }
        promise.futureResult.assumeIsolated().whenSuccess { [self] reply in
            switch reply {
            case .body(let status, let contentType, let body, let extra):
                var headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", String(body.count))] + extra)
                if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
                writeResponse(HTTPResponseHead(version: h.version, status: .init(statusCode: status), headers: headers),
                              body: h.method == .HEAD ? nil : ByteBuffer(bytes: body), close: !h.isKeepAlive)
            case .events(let makeStream, let extra):
                guard h.method == .GET, let context = self.context else {
                    writeResponse(HTTPResponseHead(version: h.version, status: .ok, headers: HTTPHeaders([("Content-Type", "text/event-stream"), ("Content-Length", "0")] + extra)),
                                  body: nil, close: !h.isKeepAlive)
                    return
                }
                // No Content-Length: chunked, open until the stream ends or the client closes.
                let head = HTTPResponseHead(version: h.version, status: .ok, headers: HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-store")] + extra))
                context.writeAndFlush(wrapOutboundOut(.head(head)), promise: nil)
                let loop = context.eventLoop
                let bound = NIOLoopBound(self, eventLoop: loop)
                let stream = makeStream()
                events = Task {
                    for await chunk in stream {
                        loop.execute { bound.value.writeEvent(chunk) }
                    }
                    loop.execute { bound.value.endEvents() }
                }
            }
        }
    }

    private func writeEvent(_ chunk: String) {
        guard let context, context.channel.isActive else { return }
        context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: chunk)))), promise: nil)
    }

    private func endEvents() {
        guard events != nil, let context else { return }
        events = nil
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in channel.close(promise: nil) }
    }

    /// A JSON-RPC error answer from the gateway itself, logged and counted.
    func respond(_ h: HTTPRequestHead, route: Route?, status: HTTPResponseStatus, message: String, close: Bool = false,
                 extraHeaders: [(String, String)] = [], reason: String? = nil, requestID: String? = nil, rpcMethod: String? = nil) {
        let id = requestID ?? ProxyExchange.requestID(h.headers, using: &random)
        let body = "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32000,\"message\":\(AccessLog.quote(message))}}"
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", String(body.utf8.count)), ("X-Request-Id", id)])
        for (k, v) in extraHeaders { headers.add(name: k, value: v) }
        let closing = close || !h.isKeepAlive
        if closing { headers.add(name: "Connection", value: "close") }
        writeResponse(HTTPResponseHead(version: h.version, status: status, headers: headers), body: ByteBuffer(string: body), close: closing)
        if let route { server.metrics.request(server: route.server, code: Int(status.code)) }
        guard server.accessLog.isEnabled else { return }
        server.accessLog.write(AccessLog.Entry(
            time: Date(), requestID: id, method: h.method.rawValue, path: String(Self.path(h.uri)), server: route?.server, tenant: route?.tenant,
            replica: nil, revision: nil, status: Int(status.code), durationMs: Self.ms(since: started), bytesIn: bodyBytes, bytesOut: body.utf8.count,
            rpcMethod: rpcMethod, tools: [], reason: reason ?? message))
    }

    func writeResponse(_ head: HTTPResponseHead, body: ByteBuffer?, close: Bool) {
        guard let context else { return }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if close {
            let channel = context.channel
            done.assumeIsolated().whenComplete { _ in channel.close(promise: nil) }
        }
    }

    static func ms(since start: ContinuousClock.Instant) -> Double {
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }

    func exchangeEnded(_ e: ProxyExchange) {
        if exchange === e { exchange = nil }
    }

    func channelInactive(context: ChannelHandlerContext) {
        exchange?.clientClosed()
        exchange = nil
        events?.cancel()
        events = nil
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        exchange?.clientWritable(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a fast 64-bit generator for request ids.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
