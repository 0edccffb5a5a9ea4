@testable import FleetKubernetes
import FleetTesting
import Foundation
import Synchronization
import Testing

/// The client's token bucket: arrival order, deferrable callers (the rollout store's shard writes) that
/// let normal ones go first for a bounded time, no token left unused while anyone waits, cancellation.
@Suite struct RateLimiterTests {
    /// Who got a token, in order.
    final class Order: Sendable {
        private let list = Mutex<[String]>([])
        func add(_ name: String) { list.withLock { $0.append(name) } }
        var names: [String] { list.withLock { $0 } }
    }

    /// Starts a waiter and returns once it is queued, so waiters queue in the order they are started.
    func queue(_ limiter: RateLimiter, _ name: String, _ priority: RateLimiter.Priority, _ order: Order) async throws -> Task<Void, any Error> {
        let before = await limiter.waitingCount
        let task = Task {
            try await limiter.acquire(priority: priority)
            order.add(name)
        }
        try await waitUntil("\(name) queued", timeout: .seconds(5), every: .milliseconds(1)) { await limiter.waitingCount > before }
        return task
    }

    @Test func deferrableCallersLetNormalOnesQueuedLaterGoFirstWithoutLeavingATokenUnused() async throws {
        let limiter = RateLimiter(qps: 50, burst: 1, maxDeferral: .seconds(30))
        #expect(await limiter.takeIfAvailable())
        let order = Order()
        let clock = ContinuousClock()
        let start = clock.now
        var tasks = [try await queue(limiter, "write", .deferrable, order)]
        for i in 1...5 { tasks.append(try await queue(limiter, "apply\(i)", .normal, order)) }
        for task in tasks { try await task.value }
        #expect(order.names == ["apply1", "apply2", "apply3", "apply4", "apply5", "write"])
        // Six tokens at 50 per second: the write went as soon as no normal caller waited, not after its 30 s deferral.
        #expect(clock.now - start < .seconds(10))
    }

    @Test func aDeferrableCallerYieldsForNoLongerThanItsDeferral() async throws {
        let limiter = RateLimiter(qps: 20, burst: 1, maxDeferral: .milliseconds(100))
        #expect(await limiter.takeIfAvailable())
        let order = Order()
        var tasks = [try await queue(limiter, "write", .deferrable, order)]
        // Two seconds of normal callers queued behind it: the write goes after about 100 ms of them, not after all.
        for i in 0..<40 { tasks.append(try await queue(limiter, "apply\(i)", .normal, order)) }
        for task in tasks { try await task.value }
        let position = try #require(order.names.firstIndex(of: "write"))
        #expect(position < 30, "the deferrable caller went at position \(position) of 41")
        #expect(order.names.filter { $0 != "write" } == (0..<40).map { "apply\($0)" })
    }

    @Test func normalCallersKeepArrivalOrderAndPace() async throws {
        let limiter = RateLimiter(qps: 20, burst: 5)
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<5 { try await limiter.acquire() }
        let order = Order()
        var tasks: [Task<Void, any Error>] = []
        for i in 0..<4 { tasks.append(try await queue(limiter, "r\(i)", .normal, order)) }
        for task in tasks { try await task.value }
        #expect(order.names == ["r0", "r1", "r2", "r3"])
        // 4 tokens beyond the burst at 20/s take about 200 ms.
        #expect(clock.now - start >= .milliseconds(180))
    }

    @Test func aCancelledWaiterGivesUpItsPlaceAndSpendsNoToken() async throws {
        let limiter = RateLimiter(qps: 2, burst: 1)
        #expect(await limiter.takeIfAvailable())
        let order = Order()
        let cancelled = try await queue(limiter, "cancelled", .normal, order)
        let deferred = try await queue(limiter, "cancelled-deferrable", .deferrable, order)
        cancelled.cancel()
        deferred.cancel()
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        await #expect(throws: CancellationError.self) { try await deferred.value }
        #expect(await limiter.waitingCount == 0)
        // The next caller gets the token that came due, not one behind the cancelled callers.
        let next = try await queue(limiter, "next", .normal, order)
        try await next.value
        #expect(order.names == ["next"])
        // A task cancelled before it asks never queues.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await limiter.acquire()
        }
        await #expect(throws: CancellationError.self) { try await early.value }
        #expect(await limiter.waitingCount == 0)
    }
}
