import NIOCore
import NIOHTTP1
import NIOPosix

/// Receives one upstream exchange's response, on the event loop of the client connection it serves.
protocol UpstreamDelegate: AnyObject {
    func upstreamHead(_ head: HTTPResponseHead)
    func upstreamBody(_ buffer: ByteBuffer)
    func upstreamEnd()
    /// The end of one read cycle: flush what was passed on (one write per cycle, not per chunk).
    func upstreamReadComplete()
    /// `responseStarted`: the head was already passed on (the client connection can only be closed).
    func upstreamFailed(_ error: any Error, responseStarted: Bool)
}

/// The last handler of a pooled HTTP/1.1 connection to a replica: hands response parts to the
/// exchange using the connection, and the connection back to the pool when the response ends with
/// keep-alive.
final class UpstreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    var delegate: (any UpstreamDelegate)?
    var onReusable: (() -> Void)?
    private var keepAlive = true
    private var started = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            // 1xx (e.g. 100 Continue) is not the response.
            if head.status.code < 200 { return }
            started = true
            keepAlive = head.isKeepAlive
            delegate?.upstreamHead(head)
        case .body(let buffer):
            delegate?.upstreamBody(buffer)
        case .end:
            let d = delegate
            delegate = nil
            started = false
            if keepAlive, context.channel.isActive { onReusable?() } else { context.close(promise: nil) }
            d?.upstreamEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        delegate?.upstreamReadComplete()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(UpstreamClosed())
        context.fireChannelInactive()
    }

    private func fail(_ error: any Error) {
        let d = delegate
        delegate = nil
        d?.upstreamFailed(error, responseStarted: started)
    }
}

struct UpstreamClosed: Error, CustomStringConvertible {
    var description: String { "the replica closed the connection" }
}

struct UpstreamTimeout: Error, CustomStringConvertible {
    var description: String { "the replica did not answer in time" }
}

/// One keep-alive connection to a replica. Used only on its event loop (`@unchecked`: futures of
/// the pool hand it across an isolation boundary that is the same loop).
final class UpstreamConnection: @unchecked Sendable {
    let channel: any Channel
    let handler: UpstreamHandler
    let key: String

    init(channel: any Channel, handler: UpstreamHandler, key: String) {
        self.channel = channel
        self.handler = handler
        self.key = key
    }

    /// Reading paused because the client could not take more (backpressure).
    private var paused = false

    func pause(_ on: Bool) {
        guard on != paused else { return }
        paused = on
        _ = channel.setOption(ChannelOptions.autoRead, value: !on)
    }

    func send(head: HTTPRequestHead, body: ByteBuffer?, to delegate: any UpstreamDelegate) {
        // A connection back from the pool always reads again, whatever the last client did.
        pause(false)
        handler.delegate = delegate
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body, body.readableBytes > 0 { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil)).assumeIsolated().whenFailure { [channel] error in
            channel.pipeline.fireErrorCaught(error)
        }
    }

    /// Ends the exchange in hand without pooling the connection.
    func abandon() {
        handler.delegate = nil
        handler.onReusable = nil
        channel.close(promise: nil)
    }
}

/// Idle connections to replicas, one pool per event loop (a client connection's exchanges use the
/// pool of its own loop, so proxying never crosses threads). Confined to its event loop.
final class UpstreamPool {
    let eventLoop: any EventLoop
    let maxIdle: Int
    let connectTimeout: TimeAmount
    private var idle: [String: [UpstreamConnection]] = [:]

    init(eventLoop: any EventLoop, maxIdle: Int, connectTimeout: TimeAmount) {
        self.eventLoop = eventLoop
        self.maxIdle = maxIdle
        self.connectTimeout = connectTimeout
    }

    /// A connection to `host:port`: an idle one (reused: true) or a new one.
    func acquire(host: String, port: Int) -> EventLoopFuture<(UpstreamConnection, reused: Bool)> {
        eventLoop.preconditionInEventLoop()
        let key = "\(host):\(port)"
        while var list = idle[key], let c = list.popLast() {
            idle[key] = list
            if c.channel.isActive { return eventLoop.makeSucceededFuture((c, true)) }
        }
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(UpstreamHandler())
                }
            }
        let connected: EventLoopFuture<any Channel>
        if let address = try? SocketAddress(ipAddress: host, port: port) {
            connected = bootstrap.connect(to: address)
        } else {
            connected = bootstrap.connect(host: host, port: port)
        }
        return connected.assumeIsolated().flatMapThrowing { channel in
            let handler = try channel.pipeline.syncOperations.handler(type: UpstreamHandler.self)
            let c = UpstreamConnection(channel: channel, handler: handler, key: key)
            // The cycle connection → handler → closure → connection ends when the channel closes.
            handler.onReusable = { [weak self] in self?.release(c) }
            channel.closeFuture.assumeIsolated().whenComplete { [weak self] _ in
                c.handler.onReusable = nil
                self?.forget(c)
            }
            return (c, false)
        }.nonisolated()
    }

    private func release(_ c: UpstreamConnection) {
        eventLoop.preconditionInEventLoop()
        var list = idle[c.key] ?? []
        if list.count >= maxIdle {
            c.channel.close(promise: nil)
            return
        }
        list.append(c)
        idle[c.key] = list
    }

    private func forget(_ c: UpstreamConnection) {
        guard var list = idle[c.key], let i = list.firstIndex(where: { $0 === c }) else { return }
        list.remove(at: i)
        idle[c.key] = list.isEmpty ? nil : list
    }

    func closeAll() {
        eventLoop.preconditionInEventLoop()
        for list in idle.values { for c in list { c.channel.close(promise: nil) } }
        idle = [:]
    }
}
