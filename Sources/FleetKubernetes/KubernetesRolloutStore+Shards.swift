public import FleetCore
import Foundation

// The sharded layout (design 0019): the records of many servers, and their newest revisions and
// audit entries, in a few `mcpfleet-shard-<i>` ConfigMaps. Writes to one shard that arrive while
// its previous write is in flight are merged into its next write (group commit); every caller
// awaits the write that carries its change, so nothing is acknowledged before it is durable.

extension KubernetesRolloutStore {
    /// Where a store writes. Both layouts are read, whichever is configured, so a cluster written by
    /// either shows the same records and history.
    public enum Layout: Sendable, Hashable {
        /// Records and recent history of many servers per ConfigMap (`mcpfleet-shard-<i>`). A server
        /// no shard holds yet goes to one of the first `shards`; when that one is full, to one of a
        /// further level of twice as many (see `ShardPlacement`), so the shard count follows the fleet.
        case sharded(shards: Int)
        /// One record, revision and audit ConfigMap per server (the layout before 0019).
        case perServer

        public static let defaultShards = 8
        /// Servers a shard takes before new servers go to the next level: at about 3 KiB per server after
        /// its first rollout, a full shard stays below `spillAt` (512 KiB) until histories grow.
        public static let defaultShardCapacity = 160
    }

    /// Reconcile workers that let a sharded store's writes coalesce (the client's rate limiter is the only queue).
    public static let suggestedWorkers = 256

    static let shardKey = "shard.json"

    /// A server's part of a shard.
    struct ShardEntry: Codable, Sendable, Hashable {
        var record: RolloutRecord?
        /// Revisions not yet moved to `mcpfleet-revisions-<server>` (a revision here wins over one there).
        var revisions: [RevisionRecord]?
        /// Audit entries not yet moved to `mcpfleet-audit-<server>`, oldest first.
        var audit: [AuditEntry]?

        var isEmpty: Bool { record == nil && (revisions ?? []).isEmpty && (audit ?? []).isEmpty }
    }

    struct ShardData: Codable, Sendable, Hashable {
        var servers: [String: ShardEntry] = [:]
    }

    /// A shard as last known: its resourceVersion (nil: it does not exist), content and size in bytes.
    struct ShardState: Sendable {
        var name: String
        var resourceVersion: String?
        var data: ShardData
        var bytes = 0
    }

    enum ShardOutcome: Sendable {
        case done
        case record(RolloutRecord?)
    }

    static func shardName(_ index: Int) -> String { "mcpfleet-shard-\(index)" }

    /// FNV-1a of the name: the same shard in every process and version.
    static func shardIndex(_ server: String, shards: Int) -> Int {
        Int(fnv1a(server.utf8) % UInt64(max(1, shards)))
    }

    /// The shard a server goes to at `level` of placement: level 0 is the first `shards` shards (the
    /// index above); level L ≥ 1 the `shards << (L - 1)` shards after those of the levels before it,
    /// chosen by a hash of the name salted with the level (so the servers of one full shard spread over
    /// the whole next level instead of following each other).
    static func shardIndex(_ server: String, shards: Int, level: Int) -> Int {
        let base = max(1, shards)
        guard level > 0 else { return shardIndex(server, shards: base) }
        let width = base << (level - 1)
        return width + Int(fnv1a(Array(server.utf8) + Array("#\(level)".utf8)) % UInt64(width))
    }

    private static func fnv1a<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    // MARK: Reading

    /// Every shard: from the watched cache, else one LIST.
    func shards() async throws -> [String: ShardState] {
        if cached {
            try await waitForCache(shardCache)
            var out: [String: ShardState] = [:]
            for item in shardCache.items {
                out[item.name] = ShardState(name: item.name, resourceVersion: item.resourceVersion, data: try item.data.get(), bytes: item.bytes)
            }
            return out
        }
        let items = try await call { try await self.client.list(.configMap, namespace: self.namespace, labelSelector: "\(Self.storeLabel)=shard", pageSize: 50) }.items
        var out: [String: ShardState] = [:]
        for cm in items {
            let shard = CachedShard(cm, namespace: namespace)
            out[cm.name] = ShardState(name: cm.name, resourceVersion: cm.resourceVersion, data: try shard.data.get(), bytes: shard.bytes)
        }
        return out
    }

    /// The server's part of whichever shard holds it (nil: none does).
    func shardEntry(_ server: String) async throws -> ShardEntry? {
        Self.holder(of: server, in: try await shards())?.entry
    }

    /// The shard holding `server` (the first by name, should two).
    static func holder(of server: String, in all: [String: ShardState]) -> (name: String, entry: ShardEntry)? {
        for shard in all.values.sorted(by: { $0.name < $1.name }) {
            if let entry = shard.data.servers[server] { return (shard.name, entry) }
        }
        return nil
    }

    /// Where a change of `server` is written: the shard holding it, or the one it is placed in (`ShardPlacement`).
    func locate(_ server: String) async throws -> String {
        let all = try await shards()
        if let held = Self.holder(of: server, in: all) { return held.name }
        guard case .sharded(let count) = layout else { return Self.shardName(0) }
        return placement.shard(for: server, shards: count, capacity: shardCapacity, spillAt: spillAt, known: all)
    }

    // MARK: Writing

    /// A record write in the sharded layout: the generation check against the shard's record, or, for a
    /// server the shard does not hold yet, against its record in the old layout (read before, from the cache).
    /// `along` changes the entry further in the same write, only when the record is written.
    func writeSharded(_ record: RolloutRecord, expecting: Int64?,
                      along: @escaping @Sendable (inout ShardEntry) -> Void = { _ in }) async throws -> RolloutRecord? {
        let old = try await perServerRecord(record.server)
        let outcome = try await commit(server: record.server) { entry in
            let stored = entry.record?.generation ?? old?.generation ?? 0
            if let expecting, stored != expecting { return .record(nil) }
            var out = record
            if expecting != nil { out.generation = stored + 1 }
            entry.record = out
            along(&entry)
            return .record(out)
        }
        if case .record(let written) = outcome { return written }
        return nil
    }

    /// Applies `change` to the server's shard entry in the shard's next write and waits for that write.
    func commit(server: String, _ change: @escaping @Sendable (inout ShardEntry) throws -> ShardOutcome) async throws -> ShardOutcome {
        let shard = try await locate(server)
        return try await shardWriter.submit(shard: shard, ShardWriter.Change(server: server, apply: change)) { batch in
            try await self.write(shard: shard, batch)
        }
    }

    /// One write of a shard carrying `batch`: read-modify-write guarded by resourceVersion, each change
    /// applied again to a fresh read after a 409. The results, in the batch's order.
    func write(shard name: String, _ batch: [ShardWriter.Change]) async throws -> [Result<ShardOutcome, any Error>] {
        var current: ShardState?
        if cached {
            try await waitForCache(shardCache)
            let item = shardCache.item(namespace: namespace, name: name)
            current = ShardState(name: name, resourceVersion: item?.resourceVersion, data: try item?.data.get() ?? ShardData())
        }
        for _ in 0..<16 {
            if current == nil {
                let object = try await call { try await self.client.getIfPresent(.configMap, namespace: self.namespace, name: name) }
                current = ShardState(name: name, resourceVersion: object?.resourceVersion,
                                     data: try object.map { try CachedShard($0, namespace: namespace).data.get() } ?? ShardData())
            }
            guard let base = current else { continue }
            var data = base.data
            var changed = false
            let outcomes = batch.map { change -> Result<ShardOutcome, any Error> in
                let before = data.servers[change.server]
                var entry = before ?? ShardEntry()
                return Result {
                    let outcome = try change.apply(&entry)
                    let after = entry.isEmpty ? nil : entry
                    if after != before {
                        data.servers[change.server] = after
                        changed = true
                    }
                    return outcome
                }
            }
            if !changed { return outcomes }
            var text = try shardWriter.encode(data, shard: name, encode: encode)
            if text.utf8.count > spillAt {
                try await spill(&data, shard: name)
                text = try shardWriter.encode(data, shard: name, encode: encode)
            }
            guard text.utf8.count <= Self.shardHardLimit else {
                throw DriverError("ConfigMap \(namespace)/\(name)", "the shard holds \(text.utf8.count) bytes of rollout records, more than a ConfigMap may; "
                                  + "use more shards (KubernetesRolloutStore.Layout)")
            }
            let labels = [Self.storeLabel: "shard", KubernetesRenderer.labelManagedBy: KubernetesRenderer.managedBy, KubernetesRenderer.labelPartOf: "mcpfleet"]
            var metadata = KubernetesRenderer.meta(name: name, namespace: namespace, labels: labels)
            if let rv = base.resourceVersion { metadata["resourceVersion"] = .string(rv) }
            let object = KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": .obj([Self.shardKey: .string(text)])]))
            do {
                let written = base.resourceVersion == nil ? try await client.create(object) : try await client.replace(object)
                shardCache.ingest(written, as: written.resourceVersion.map { CachedShard(name: name, resourceVersion: $0, data: data, bytes: text.utf8.count) })
                return outcomes
            } catch let error as KubeError where error.status == 409 {
                current = nil  // another writer (replica, `mcpfleet promote`) or a stale cache: read again, apply again
            } catch let error as KubeError {
                throw error.driverError
            }
        }
        throw DriverError("ConfigMap \(namespace)/\(name)", "gave up after repeated write conflicts")
    }

    /// Moves the largest histories of a shard grown past `spillAt` to their servers' own revision and
    /// audit ConfigMaps — written (durable) before the shard write that drops them — until it is under `spillTo`.
    /// Idempotent: a move repeated after a conflict merges the same entries again.
    func spill(_ data: inout ShardData, shard: String) async throws {
        var sizes = try data.servers.map { server, entry -> (String, Int) in
            (server, try encode(ShardEntry(revisions: entry.revisions, audit: entry.audit)).utf8.count)
        }
        sizes.sort { $0.1 > $1.1 }
        var total = try encode(data).utf8.count
        for (server, size) in sizes where total > spillTo {
            guard var entry = data.servers[server], !(entry.revisions ?? []).isEmpty || !(entry.audit ?? []).isEmpty else { continue }
            if let revisions = entry.revisions, !revisions.isEmpty {
                let max = maxRevisions
                try await update(kind: "revisions", server: server, key: "revisions.json") { old in
                    let list = try old.map { try self.decode([RevisionRecord].self, $0, server: server) } ?? []
                    return try self.encode(Self.mergeRevisions(list, revisions, max: max))
                }
            }
            if let audit = entry.audit, !audit.isEmpty {
                let max = maxAuditEntries
                try await update(kind: "audit", server: server, key: "audit.json") { old in
                    let list = try old.map { try self.decode([AuditEntry].self, $0, server: server) } ?? []
                    return try self.encode(Array(Self.mergeAudit(list, audit).suffix(max)))
                }
            }
            entry.revisions = nil
            entry.audit = nil
            data.servers[server] = entry.isEmpty ? nil : entry
            total -= size
        }
    }

    /// Adds (or replaces, by revision) a revision in a shard entry; the newest `max` kept.
    static func add(_ revision: RevisionRecord, to entry: inout ShardEntry, max: Int) {
        entry.revisions = mergeRevisions(entry.revisions ?? [], [revision], max: max)
    }

    /// Appends an audit entry to a shard entry (or counts it on the entry it repeats). A failure may repeat
    /// an entry already moved out of the shard (`moved`, see `recentlyMovedAudit`): it is counted on a copy
    /// of that entry, and the copy wins when the two places are merged.
    static func add(_ audit: AuditEntry, to entry: inout ShardEntry, moved: [AuditEntry], max: Int) {
        var list = entry.audit ?? []
        if !list.suffix(AuditEntry.repeatWindow).contains(where: { audit.isRepeat(of: $0) }),
           let earlier = moved.last(where: { audit.isRepeat(of: $0) }) {
            list = mergeAudit(list, [earlier])
        }
        append(audit, to: &list, max: max)
        entry.audit = list
    }

    /// The server's newest audit entries already moved to its own ConfigMap (what a failure may repeat).
    func recentlyMovedAudit(server: String) async throws -> [AuditEntry] {
        try await storedText(kind: "audit", server: server)
            .map { Array(try decode([AuditEntry].self, $0, server: server).suffix(AuditEntry.repeatWindow)) } ?? []
    }

    // MARK: Merging the two places a history lives

    /// `pending` over `stored` by revision (pending wins), oldest first, the newest `max` kept.
    static func mergeRevisions(_ stored: [RevisionRecord], _ pending: [RevisionRecord], max: Int) -> [RevisionRecord] {
        var list = stored
        for revision in pending {
            if let i = list.firstIndex(where: { $0.revision == revision.revision }) { list[i] = revision } else { list.append(revision) }
        }
        list.sort { $0.createdAt < $1.createdAt }
        if list.count > max { list.removeFirst(list.count - max) }
        return list
    }

    /// The identity of an audit entry across the two places (a repeat count may have grown since it moved).
    private static func sameEvent(_ a: AuditEntry, _ b: AuditEntry) -> Bool {
        a.time == b.time && a.server == b.server && a.action == b.action && a.revision == b.revision && a.reason == b.reason
            && a.outcome == b.outcome && a.correlationId == b.correlationId
    }

    /// Both lists, an event in both once (the pending copy), oldest first.
    static func mergeAudit(_ stored: [AuditEntry], _ pending: [AuditEntry]) -> [AuditEntry] {
        var list = stored
        for entry in pending {
            if let i = list.lastIndex(where: { sameEvent($0, entry) }) { list[i] = entry } else { list.append(entry) }
        }
        return list.enumerated().sorted { ($0.element.time, $0.offset) < ($1.element.time, $1.offset) }.map(\.element)
    }

    /// Appends `entry`, or counts it on the recent entry it repeats (`RolloutStore.appendAudit`); the newest `max` kept.
    static func append(_ entry: AuditEntry, to list: inout [AuditEntry], max: Int) {
        if let i = list.indices.suffix(AuditEntry.repeatWindow).last(where: { entry.isRepeat(of: list[$0]) }) {
            list[i].repeats = (list[i].repeats ?? 0) + 1
            list[i].lastTime = entry.time
        } else {
            list.append(entry)
        }
        if list.count > max { list.removeFirst(list.count - max) }
    }
}

/// A shard ConfigMap as the store's cache keeps it: decoded once per change.
struct CachedShard: Sendable {
    var name: String
    var resourceVersion: String
    var data: Result<KubernetesRolloutStore.ShardData, DriverError>
    /// The size of its text.
    var bytes: Int

    init(name: String, resourceVersion: String, data: KubernetesRolloutStore.ShardData, bytes: Int) {
        self.name = name
        self.resourceVersion = resourceVersion
        self.data = .success(data)
        self.bytes = bytes
    }

    init(_ cm: KubeObject, namespace: String) {
        name = cm.name
        resourceVersion = cm.resourceVersion ?? ""
        let text = cm.json[["data", KubernetesRolloutStore.shardKey]]?.string ?? "{}"
        bytes = text.utf8.count
        data = Result {
            try JSONDecoder().decode(KubernetesRolloutStore.ShardData.self, from: Data(text.utf8))
        }.mapError { DriverError("rollout store shard \(namespace)/\(cm.name)", "unreadable: \($0)", terminal: true) }
    }
}

/// Where a server no shard holds yet goes: level by level (`KubernetesRolloutStore.shardIndex(_:shards:level:)`),
/// the first shard for it that has room — fewer than `capacity` servers, counting those this store placed
/// there that it does not hold yet, and below `spillAt` bytes. So a fleet of 1,000 fills the first 8
/// shards and one of 3,000 spreads over 24 or so, each shard the same size, instead of 8 shards each
/// past its spill size (design 0019, phase 6). The choice is remembered until the shard holds the
/// server, so every change of a new server goes to one shard, however the shards fill meanwhile.
/// Another process places by the same rule from what it reads; the shard that holds a server wins.
final class ShardPlacement: @unchecked Sendable {
    private let lock = NSLock()
    /// Server → shard, placed by this store and not yet seen held.
    private var placed: [String: String] = [:]
    /// Shard → the servers in `placed` that go there.
    private var pending: [String: Set<String>] = [:]
    /// Levels tried before the last one's shard is taken whatever its fill (8 << 15 shards: never in practice).
    static let maxLevels = 16

    func shard(for server: String, shards: Int, capacity: Int, spillAt: Int,
               known: [String: KubernetesRolloutStore.ShardState]) -> String {
        lock.withLock {
            if let name = placed[server] { return name }
            var chosen = ""
            for level in 0..<Self.maxLevels {
                chosen = KubernetesRolloutStore.shardName(KubernetesRolloutStore.shardIndex(server, shards: shards, level: level))
                let state = known[chosen]
                // Placed servers the shard now holds are counted as held (and forgotten here).
                var waiting = pending[chosen] ?? []
                if let state {
                    for name in waiting where state.data.servers[name] != nil {
                        waiting.remove(name)
                        placed[name] = nil
                    }
                    pending[chosen] = waiting.isEmpty ? nil : waiting
                }
                let count = (state?.data.servers.count ?? 0) + waiting.count
                if count < max(1, capacity), (state?.bytes ?? 0) < spillAt { break }
            }
            placed[server] = chosen
            pending[chosen, default: []].insert(server)
            return chosen
        }
    }

}

/// Group commit per shard: at most one write of a shard in flight; changes arriving meanwhile wait
/// and go out together in the next one. Each caller gets its own change's outcome, or the error of
/// the write that carried it.
final class ShardWriter: @unchecked Sendable {
    struct Change: Sendable {
        var server: String
        var apply: @Sendable (inout KubernetesRolloutStore.ShardEntry) throws -> KubernetesRolloutStore.ShardOutcome
    }

    typealias Outcome = KubernetesRolloutStore.ShardOutcome
    private struct Waiting {
        var change: Change
        var continuation: CheckedContinuation<Outcome, any Error>
    }

    private let lock = NSLock()
    /// Each write's token is taken from here before its batch is gathered.
    private let limiter: RateLimiter
    private var waiting: [String: [Waiting]] = [:]
    private var writing: Set<String> = []
    /// Writes made and changes they carried (tests, diagnostics).
    private(set) var statistics = (writes: 0, changes: 0)

    var counts: (writes: Int, changes: Int) { lock.withLock { statistics } }

    /// Changes waiting for the shard's next write (tests).
    func waitingChanges(shard: String) -> Int { lock.withLock { waiting[shard]?.count ?? 0 } }

    init(limiter: RateLimiter) { self.limiter = limiter }

    /// Each shard's servers as last encoded: a write re-encodes only the entries that changed (a shard
    /// runs to hundreds of KiB; encoding all of it for every write made the controller CPU-bound).
    private var fragments: [String: [String: (entry: KubernetesRolloutStore.ShardEntry, text: String)]] = [:]

    /// The shard's JSON text (`{"servers":{name:entry,…}}`, names sorted), from the entries' last encodings where unchanged.
    func encode(_ data: KubernetesRolloutStore.ShardData, shard: String,
                encode: (KubernetesRolloutStore.ShardEntry) throws -> String) throws -> String {
        let known = lock.withLock { fragments[shard] ?? [:] }
        var next: [String: (entry: KubernetesRolloutStore.ShardEntry, text: String)] = [:]
        next.reserveCapacity(data.servers.count)
        var out = #"{"servers":{"#
        for (i, server) in data.servers.keys.sorted().enumerated() {
            guard let entry = data.servers[server] else { continue }
            let text: String
            if let old = known[server], old.entry == entry { text = old.text } else { text = try encode(entry) }
            next[server] = (entry, text)
            if i > 0 { out += "," }
            out += JSONValue.string(server).jsonText
            out += ":"
            out += text
        }
        out += "}}"
        lock.withLock { fragments[shard] = next }
        return out
    }

    func submit(shard: String, _ change: Change,
                write: @escaping @Sendable ([Change]) async throws -> [Result<Outcome, any Error>]) async throws -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            let start: Bool = lock.withLock {
                waiting[shard, default: []].append(Waiting(change: change, continuation: continuation))
                return writing.insert(shard).inserted
            }
            if start { Task { await self.drain(shard: shard, write: write) } }
        }
    }

    /// Writes the shard's waiting changes until none are left. Each write first queues for its
    /// rate-limiter token and only then takes the changes: under throttling (the normal case during a
    /// cold converge) every change that arrived while it queued goes out in that one request.
    private func drain(shard: String, write: @Sendable ([Change]) async throws -> [Result<Outcome, any Error>]) async {
        while true {
            let more: Bool = lock.withLock {
                if waiting[shard]?.isEmpty ?? true { writing.remove(shard); return false }
                return true
            }
            if !more { return }
            do {
                try await limiter.withToken {
                    // Only this task takes the shard's changes, so there is still at least one.
                    let batch: [Waiting] = lock.withLock {
                        let batch = waiting.removeValue(forKey: shard) ?? []
                        statistics.writes += 1
                        statistics.changes += batch.count
                        return batch
                    }
                    do {
                        let outcomes = try await write(batch.map(\.change))
                        for (waiter, outcome) in zip(batch, outcomes) { waiter.continuation.resume(with: outcome) }
                    } catch {
                        for waiter in batch { waiter.continuation.resume(throwing: error) }
                    }
                }
            } catch {
                // No token (the task was cancelled): fail what waits rather than leave it hanging.
                let batch: [Waiting] = lock.withLock {
                    writing.remove(shard)
                    return waiting.removeValue(forKey: shard) ?? []
                }
                for waiter in batch { waiter.continuation.resume(throwing: error) }
                return
            }
        }
    }
}
