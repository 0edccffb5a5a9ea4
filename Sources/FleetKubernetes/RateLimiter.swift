import Foundation

/// A client-side token bucket (client-go's `--kube-api-qps`/`--kube-api-burst`): up to `burst`
/// requests at once, then `qps` per second. Waiting callers queue and are handed tokens as they come
/// due, in arrival order — except that a `.deferrable` caller (the rollout store's group-committing
/// shard writes) lets the normal callers queued behind it go first, for at most `maxDeferral`.
/// Every token is handed to someone while anyone waits (a deferrable caller is never kept waiting
/// while a token goes unused), so deferring changes who goes first, never how many go per second.
/// A deferred shard write gathers more changes (design 0019, phase 6).
public actor RateLimiter {
    public enum Priority: Sendable, Hashable {
        /// In arrival order.
        case normal
        /// After the normal callers waiting, for at most `maxDeferral`; then in arrival order.
        case deferrable
    }

    public nonisolated let qps: Double
    public nonisolated let burst: Int
    /// The longest a deferrable caller yields to normal ones.
    public nonisolated let maxDeferral: Duration
    private var tokens: Double
    private var last: ContinuousClock.Instant
    private let clock = ContinuousClock()

    private struct Waiter {
        var id: UInt64
        var since: ContinuousClock.Instant
        var continuation: CheckedContinuation<Void, any Error>
    }
    private var normal: [Waiter] = []
    private var normalHead = 0
    private var deferrable: [Waiter] = []
    private var deferrableHead = 0
    private var nextID: UInt64 = 0
    private var dispensing = false

    public init(qps: Double = 50, burst: Int = 100, maxDeferral: Duration = .seconds(2)) {
        self.qps = max(qps, 0.001)
        self.burst = max(burst, 1)
        self.maxDeferral = max(.zero, maxDeferral)
        tokens = Double(max(burst, 1))
        last = clock.now
    }

    private var waiting: Int { normal.count - normalHead + deferrable.count - deferrableHead }
    /// Callers waiting for a token (tests).
    var waitingCount: Int { waiting }

    private func refill() {
        let now = clock.now
        let elapsed = now - last
        last = now
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        tokens = min(Double(burst), tokens + seconds * qps)
    }

    /// Takes a token if one is free and nobody waits (tests spend the burst with it).
    func takeIfAvailable() -> Bool {
        refill()
        guard waiting == 0, tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Waits for a token. Throws `CancellationError` if the task is cancelled while waiting (its place
    /// in the queue is given up; no token is spent).
    public func acquire(priority: Priority = .normal) async throws {
        try Task.checkCancellation()
        if takeIfAvailable() { return }
        nextID &+= 1
        let id = nextID
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                if Task.isCancelled { continuation.resume(throwing: CancellationError()); return }
                let waiter = Waiter(id: id, since: clock.now, continuation: continuation)
                if priority == .normal { normal.append(waiter) } else { deferrable.append(waiter) }
                startDispensing()
            }
        } onCancel: {
            Task { await self.cancel(id) }
        }
    }

    private func cancel(_ id: UInt64) {
        if let i = normal[normalHead...].firstIndex(where: { $0.id == id }) {
            normal.remove(at: i).continuation.resume(throwing: CancellationError())
        } else if let i = deferrable[deferrableHead...].firstIndex(where: { $0.id == id }) {
            deferrable.remove(at: i).continuation.resume(throwing: CancellationError())
        }
    }

    /// The next waiter due a token: the oldest normal one, unless the oldest deferrable one has
    /// yielded for `maxDeferral` already (or no normal one waits).
    private func popNext() -> Waiter? {
        let deferred = deferrableHead < deferrable.count ? deferrable[deferrableHead] : nil
        if normalHead < normal.count, deferred.map({ clock.now - $0.since < maxDeferral }) ?? true {
            defer { normalHead += 1; compact() }
            return normal[normalHead]
        }
        guard deferred != nil else { return nil }
        defer { deferrableHead += 1; compact() }
        return deferrable[deferrableHead]
    }

    private func compact() {
        if normalHead > 64, normalHead * 2 > normal.count { normal.removeFirst(normalHead); normalHead = 0 }
        if deferrableHead > 64, deferrableHead * 2 > deferrable.count { deferrable.removeFirst(deferrableHead); deferrableHead = 0 }
        if normalHead == normal.count { normal.removeAll(keepingCapacity: true); normalHead = 0 }
        if deferrableHead == deferrable.count { deferrable.removeAll(keepingCapacity: true); deferrableHead = 0 }
    }

    /// Hands out tokens as they come due while anyone waits (one task at a time).
    private func startDispensing() {
        guard !dispensing else { return }
        dispensing = true
        Task { await self.dispense() }
    }

    private func dispense() async {
        defer { dispensing = false }
        while waiting > 0 {
            refill()
            if tokens >= 1, let waiter = popNext() {
                tokens -= 1
                waiter.continuation.resume()
                continue
            }
            let due = Duration.nanoseconds(Int64(max(0, 1 - tokens) / qps * 1e9) + 1)
            try? await Task.sleep(for: due)
        }
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
    public nonisolated func withToken<T: Sendable>(priority: Priority = .normal, _ body: () async throws -> T) async throws -> T {
        try await acquire(priority: priority)
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
