import FleetCore

/// A controller-runtime style work queue: keys are de-duplicated, a key is never handed to two workers
/// at once (a key added while being processed is queued again when it is done), failures back off
/// exponentially per key (5 ms → `maxDelayMs`). While a key waits out its backoff, plain `add`s of it
/// (resyncs, probe flips) wait too — so the delay a failure logs is when the retry happens; only
/// `add(_:bypassingBackoff:)` (a changed catalog, an operator's edit) retries it sooner.
public actor WorkQueue<Key: Hashable & Sendable> {
    public static var baseDelayMs: Int64 { 5 }
    public static var defaultMaxDelayMs: Int64 { 1_000_000 }
    public nonisolated let maxDelayMs: Int64

    private var queue: [Key] = []
    private var queued: Set<Key> = []
    private var processing: Set<Key> = []
    private var dirty: Set<Key> = []
    private var waiters: [CheckedContinuation<Key?, Never>] = []
    private var failures: [Key: Int] = [:]
    private var delayed: [Key: (due: Int64, task: Task<Void, Never>)] = [:]
    /// Keys waiting out a failure's backoff, with the retry's due time.
    private var backingOff: [Key: Int64] = [:]
    private var shuttingDown = false
    private let clock: any ControllerClock

    public init(clock: any ControllerClock, maxDelayMs: Int64 = WorkQueue.defaultMaxDelayMs) {
        self.clock = clock
        self.maxDelayMs = max(Self.baseDelayMs, maxDelayMs)
    }

    /// Keys waiting to be processed (not counting those in progress or delayed).
    public var depth: Int { queue.count }
    public var inProgress: Int { processing.count }
    public var delayedCount: Int { delayed.count }

    public func add(_ key: Key) {
        guard !shuttingDown else { return }
        if let due = backingOff[key], clock.nowMs() < due { return }
        enqueue(key)
    }

    /// Adds `key` now even if it is waiting out a failure's backoff (something changed that may fix it).
    public func add(_ key: Key, bypassingBackoff: Bool) {
        guard bypassingBackoff else { return add(key) }
        guard !shuttingDown else { return }
        backingOff[key] = nil
        enqueue(key)
    }

    private func enqueue(_ key: Key) {
        if processing.contains(key) {
            dirty.insert(key)
            return
        }
        guard queued.insert(key).inserted else { return }
        if !waiters.isEmpty {
            queued.remove(key)
            processing.insert(key)
            waiters.removeFirst().resume(returning: key)
        } else {
            queue.append(key)
        }
    }

    /// Adds `key` after `delayMs`; an earlier pending delay for the key wins.
    public func add(_ key: Key, afterMs delayMs: Int64) {
        guard !shuttingDown else { return }
        if delayMs <= 0 { return add(key) }
        let due = clock.nowMs() + delayMs
        if let existing = delayed[key], existing.due <= due { return }
        if let retry = backingOff[key], due < retry { return }  // the backoff's retry comes first
        delayed[key]?.task.cancel()
        let clock = self.clock
        let task = Task {
            do { try await clock.sleep(milliseconds: delayMs) } catch { return }
            await self.fire(key, due: due)
        }
        delayed[key] = (due, task)
    }

    private func fire(_ key: Key, due: Int64) {
        guard delayed[key]?.due == due else { return }
        delayed[key] = nil
        if backingOff[key] == due { backingOff[key] = nil }
        enqueue(key)
    }

    /// Requeues after a failure with exponential backoff (at once the longest for a failure retrying
    /// cannot fix, `terminal`); returns the delay used — when the key is processed again, unless
    /// `add(_:bypassingBackoff:)` brings it sooner.
    @discardableResult
    public func addRateLimited(_ key: Key, terminal: Bool = false) -> Int64 {
        let n = failures[key, default: 0]
        failures[key] = n + 1
        let delay = terminal ? maxDelayMs : min(maxDelayMs, Self.baseDelayMs << Int64(min(n, 40)))
        let due = clock.nowMs() + delay
        // The retry replaces any earlier wake-up: nothing processes the key before it.
        delayed[key]?.task.cancel()
        delayed[key] = nil
        dirty.remove(key)
        backingOff[key] = due
        add(key, afterMs: delay)
        return delay
    }

    /// Clears the failure count after a success.
    public func forget(_ key: Key) {
        failures[key] = nil
        backingOff[key] = nil
    }
    public func failureCount(_ key: Key) -> Int { failures[key] ?? 0 }

    /// The next key to process, or nil once shut down.
    public func get() async -> Key? {
        if shuttingDown { return nil }
        if !queue.isEmpty {
            let key = queue.removeFirst()
            queued.remove(key)
            processing.insert(key)
            return key
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    public func done(_ key: Key) {
        processing.remove(key)
        if dirty.remove(key) != nil { add(key) }
    }

    /// Wakes every waiting worker with nil; pending and delayed keys are dropped.
    public func shutDown() {
        shuttingDown = true
        for w in waiters { w.resume(returning: nil) }
        waiters = []
        for (_, d) in delayed { d.task.cancel() }
        delayed = [:]
        backingOff = [:]
        queue = []
        queued = []
    }
}
