import FleetCore
import FleetHTTP
import Foundation

/// How an `Informer` keeps its watch alive.
public struct InformerConfiguration: Sendable, Hashable {
    /// A watch that delivers nothing (no event, no bookmark, no end) for this long is taken for dead — a
    /// connection dropped without a FIN, a proxy that stopped forwarding, a server that hung — and the
    /// informer lists again. Every watch asks the server to end it a little before this
    /// (`timeoutSeconds`), so a healthy watch always says something within it: one request per kind per
    /// `stallTimeout` renews it. Set it to the controller's resync interval.
    public var stallTimeout: Duration
    /// Items per page of a list.
    public var pageSize: Int
    /// Backoff between failed lists or watches (`backoff(afterAttempt:)`, capped at `maxBackoff`).
    public var retry: RetryPolicy

    public init(stallTimeout: Duration = .seconds(30), pageSize: Int = 250, retry: RetryPolicy = .default) {
        self.stallTimeout = stallTimeout
        self.pageSize = pageSize
        self.retry = retry
    }

    /// The `timeoutSeconds` of each watch request: the stall timeout less a margin (at least 1 s).
    var watchTimeoutSeconds: Int {
        let stall = Double(stallTimeout.components.seconds) + Double(stallTimeout.components.attoseconds) / 1e18
        return max(1, Int((stall - min(5, stall / 6)).rounded(.down)))
    }
}

/// Counters an informer keeps (for tests, benchmarks and logs).
public struct InformerStatistics: Sendable, Hashable {
    public var lists = 0
    public var watches = 0
    /// Lists after the first successful one: after a 410 Gone or a stalled watch.
    public var relists = 0
    /// Watches given up because nothing arrived within `stallTimeout`.
    public var stalls = 0
    public var gone = 0
    public var failures = 0
    public var events = 0
    public var bookmarks = 0
    /// Objects the driver wrote itself and offered to the cache from the API server's response.
    public var ownWrites = 0
}

/// One change an informer applied to its cache.
public enum InformerChange<Item: Sendable>: Sendable {
    case upserted(old: Item?, new: Item)
    case deleted(Item)
    /// The cache was replaced by a list (the first one, or after a 410 Gone or a stall).
    case relisted
}

/// client-go's reflector and indexer in one: keeps the objects of one resource type that match a label
/// selector (in one namespace or all) current in memory — LIST, then WATCH from the list's
/// resourceVersion with bookmarks; a watch that ends is resumed from the last resourceVersion seen; 410
/// Gone, a stalled watch or a failure before the first list lead to a new list; errors back off.
///
/// Objects are kept as `Item`s, a projection made by `transform` (what the driver reads of them), so
/// the cache holds kilobytes per object rather than whole JSON trees; `index` groups them (by server).
/// The driver's own writes enter the cache from the API server's response (`ingest`), so a reconcile
/// reads what it just wrote without waiting for the watch; resourceVersions keep an older event from
/// overwriting a newer state.
public final class Informer<Item: Sendable>: @unchecked Sendable {
    public typealias Transform = @Sendable (KubeObject) -> Item?

    public let type: ResourceType
    public let namespace: String?
    public let labelSelector: String?
    public let configuration: InformerConfiguration
    let client: KubeClient
    private let transform: Transform
    private let indexKey: @Sendable (Item) -> String?
    private let onChange: @Sendable (InformerChange<Item>) -> Void

    private struct Entry {
        var item: Item
        var resourceVersion: String
    }

    private let lock = NSLock()
    // Guarded by `lock`:
    private var entries: [String: Entry] = [:]
    private var index: [String: Set<String>] = [:]
    /// Keys the driver deleted, with the last resourceVersion it knew: older events do not bring them back.
    private var tombstones: [String: String] = [:]
    private var synced = false
    private var lastError: String?
    private var stats = InformerStatistics()
    private var task: Task<Void, Never>?

    /// - Parameters:
    ///   - transform: the projection kept per object; nil skips an object.
    ///   - index: the key an item is found under with `items(indexedBy:)` (nil: not indexed).
    ///   - onChange: called after each change is applied (from the informer's task, not under a lock).
    public init(client: KubeClient, type: ResourceType, namespace: String? = nil, labelSelector: String? = nil,
                configuration: InformerConfiguration = InformerConfiguration(), transform: @escaping Transform,
                index: @escaping @Sendable (Item) -> String? = { _ in nil },
                onChange: @escaping @Sendable (InformerChange<Item>) -> Void = { _ in }) {
        self.client = client
        self.type = type
        self.namespace = namespace
        self.labelSelector = labelSelector
        self.configuration = configuration
        self.transform = transform
        self.indexKey = index
        self.onChange = onChange
    }


    // MARK: Lifecycle

    /// Starts listing and watching (idempotent). The watch runs until `stop()`: owners stop their
    /// informers when they go away (the running watch keeps the informer alive).
    public func start() {
        lock.withLock {
            guard task == nil else { return }
            task = Task { [weak self] in await self?.run() }
        }
    }

    /// Stops watching; the cache keeps its last contents but is no longer synced.
    public func stop() async {
        let running: Task<Void, Never>? = lock.withLock {
            defer { task = nil }
            return task
        }
        running?.cancel()
        await running?.value
        lock.withLock { synced = false }
    }

    /// Stops watching without waiting for the watch to end (for deinitializers).
    public func stopWithoutWaiting() {
        lock.withLock {
            task?.cancel()
            task = nil
            synced = false
        }
    }

    public var isRunning: Bool { lock.withLock { task != nil } }
    public var hasSynced: Bool { lock.withLock { synced } }
    public var statistics: InformerStatistics { lock.withLock { stats } }
    /// The last list or watch failure (cleared by the next successful list), for diagnostics.
    public var lastFailure: String? { lock.withLock { lastError } }

    /// Waits until the first list has filled the cache (at once when it has). Throws `DriverError` when
    /// `timeout` passes first (naming the last failure, e.g. the API server being unreachable) or the
    /// informer is not running, `CancellationError` when cancelled.
    public func waitUntilSynced(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while !hasSynced {
            guard isRunning else { throw DriverError(description, "the cache is not running") }
            let now = ContinuousClock.now
            if now >= deadline {
                throw DriverError(description, "not listed within \(timeout)" + (lastFailure.map { ": \($0)" } ?? ""))
            }
            // Only while the first list is in flight (or failing); a synced cache returns at once.
            try await Task.sleep(for: min(.milliseconds(20), deadline - now))
        }
    }

    public var description: String {
        "\(type.kind) informer" + (namespace.map { " in namespace \($0)" } ?? "") + (labelSelector.map { " (\($0))" } ?? "")
    }

    // MARK: Reads

    public var count: Int { lock.withLock { entries.count } }

    public func item(namespace: String?, name: String) -> Item? {
        lock.withLock { entries[Self.key(namespace, name)]?.item }
    }

    public var items: [Item] { lock.withLock { entries.values.map(\.item) } }

    public func items(indexedBy key: String) -> [Item] {
        lock.withLock { (index[key] ?? []).compactMap { entries[$0]?.item } }
    }

    /// The index keys in use (e.g. every server with objects).
    public var indexKeys: [String] { lock.withLock { Array(index.keys) } }

    static func key(_ namespace: String?, _ name: String) -> String { (namespace ?? "") + "/" + name }

    // MARK: The driver's own writes

    /// Takes an object the API server returned for the driver's own write into the cache (if it matches
    /// this informer's namespace and selector and is newer than what is cached). With `notifying: false`
    /// the change is not reported to `onChange` (the writer knows what it wrote).
    public func ingest(_ object: KubeObject, notifying: Bool = true) {
        ingest(object, as: nil, notifying: notifying)
    }

    /// As `ingest(_:notifying:)`, with the object's item already made by the writer (nil: transform it).
    public func ingest(_ object: KubeObject, as made: Item?, notifying: Bool = true) {
        guard object.type == type, namespace == nil || object.namespace == namespace, Self.matches(labelSelector, object.labels) else { return }
        guard let rv = object.resourceVersion, let item = made ?? transform(object) else { return }
        if let change = apply(key: Self.key(object.namespace, object.name), item: item, resourceVersion: rv, own: true), notifying { onChange(change) }
    }

    /// The driver deleted an object: drop it now; events older than what was cached do not bring it back.
    public func forget(namespace: String?, name: String) {
        let key = Self.key(namespace, name)
        let removed: Item? = lock.withLock {
            guard let entry = entries.removeValue(forKey: key) else { return nil }
            unindex(key, entry.item)
            tombstones[key] = entry.resourceVersion
            return entry.item
        }
        if let removed { onChange(.deleted(removed)) }
    }

    /// Equality-based label selectors (`a=b,c!=d`, what the driver uses); anything else matches.
    static func matches(_ selector: String?, _ labels: [String: String]) -> Bool {
        guard let selector, !selector.isEmpty else { return true }
        for requirement in selector.split(separator: ",") {
            if let r = requirement.range(of: "!=") {
                if labels[String(requirement[..<r.lowerBound])] == String(requirement[r.upperBound...]) { return false }
            } else if let r = requirement.range(of: "=") {
                let value = requirement[r.upperBound...].drop { $0 == "=" }
                if labels[String(requirement[..<r.lowerBound])] != String(value) { return false }
            }
        }
        return true
    }

    // MARK: Applying changes

    /// Numeric resourceVersions (etcd revisions) order events; anything else is taken as newer.
    static func isOlder(_ rv: String, than current: String) -> Bool {
        guard let a = UInt64(rv), let b = UInt64(current) else { return false }
        return a < b
    }

    private func apply(key: String, item: Item, resourceVersion rv: String, own: Bool) -> InformerChange<Item>? {
        lock.withLock {
            if own { stats.ownWrites += 1 }
            if let tomb = tombstones[key], !Self.isOlder(tomb, than: rv) { return nil }
            tombstones[key] = nil
            let old = entries[key]
            if let old, old.resourceVersion == rv || Self.isOlder(rv, than: old.resourceVersion) { return nil }
            if let old { unindex(key, old.item) }
            entries[key] = Entry(item: item, resourceVersion: rv)
            if let k = indexKey(item) { index[k, default: []].insert(key) }
            return .upserted(old: old?.item, new: item)
        }
    }

    private func delete(key: String, resourceVersion rv: String) -> InformerChange<Item>? {
        lock.withLock {
            tombstones[key] = nil
            guard let old = entries[key], !Self.isOlder(rv, than: old.resourceVersion) else { return nil }
            entries[key] = nil
            unindex(key, old.item)
            return .deleted(old.item)
        }
    }

    private func unindex(_ key: String, _ item: Item) {
        guard let k = indexKey(item) else { return }
        index[k]?.remove(key)
        if index[k]?.isEmpty == true { index[k] = nil }
    }

    /// Replaces the cache with a list taken at `listVersion`; entries the driver wrote after it stay.
    private func replace(with listed: [String: Entry], listVersion: String) {
        var fresh = listed
        lock.withLock {
            for (key, entry) in entries where fresh[key] == nil && Self.isOlder(listVersion, than: entry.resourceVersion) {
                fresh[key] = entry  // written by us after the list was taken; the watch will confirm it
            }
            entries = fresh
            index = [:]
            for (key, entry) in entries { if let k = indexKey(entry.item) { index[k, default: []].insert(key) } }
            tombstones = [:]
            synced = true
            lastError = nil
        }
        onChange(.relisted)
    }

    private func count(_ body: (inout InformerStatistics) -> Void) { lock.withLock { body(&stats) } }

    // MARK: The reflector loop

    struct Stalled: Error {}

    private func run() async {
        var resourceVersion: String?
        var failures = 0
        var listed = false
        while !Task.isCancelled {
            do {
                if resourceVersion == nil {
                    count { if listed { $0.relists += 1 }; $0.lists += 1 }
                    // Projected page by page: the whole list is never held as JSON at once.
                    var fresh: [String: Entry] = [:]
                    let listVersion = try await client.list(type, namespace: namespace, labelSelector: labelSelector,
                                                            pageSize: configuration.pageSize) { page in
                        for object in page {
                            guard let item = transform(object) else { continue }
                            fresh[Self.key(object.namespace, object.name)] = Entry(item: item, resourceVersion: object.resourceVersion ?? "")
                        }
                    }
                    replace(with: fresh, listVersion: listVersion)
                    resourceVersion = listVersion
                    listed = true
                    failures = 0
                }
                count { $0.watches += 1 }
                let opened = ContinuousClock.now
                let received = try await watch(from: &resourceVersion)
                // The server ended the watch (its timeout, or a connection dropped cleanly): resume from the
                // last resourceVersion. One that ends at once without a word is a failure (never spin).
                if received || ContinuousClock.now - opened >= .seconds(1) {
                    failures = 0
                } else {
                    failures += 1
                    count { $0.failures += 1 }
                    try await Task.sleep(for: configuration.retry.backoff(afterAttempt: min(failures, 8)))
                }
            } catch let error as KubeError where error.isGone {
                count { $0.gone += 1 }
                resourceVersion = nil
            } catch is Stalled {
                count { $0.stalls += 1 }
                lock.withLock { lastError = "no event or bookmark within \(configuration.stallTimeout)" }
                resourceVersion = nil
            } catch {
                if Task.isCancelled || error is CancellationError { break }
                failures += 1
                count { $0.failures += 1 }
                lock.withLock { lastError = String(describing: error) }
                do { try await Task.sleep(for: configuration.retry.backoff(afterAttempt: min(failures, 8))) } catch { break }
            }
        }
    }

    /// Opens one watch and applies its events until it ends; throws `Stalled` when nothing (not even the
    /// response head) arrives for `stallTimeout`. Returns whether anything arrived.
    private func watch(from resourceVersion: inout String?) async throws -> Bool {
        let activity = Activity()
        let stall = configuration.stallTimeout
        let cursor = Cursor(resourceVersion)
        defer { resourceVersion = cursor.value }
        let start = cursor.value
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                let events = try await self.client.watch(self.type, namespace: self.namespace, labelSelector: self.labelSelector,
                                                         resourceVersion: start, timeoutSeconds: self.configuration.watchTimeoutSeconds)
                activity.touch()
                var received = false
                for try await event in events {
                    activity.touch()
                    received = true
                    self.handle(event, cursor: cursor)
                }
                return received
            }
            group.addTask {
                while true {
                    let deadline = activity.last + stall
                    if ContinuousClock.now >= deadline { throw Stalled() }
                    try await Task.sleep(until: deadline)
                }
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { return false }
            return first
        }
    }

    private func handle(_ event: WatchEvent, cursor: Cursor) {
        guard let rv = event.object.resourceVersion else { return }
        cursor.value = rv
        let key = Self.key(event.object.namespace, event.object.name)
        var change: InformerChange<Item>?
        switch event.kind {
        case .bookmark:
            count { $0.bookmarks += 1 }
            return
        case .added, .modified:
            count { $0.events += 1 }
            // The echo of a write already ingested (or older): nothing to transform (a store shard is hundreds of KiB).
            if lock.withLock({ entries[key].map { $0.resourceVersion == rv || Self.isOlder(rv, than: $0.resourceVersion) } ?? false }) { return }
            if let item = transform(event.object) {
                change = apply(key: key, item: item, resourceVersion: rv, own: false)
            } else {
                change = delete(key: key, resourceVersion: rv)
            }
        case .deleted:
            count { $0.events += 1 }
            change = delete(key: key, resourceVersion: rv)
        }
        if let change { onChange(change) }
    }

    /// When the last event, bookmark or watch start was seen.
    final class Activity: @unchecked Sendable {
        private let lock = NSLock()
        private var instant = ContinuousClock.now
        var last: ContinuousClock.Instant { lock.withLock { instant } }
        func touch() { lock.withLock { instant = .now } }
    }

    final class Cursor: @unchecked Sendable {
        private let lock = NSLock()
        private var rv: String?
        init(_ rv: String?) { self.rv = rv }
        var value: String? {
            get { lock.withLock { rv } }
            set { lock.withLock { rv = newValue } }
        }
    }
}
