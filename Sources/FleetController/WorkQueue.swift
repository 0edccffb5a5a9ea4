import FleetCore

/// A controller-runtime style work queue: keys are de-duplicated, a key is never handed to two workers
/// at once (a key added while being processed is queued again when it is done), failures back off
/// exponentially per key (5 ms → `maxDelayMs`). While a key waits out its backoff, plain `add`s of it
/// (resyncs, probe flips) wait too — so the delay a failure logs is when the retry happens; only
/// `add(_:bypassingBackoff:)` (a changed catalog, an operator's edit) retries it sooner.
///
/// Three lanes, handed out in this order: `.urgent`, a rollout already in motion (its next step, a
/// probe or analysis result, what the runtime saw change); `.high`, keys something happened to (a
/// changed spec, a server to start, an operator's edit); `.low`, the periodic resync's sweep over
/// every server. A key already waiting is promoted when it is added to a higher lane; it is never
/// queued twice. So a rollout's next step waits for at most the keys in hand — not a pass over the
/// fleet, nor the servers a cold converge has not started yet (docs/designs/0008-live-state-cache.md).
public actor WorkQueue<Key: Hashable & Sendable> {
    public enum Priority: Int, Sendable, Comparable {
        /// The resync sweep: every server, now and then.
        case low
        /// Something happened to this key.
        case high
        /// A rollout in motion: finishing what has started goes before starting more.
        case urgent
        public static func < (a: Priority, b: Priority) -> Bool { a.rawValue < b.rawValue }
    }

    public static var baseDelayMs: Int64 { 5 }
    public static var defaultMaxDelayMs: Int64 { 1_000_000 }
    public nonisolated let maxDelayMs: Int64

    private var urgent = Lane()
    private var high = Lane()
    private var low = Lane()
    /// Keys waiting in a lane, with the lane that counts (a promoted key's old `.low` entry is skipped).
    private var queued: [Key: Priority] = [:]
    private var processing: Set<Key> = []
    private var dirty: [Key: Priority] = [:]
    private var waiters: [CheckedContinuation<Key?, Never>] = []
    private var failures: [Key: Int] = [:]
    private var delayed: [Key: (due: Int64, priority: Priority, task: Task<Void, Never>)] = [:]
    /// Keys waiting out a failure's backoff, with the retry's due time.
    private var backingOff: [Key: Int64] = [:]
    private var shuttingDown = false
    private let clock: any ControllerClock

    public init(clock: any ControllerClock, maxDelayMs: Int64 = WorkQueue.defaultMaxDelayMs) {
        self.clock = clock
        self.maxDelayMs = max(Self.baseDelayMs, maxDelayMs)
    }

    /// A FIFO with O(1) removal from the front (the consumed prefix is dropped now and then).
    private struct Lane {
        var items: [Key] = []
        var head = 0
        mutating func append(_ k: Key) { items.append(k) }
        mutating func popFirst() -> Key? {
            guard head < items.count else { return nil }
            let k = items[head]
            head += 1
            if head >= 1024 && head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            return k
        }
        mutating func removeAll() { items = []; head = 0 }
    }

    /// Keys waiting to be processed (not counting those in progress or delayed).
    public var depth: Int { queued.count }
    /// Keys waiting in the `.high` and `.urgent` lanes.
    public var urgentDepth: Int { queued.values.filter { $0 != .low }.count }
    public var inProgress: Int { processing.count }
    public var delayedCount: Int { delayed.count }

    public func add(_ key: Key, priority: Priority = .high) {
        guard !shuttingDown else { return }
        if let due = backingOff[key], clock.nowMs() < due { return }
        enqueue(key, priority)
    }

    /// Adds `key` now even if it is waiting out a failure's backoff (something changed that may fix it).
    public func add(_ key: Key, bypassingBackoff: Bool, priority: Priority = .high) {
        guard bypassingBackoff else { return add(key, priority: priority) }
        guard !shuttingDown else { return }
        backingOff[key] = nil
        enqueue(key, priority)
    }

    private func enqueue(_ key: Key, _ priority: Priority) {
        if processing.contains(key) {
            dirty[key] = max(dirty[key] ?? .low, priority)
            return
        }
        if let lane = queued[key] {
            // Already waiting: promoted to a higher lane if need be, never queued twice.
            if lane < priority {
                queued[key] = priority
                append(key, priority)
            }
            return
        }
        if !waiters.isEmpty {
            processing.insert(key)
            waiters.removeFirst().resume(returning: key)
            return
        }
        queued[key] = priority
        append(key, priority)
    }

    private func append(_ key: Key, _ priority: Priority) {
        switch priority {
        case .urgent: urgent.append(key)
        case .high: high.append(key)
        case .low: low.append(key)
        }
    }

    private func next() -> Key? {
        while let k = urgent.popFirst() {
            if queued[k] == .urgent { queued[k] = nil; return k }
        }
        while let k = high.popFirst() {
            if queued[k] == .high { queued[k] = nil; return k }
        }
        while let k = low.popFirst() {
            if queued[k] == .low { queued[k] = nil; return k }
        }
        return nil
    }

    /// Adds `key` after `delayMs`; an earlier pending delay for the key wins.
    public func add(_ key: Key, afterMs delayMs: Int64, priority: Priority = .high) {
        guard !shuttingDown else { return }
        if delayMs <= 0 { return add(key, priority: priority) }
        let due = clock.nowMs() + delayMs
        if let existing = delayed[key], existing.due <= due { return }
        if let retry = backingOff[key], due < retry { return }  // the backoff's retry comes first
        delayed[key]?.task.cancel()
        let clock = self.clock
        let task = Task {
            do { try await clock.sleep(milliseconds: delayMs) } catch { return }
            await self.fire(key, due: due)
        }
        delayed[key] = (due, priority, task)
    }

    private func fire(_ key: Key, due: Int64) {
        guard let d = delayed[key], d.due == due else { return }
        delayed[key] = nil
        if backingOff[key] == due { backingOff[key] = nil }
        enqueue(key, d.priority)
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
        dirty[key] = nil
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
        if let key = next() {
            processing.insert(key)
            return key
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    public func done(_ key: Key) {
        processing.remove(key)
        if let priority = dirty.removeValue(forKey: key) { add(key, priority: priority) }
    }

    /// Wakes every waiting worker with nil; pending and delayed keys are dropped.
    public func shutDown() {
        shuttingDown = true
        for w in waiters { w.resume(returning: nil) }
        waiters = []
        for (_, d) in delayed { d.task.cancel() }
        delayed = [:]
        backingOff = [:]
        urgent.removeAll()
        high.removeAll()
        low.removeAll()
        queued = [:]
    }
}
