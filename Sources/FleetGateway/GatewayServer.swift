import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The process's one HTTP stack (SwiftNIO, HTTP/1.1 with keep-alive and pipelining): the MCP gateway
/// routes `/{server}/mcp`, and the operational endpoints (`/healthz`, `/readyz`, `/metrics`,
/// `/health/detailed`). It can listen on several addresses; a listener with `mcp: false` serves only
/// the operational endpoints (the controller's metrics address).
public final class GatewayServer: Sendable {
    public let state: GatewayState
    public let metrics: GatewayMetrics
    let signer: SessionSigner
    let ops: OpsEndpoints
    let accessLog: AccessLog
    let logger: Logger
    let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool
    let pools: [ObjectIdentifier: PoolBox]
    private let connectionCount = NIOLockedValueBox(0)
    private let listeners = NIOLockedValueBox<[any Channel]>([])
    private let stopped = NIOLockedValueBox(false)

    public init(state: GatewayState, metrics: GatewayMetrics, signer: SessionSigner, ops: OpsEndpoints, accessLog: AccessLog = .off,
                logger: Logger, group: MultiThreadedEventLoopGroup? = nil) {
        self.state = state
        self.metrics = metrics
        self.signer = signer
        self.ops = ops
        self.accessLog = accessLog
        self.logger = logger
        let threads = state.configuration.threads > 0 ? state.configuration.threads : System.coreCount
        self.group = group ?? MultiThreadedEventLoopGroup(numberOfThreads: threads)
        ownsGroup = group == nil
        var pools: [ObjectIdentifier: PoolBox] = [:]
        let c = state.configuration
        for loop in self.group.makeIterator() {
            let pool = UpstreamPool(eventLoop: loop, maxIdle: c.maxIdleUpstreamConnections, connectTimeout: .nanoseconds(Int64(c.connectTimeout.nanoseconds)))
            pools[ObjectIdentifier(loop)] = PoolBox(value: pool)
        }
        self.pools = pools
    }

    /// A listening address. `HOST:PORT`; port 0 picks a free port (see `port`).
    public struct Listener: Sendable {
        public let host: String
        public let port: Int
        public let mcp: Bool
    }

    public static func parse(address: String) throws -> (host: String, port: Int) {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), (0...65535).contains(port) else {
            throw GatewayError("address `\(address)` is not HOST:PORT")
        }
        let host = String(address[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    /// Binds `address` and starts serving on it.
    @discardableResult
    public func listen(_ address: String, mcp: Bool) async throws -> Listener {
        let (host, port) = try Self.parse(address: address)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { [self] channel in self.initialize(channel, mcp: mcp) }
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(host: host, port: port).get()
        } catch {
            throw GatewayError("cannot listen on \(address): \(error)")
        }
        listeners.withLockedValue { $0.append(channel) }
        let bound = channel.localAddress?.port ?? port
        logger.info("serving HTTP", metadata: ["address": "\(host):\(bound)", "mcp": "\(mcp)"])
        return Listener(host: host, port: bound, mcp: mcp)
    }

    private func initialize(_ channel: any Channel, mcp: Bool) -> EventLoopFuture<Void> {
        let open = connectionCount.withLockedValue { n -> Int? in
            guard n < state.configuration.maxConnections else { return nil }
            n += 1
            return n
        }
        guard let open else {
            metrics.rejected(scope: "connection", reason: "connection-cap")
            return channel.close()
        }
        metrics.connections(open)
        channel.closeFuture.whenComplete { [self] _ in
            let n = connectionCount.withLockedValue { n -> Int in n -= 1; return n }
            metrics.connections(n)
        }
        let c = state.configuration
        return channel.eventLoop.makeCompletedFuture {
            let timers = ConnectionTimers(header: .nanoseconds(Int64(c.headerTimeout.nanoseconds)), idle: .nanoseconds(Int64(c.idleTimeout.nanoseconds)))
            try channel.pipeline.syncOperations.addHandler(RawActivityHandler(timers))
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(RequestBoundaryHandler(timers))
            let pool = pools[ObjectIdentifier(channel.eventLoop)]!.value
            try channel.pipeline.syncOperations.addHandler(GatewayHTTPHandler(server: self, pool: pool, mcp: mcp))
        }
    }

    /// Stops listening and closes every listener (open connections end as their requests finish).
    public func close() async {
        let all = listeners.withLockedValue { l -> [any Channel] in defer { l = [] }; return l }
        for c in all { try? await c.close() }
        for loop in group.makeIterator() {
            guard let bound = pools[ObjectIdentifier(loop)] else { continue }
            try? await loop.submit { bound.value.closeAll() }.get()
        }
    }

    /// Idempotent: the service and its owner may both call it.
    public func shutdown() async {
        guard stopped.withLockedValue({ s in defer { s = true }; return !s }) else { return }
        await close()
        if ownsGroup { try? await group.shutdownGracefully() }
    }
}

/// A pool made off its loop and used only on it (its methods check the loop).
struct PoolBox: @unchecked Sendable {
    let value: UpstreamPool
}

extension Duration {
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}

/// Header and idle timeouts of one client connection (confined to its event loop). Idle: no request
/// in flight and no byte for `idle` → closed. Header: a request's first byte starts a clock its head
/// must beat (a client dribbling a byte every few seconds is closed, not kept forever).
///
/// The clocks are deadlines checked by one timer per connection, not a timer per clock: a request
/// only stamps the time (scheduling and cancelling NIO tasks three times per request cost more than
/// the rest of the bookkeeping). The timer is never later than the earliest running deadline; when
/// it fires it closes the connection if a deadline has passed, else re-arms for the earliest one.
final class ConnectionTimers {
    let header: TimeAmount
    let idle: TimeAmount
    var inFlight = 0
    private var headerSince: NIODeadline?
    private var idleSince: NIODeadline?
    private var timer: Scheduled<Void>?
    private var timerAt: NIODeadline = .distantFuture

    init(header: TimeAmount, idle: TimeAmount) {
        self.header = header
        self.idle = idle
    }

    func armIdle(_ context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        idleSince = now
        ensureTimer(context, at: now + idle)
    }

    func byteArrived(_ context: ChannelHandlerContext) {
        guard inFlight == 0 else { return }
        idleSince = nil
        if headerSince == nil {
            let now = NIODeadline.now()
            headerSince = now
            ensureTimer(context, at: now + header)
        }
    }

    func headArrived() {
        inFlight += 1
        headerSince = nil
        idleSince = nil
    }

    func responseEnded(_ context: ChannelHandlerContext) {
        inFlight = max(0, inFlight - 1)
        if inFlight == 0 { armIdle(context) }
    }

    func cancelAll() {
        timer?.cancel()
        timer = nil
        timerAt = .distantFuture
        headerSince = nil
        idleSince = nil
    }

    /// The earliest running deadline, if any.
    private var due: NIODeadline? {
        switch (headerSince.map { $0 + header }, idleSince.map { $0 + idle }) {
        case let (h?, i?): return min(h, i)
        case let (h?, nil): return h
        case let (nil, i?): return i
        case (nil, nil): return nil
        }
    }

    private func ensureTimer(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard timer == nil || deadline < timerAt else { return }
        timer?.cancel()
        schedule(context.channel, context.eventLoop, at: deadline)
    }

    private func schedule(_ channel: any Channel, _ loop: any EventLoop, at deadline: NIODeadline) {
        timerAt = deadline
        timer = loop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in fire(channel, loop) }
    }

    private func fire(_ channel: any Channel, _ loop: any EventLoop) {
        timer = nil
        timerAt = .distantFuture
        guard let due else { return }
        if due <= .now() {
            channel.close(promise: nil)
        } else {
            schedule(channel, loop, at: due)
        }
    }
}

/// Before the HTTP decoder: sees every byte, so it can start the header clock.
final class RawActivityHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    let timers: ConnectionTimers

    init(_ timers: ConnectionTimers) { self.timers = timers }

    func channelActive(context: ChannelHandlerContext) {
        timers.armIdle(context)
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { timers.armIdle(context) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        timers.byteArrived(context)
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        timers.cancelAll()
        context.fireChannelInactive()
    }
}

/// After the HTTP decoder: a complete head stops the header clock; a response's end starts the idle one.
final class RequestBoundaryHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart
    let timers: ConnectionTimers

    init(_ timers: ConnectionTimers) { self.timers = timers }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { timers.headArrived() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { timers.responseEnded(context) }
        context.write(data, promise: promise)
    }
}
