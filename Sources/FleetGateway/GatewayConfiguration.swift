/// Limits and timeouts of the gateway's HTTP stack. Defaults suit one host; every one is a manifest
/// setting (`Environment.spec.gateway`) and a flag of `mcpfleet gateway`.
public struct GatewayConfiguration: Sendable, Hashable {
    /// Largest request body accepted (413 above it).
    public var maxBodyBytes = 4 << 20
    /// Most client connections open at once; further connections are closed at accept.
    public var maxConnections = 4096
    /// A request's headers must arrive complete this long after its first byte (slow clients are closed).
    public var headerTimeout: Duration = .seconds(10)
    /// A keep-alive connection with no request in flight is closed after this long without a byte.
    public var idleTimeout: Duration = .seconds(60)
    /// Connecting to a replica gives up after this long (then the next replica is tried for a new session).
    public var connectTimeout: Duration = .seconds(2)
    /// A replica must send its response head within this long (504 otherwise). Streams have no total limit.
    public var upstreamTimeout: Duration = .seconds(60)
    /// Consecutive upstream failures (connect errors, 5xx, timeouts) that eject a replica.
    public var breakerFailures = 5
    /// How long an ejected replica gets no new sessions before one trial request (half-open).
    public var breakerEjection: Duration = .seconds(10)
    /// Idle keep-alive connections kept per replica and event loop.
    public var maxIdleUpstreamConnections = 64
    /// Event-loop threads (0: one per core).
    public var threads = 0

    public init() {}
}

/// A token bucket's settings: `requestsPerSecond` refill, `burst` capacity.
public struct RateLimit: Sendable, Hashable, Codable {
    public var requestsPerSecond: Double
    public var burst: Int

    public init(requestsPerSecond: Double, burst: Int? = nil) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst ?? max(1, Int(requestsPerSecond.rounded(.up)))
    }
}
