import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Logging
import Testing

/// A source the test edits: the manifests as the controller sees them.
actor SourceBox {
    var desired: DesiredState
    var verdicts: [String: PolicyVerdict] = [:]
    var generation = 0

    init(_ servers: [DesiredServer]) {
        desired = DesiredState(environment: "test", driver: .local, servers: servers, tenants: [DesiredTenant(name: "default")])
    }

    func set(_ servers: [DesiredServer]) {
        desired.servers = servers
        generation += 1
    }

    func block(_ v: PolicyVerdict) { verdicts[v.server] = v; generation += 1 }

    func snapshot() -> DesiredStateSnapshot {
        DesiredStateSnapshot(desired: desired, fingerprint: "g\(generation)", commit: "c\(generation)", verdicts: verdicts)
    }
}

/// Measurements decided by the test (the real providers are tested against real probes and Prometheus).
struct FixedProvider: AnalysisProvider {
    let results: @Sendable (String) -> MeasurementResult
    func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement {
        SLOMeasurement(result: results(revision), successRate: results(revision) == .pass ? 1 : 0.5, time: now)
    }
}

func quietLogger() -> Logger {
    var l = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
    l.logLevel = .critical
    return l
}

func fastConfiguration() -> ControllerConfiguration {
    var c = ControllerConfiguration()
    c.pollIntervalMs = 20
    c.rolloutPollMs = 10
    c.resyncIntervalMs = 500
    c.probeTickMs = 20
    c.heartbeatIntervalMs = 50
    return c
}

func ctlServer(_ version: String, replicas: Int = 4, strategy: RolloutStrategy = .canary, deadline: Int64 = 60_000,
               steps: [DesiredCanaryStep]? = nil, sloInterval: Int64 = 20) -> DesiredServer {
    DesiredServer(name: "time", version: version, revision: "rev-\(version)", replicas: replicas, command: ["/bin/true"],
                  rollout: DesiredRollout(strategy: strategy, maxSurge: 1, maxUnavailable: 0,
                                          steps: steps ?? [DesiredCanaryStep(replicas: 1, pauseMs: 50, analysis: true),
                                                           DesiredCanaryStep(weight: 50, analysis: true)],
                                          autoRollback: true, progressDeadlineMs: deadline),
                  slo: DesiredSLO(name: "s", successRate: 0.99, provider: .probe, intervalMs: sloInterval, count: 3, failureLimit: 1))
}

struct Harness {
    let source: SourceBox
    let driver = InMemoryDriver(readyAfterObserves: 2)
    let store = InMemoryRolloutStore()
    let controller: Controller
    let task: Task<Void, any Error>

    init(_ servers: [DesiredServer], results: @escaping @Sendable (String) -> MeasurementResult = { _ in .pass }) {
        let source = SourceBox(servers)
        self.source = source
        controller = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(),
                                logger: quietLogger(), configuration: fastConfiguration(),
                                extraProviders: [.probe: FixedProvider(results: results)])
        let c = controller
        task = Task { try await c.run() }
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }

    func record() async -> RolloutRecord? { await store.record(server: "time") }

    func isStable(_ rev: String) async -> Bool {
        let r = await record()
        return r?.stableRevision == rev && r?.phase == .stable && r?.targetRevision == nil
    }

    func rolledBackToRev1() async -> Bool {
        let r = await record()
        let revs = await driver.snapshot().server("time")?.revisions.map(\.revision)
        return r?.phase == .rolledBack && revs == ["rev-1"]
    }

    func replicas(_ revs: String...) async -> [Int] {
        var out: [Int] = []
        for r in revs { out.append(await replicas(r)) }
        return out
    }

    func replicas(_ rev: String) async -> Int {
        await driver.snapshot().server("time")?.revisions.first { $0.revision == rev }?.replicas ?? 0
    }

    /// Availability over the whole run, after the first deployment: never below `min` ready, never above `max` instances.
    func checkTrace(minReady: Int, maxTotal: Int, from: Int) async {
        let trace = await driver.trace.filter { $0.server == "time" }
        for (i, s) in trace.enumerated() where i >= from {
            #expect(s.totalReady >= minReady, "sample \(i): \(s.ready)")
            #expect(s.total <= maxTotal, "sample \(i): \(s.revisions)")
        }
    }
}

@Suite(.serialized) struct ControllerTests {
    @Test func goodVersionIsPromotedStepByStep() async throws {
        let h = Harness([ctlServer("1")])
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        let settledAt = await h.driver.trace.count
        await h.source.set([ctlServer("2")])
        var seen: Set<Int> = []
        try await waitUntil("rollout of rev-2", timeout: .seconds(20)) {
            seen.insert(await h.replicas("rev-2"))
            return await h.isStable("rev-2")
        }
        await h.stop()
        #expect(await h.replicas("rev-2") == 4)
        #expect(await h.replicas("rev-1") == 0)
        // The canary went through its steps: 1 instance, then 2 (50% of 4), then all.
        let counts = await h.driver.trace.filter { $0.server == "time" }.map { $0.revisions["rev-2"] ?? 0 }
        #expect(counts.contains(1) && counts.contains(2) && counts.contains(4))
        await h.checkTrace(minReady: 4, maxTotal: 5, from: settledAt)
        let revisions = await h.store.revisions(server: "time")
        #expect(revisions.first { $0.revision == "rev-2" }?.outcome == .promoted)
        #expect(revisions.first { $0.revision == "rev-1" }?.outcome == .superseded)
        #expect(revisions.first { $0.revision == "rev-2" }?.manifestCommit == "c1")
        let audit = await h.store.audit(server: "time", limit: 1000).map(\.action)
        #expect(audit.contains("rollout-start") && audit.contains("analysis-passed") && audit.contains("rollout-complete") && audit.contains("scale"))
        #expect(await h.store.audit(server: "time", limit: 1000).allSatisfy { $0.correlationId != nil })
    }

    @Test func revisionThatNeverBecomesReadyIsRolledBackAndStaysRolledBack() async throws {
        let h = Harness([ctlServer("1", replicas: 2, strategy: .rolling, deadline: 300)])
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        let settledAt = await h.driver.trace.count
        await h.driver.setNeverReady(["rev-2"])
        await h.source.set([ctlServer("2", replicas: 2, strategy: .rolling, deadline: 300)])
        try await waitUntil("rollback", timeout: .seconds(20)) {
            await h.rolledBackToRev1()
        }
        // It stays rolled back: many more reconciles later there is still no instance of rev-2.
        let calls = await h.driver.calls.count
        try await waitUntil("more reconciles") { await h.driver.calls.count > calls + 50 }
        await h.stop()
        #expect(await h.record()?.failedRevisions == ["rev-2"])
        #expect(await h.replicas("rev-2") == 0)
        #expect(await h.replicas("rev-1") == 2)
        await h.checkTrace(minReady: 2, maxTotal: 3, from: settledAt)
        #expect(await h.store.revisions(server: "time").first { $0.revision == "rev-2" }?.outcome == .rolledBack)
    }

    @Test func sloBreachRollsBack() async throws {
        let h = Harness([ctlServer("1")], results: { $0 == "rev-2" ? .fail : .pass })
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        let settledAt = await h.driver.trace.count
        await h.source.set([ctlServer("2")])
        try await waitUntil("rollback", timeout: .seconds(20)) {
            await h.rolledBackToRev1()
        }
        await h.stop()
        #expect(await h.replicas("rev-1") == 4)
        await h.checkTrace(minReady: 4, maxTotal: 5, from: settledAt)
        let audit = await h.store.audit(server: "time", limit: 1000)
        #expect(audit.contains { $0.action == "rollback" && $0.reason.contains("analysis") })
    }

    @Test func pinsPausesPromotionAndDeletion() async throws {
        let steps = [DesiredCanaryStep(replicas: 1, untilPromoted: true)]
        let h = Harness([ctlServer("1", replicas: 2, steps: steps)])
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        await h.source.set([ctlServer("2", replicas: 2, steps: steps)])
        try await waitUntil("waiting for promotion", timeout: .seconds(20)) { await h.record()?.phase == .paused }
        #expect(await h.replicas("rev-2") == 1)
        #expect(await h.replicas("rev-1") == 1)
        await h.store.update(server: "time") { $0.promoted = true }
        await h.controller.queue.add(.server("time"))
        try await waitUntil("promoted", timeout: .seconds(20)) { await h.isStable("rev-2") }
        // Pin back to rev-1 (what `mcpfleet rollback` does), then release it (what `resume` does).
        await h.store.update(server: "time") { $0.pinnedRevision = "rev-1" }
        await h.controller.queue.add(.server("time"))
        try await waitUntil("pinned", timeout: .seconds(20)) {
            let counts = await h.replicas("rev-1", "rev-2")
            let stable = await h.isStable("rev-1")
            return counts == [2, 0] && stable
        }
        await h.store.update(server: "time") { $0.pinnedRevision = nil }
        // Released: rev-2 rolls out again from the pin, and waits at its step for promotion again.
        try await waitUntil("waiting for promotion again", timeout: .seconds(20)) { await h.record()?.phase == .paused }
        await h.store.update(server: "time") { $0.promoted = true }
        try await waitUntil("back on rev-2", timeout: .seconds(20)) { await h.replicas("rev-2", "rev-1") == [2, 0] }
        // Removing the server from the catalog removes it from the runtime.
        await h.source.set([])
        try await waitUntil("deleted", timeout: .seconds(20)) { await h.driver.snapshot().server("time") == nil }
        try await waitUntil("record removed") { await h.record() == nil }
        await h.stop()
    }

    @Test func blockedRevisionIsNeverRolledOut() async throws {
        let h = Harness([ctlServer("1", replicas: 2, strategy: .rolling)])
        try await waitUntil("first deployment") { await h.isStable("rev-1") }
        await h.source.block(PolicyVerdict(server: "time", revision: "rev-2", decision: .blocked, policies: ["signed"], reasons: ["unsigned artifact"]))
        await h.source.set([ctlServer("2", replicas: 2, strategy: .rolling)])
        try await waitUntil("held") { await h.record()?.message?.contains("blocked by policy") == true }
        let calls = await h.driver.calls.count
        try await waitUntil("more reconciles") { await h.driver.calls.count > calls + 30 }
        await h.stop()
        #expect(await h.replicas("rev-2") == 0)
        #expect(await h.controller.metrics.exposition().contains("mcpfleet_policy_denials_total"))
    }

    @Test func driverFailuresBackOffAndRecover() async throws {
        let h = Harness([ctlServer("1", replicas: 1, strategy: .rolling)])
        await h.driver.setFailing(["scale"])
        try await waitUntil("failures") { await h.controller.queue.failureCount(.server("time")) >= 3 }
        await h.driver.setFailing([])
        try await waitUntil("recovered", timeout: .seconds(20)) { await h.isStable("rev-1") }
        await h.stop()
        let audit = await h.store.audit(server: "time", limit: 1000)
        #expect(audit.contains { $0.action == "scale" && $0.outcome.hasPrefix("error") })
    }
}

@Suite struct WorkQueueTests {
    @Test func deduplicatesAndNeverHandsOneKeyToTwoWorkers() async throws {
        let q = WorkQueue<String>(clock: ManualClock())
        await q.add("a")
        await q.add("a")
        await q.add("b")
        #expect(await q.depth == 2)
        let first = await q.get()
        #expect(first == "a")
        await q.add("a")  // while "a" is being processed: queued again only when done
        #expect(await q.depth == 1)
        #expect(await q.get() == "b")
        await q.done("a")
        #expect(await q.get() == "a")
    }

    @Test func backsOffExponentially() async throws {
        let clock = ManualClock()
        let q = WorkQueue<String>(clock: clock)
        var delays: [Int64] = []
        for _ in 0..<6 { delays.append(await q.addRateLimited("k")) }
        #expect(delays == [5, 10, 20, 40, 80, 160])
        for _ in 0..<30 { _ = await q.addRateLimited("k") }
        #expect(await q.addRateLimited("k") == 1_000_000)
        await q.forget("k")
        #expect(await q.addRateLimited("k") == 5)
        // The delayed key arrives once the clock passes its due time.
        try await waitUntil("sleeper parked") { clock.sleeperCount > 0 }
        #expect(await q.depth == 0)
        clock.advance(byMs: 5)
        try await waitUntil("key due") { await q.depth == 1 }
    }
}

/// The controller with real probes: instances stand in for revisions by pointing at real MCP servers.
@Suite(.serialized) struct ControllerProbeTests {
    func mcpServer(_ version: String, requireTools: [String], deadline: Int64 = 2_000) -> DesiredServer {
        DesiredServer(name: "time", version: version, revision: "rev-\(version)", replicas: 2, command: ["/bin/true"],
                      health: DesiredHealth(probe: .mcp, intervalMs: 100, timeoutMs: 2_000, failureThreshold: 2, requireTools: requireTools),
                      rollout: DesiredRollout(strategy: .rolling, maxSurge: 1, maxUnavailable: 0, autoRollback: true, progressDeadlineMs: deadline))
    }

    @Test func probesGateTheRolloutAndRequireToolsFailureRollsBack() async throws {
        let timePort = TestEnvironment.freePort()
        let time = try await TestEnvironment.startMCPServer("time", port: timePort)
        defer { time.signal(SIGKILL) }
        let everythingPort = TestEnvironment.freePort()
        let everything = try await TestEnvironment.startMCPServer("everything", port: everythingPort)
        defer { everything.signal(SIGKILL) }

        let source = SourceBox([mcpServer("1", requireTools: ["now", "convert"])])
        let driver = InMemoryDriver(readyAfterObserves: 1)
        await driver.setPorts([timePort], revision: "rev-1")
        await driver.setPorts([timePort], revision: "rev-2")
        await driver.setPorts([everythingPort], revision: "rev-3")
        let store = InMemoryRolloutStore()
        let controller = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(),
                                    logger: quietLogger(), configuration: fastConfiguration(),
                                    transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
        let task = Task { try await controller.run() }
        defer { task.cancel() }
        func record() async -> RolloutRecord? { await store.record(server: "time") }
        try await waitUntil("rev-1 healthy", timeout: .seconds(20)) {
            let r = await record()
            return r?.stableRevision == "rev-1" && r?.phase == .stable
        }
        // A good version (the time server offers both tools): promoted.
        await source.set([mcpServer("2", requireTools: ["now"])])
        try await waitUntil("rev-2 promoted", timeout: .seconds(20)) {
            let r = await record()
            return r?.stableRevision == "rev-2" && r?.phase == .stable
        }
        // A bad one: the everything server lacks `convert`, so its instances never pass the probe.
        let before = await driver.trace.count
        await source.set([mcpServer("3", requireTools: ["now", "convert"])])
        try await waitUntil("rev-3 rolled back", timeout: .seconds(20)) {
            let r = await record()
            let revs = await driver.snapshot().server("time")?.revisions.filter { $0.replicas > 0 }.map(\.revision)
            return r?.phase == .rolledBack && revs == ["rev-2"]
        }
        task.cancel()
        _ = await task.result
        #expect(await record()?.failedRevisions == ["rev-3"])
        let rolledBack = await store.revisions(server: "time").first { $0.revision == "rev-3" }
        #expect(rolledBack?.outcome == .rolledBack)
        #expect(rolledBack?.reason?.contains("progress deadline") == true)
        // The driver's instances of rev-3 were "ready", yet never counted: ready stayed at 2 throughout.
        for s in await driver.trace.dropFirst(before) where s.server == "time" {
            #expect(s.total <= 3)
        }
        let exposition = controller.metrics.exposition()
        #expect(exposition.contains("mcpfleet_probe_duration_seconds_bucket"))
    }

    /// A revision the driver calls ready but whose instances have no endpoint to probe (not listening yet,
    /// or the port held by someone else) is not ready: without a probe result the machine must not fall
    /// back to the driver's word, roll it forward and scale the stable revision down.
    @Test func aRevisionWithoutProbeResultsIsNeverCountedReady() async throws {
        let timePort = TestEnvironment.freePort()
        let time = try await TestEnvironment.startMCPServer("time", port: timePort)
        defer { time.signal(SIGKILL) }
        let source = SourceBox([mcpServer("1", requireTools: ["now"])])
        let driver = InMemoryDriver(readyAfterObserves: 1)
        await driver.setPorts([timePort], revision: "rev-1")  // rev-2: no endpoints at all
        let store = InMemoryRolloutStore()
        let controller = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(),
                                    logger: quietLogger(), configuration: fastConfiguration(),
                                    transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
        let task = Task { try await controller.run() }
        defer { task.cancel() }
        try await waitUntil("rev-1 healthy", timeout: .seconds(20)) {
            let r = await store.record(server: "time")
            return r?.stableRevision == "rev-1" && r?.phase == .stable
        }
        let before = await driver.trace.count
        await source.set([mcpServer("2", requireTools: ["now"])])
        var seen = ""
        let rolledBack = try await waitUntil(deadline: .seconds(20)) {
            let r = await store.record(server: "time")
            let revs = await driver.snapshot().server("time")?.revisions.filter { $0.replicas > 0 }.map(\.revision)
            seen = "\(r?.phase.rawValue ?? "-") \(r?.message ?? "-") \(revs ?? [])"
            return r?.phase == .rolledBack && revs == ["rev-1"]
        }
        #expect(rolledBack, "rev-2 rolled back at its deadline; last seen: \(seen)")
        task.cancel()
        _ = await task.result
        // Throughout, the stable revision kept both replicas: rev-2's "ready" instances never counted.
        for s in await driver.trace.dropFirst(before) where s.server == "time" {
            #expect((s.revisions["rev-1"] ?? 0) == 2, "\(s)")
            #expect((s.revisions["rev-2"] ?? 0) <= 1, "\(s)")
        }
        #expect(await store.revisions(server: "time").first { $0.revision == "rev-2" }?.outcome == .rolledBack)
    }
}

@Suite struct WorkQueuePriorityTests {
    @Test func changedKeysGoAheadOfTheSweepAndArePromotedNotDuplicated() async throws {
        let q = WorkQueue<String>(clock: ManualClock())
        for i in 0..<100 { await q.add("s\(i)", priority: .low) }
        await q.add("s99")  // something happened to the last one: it goes first, once
        await q.add("new")
        #expect(await q.depth == 101)
        #expect(await q.get() == "s99")
        #expect(await q.get() == "new")
        var rest: [String] = []
        while await q.depth > 0, let k = await q.get() { rest.append(k) }
        #expect(rest == (0..<99).map { "s\($0)" })
        // Added at low while processed at high: queued again at the higher of the two when done.
        await q.add("s1", priority: .low)
        await q.add("s1")
        await q.add("s2", priority: .low)
        await q.done("s1")
        #expect(await q.get() == "s1")
    }

    @Test func rolloutsInMotionGoAheadOfNewWorkAndTheSweep() async throws {
        let q = WorkQueue<String>(clock: ManualClock())
        for i in 0..<3 { await q.add("sweep\(i)", priority: .low) }
        for i in 0..<3 { await q.add("new\(i)") }
        await q.add("moving", priority: .urgent)
        await q.add("new2", priority: .urgent)  // promoted, not queued twice
        await q.add("sweep0", priority: .high)
        var order: [String] = []
        while await q.depth > 0, let k = await q.get() { order.append(k) }
        #expect(order == ["moving", "new2", "new0", "new1", "sweep0", "sweep1", "sweep2"])
        #expect(await q.urgentDepth == 0)
    }
}
