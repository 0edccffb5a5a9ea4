import FleetCore
import FleetHTTP
import FleetTesting
@testable import FleetKubernetes
import Foundation
import Testing

/// The live-state cache (informers) against the project's Kubernetes test API server: what it costs in
/// requests, and how it survives watches that end, drop, stall or expire.
@Suite(.serialized) struct LiveCacheTests {
    static let fast = RetryPolicy(maxAttempts: 2, initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(400))

    func driver(_ api: KubeAPIServerProcess, env: Environment, stall: Duration = .seconds(30)) throws -> KubernetesDriver {
        var options = KubernetesDriverOptions(qps: 500, burst: 1000, retry: Self.fast)
        options.cache = InformerConfiguration(stallTimeout: stall, retry: Self.fast)
        options.cacheSyncTimeout = .seconds(10)
        return try KubernetesDriver(environment: env, config: api.config, transport: try api.transport(), options: options)
    }

    /// `count` copies of the example's `time` server, named `s0`, `s1`, ….
    func servers(_ state: DesiredState, count: Int) throws -> [DesiredServer] {
        let time = try #require(state.server("time"))
        return (0..<count).map { i in
            var s = time
            s.name = "s\(i)"
            return s
        }
    }

    func namespace(_ client: KubeClient, _ name: String) async throws {
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": .string(name)])])))
    }

    func configMap(_ name: String, _ ns: String, labels: [String: String] = ["cache": "yes"]) -> KubeObject {
        KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": .obj(["name": .string(name), "namespace": .string(ns), "labels": .strings(labels)]), "data": .obj(["k": "v"])]))
    }

    func informer(_ client: KubeClient, ns: String, stall: Duration = .seconds(30)) -> Informer<String> {
        Informer(client: client, type: .configMap, namespace: ns, labelSelector: "cache=yes",
                 configuration: InformerConfiguration(stallTimeout: stall, retry: Self.fast), transform: { $0.name })
    }

    // MARK: Informer

    @Test func listsThenWatchesAndFollowsChanges() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client(retry: Self.fast)
        try await namespace(client, "w")
        _ = try await client.create(configMap("a", "w"))
        _ = try await client.create(configMap("other", "w", labels: ["cache": "no"]))
        let inf = informer(client, ns: "w")
        inf.start()
        defer { inf.stopWithoutWaiting() }
        try await inf.waitUntilSynced(timeout: .seconds(5))
        #expect(inf.items == ["a"])
        _ = try await client.create(configMap("b", "w"))
        _ = try await client.delete(.configMap, namespace: "w", name: "a")
        try await waitUntil("the watch delivers b and a's deletion", timeout: .seconds(5)) { inf.items.sorted() == ["b"] }
        let stats = inf.statistics
        #expect(stats.lists == 1)
        #expect(stats.relists == 0)
        #expect(stats.events >= 2)
        #expect(stats.stalls == 0)
    }

    @Test func aStalledWatchIsDetectedAndRelistedWithinTheStallTimeout() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client(retry: Self.fast)
        try await namespace(client, "w")
        // The first watch after the list hangs: its head arrives, then nothing (no event, no bookmark, no end).
        try await api.injectFaults(#"{"stall_watch":true,"count":1,"path_regex":"/namespaces/w/configmaps$"}"#)
        let inf = informer(client, ns: "w", stall: .seconds(3))
        inf.start()
        defer { inf.stopWithoutWaiting() }
        try await inf.waitUntilSynced(timeout: .seconds(5))
        let clock = ContinuousClock()
        let written = clock.now
        _ = try await client.create(configMap("while-stalled", "w"))
        try await waitUntil("the stall detected and the object relisted", timeout: .seconds(8)) { inf.items == ["while-stalled"] }
        let elapsed = clock.now - written
        let stats = inf.statistics
        #expect(stats.stalls == 1)
        #expect(stats.relists == 1)
        // Detected within the stall timeout of the watch going silent (plus the relist), not at some later resync.
        #expect(elapsed < .seconds(5), "took \(elapsed)")
        // And it keeps watching afterwards.
        _ = try await client.create(configMap("after", "w"))
        try await waitUntil("events after the relist", timeout: .seconds(5)) { inf.items.sorted() == ["after", "while-stalled"] }
    }

    @Test func aDroppedWatchResumesFromItsResourceVersionWithoutRelisting() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client(retry: Self.fast)
        try await namespace(client, "w")
        try await api.injectFaults(#"{"drop_watch_after_ms":300,"count":1,"path_regex":"/namespaces/w/configmaps$"}"#)
        let inf = informer(client, ns: "w")
        inf.start()
        defer { inf.stopWithoutWaiting() }
        try await inf.waitUntilSynced(timeout: .seconds(5))
        try await waitUntil("the dropped watch replaced", timeout: .seconds(5)) { inf.statistics.watches >= 2 }
        _ = try await client.create(configMap("after-drop", "w"))
        try await waitUntil("the event after the drop", timeout: .seconds(5)) { inf.items == ["after-drop"] }
        #expect(inf.statistics.lists == 1)
        #expect(inf.statistics.relists == 0)
    }

    @Test func failuresBackOffAndAreReported() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client(retry: RetryPolicy(maxAttempts: 1, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(400)))
        try await namespace(client, "w")
        try await api.injectFaults(#"{"status":503,"path_regex":"/namespaces/w/configmaps$"}"#)
        try await api.resetCounters()
        let inf = Informer<String>(client: client, type: .configMap, namespace: "w", labelSelector: "cache=yes",
                                   configuration: InformerConfiguration(retry: RetryPolicy(initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(400))),
                                   transform: { $0.name })
        inf.start()
        defer { inf.stopWithoutWaiting() }
        do {
            try await inf.waitUntilSynced(timeout: .seconds(2))
            Issue.record("an API server answering 503 must not count as synced")
        } catch let error as DriverError {
            #expect(error.description.contains("503"), "\(error)")
        }
        // Backed off (50 ms doubling to 400 ms): a handful of lists in two seconds, not a spin.
        let lists = try await api.counters()[["byResource", "configmaps", "list"]]?.int ?? 0
        #expect(lists >= 3 && lists <= 12, "\(lists) lists")
        try await api.reset()
        try await inf.waitUntilSynced(timeout: .seconds(5))
        #expect(inf.lastFailure == nil)
    }

    // MARK: The driver's cache

    @Test func cachedObservationsEqualListedOnesAndCostNoRequests() async throws {
        let api = try KubeAPIServerProcess(arguments: ["--ready-delay-ms", "50"])
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let listing = try driver(api, env: env)
        for t in state.tenants { try await listing.ensureTenant(t) }
        let fleet = try servers(state, count: 6)
        for s in fleet { try await listing.scale(s, replicas: 2) }
        // A Deployment someone else made in a tenant namespace, and one of a server's two revisions.
        _ = try await listing.client.create(KubeObject(.obj([
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": .obj(["name": "hand-made", "namespace": "mcp-research", "labels": .strings(["app": "hand-made"])]),
            "spec": .obj(["replicas": 1, "selector": .obj(["matchLabels": .strings(["app": "hand-made"])]),
                          "template": .obj(["metadata": .obj(["labels": .strings(["app": "hand-made"])]),
                                            "spec": .obj(["containers": [.obj(["name": "c", "image": .string("busybox@sha256:" + String(repeating: "b", count: 64))])]])])]),
        ])))
        try await listing.scale(nextRevision(fleet[0], version: "2"), replicas: 1)
        try await waitUntil("everything ready", timeout: .seconds(15), every: .milliseconds(100)) {
            let live = try await listing.observe()
            let managed = live.servers.filter(\.managed)
            return managed.count == 6 && managed.allSatisfy { $0.readyReplicas == $0.totalReplicas }
                && managed.allSatisfy { $0.revisions.allSatisfy { $0.instances?.count == $0.replicas } }
        }
        let listed = try await listing.observe()
        #expect(listed.server("hand-made")?.managed == false)

        let cached = try driver(api, env: env)
        try await cached.start()
        defer { cached.liveCache.stopWithoutWaiting() }
        try await waitUntil("the cache agrees with a list", timeout: .seconds(5)) { try await cached.observe() == listing.observe() }
        for name in listed.servers.map(\.name) + ["absent"] {
            let scoped = try await cached.observe(.server(name))
            #expect(scoped == listed.scoped(to: .server(name)), "\(name)")
            #expect(try await listing.observe(.server(name)) == listed.scoped(to: .server(name)), "\(name) listed")
            for r in listed.server(name)?.revisions ?? [] where listed.server(name)?.managed == true {
                #expect(try await cached.endpoints(server: name, revision: r.revision) == listing.endpoints(server: name, revision: r.revision))
            }
        }

        // Reads from the cache send nothing.
        try await api.resetCounters()
        for _ in 0..<50 {
            _ = try await cached.observe()
            for s in fleet { _ = try await cached.observe(.server(s.name)) }
            _ = try await cached.endpoints(server: "s1", revision: fleet[1].revision)
        }
        #expect(try await api.nonWatchRequests() == 0)
    }

    @Test func ownWritesAreReadBackWithoutWaitingForTheWatch() async throws {
        let api = try KubeAPIServerProcess(arguments: ["--ready-delay-ms", "50"])
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let d = try driver(api, env: env, stall: .seconds(4))  // watches renewed every 3 s, a stall relisted after 4 s
        try await d.start()
        defer { d.liveCache.stopWithoutWaiting() }
        for t in state.tenants { try await d.ensureTenant(t) }
        // From now on every Deployment watch hangs: only the driver's own writes can reach the cache.
        try await api.injectFaults(#"{"stall_watch":true,"path_regex":"/deployments$"}"#)
        let before = d.liveCache.deployments.statistics.watches
        try await waitUntil("a stalled Deployment watch", timeout: .seconds(6)) { d.liveCache.deployments.statistics.watches > before }
        let s = try servers(state, count: 1)[0]
        try await d.scale(s, replicas: 2)
        let live = try await d.observe(.server(s.name))
        #expect(live.server(s.name)?.revisions.map(\.revision) == [s.revision])
        #expect(live.server(s.name)?.revisions.first?.replicas == 2)
        try await d.removeRevision(server: s.name, revision: s.revision)
        #expect(try await d.observe(.server(s.name)).servers.isEmpty)
    }

    @Test func oneChangedServerCostsTheSameRequestsWhateverTheFleetSize() async throws {
        var costs: [Int: Int] = [:]
        for size in [4, 24] {
            let api = try KubeAPIServerProcess(arguments: ["--ready-delay-ms", "20"])
            defer { api.stop() }
            let (env, state) = try exampleCluster()
            let d = try driver(api, env: env)
            try await d.start()
            defer { d.liveCache.stopWithoutWaiting() }
            for t in state.tenants { try await d.ensureTenant(t) }
            let fleet = try servers(state, count: size)
            for s in fleet { try await d.scale(s, replicas: 1) }
            try await waitUntil("\(size) servers ready", timeout: .seconds(20), every: .milliseconds(100)) {
                try await d.observe().servers.filter { $0.readyReplicas == 1 }.count == size
            }
            try await api.resetCounters()
            // What one server's rollout asks of the driver: observe it, start the new revision, watch it
            // come up, retire the old one.
            let changed = fleet[size / 2]
            let next = nextRevision(changed, version: "2")
            _ = try await d.observe(.server(changed.name))
            try await d.scale(next, replicas: 1)
            try await waitUntil("new revision ready", timeout: .seconds(10), every: .milliseconds(50)) {
                try await d.observe(.server(changed.name)).server(changed.name)?.revisions.first { $0.revision == next.revision }?.ready == 1
            }
            _ = try await d.endpoints(server: changed.name, revision: next.revision)
            try await d.scale(changed, replicas: 0)
            try await d.removeRevision(server: changed.name, revision: changed.revision)
            _ = try await d.observe(.all)
            costs[size] = try await api.nonWatchRequests()
        }
        // Two Deployment applies, a scale-down apply and a delete; no reads.
        #expect(costs[4] == costs[24], "\(costs)")
        #expect((costs[24] ?? 99) <= 4, "\(costs)")
    }

    @Test func uncachedScopedObservationCostsAFewRequestsWhateverTheFleetSize() async throws {
        let api = try KubeAPIServerProcess(arguments: ["--ready-delay-ms", "20"])
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let d = try driver(api, env: env)
        for t in state.tenants { try await d.ensureTenant(t) }
        for s in try servers(state, count: 20) { try await d.scale(s, replicas: 1) }
        try await api.resetCounters()
        _ = try await d.observe(.server("s3"))
        // Namespaces, the server's Deployments and Pods, and foreign Deployments labelled or named after it.
        #expect(try await api.nonWatchRequests() == 5)
        let body = try await api.counters()
        #expect(body[["byVerb", "watch"]] == nil)
    }

    @Test func steadyStateSendsOnlyWatchRenewals() async throws {
        let api = try KubeAPIServerProcess(arguments: ["--ready-delay-ms", "20"])
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let d = try driver(api, env: env, stall: .seconds(3))  // watches renewed every 2 s
        let store = d.rolloutStore()
        _ = try await d.client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        try await d.start()
        defer {
            d.liveCache.stopWithoutWaiting()
            store.stopWithoutWaiting()
        }
        for t in state.tenants { try await d.ensureTenant(t) }
        for s in try servers(state, count: 5) { try await d.scale(s, replicas: 1) }
        try await store.save(RolloutRecord(server: "s0"))
        try await api.resetCounters()
        let clock = ContinuousClock()
        let start = clock.now
        while clock.now - start < .seconds(5) {
            _ = try await d.observe()
            _ = try await store.records()
            try await Task.sleep(for: .milliseconds(100))
        }
        let c = try await api.counters()
        #expect(try await api.nonWatchRequests() == 0, "\(c.jsonText)")
        // Namespaces, Deployments, Pods, Services, foreign Deployments, the rollout records and the
        // revision and audit ConfigMaps: seven watches, each renewed about every 2 s.
        let watches = c[["byVerb", "watch"]]?.int ?? 0
        #expect(watches <= 7 * 4, "\(c.jsonText)")
    }

    // MARK: The rollout store's cache

    /// A client and a rollout store in `mcpfleet-system` whose cache has listed once (stop its cache when done).
    /// These tests count the requests of the per-server layout (the layout before design 0019, which
    /// `.perServer` still writes); the sharded layout's are counted in KubernetesShardedStoreTests.
    func cachedStore(_ api: KubeAPIServerProcess, layout: KubernetesRolloutStore.Layout = .perServer) async throws -> (KubeClient, KubernetesRolloutStore) {
        let client = try api.client(retry: Self.fast)
        try await namespace(client, "mcpfleet-system")
        let store = KubernetesRolloutStore(client: client, namespace: "mcpfleet-system", cache: InformerConfiguration(retry: Self.fast), layout: layout)
        store.start()
        try await store.waitUntilSynced(timeout: .seconds(5))
        return (client, store)
    }

    @Test func cachedRolloutStoreReadsNothingAndWritesOnce() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (client, store) = try await cachedStore(api)
        defer { store.stopWithoutWaiting() }
        try await api.resetCounters()
        var record = RolloutRecord(server: "a", phase: .progressing, targetRevision: "r2", step: 1)
        try await store.save(record)  // a create: nothing to read first
        record.step = 2
        try await store.save(record)  // an update from the cached resourceVersion
        #expect(try await store.record(server: "a") == record)
        #expect(try await store.records().map(\.server) == ["a"])
        try await store.appendAudit(AuditEntry(time: 1, server: "a", action: "scale", reason: "x", outcome: "ok"))
        try await store.appendAudit(AuditEntry(time: 2, server: "a", action: "scale", reason: "y", outcome: "ok"))
        try await store.saveRevision(RevisionRecord(server: "a", revision: "r2", version: "2", fields: [], createdAt: 1, outcome: .pending))
        _ = try await store.revisions(server: "a")
        var c = try await api.counters()
        #expect(c[["byResource", "configmaps", "create"]]?.int == 3, "\(c.jsonText)")  // record, audit, revisions: each once
        #expect(c[["byResource", "configmaps", "update"]]?.int == 2, "\(c.jsonText)")
        // Nothing read: the watched cache says the audit and revision ConfigMaps do not exist yet, and
        // after the store wrote them it knows what they hold.
        #expect(c[["byResource", "configmaps", "get"]] == nil, "\(c.jsonText)")
        #expect(c[["byResource", "configmaps", "list"]] == nil, "\(c.jsonText)")

        // Another writer changes the record: the cached resourceVersion is stale, the write conflicts,
        // is read afresh and retried — nothing lost, nothing overwritten blindly.
        let other = KubernetesRolloutStore(client: try api.client(retry: Self.fast), namespace: "mcpfleet-system", layout: .perServer)
        var theirs = record
        theirs.message = "operator edit"
        try await other.save(theirs)
        try await api.resetCounters()
        try await store.appendAudit(AuditEntry(time: 3, server: "a", action: "scale", reason: "z", outcome: "ok"))
        try await other.appendAudit(AuditEntry(time: 4, server: "a", action: "pause", reason: "op", outcome: "ok"))
        c = try await api.counters()
        #expect(c[["byResource", "configmaps", "update"]]?.int == 2, "\(c.jsonText)")
        #expect(c[["byResource", "configmaps", "get"]]?.int == 1, "\(c.jsonText)")  // the uncached writer reads first
        // Once the watch brings the other writer's audit write (a small log: the cache holds its text), the
        // store writes from it: no read, no 409.
        let auditName = KubernetesRolloutStore.name("audit", "a")
        let theirVersion = try await client.get(.configMap, namespace: "mcpfleet-system", name: auditName).resourceVersion
        try await waitUntil("the watch brings the other writer's audit entry", timeout: .seconds(5)) {
            store.historyCache.item(namespace: "mcpfleet-system", name: auditName)?.resourceVersion == theirVersion
        }
        try await api.resetCounters()
        try await store.appendAudit(AuditEntry(time: 5, server: "a", action: "scale", reason: "w", outcome: "ok"))
        c = try await api.counters()
        #expect(c[["byResource", "configmaps", "update"]]?.int == 1, "\(c.jsonText)")
        #expect(c[["byResource", "configmaps", "get"]] == nil, "\(c.jsonText)")
        #expect(try await store.audit(server: "a", limit: 10).map(\.time) == [5, 4, 3, 2, 1])
        // A stale copy the watch has not caught up with yet costs a 409 and a read, and loses nothing.
        try await other.appendAudit(AuditEntry(time: 6, server: "a", action: "resume", reason: "op", outcome: "ok"))
        try await store.appendAudit(AuditEntry(time: 7, server: "a", action: "scale", reason: "v", outcome: "ok"))
        #expect(try await store.audit(server: "a", limit: 10).map(\.time) == [7, 6, 5, 4, 3, 2, 1])
        try await waitUntil("the watch brings the other writer's record", timeout: .seconds(5)) {
            try await store.record(server: "a")?.message == "operator edit"
        }
        try await store.removeRecord(server: "a")
        #expect(try await store.record(server: "a") == nil)
    }

    @Test func aLongAuditLogIsNotHeldInTheCacheAndStillWrittenWithoutReads() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (client, store) = try await cachedStore(api)
        defer { store.stopWithoutWaiting() }
        let reason = String(repeating: "r", count: 300)
        try await api.resetCounters()
        for i in 0..<20 { try await store.appendAudit(AuditEntry(time: Int64(i), server: "a", action: "scale", reason: "\(reason) \(i)", outcome: "ok")) }
        var c = try await api.counters()
        #expect(c[["byResource", "configmaps", "get"]] == nil, "\(c.jsonText)")  // the store's own copy, at the watched resourceVersion or newer
        let name = KubernetesRolloutStore.name("audit", "a")
        let written = try await client.get(.configMap, namespace: "mcpfleet-system", name: name).resourceVersion
        try await waitUntil("the watch brings the last write", timeout: .seconds(5)) {
            store.historyCache.item(namespace: "mcpfleet-system", name: name)?.resourceVersion == written
        }
        let cached = try #require(store.historyCache.item(namespace: "mcpfleet-system", name: name))
        #expect(!cached.whole && cached.text == nil, "past \(CachedRecord.inlineLimit) bytes only name and resourceVersion are kept")

        // Another writer appends; once the watch shows it, the store's copy is known stale: one read, no 409.
        let other = KubernetesRolloutStore(client: try api.client(retry: Self.fast), namespace: "mcpfleet-system", layout: .perServer)
        try await other.appendAudit(AuditEntry(time: 100, server: "a", action: "pause", reason: "op", outcome: "ok"))
        let theirs = try await client.get(.configMap, namespace: "mcpfleet-system", name: name).resourceVersion
        try await waitUntil("the watch brings the other writer's entry", timeout: .seconds(5)) {
            store.historyCache.item(namespace: "mcpfleet-system", name: name)?.resourceVersion == theirs
        }
        try await api.resetCounters()
        try await store.appendAudit(AuditEntry(time: 101, server: "a", action: "scale", reason: "after", outcome: "ok"))
        c = try await api.counters()
        #expect(c[["byResource", "configmaps", "get"]]?.int == 1, "\(c.jsonText)")
        #expect(c[["byResource", "configmaps", "update"]]?.int == 1, "\(c.jsonText)")
        let times = try await store.audit(server: "a", limit: 100).map(\.time)
        #expect(times.count == 22 && times.prefix(2) == [101, 100], "\(times)")
    }

    @Test func concurrentWritersWithCachesLoseNothing() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client(retry: Self.fast)
        try await namespace(client, "mcpfleet-system")
        let one = KubernetesRolloutStore(client: client, namespace: "mcpfleet-system")
        let two = KubernetesRolloutStore(client: try api.client(retry: Self.fast), namespace: "mcpfleet-system")
        one.start()
        two.start()
        defer {
            one.stopWithoutWaiting()
            two.stopWithoutWaiting()
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<10 {
                group.addTask { try await one.appendAudit(AuditEntry(time: Int64(i), server: "a", action: "scale", reason: "1-\(i)", outcome: "ok")) }
                group.addTask { try await two.appendAudit(AuditEntry(time: Int64(100 + i), server: "a", action: "scale", reason: "2-\(i)", outcome: "ok")) }
                group.addTask {
                    var r = try await one.record(server: "a") ?? RolloutRecord(server: "a")
                    r.step += 1
                    try await one.save(r)
                }
            }
            try await group.waitForAll()
        }
        #expect(try await one.audit(server: "a", limit: 100).count == 20)
        #expect(try await two.audit(server: "a", limit: 100).count == 20)
        #expect((try await one.record(server: "a"))?.step ?? 0 >= 1)
    }
}
