import FleetCore
import Foundation

/// A `ControllerClock` that moves only when a test calls `advance`. Sleepers wake in deadline order.
public final class ManualClock: ControllerClock, @unchecked Sendable {
    private let lock = NSLock()
    private var now: Int64
    private var sleepers: [(id: UInt64, deadline: Int64, continuation: CheckedContinuation<Void, any Error>)] = []
    private var nextID: UInt64 = 0

    public init(startMs: Int64 = 1_700_000_000_000) { now = startMs }

    public func nowMs() -> Int64 {
        lock.lock(); defer { lock.unlock() }
        return now
    }

    /// Sleepers currently waiting (lets a test wait until the code under test is parked).
    public var sleeperCount: Int {
        lock.lock(); defer { lock.unlock() }
        return sleepers.count
    }

    public func advance(byMs ms: Int64) {
        lock.lock()
        now += ms
        let due = sleepers.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
        sleepers.removeAll { $0.deadline <= now }
        lock.unlock()
        for s in due { s.continuation.resume() }
    }

    public func sleep(milliseconds: Int64) async throws {
        let id: UInt64 = lock.withLock { nextID += 1; return nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                lock.lock()
                if Task.isCancelled {
                    lock.unlock()
                    c.resume(throwing: CancellationError())
                } else if milliseconds <= 0 {
                    lock.unlock()
                    c.resume()
                } else {
                    sleepers.append((id, now + milliseconds, c))
                    lock.unlock()
                }
            }
        } onCancel: {
            lock.lock()
            let mine = sleepers.first { $0.id == id }
            sleepers.removeAll { $0.id == id }
            lock.unlock()
            mine?.continuation.resume(throwing: CancellationError())
        }
    }
}

/// Waits until `condition` holds, checking every few milliseconds of real time; fails the wait with
/// `WaitTimeout` when `deadline` passes. (Polling a condition with a deadline, never sleeping and hoping.)
public struct WaitTimeout: Error, CustomStringConvertible {
    public var what: String
    public var description: String { "timed out waiting for \(what)" }
}

/// The same, answering whether the condition held before `deadline` instead of throwing
/// (`#expect(try await waitUntil(deadline: .seconds(5)) { … })`).
public func waitUntil(deadline: Duration, every: Duration = .milliseconds(50), _ condition: () async throws -> Bool) async throws -> Bool {
    do {
        try await waitUntil("condition", timeout: deadline, every: every, condition)
        return true
    } catch is WaitTimeout {
        return false
    }
}

public func waitUntil(_ what: String = "condition", timeout: Duration = .seconds(10), every: Duration = .milliseconds(10),
                      _ condition: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while true {
        if try await condition() { return }
        if clock.now >= deadline { throw WaitTimeout(what: what) }
        try await Task.sleep(for: every)
    }
}
