/// A token bucket (pure: the caller passes the time). Full at start; each request takes one token.
public struct TokenBucket: Sendable, Hashable {
    public let limit: RateLimit
    private var tokens: Double
    private var last: Int64

    public init(_ limit: RateLimit, nowNanos: Int64) {
        self.limit = limit
        tokens = Double(limit.burst)
        last = nowNanos
    }

    /// Takes a token: nil when allowed, else the seconds until one is available (for Retry-After).
    public mutating func take(nowNanos: Int64) -> Double? {
        if nowNanos > last {
            tokens = min(Double(limit.burst), tokens + Double(nowNanos - last) / 1e9 * limit.requestsPerSecond)
            last = nowNanos
        }
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        guard limit.requestsPerSecond > 0 else { return 3600 }
        return (1 - tokens) / limit.requestsPerSecond
    }
}
