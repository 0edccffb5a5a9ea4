public import FleetCore
import Foundation

/// Rollout bookkeeping kept in the cluster, as ConfigMaps in the controller's namespace, so a new
/// controller pod (or the other replica after a leader change) continues where the last one stopped:
///
/// - `mcpfleet-rollout-<server>`: the `RolloutRecord` (`data["record.json"]`)
/// - `mcpfleet-revisions-<server>`: the last `maxRevisions` `RevisionRecord`s (`data["revisions.json"]`)
/// - `mcpfleet-audit-<server>`: the last `maxAuditEntries` audit entries (`data["audit.json"]`)
///
/// Every write is a read-modify-write guarded by `resourceVersion` (a `PUT` that fails with 409 when
/// someone wrote in between, then re-read and retried), so two writers never lose each other's update.
/// A ConfigMap holds at most 1 MiB; the bounds keep each well below it.
///
/// After `start()` the rollout records are served from a watched cache (LIST + WATCH of the
/// `mcpfleet.io/store=rollout` ConfigMaps, decoded once per change), and a write starts from the cached
/// object and its resourceVersion instead of reading it first. Of the revision and audit ConfigMaps a
/// second watch (`mcpfleet.io/store!=rollout`) keeps name and resourceVersion, and the text too while
/// it is small (up to `CachedRecord.inlineLimit` bytes: a young history): one that does not exist is created without a
/// read (a cold converge reads nothing), a small one is read from the cache, and of a larger one the
/// text this store wrote or read last (kept up to `ownWriteBudget` bytes) is used unless the watch
/// has seen a newer resourceVersion. A stale cache
/// costs nothing but a retry: its resourceVersion no longer matches, the write fails with 409 (or the
/// create with 409 AlreadyExists), the object is read afresh. Without `start()` every read goes to the
/// API server. Design: docs/designs/0013-kubernetes-request-budget.md.
public final class KubernetesRolloutStore: RolloutStore {
    public let client: KubeClient
    public let namespace: String
    public let maxRevisions: Int
    public let maxAuditEntries: Int
    let recordCache: Informer<CachedRecord>
    /// The revision and audit ConfigMaps (a watch of its own, so the records' first list is as quick as before).
    let historyCache: Informer<CachedRecord>
    let recent: RecentObjects
    /// Where new bookkeeping goes (see `Layout`); both layouts are always read.
    public let layout: Layout
    /// The shard ConfigMaps (`mcpfleet.io/store=shard`), decoded once per change.
    let shardCache: Informer<CachedShard>
    let shardWriter: ShardWriter
    /// Where servers no shard holds yet go.
    let placement = ShardPlacement()
    /// Servers a shard takes before new ones go to the next level (`ShardPlacement`).
    let shardCapacity: Int
    /// A shard is written out below this many bytes; past `spillAt` the largest histories move to their servers' own ConfigMaps.
    let spillAt: Int
    let spillTo: Int
    static let shardHardLimit = 900 << 10

    static let storeLabel = "mcpfleet.io/store"
    static let serverLabel = "mcpfleet.io/server"

    /// - Parameters:
    ///   - cache: how the record cache's watch is kept alive once `start()` is called.
    ///   - ownWriteBudget: bytes of revision and audit ConfigMaps kept from this store's own reads and writes.
    ///   - layout: where writes go: `.sharded` (the default) or `.perServer` (the layout before 0019).
    ///   - spillAt: a shard past this many bytes moves its largest histories out (tests make it small).
    ///   - shardCapacity: servers a shard takes before new servers go to further shards.
    public init(client: KubeClient, namespace: String, maxRevisions: Int = 50, maxAuditEntries: Int = 500,
                cache: InformerConfiguration = InformerConfiguration(), ownWriteBudget: Int = 8 << 20,
                layout: Layout = .sharded(shards: Layout.defaultShards), spillAt: Int = 512 << 10,
                shardCapacity: Int = Layout.defaultShardCapacity) {
        self.client = client
        self.shardCapacity = max(1, shardCapacity)
        shardWriter = ShardWriter(limiter: client.limiter)
        self.layout = layout
        self.spillAt = min(max(1024, spillAt), Self.shardHardLimit - (128 << 10))
        self.spillTo = self.spillAt / 2
        shardCache = Informer(client: client, type: .configMap, namespace: namespace, labelSelector: "\(Self.storeLabel)=shard",
                              configuration: cache, transform: { CachedShard($0, namespace: namespace) })
        self.namespace = namespace
        self.maxRevisions = max(1, maxRevisions)
        self.maxAuditEntries = max(1, maxAuditEntries)
        recordCache = Informer(client: client, type: .configMap, namespace: namespace, labelSelector: "\(Self.storeLabel)=rollout",
                           configuration: cache, transform: { CachedRecord($0, namespace: namespace) })
        // Pages of at most 100: an audit log runs to hundreds of KiB, and a page is held whole while it is projected.
        var listing = cache
        listing.pageSize = min(cache.pageSize, 100)
        historyCache = Informer(client: client, type: .configMap, namespace: namespace, labelSelector: "\(Self.storeLabel)!=rollout,\(Self.storeLabel)!=shard",
                                configuration: listing, transform: { cm in
                                    let kind = cm.labels[KubernetesRolloutStore.storeLabel]
                                    return kind == "revisions" || kind == "audit" ? CachedRecord(cm, namespace: namespace) : nil
                                })
        recent = RecentObjects(budget: ownWriteBudget)
    }

    deinit { stopWithoutWaiting() }

    /// Stops both watches without waiting (deinitializers, tests).
    func stopWithoutWaiting() {
        recordCache.stopWithoutWaiting()
        historyCache.stopWithoutWaiting()
        shardCache.stopWithoutWaiting()
    }

    // MARK: Cache lifecycle

    /// Starts watching the rollout records (idempotent); `waitUntilSynced` waits for the first list.
    public func start() {
        recordCache.start()
        shardCache.start()
        historyCache.start()
    }

    public func stop() async {
        await recordCache.stop()
        await shardCache.stop()
        await historyCache.stop()
    }

    public func waitUntilSynced(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        try await recordCache.waitUntilSynced(timeout: timeout)
        try await shardCache.waitUntilSynced(timeout: max(.zero, deadline - .now))
        try await historyCache.waitUntilSynced(timeout: max(.zero, deadline - .now))
    }

    /// The record cache's counters.
    public var cacheStatistics: InformerStatistics { recordCache.statistics }

    var cached: Bool { recordCache.isRunning }

    // MARK: RolloutStore

    public func record(server: String) async throws -> RolloutRecord? {
        if let entry = try await shardEntry(server), let record = entry.record { return record }
        return try await perServerRecord(server)
    }

    /// The record in the layout before 0019 (`mcpfleet-rollout-<server>`).
    func perServerRecord(_ server: String) async throws -> RolloutRecord? {
        let name = Self.name("rollout", server)
        if cached {
            try await waitForCache()
            return try recordCache.item(namespace: namespace, name: name)?.decoded()
        }
        guard let text = try await read(name: name, key: "record.json") else { return nil }
        return try decode(RolloutRecord.self, text, server: server)
    }

    public func records() async throws -> [RolloutRecord] {
        var byServer: [String: RolloutRecord] = [:]
        for record in try await perServerRecords() { byServer[record.server] = record }
        for shard in try await shards().values {
            for (server, entry) in shard.data.servers { if let record = entry.record { byServer[server] = record } }
        }
        return byServer.values.sorted { $0.server < $1.server }
    }

    func perServerRecords() async throws -> [RolloutRecord] {
        if cached {
            try await waitForCache()
            return try recordCache.items.compactMap { try $0.decoded() }.sorted { $0.server < $1.server }
        }
        let items = try await call { try await self.client.list(.configMap, namespace: self.namespace, labelSelector: "\(Self.storeLabel)=rollout") }.items
        return try items.compactMap { cm -> RolloutRecord? in
            guard let text = cm.json[["data", "record.json"]]?.string else { return nil }
            return try decode(RolloutRecord.self, text, server: cm.labels[Self.serverLabel] ?? cm.name)
        }.sorted { $0.server < $1.server }
    }

    func waitForCache() async throws { try await waitForCache(recordCache) }

    func waitForCache<T: Sendable>(_ informer: Informer<T>) async throws {
        do {
            try await informer.waitUntilSynced(timeout: .seconds(60))
        } catch let error as DriverError {
            throw DriverError("rollout store (namespace \(namespace))", error.message)
        }
    }

    public func save(_ record: RolloutRecord) async throws {
        guard case .sharded = layout else { _ = try await write(record, expecting: nil); return }
        _ = try await writeSharded(record, expecting: nil)
    }

    public func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord? {
        guard case .sharded = layout else { return try await write(record, expecting: record.generation) }
        return try await writeSharded(record, expecting: record.generation)
    }

    /// In the sharded layout one change of the server's shard entry (so one write, usually shared with
    /// other servers'); in the per-server layout one write after another.
    public func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        guard case .sharded = layout, then.allSatisfy({ $0.server == record.server }) else {
            return try await saveIfUnchangedOneByOne(record, then: then)
        }
        let failures = then.contains { if case .audit(let e) = $0 { return e.outcome != "ok" } else { return false } }
        let moved = failures ? try await recentlyMovedAudit(server: record.server) : []
        let (maxRevisions, maxAudit) = (self.maxRevisions, maxAuditEntries)
        return try await writeSharded(record, expecting: record.generation) { entry in
            for write in then {
                switch write {
                case .revision(let revision): Self.add(revision, to: &entry, max: maxRevisions)
                case .audit(let audit): Self.add(audit, to: &entry, moved: moved, max: maxAudit)
                }
            }
        }
    }

    private struct StoredGeneration: Decodable { var generation: Int64? }
    private struct GenerationMoved: Error {}

    /// The generation check runs inside the resourceVersion-guarded read-modify-write, so it holds
    /// against any writer of the ConfigMap (another controller replica, `mcpfleet promote`).
    private func write(_ record: RolloutRecord, expecting: Int64?) async throws -> RolloutRecord? {
        var written: RolloutRecord?
        do {
            try await update(kind: "rollout", server: record.server, key: "record.json") { old in
                let stored = try old.map { try JSONDecoder().decode(StoredGeneration.self, from: Data($0.utf8)).generation ?? 0 } ?? 0
                if let expecting, stored != expecting { throw GenerationMoved() }
                var out = record
                if expecting != nil { out.generation = stored + 1 }
                written = out
                return try self.encode(out)
            }
        } catch is GenerationMoved {
            return nil
        }
        return written
    }

    public func removeRecord(server: String) async throws {
        let name = Self.name("rollout", server)
        // The record in the old layout first (the shard's record shadows it until then; never the other way round).
        if !cached || recordCache.item(namespace: namespace, name: name) != nil {
            _ = try await call { try await self.client.delete(.configMap, namespace: self.namespace, name: name) }
            recordCache.forget(namespace: namespace, name: name)
        }
        if try await shardEntry(server)?.record != nil {
            _ = try await commit(server: server) { entry in entry.record = nil; return .done }
        }
    }

    public func revisions(server: String) async throws -> [RevisionRecord] {
        let own = try await perServerRevisions(server)
        guard let pending = try await shardEntry(server)?.revisions, !pending.isEmpty else { return own }
        return Self.mergeRevisions(own, pending, max: maxRevisions)
    }

    func perServerRevisions(_ server: String) async throws -> [RevisionRecord] {
        guard let text = try await storedText(kind: "revisions", server: server) else { return [] }
        return try decode([RevisionRecord].self, text, server: server)
    }

    /// A server's revision or audit ConfigMap's text: from the cache or this store's own copy when current, else read.
    func storedText(kind: String, server: String) async throws -> String? {
        let name = Self.name(kind, server), key = kind + ".json"
        if let known = try await believed(kind: kind, name: name, key: key) { return known.text }
        return try await read(name: name, key: key)
    }

    public func saveRevision(_ revision: RevisionRecord) async throws {
        if case .sharded = layout {
            let max = maxRevisions
            _ = try await commit(server: revision.server) { entry in
                Self.add(revision, to: &entry, max: max)
                return .done
            }
            return
        }
        try await update(kind: "revisions", server: revision.server, key: "revisions.json") { old in
            var list = try old.map { try self.decode([RevisionRecord].self, $0, server: revision.server) } ?? []
            if let i = list.firstIndex(where: { $0.revision == revision.revision }) { list[i] = revision } else { list.append(revision) }
            list.sort { $0.createdAt < $1.createdAt }
            if list.count > self.maxRevisions { list.removeFirst(list.count - self.maxRevisions) }
            return try self.encode(list)
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        if case .sharded = layout {
            let max = maxAuditEntries
            // Successes never repeat: no read for them.
            let moved = entry.outcome == "ok" ? [] : try await recentlyMovedAudit(server: entry.server)
            _ = try await commit(server: entry.server) { pending in
                Self.add(entry, to: &pending, moved: moved, max: max)
                return .done
            }
            return
        }
        try await update(kind: "audit", server: entry.server, key: "audit.json") { old in
            var list = try old.map { try self.decode([AuditEntry].self, $0, server: entry.server) } ?? []
            Self.append(entry, to: &list, max: self.maxAuditEntries)
            return try self.encode(list)
        }
    }

    /// Newest first.
    public func audit(server: String?, limit: Int) async throws -> [AuditEntry] {
        var entries: [AuditEntry]
        if let server {
            entries = try await read(name: Self.name("audit", server), key: "audit.json").map { try decode([AuditEntry].self, $0, server: server) } ?? []
            if let pending = try await shardEntry(server)?.audit { entries = Self.mergeAudit(entries, pending) }
        } else {
            let items = try await call { try await self.client.list(.configMap, namespace: self.namespace, labelSelector: "\(Self.storeLabel)=audit") }.items
            entries = try items.flatMap { cm -> [AuditEntry] in
                guard let text = cm.json[["data", "audit.json"]]?.string else { return [] }
                return try decode([AuditEntry].self, text, server: cm.labels[Self.serverLabel] ?? cm.name)
            }
            var byServer = Dictionary(grouping: entries, by: \.server)
            for shard in try await shards().values {
                for (server, entry) in shard.data.servers { if let pending = entry.audit { byServer[server] = Self.mergeAudit(byServer[server] ?? [], pending) } }
            }
            entries = byServer.values.flatMap { $0 }
        }
        entries.sort { $0.time > $1.time }
        return Array(entries.prefix(max(0, limit)))
    }

    // MARK: Plumbing

    /// ConfigMap names are DNS subdomains: audit subjects such as `tenant/team` become `tenant.team`.
    static func name(_ kind: String, _ server: String) -> String {
        server.isEmpty ? "mcpfleet-\(kind)" : "mcpfleet-\(kind)-\(subdomainSafe(server))"
    }

    static func subdomainSafe(_ s: String) -> String {
        String(s.lowercased().map { c -> Character in
            c == "/" ? "." : (c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == ".")) ? c : "-"
        }.prefix(200))
    }

    /// Label values allow `[A-Za-z0-9_.-]`, at most 63 characters.
    static func labelSafe(_ s: String) -> String {
        String(s.map { c -> Character in c == "/" ? "." : (c.isASCII && (c.isLetter || c.isNumber || "-_.".contains(c))) ? c : "-" }.prefix(63))
    }

    /// One data key of a ConfigMap, read from the API server (and remembered for the next write).
    func read(name: String, key: String) async throws -> String? {
        let cm = try await call { try await self.client.getIfPresent(.configMap, namespace: self.namespace, name: name) }
        if let cm, let rv = cm.resourceVersion, kindOf(name) != "rollout" {
            recent.remember(name, Snapshot(resourceVersion: rv, key: key, text: cm.json[["data", key]]?.string))
        }
        return cm?.json[["data", key]]?.string
    }

    /// A ConfigMap's data key and resourceVersion as last known; nil resourceVersion: it does not exist.
    struct Snapshot: Sendable {
        var resourceVersion: String?
        var key: String
        var text: String?
    }

    private func kindOf(_ name: String) -> String {
        for kind in ["rollout", "revisions", "audit"] where name.hasPrefix("mcpfleet-\(kind)") { return kind }
        return ""
    }

    /// What this store believes the ConfigMap holds now (nil: it does not know, read it). With the cache:
    /// absent from it, the object does not exist; a revision or audit text is believed while the
    /// watched resourceVersion is the one it was written or read at.
    private func believed(kind: String, name: String, key: String) async throws -> Snapshot? {
        guard cached else { return kind == "rollout" ? nil : recent.value(name, key: key) }
        let cache = kind == "rollout" ? recordCache : historyCache
        try await waitForCache(cache)
        guard let item = cache.item(namespace: namespace, name: name) else { return Snapshot(resourceVersion: nil, key: key, text: nil) }
        if kind == "rollout" || item.whole { return Snapshot(resourceVersion: item.resourceVersion, key: key, text: item.text) }
        // Known from this store's own write or read, unless the watch has since seen a newer write.
        guard let known = recent.value(name, key: key), let rv = known.resourceVersion,
              !Informer<CachedRecord>.isOlder(rv, than: item.resourceVersion) else { return nil }
        return known
    }

    /// Read-modify-write of one data key, guarded by resourceVersion; retried on conflicts. The first
    /// attempt starts from what the store believes (its cache, or its own last write), later ones read.
    func update(kind: String, server: String, key: String, _ transform: (String?) throws -> String) async throws {
        let name = Self.name(kind, server)
        var current = try await believed(kind: kind, name: name, key: key)
        for _ in 0..<16 {
            if current == nil {
                let object = try await call { try await self.client.getIfPresent(.configMap, namespace: self.namespace, name: name) }
                current = Snapshot(resourceVersion: object?.resourceVersion, key: key, text: object?.json[["data", key]]?.string)
            }
            let value = try transform(current?.text)
            var labels = [Self.storeLabel: kind, KubernetesRenderer.labelManagedBy: KubernetesRenderer.managedBy, KubernetesRenderer.labelPartOf: "mcpfleet"]
            if !server.isEmpty { labels[Self.serverLabel] = Self.labelSafe(server) }
            var metadata = KubernetesRenderer.meta(name: name, namespace: namespace, labels: labels)
            if let rv = current?.resourceVersion { metadata["resourceVersion"] = .string(rv) }
            let object = KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": .obj([key: .string(value)])]))
            do {
                let written = current?.resourceVersion == nil ? try await client.create(object) : try await client.replace(object)
                (kind == "rollout" ? recordCache : historyCache).ingest(written)
                if kind != "rollout", let rv = written.resourceVersion {
                    recent.remember(name, Snapshot(resourceVersion: rv, key: key, text: value))
                }
                return
            } catch let error as KubeError where error.status == 409 {
                current = nil  // someone wrote in between (or created it first), or the cache was stale: read again
                recent.forget(name)
            } catch let error as KubeError {
                throw error.driverError
            }
        }
        throw DriverError("ConfigMap \(namespace)/\(name)", "gave up after repeated write conflicts")
    }

    func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    func decode<T: Decodable>(_ type: T.Type, _ text: String, server: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw DriverError("rollout store of server \(server) (namespace \(namespace))", "unreadable record: \(error)", terminal: true)
        }
    }

    func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as KubeError {
            throw error.driverError
        }
    }
}

/// A store ConfigMap as the store's cache keeps it: a rollout record decoded once per change; of a
/// revision or audit ConfigMap that it exists, at which resourceVersion, and its text while small.
struct CachedRecord: Sendable {
    /// Revision and audit texts up to this many bytes are kept whole (a server's first few entries).
    static let inlineLimit = 4096

    /// The `mcpfleet.io/store` label: rollout, revisions, audit (routes: the gateway's route object).
    var kind: String
    var server: String
    var resourceVersion: String
    var text: String?
    /// `text` is the object's whole data key (always for a record; for the others while small).
    var whole = true
    var record: Result<RolloutRecord, DriverError>?

    init(_ cm: KubeObject, namespace: String) {
        kind = cm.labels[KubernetesRolloutStore.storeLabel] ?? ""
        server = cm.labels[KubernetesRolloutStore.serverLabel] ?? cm.name
        resourceVersion = cm.resourceVersion ?? ""
        guard kind == "rollout" else {
            let t = cm.json[["data", kind + ".json"]]?.string
            whole = (t?.utf8.count ?? 0) <= Self.inlineLimit
            text = whole ? t : nil
            return
        }
        text = cm.json[["data", "record.json"]]?.string
        record = text.map { text in
            Result {
                try JSONDecoder().decode(RolloutRecord.self, from: Data(text.utf8))
            }.mapError { DriverError("rollout store of server \(cm.labels[KubernetesRolloutStore.serverLabel] ?? cm.name) (namespace \(namespace))",
                                     "unreadable record: \($0)", terminal: true) }
        }
    }

    /// The record (nil: the ConfigMap holds none), or the error that it cannot be read.
    func decoded() throws -> RolloutRecord? {
        guard let record else { return nil }
        return try record.get()
    }
}

/// The revision and audit ConfigMaps a store wrote or read last, up to a byte budget (least recently
/// used go first), so consecutive writes to one ConfigMap need no read in between.
final class RecentObjects: @unchecked Sendable {
    private struct Entry {
        var snapshot: KubernetesRolloutStore.Snapshot
        var used: UInt64
        var bytes: Int
    }

    private let lock = NSLock()
    private let budget: Int
    private var entries: [String: Entry] = [:]
    private var bytes = 0
    private var tick: UInt64 = 0

    init(budget: Int) { self.budget = max(0, budget) }

    func value(_ name: String, key: String) -> KubernetesRolloutStore.Snapshot? {
        lock.withLock {
            guard var entry = entries[name], entry.snapshot.key == key else { return nil }
            tick += 1
            entry.used = tick
            entries[name] = entry
            return entry.snapshot
        }
    }

    func remember(_ name: String, _ snapshot: KubernetesRolloutStore.Snapshot) {
        let size = (snapshot.text?.utf8.count ?? 0) + name.utf8.count + 64
        lock.withLock {
            if let old = entries.removeValue(forKey: name) { bytes -= old.bytes }
            guard size <= budget else { return }
            tick += 1
            entries[name] = Entry(snapshot: snapshot, used: tick, bytes: size)
            bytes += size
            while bytes > budget, let oldest = entries.min(by: { $0.value.used < $1.value.used }) {
                bytes -= oldest.value.bytes
                entries[oldest.key] = nil
            }
        }
    }

    func forget(_ name: String) {
        lock.withLock {
            if let old = entries.removeValue(forKey: name) { bytes -= old.bytes }
        }
    }

    var count: Int { lock.withLock { entries.count } }
}
