/// Settings of the MCP gateway (the data plane in front of the servers). They are read by the gateway,
/// not by the servers' processes, so none of them is part of a server's revision.

/// A token bucket: `requestsPerSecond` refill, `burst` capacity (default: one second's worth).
public struct GatewayRateLimit: Codable, Sendable, Hashable, CustomStringConvertible {
    public var requestsPerSecond: Int
    public var burst: Int?

    public init(requestsPerSecond: Int, burst: Int? = nil) {
        self.requestsPerSecond = requestsPerSecond
        self.burst = burst
    }

    public var description: String { "\(requestsPerSecond)/s" + (burst.map { ", burst \($0)" } ?? "") }
}

/// `Server.spec.gateway`.
public struct ServerGatewaySettings: Sendable, Hashable {
    /// Requests per second to this server through the gateway (all tenants' clients together).
    public var rateLimit: GatewayRateLimit?

    public init() {}
}

/// `Tenant.spec.gateway`.
public struct TenantGatewaySettings: Sendable, Hashable {
    /// Bearer tokens accepted for this tenant's servers, each read from a secret (never inline).
    /// Empty: the tenant's servers need no token.
    public var tokens: [SecretReference] = []
    /// Requests per second to all of this tenant's servers together.
    public var rateLimit: GatewayRateLimit?

    public init() {}
}

/// `Environment.spec.gateway`.
public struct EnvironmentGatewaySettings: Sendable, Hashable {
    /// Where the gateway listens (`HOST:PORT`). Local environments default to `127.0.0.1:9470`.
    public var address: String?
    /// The HMAC key that signs session ids, from a secret (every gateway replica needs the same one).
    public var signingKey: SecretReference?
    public var maxConnections: Int?
    public var maxBodyBytes: Int?
    public var headerTimeout: Duration?
    public var idleTimeout: Duration?
    public var upstreamTimeout: Duration?
    /// Consecutive upstream failures that eject a replica, and for how long.
    public var consecutiveFailures: Int?
    public var ejectionTime: Duration?

    public init() {}
}
