import Foundation

/// A client-side token bucket (client-go's `--kube-api-qps`/`--kube-api-burst`): up to `burst`
/// requests at once, then `qps` per second. Callers reserve a token and sleep until it is due, so
/// waiting callers are served in arrival order and never spin.
public actor RateLimiter {
    public nonisolated let qps: Double
    public nonisolated let burst: Int
    private var tokens: Double
    private var last: ContinuousClock.Instant
    private let clock = ContinuousClock()

    public init(qps: Double = 50, burst: Int = 100) {
        self.qps = max(qps, 0.001)
        self.burst = max(burst, 1)
        tokens = Double(max(burst, 1))
        last = clock.now
    }

    /// How long the caller must wait for its token (the token is reserved now).
    func reserve() -> Duration {
        let now = clock.now
        let elapsed = now - last
        last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(Double(burst), tokens + seconds * qps)
        tokens -= 1
        if tokens >= 0 { return .zero }
        return .nanoseconds(Int64((-tokens / qps) * 1e9))
    }

    /// Waits for a token. Throws `CancellationError` if the task is cancelled while waiting.
    public nonisolated func acquire() async throws {
        let wait = await reserve()
        if wait > .zero { try await Task.sleep(for: wait) }
    }

    /// A token taken ahead of the request that spends it: a group-committing writer waits for its
    /// token *before* it gathers the changes to send, so that everything arriving while it queued
    /// behind other requests goes out in that one request (design 0019).
    public final class Prepaid: @unchecked Sendable {
        private let lock = NSLock()
        private var available = true
        fileprivate let limiter: ObjectIdentifier

        fileprivate init(_ limiter: RateLimiter) { self.limiter = ObjectIdentifier(limiter) }

        /// True once: the first request made under it spends the token.
        func take() -> Bool { lock.withLock { defer { available = false }; return available } }
    }

    /// The token the current task's next request spends instead of waiting for one (see `withToken`).
    @TaskLocal static var prepaid: Prepaid?

    /// Waits for a token, then runs `body` with it: the first request `body` makes through a client using
    /// this limiter spends it; any further request waits for its own (as does a request through another limiter).
    public nonisolated func withToken<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        try await acquire()
        return try await Self.$prepaid.withValue(Prepaid(self)) { try await body() }
    }

    /// Waits for a token unless the task holds an unspent one from `withToken`.
    nonisolated func acquireUnlessPrepaid() async throws {
        if let token = Self.prepaid, token.limiter == ObjectIdentifier(self), token.take() { return }
        try await acquire()
    }
}

/// Retries with exponential backoff and jitter on 429, 5xx and connection failures, waiting at least
/// what `Retry-After` asks for.
public struct RetryPolicy: Sendable, Hashable {
    /// Total attempts including the first.
    public var maxAttempts: Int
    public var initialBackoff: Duration
    public var maxBackoff: Duration
    /// A `Retry-After` longer than this is not waited for: the error is returned instead.
    public var maxRetryAfter: Duration

    public init(maxAttempts: Int = 6, initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(10), maxRetryAfter: Duration = .seconds(60)) {
        self.maxAttempts = max(1, maxAttempts)
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxRetryAfter = maxRetryAfter
    }

    public static let `default` = RetryPolicy()
    public static let none = RetryPolicy(maxAttempts: 1)

    /// Backoff before attempt `attempt + 1` (attempt counts from 0): `initial * 2^attempt`, capped, with
    /// "equal jitter" (half fixed, half random) so that many clients do not retry in lockstep.
    public func backoff(afterAttempt attempt: Int) -> Duration {
        let base = initialBackoff * Int(1 << min(attempt, 20))
        let capped = min(base, maxBackoff)
        let half = capped / 2
        let jitterNanos = Int64.random(in: 0...max(0, Self.nanos(half)))
        return half + .nanoseconds(jitterNanos)
    }

    static func nanos(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    /// Statuses worth retrying: throttling and server-side failures.
    public static func isRetryable(status: Int) -> Bool {
        status == 429 || status == 500 || status == 502 || status == 503 || status == 504
    }
}
