import FleetCore
import FleetHTTP
import FleetTesting
@testable import FleetKubernetes
import Foundation
import Testing

/// The rollout store's sharded layout (design 0019) against the project's Kubernetes test API server:
/// concurrent writes of many servers share requests, and still each is durable before its caller goes
/// on, compare-and-swap holds, a failed write fails its callers and loses nothing written before,
/// and a cluster written in the per-server layout reads the same.
@Suite(.serialized) struct KubernetesShardedStoreTests {
    static let fast = RetryPolicy(maxAttempts: 2, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(400))
    static let ns = "mcpfleet-system"

    func cachedStore(_ api: KubeAPIServerProcess, layout: KubernetesRolloutStore.Layout = .sharded(shards: 8), spillAt: Int = 512 << 10,
                     capacity: Int = KubernetesRolloutStore.Layout.defaultShardCapacity) async throws -> KubernetesRolloutStore {
        let client = try api.client(retry: Self.fast)
        if try await client.getIfPresent(.namespace, namespace: nil, name: Self.ns) == nil {
            _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": .string(Self.ns)])])))
        }
        let store = KubernetesRolloutStore(client: client, namespace: Self.ns, cache: InformerConfiguration(retry: Self.fast), layout: layout, spillAt: spillAt,
                                           shardCapacity: capacity)
        store.start()
        try await store.waitUntilSynced(timeout: .seconds(10))
        return store
    }

    func writes(_ api: KubeAPIServerProcess) async throws -> Int {
        let c = try await api.counters()
        return (c[["byResource", "configmaps", "create"]]?.int ?? 0) + (c[["byResource", "configmaps", "update"]]?.int ?? 0)
    }

    static func revision(_ server: String, _ outcome: RevisionOutcome = .pending) -> RevisionRecord {
        RevisionRecord(server: server, revision: "r1", version: "1", fields: [], createdAt: 1, outcome: outcome)
    }

    @Test func concurrentSavesOfManyServersBecomeFewRequestsAndReadBackExactly() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api)
        defer { store.stopWithoutWaiting() }
        try await api.resetCounters()
        let servers = (0..<200).map { String(format: "s%04d", $0) }
        // What one cold rollout step writes, for 200 servers at once: the record, then an audit entry, then a revision.
        let saved = try await withThrowingTaskGroup(of: RolloutRecord?.self) { group in
            for server in servers {
                group.addTask {
                    let written = try await store.saveIfUnchanged(RolloutRecord(server: server, phase: .progressing, targetRevision: "r1"))
                    try await store.appendAudit(AuditEntry(time: 1, server: server, action: "rollout-start", revision: "r1", reason: "new", outcome: "ok"))
                    try await store.saveRevision(Self.revision(server))
                    return written
                }
            }
            return try await group.reduce(into: [RolloutRecord?]()) { $0.append($1) }
        }
        // Each caller saw its own write.
        #expect(saved.compactMap { $0 }.count == 200)
        #expect(saved.allSatisfy { $0?.generation == 1 && $0?.targetRevision == "r1" })
        let requests = try await writes(api)
        #expect(requests * 4 <= 600, "600 writes took \(requests) requests")
        let counts = store.shardWriter.counts
        #expect(counts.changes == 600 && counts.writes == requests, "\(counts)")
        let c = try await api.counters()
        #expect(c[["byResource", "configmaps", "get"]] == nil, "\(c.jsonText)")
        // Read back exactly, from the cache and by a store that reads from the API server.
        let fresh = KubernetesRolloutStore(client: try api.client(), namespace: Self.ns)
        for reader in [store, fresh] {
            let records = try await reader.records()
            #expect(records.map(\.server) == servers)
            #expect(records.allSatisfy { $0.generation == 1 && $0.phase == .progressing })
            #expect(try await reader.revisions(server: "s0042") == [Self.revision("s0042")])
            #expect(try await reader.audit(server: "s0042", limit: 10).map(\.action) == ["rollout-start"])
            #expect(try await reader.audit(server: nil, limit: 1000).count == 200)
        }
        // A subject whose name needs escaping in the shard's JSON (audit subjects are free text such as `tenant/team`).
        let odd = #"tenant/"quoted"\back"#
        try await store.appendAudit(AuditEntry(time: 2, server: odd, action: "ensure-tenant", reason: "missing", outcome: "ok"))
        #expect(try await fresh.audit(server: odd, limit: 10).map(\.server) == [odd])
        // Every shard well under the 1 MiB object limit.
        let shards = try await api.client().list(.configMap, namespace: Self.ns, labelSelector: "mcpfleet.io/store=shard").items
        #expect(shards.count == 8)
        #expect(shards.allSatisfy { ($0.json[["data", "shard.json"]]?.string?.utf8.count ?? 0) < 512 << 10 })
    }

    /// The servers of each shard ConfigMap, by shard name.
    func shardServers(_ api: KubeAPIServerProcess) async throws -> [String: Set<String>] {
        let items = try await api.client().list(.configMap, namespace: Self.ns, labelSelector: "mcpfleet.io/store=shard").items
        var out: [String: Set<String>] = [:]
        for cm in items {
            let data = try JSONDecoder().decode(KubernetesRolloutStore.ShardData.self, from: Data((cm.json[["data", "shard.json"]]?.string ?? "{}").utf8))
            out[cm.name] = Set(data.servers.keys)
        }
        return out
    }

    /// A fleet larger than the first shards hold goes on to further shards, each within its capacity,
    /// instead of growing the first ones past their spill size (what made 3,000 servers spill every history).
    @Test func aFleetPastTheShardsCapacitySpreadsOverMoreShardsEachWithinIt() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api, layout: .sharded(shards: 2), capacity: 10)
        defer { store.stopWithoutWaiting() }
        // The first server goes where the name hashes among the first shards, as before levels existed.
        try await store.save(RolloutRecord(server: "first", phase: .progressing, targetRevision: "r1"))
        #expect(try await shardServers(api)[KubernetesRolloutStore.shardName(KubernetesRolloutStore.shardIndex("first", shards: 2))] == ["first"])
        let servers = (0..<80).map { String(format: "s%04d", $0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for server in servers {
                group.addTask {
                    _ = try await store.saveIfUnchanged(RolloutRecord(server: server, phase: .progressing, targetRevision: "r1"),
                                                        then: [.revision(Self.revision(server)),
                                                               .audit(AuditEntry(time: 1, server: server, action: "rollout-start", revision: "r1", reason: "new", outcome: "ok"))])
                    try await store.appendAudit(AuditEntry(time: 2, server: server, action: "scale", revision: "r1", reason: "1 replica", outcome: "ok"))
                }
            }
            try await group.waitForAll()
        }
        let placed = try await shardServers(api)
        // 81 servers at 10 a shard: at least 9 shards, none over 10, every server in exactly one.
        #expect(placed.count >= 9, "\(placed.mapValues(\.count))")
        #expect(placed.values.allSatisfy { $0.count <= 10 }, "\(placed.mapValues(\.count))")
        #expect(placed.values.reduce(0) { $0 + $1.count } == 81)
        #expect(Set(placed.values.flatMap { $0 }) == Set(servers + ["first"]))
        // Beyond the first two, shards are named by level (2 + 2, then 4 + 4, …): no gaps past what was needed.
        let indexes = placed.keys.compactMap { Int($0.split(separator: "-").last ?? "") }
        #expect(indexes.allSatisfy { $0 >= 0 && $0 < 2 << 4 }, "\(indexes.sorted())")
        // Another process (its own placement memory, the same capacity) reads everything back, and a change
        // it writes for a server goes to the shard that holds it, never a second copy.
        let other = try await cachedStore(api, layout: .sharded(shards: 2), capacity: 10)
        defer { other.stopWithoutWaiting() }
        #expect(try await other.records().map(\.server) == (["first"] + servers).sorted())
        #expect(try await other.audit(server: "s0042", limit: 10).map(\.action) == ["scale", "rollout-start"])
        #expect(try await other.revisions(server: "s0042") == [Self.revision("s0042")])
        try await other.appendAudit(AuditEntry(time: 3, server: "s0042", action: "scale", revision: "r1", reason: "2 replicas", outcome: "ok"))
        let after = try await shardServers(api)
        #expect(after.values.filter { $0.contains("s0042") }.count == 1)
        #expect(try await store.audit(server: "s0042", limit: 10).count == 3)
    }

    /// A shard whose records alone pass its spill size (nothing left to move out) takes no new servers,
    /// whatever its count: they go on to the next level.
    @Test func aShardPastItsSpillSizeTakesNoNewServers() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api, layout: .sharded(shards: 1), spillAt: 1024, capacity: 1000)
        defer { store.stopWithoutWaiting() }
        let servers = (0..<20).map { String(format: "s%04d", $0) }
        for server in servers {
            try await store.save(RolloutRecord(server: server, phase: .progressing, targetRevision: "r1", message: String(repeating: "x", count: 200)))
        }
        let placed = try await shardServers(api)
        #expect(placed.count > 1, "\(placed.mapValues(\.count))")
        #expect(placed.values.reduce(0) { $0 + $1.count } == 20)
        #expect(try await store.records().count == 20)
    }

    /// Under throttling a shard write queues for its token before it gathers its changes, so changes that
    /// arrive while it queues go out with it: here one write instead of two (the first change alone, then the rest).
    @Test func changesArrivingWhileAWriteQueuesForItsTokenGoOutInThatWrite() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client(qps: 1, burst: 3, retry: Self.fast)
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": .string(Self.ns)])])))
        let store = KubernetesRolloutStore(client: client, namespace: Self.ns, cache: InformerConfiguration(retry: Self.fast), layout: .sharded(shards: 1))
        store.start()
        defer { store.stopWithoutWaiting() }
        try await store.waitUntilSynced(timeout: .seconds(10))
        // Spend what is left of the burst: the next request waits about a second for its token.
        while try await client.limiter.reserve() == .zero {}
        try await api.resetCounters()
        let first = Task { try await store.saveIfUnchanged(RolloutRecord(server: "first", phase: .progressing, targetRevision: "r1")) }
        // The first change waits for its write, which is queued for its token (due in about a second);
        // these arrive meanwhile. (A writer that took its batch before its token would never show it waiting.)
        try await waitUntil("the first change waits for the shard's write", timeout: .seconds(1)) {
            store.shardWriter.waitingChanges(shard: KubernetesRolloutStore.shardName(0)) == 1
        }
        let others = (0..<20).map { String(format: "s%04d", $0) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for server in others {
                group.addTask { _ = try await store.saveIfUnchanged(RolloutRecord(server: server, phase: .progressing, targetRevision: "r1")) }
            }
            try await group.waitForAll()
        }
        #expect(try await first.value?.generation == 1)
        let counts = store.shardWriter.counts
        #expect(counts.writes == 1 && counts.changes == 21, "\(counts)")
        #expect(try await writes(api) == 1)
        #expect(try await store.records().map(\.server).sorted() == (others + ["first"]).sorted())
    }

    /// A step's record with its revision and audit entries is one change of the server's shard entry, and
    /// a step whose record lost the compare-and-swap writes none of them.
    @Test func aStepsRecordAndBookkeepingAreOneWriteAndNoneOfItWhenTheRecordMoved() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api)
        defer { store.stopWithoutWaiting() }
        let server = "alpha"
        let first = try #require(try await store.saveIfUnchanged(RolloutRecord(server: server, phase: .progressing, targetRevision: "r1")))
        try await api.resetCounters()
        let start = AuditEntry(time: 1, server: server, action: "rollout-start", revision: "r1", reason: "new", outcome: "ok")
        var next = first
        next.step = 1
        let saved = try await store.saveIfUnchanged(next, then: [.revision(Self.revision(server)), .audit(start)])
        #expect(saved?.generation == 2)
        #expect(try await writes(api) == 1)
        #expect(store.shardWriter.counts.changes == 2, "the first save, then the step as one change")
        // Read back by a store that reads from the API server.
        let fresh = KubernetesRolloutStore(client: try api.client(), namespace: Self.ns)
        #expect(try await fresh.record(server: server)?.step == 1)
        #expect(try await fresh.revisions(server: server) == [Self.revision(server)])
        #expect(try await fresh.audit(server: server, limit: 10).map(\.action) == ["rollout-start"])
        // Stepped on a record that moved meanwhile (generation 1, stored 2): nothing of it is written.
        let late = AuditEntry(time: 2, server: server, action: "rollout-complete", revision: "r1", reason: "late", outcome: "ok")
        #expect(try await store.saveIfUnchanged(first, then: [.revision(Self.revision(server, .promoted)), .audit(late)]) == nil)
        #expect(try await writes(api) == 1)
        #expect(try await fresh.revisions(server: server) == [Self.revision(server)])
        #expect(try await fresh.audit(server: server, limit: 10).map(\.action) == ["rollout-start"])
    }

    @Test func compareAndSwapHoldsWithinOneWriteAndAgainstAnotherStore() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api)
        defer { store.stopWithoutWaiting() }
        // Ten writers of one new server at once: one wins, the others learn it (nil), whichever write carried them.
        let results = try await withThrowingTaskGroup(of: RolloutRecord?.self) { group in
            for i in 0..<10 { group.addTask { try await store.saveIfUnchanged(RolloutRecord(server: "web", message: "writer \(i)")) } }
            return try await group.reduce(into: [RolloutRecord?]()) { $0.append($1) }
        }
        let winners = results.compactMap { $0 }
        #expect(winners.count == 1)
        #expect(try await store.record(server: "web") == winners.first)

        // Another store (the `mcpfleet promote` CLI: no cache) writes the same shard between this store's read and write.
        let promote = KubernetesRolloutStore(client: try api.client(retry: Self.fast), namespace: Self.ns)
        var step = try #require(try await store.record(server: "web"))
        var promoted = try #require(try await promote.record(server: "web"))
        promoted.promoted = true
        #expect(try await promote.saveIfUnchanged(promoted)?.generation == 2)
        step.message = "stepped from the old read"
        #expect(try await store.saveIfUnchanged(step) == nil, "the 409 makes it read again and the generation check refuses")
        #expect(try await store.record(server: "web")?.promoted == true)
        // A neighbour in the same shard, written from the store's stale copy of the shard, keeps both writes.
        let neighbour = try #require((0..<500).map { "n\($0)" }.first {
            KubernetesRolloutStore.shardIndex($0, shards: 8) == KubernetesRolloutStore.shardIndex("web", shards: 8)
        })
        try await promote.appendAudit(AuditEntry(time: 1, server: "web", action: "promote", reason: "operator", outcome: "ok"))
        #expect(try await store.saveIfUnchanged(RolloutRecord(server: neighbour))?.generation == 1)
        #expect(try await promote.audit(server: "web", limit: 10).map(\.action) == ["promote"])
        #expect(try await promote.record(server: neighbour)?.generation == 1)
    }

    @Test func aFailedWriteFailsEveryCallerAndLosesNothingDurable() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api, layout: .sharded(shards: 1))
        defer { store.stopWithoutWaiting() }
        for server in ["a", "b"] { _ = try await store.saveIfUnchanged(RolloutRecord(server: server, targetRevision: "r1")) }
        try await api.injectFaults(#"{"status":500,"method":"PUT","path_regex":"/configmaps/mcpfleet-shard-0$"}"#)
        let outcomes = await withTaskGroup(of: Bool.self) { group in
            for i in 0..<20 {
                group.addTask {
                    do {
                        try await store.appendAudit(AuditEntry(time: Int64(i), server: i % 2 == 0 ? "a" : "b", action: "scale", reason: "\(i)", outcome: "ok"))
                        return true
                    } catch {
                        return false
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(outcomes.allSatisfy { !$0 }, "no caller is told its entry is durable when the write carrying it failed")
        #expect(store.shardWriter.counts.writes < 2 + 20, "the failing writes carried several callers each")
        try await api.reset()
        let fresh = KubernetesRolloutStore(client: try api.client(), namespace: Self.ns)
        #expect(try await fresh.records().map(\.targetRevision) == ["r1", "r1"], "what was durable before stays")
        #expect(try await fresh.audit(server: nil, limit: 100).isEmpty, "and nothing not acknowledged appears")
        // The next write goes through, from a fresh read if need be.
        try await store.appendAudit(AuditEntry(time: 100, server: "a", action: "scale", reason: "again", outcome: "ok"))
        #expect(try await fresh.audit(server: "a", limit: 10).map(\.reason) == ["again"])
    }

    @Test func aClusterWrittenInThePerServerLayoutReadsTheSameAndMovesOnWithoutLoss() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let old = try await cachedStore(api, layout: .perServer)
        var web = try #require(try await old.saveIfUnchanged(RolloutRecord(server: "web", phase: .stable, stableRevision: "r1", targetRevision: "r1")))
        _ = try await old.saveIfUnchanged(RolloutRecord(server: "db", phase: .stable, targetRevision: "r7"))
        try await old.saveRevision(Self.revision("web", .promoted))
        for i in 0..<3 { try await old.appendAudit(AuditEntry(time: Int64(i), server: "web", action: "scale", reason: "old \(i)", outcome: "ok")) }
        try await old.appendAudit(AuditEntry(time: 5, server: "tenant/team", action: "ensure-tenant", reason: "missing", outcome: "ok"))
        await old.stop()

        let store = try await cachedStore(api)
        defer { store.stopWithoutWaiting() }
        // The upgrade shows no difference.
        #expect(try await store.records() == (try await old.records()))
        #expect(try await store.record(server: "web") == web)
        #expect(try await store.revisions(server: "web") == [Self.revision("web", .promoted)])
        #expect(try await store.audit(server: "web", limit: 10) == (try await old.audit(server: "web", limit: 10)))
        #expect(try await store.audit(server: nil, limit: 10) == (try await old.audit(server: nil, limit: 10)))

        // Compare-and-swap against the old record: a stale generation is refused, the current one moves on.
        var stale = web
        stale.generation = 0
        #expect(try await store.saveIfUnchanged(stale) == nil)
        web.targetRevision = "r2"
        #expect(try await store.saveIfUnchanged(web)?.generation == 2)
        try await store.saveRevision(RevisionRecord(server: "web", revision: "r2", version: "2", fields: [], createdAt: 2, outcome: .pending))
        try await store.appendAudit(AuditEntry(time: 10, server: "web", action: "rollout-start", revision: "r2", reason: "new", outcome: "ok"))
        #expect(try await store.record(server: "web")?.targetRevision == "r2")
        #expect(try await store.revisions(server: "web").map(\.revision) == ["r1", "r2"])
        #expect(try await store.audit(server: "web", limit: 10).map(\.time) == [10, 2, 1, 0])
        #expect(try await store.records().map(\.server) == ["db", "web"])

        // Removing a record removes it in both layouts: it does not come back from the old one.
        try await store.removeRecord(server: "web")
        #expect(try await store.record(server: "web") == nil)
        let fresh = KubernetesRolloutStore(client: try api.client(), namespace: Self.ns)
        #expect(try await fresh.records().map(\.server) == ["db"])
        #expect(try await fresh.audit(server: "web", limit: 10).map(\.time) == [10, 2, 1, 0], "history stays")
    }

    @Test func aGrowingShardMovesTheLargestHistoriesOutAndLosesNothing() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let store = try await cachedStore(api, layout: .sharded(shards: 1), spillAt: 8 << 10)
        defer { store.stopWithoutWaiting() }
        let reason = String(repeating: "x", count: 300)
        for i in 0..<60 {
            try await store.appendAudit(AuditEntry(time: Int64(i), server: i % 3 == 0 ? "small" : "big", action: "scale", reason: "\(reason) \(i)", outcome: "ok"))
        }
        // A failure retried: counted on its entry, wherever that entry lives.
        let failure = AuditEntry(time: 100, server: "big", action: "scale", revision: "r2", reason: "0 → 1", outcome: "error: quota")
        for t in 0..<3 { var again = failure; again.time = 100 + Int64(t); try await store.appendAudit(again) }
        let client = try api.client()
        let shard = try await client.get(.configMap, namespace: Self.ns, name: "mcpfleet-shard-0")
        #expect((shard.json[["data", "shard.json"]]?.string?.utf8.count ?? 0) < 8 << 10)
        #expect(try await client.getIfPresent(.configMap, namespace: Self.ns, name: "mcpfleet-audit-big") != nil, "the largest history moved to its own ConfigMap")
        for reader in [store, KubernetesRolloutStore(client: client, namespace: Self.ns)] {
            let big = try await reader.audit(server: "big", limit: 100)
            let bigTimes: [Int64] = (0..<60).filter { $0 % 3 != 0 }.reversed().map { Int64($0) }
            let smallTimes: [Int64] = (0..<60).filter { $0 % 3 == 0 }.reversed().map { Int64($0) }
            #expect(big.filter { $0.outcome == "ok" }.map(\.time) == bigTimes)
            let failures = big.filter { $0.outcome != "ok" }
            #expect(failures.count == 1)
            #expect(failures.first?.repeats == 2)
            #expect(try await reader.audit(server: "small", limit: 100).map(\.time) == smallTimes)
        }
    }
}
