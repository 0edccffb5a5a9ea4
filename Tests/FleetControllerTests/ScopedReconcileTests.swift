import FleetController
import FleetCore
import FleetTesting
import Foundation
import Testing

/// The loop's cost at fleet scale (issue 14): a server key reads its own server, the sync key reads the
/// fleet once, whatever the number of servers; the queue serves what changed before the resync's sweep.
@Suite(.serialized) struct ScopedReconcileTests {
    func fleet(_ n: Int, version: String = "1") -> [DesiredServer] {
        (0..<n).map { i in
            DesiredServer(name: String(format: "s%04d", i), version: version, revision: "rev-\(version)", replicas: 1, command: ["/bin/true"],
                          rollout: DesiredRollout(strategy: .rolling, maxSurge: 1, maxUnavailable: 0, autoRollback: true, progressDeadlineMs: 60_000))
        }
    }

    /// A controller over `n` servers on the in-memory driver; only the test's `refreshSource` starts a
    /// pass (no timed resync, no source polling meanwhile).
    func start(_ n: Int, workers: Int = 4) -> (SourceBox, InMemoryDriver, InMemoryRolloutStore, Controller, Task<Void, any Error>) {
        let source = SourceBox(fleet(n))
        let driver = InMemoryDriver(readyAfterObserves: 1)
        let store = InMemoryRolloutStore()
        var configuration = fastConfiguration()
        configuration.resyncIntervalMs = 600_000
        configuration.pollIntervalMs = 600_000
        configuration.workers = workers
        let controller = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(),
                                    logger: quietLogger(), configuration: configuration)
        return (source, driver, store, controller, Task { try await controller.run() })
    }

    /// Observations a cold converge and then one resync of `n` servers make: (full, per-server) for each.
    func observations(servers n: Int) async throws -> (cold: (full: Int, server: Int), resync: (full: Int, server: Int)) {
        let (_, driver, store, controller, task) = start(n)
        defer { task.cancel() }
        try await waitUntil("\(n) servers stable", timeout: .seconds(60)) {
            guard await controller.isSettled() else { return false }
            return await store.records().filter { $0.phase == .stable && $0.stableRevision == "rev-1" }.count == n
        }
        let cold = (await driver.fullObservations, await driver.serverObservations)
        await driver.resetObservations()
        // One resync: the sync key, then every server key once.
        #expect(await controller.refreshSource())
        try await waitUntil("resync of \(n) servers done", timeout: .seconds(60)) {
            let q = controller.queue
            guard await driver.serverObservations >= n else { return false }
            let depth = await q.depth, busy = await q.inProgress
            return depth == 0 && busy == 0
        }
        let resync = (await driver.fullObservations, await driver.serverObservations)
        task.cancel()
        _ = await task.result
        #expect(await driver.starts == 1)
        #expect(await driver.stops == 1)
        return ((cold.0, cold.1), (resync.0, resync.1))
    }

    @Test func aResyncObservesTheFleetOnceWhateverItsSize() async throws {
        let small = try await observations(servers: 5)
        let large = try await observations(servers: 60)
        // The sync key's one full observation per pass, at 5 servers as at 60.
        #expect(small.resync.full == 1)
        #expect(large.resync.full == 1)
        #expect(small.cold.full == 1)
        #expect(large.cold.full == 1)
        // Each server key observes its own server: once per key in a resync of settled servers.
        #expect(small.resync.server == 5)
        #expect(large.resync.server == 60)
        // A cold converge's server observations grow with the servers, not with their square.
        #expect(large.cold.server <= 60 * (small.cold.server / 5 + 2), "cold: \(small.cold) at 5, \(large.cold) at 60")
    }

    @Test func aChangedServerIsReconciledAheadOfTheSweep() async throws {
        let n = 40
        let (source, driver, store, controller, task) = start(n, workers: 1)
        defer { task.cancel() }
        try await waitUntil("stable", timeout: .seconds(60)) {
            guard await controller.isSettled() else { return false }
            return await store.records().filter { $0.phase == .stable }.count == n
        }
        // The last server changes; the sync queues it ahead of the 39 unchanged ones it sweeps.
        var servers = fleet(n)
        servers[n - 1] = fleet(n, version: "2")[n - 1]
        await source.set(servers)
        let before = await driver.calls.count
        #expect(await controller.refreshSource())
        try await waitUntil("changed server stable on rev-2", timeout: .seconds(60)) {
            await store.record(server: servers[n - 1].name)?.stableRevision == "rev-2"
        }
        let calls = await driver.calls.dropFirst(before)
        let firstScale = try #require(calls.firstIndex { $0.hasPrefix("scale ") })
        #expect(calls[firstScale] == "scale server/\(servers[n - 1].name)@rev-2=1")
        // Before it, only the sync's observation: no other server's key came first.
        #expect(calls[calls.startIndex..<firstScale].filter { $0.hasPrefix("observe server/") && !$0.hasSuffix(servers[n - 1].name) }.isEmpty,
                "\(Array(calls[calls.startIndex..<firstScale]))")
        task.cancel()
        _ = await task.result
    }

    /// A cold converge finishes the rollouts in motion as their instances get ready, ahead of the servers
    /// it has not started yet: the first server's next step does not wait for every other server's first
    /// (at 1,000 servers on Kubernetes every rollout completed only after the last one had started).
    @Test func aColdConvergeFinishesRolloutsInMotionBeforeStartingTheRest() async throws {
        let n = 40
        let (_, driver, store, controller, task) = start(n, workers: 1)
        defer { task.cancel() }
        // Each scale takes 5 ms (throttled API requests): the first pass over 40 servers takes 200 ms,
        // while the first server's next step is due 10 ms after its scale.
        await driver.setScaleDelay(ms: 5)
        try await waitUntil("\(n) servers stable", timeout: .seconds(60)) {
            guard await controller.isSettled() else { return false }
            return await store.records().filter { $0.phase == .stable && $0.stableRevision == "rev-1" }.count == n
        }
        let calls = await driver.calls
        let lastStart = try #require(calls.firstIndex(of: "scale server/s0039@rev-1=1"))
        // The first server's reconciles: its first (observe, scale, observe again), then its next step.
        let firstServer = calls.indices.filter { calls[$0] == "observe server/s0000" }
        #expect(firstServer.count >= 3)
        #expect(firstServer.count >= 3 && firstServer[2] < lastStart,
                "the first server's next step came after the last server started: \(firstServer) vs \(lastStart)")
        task.cancel()
        _ = await task.result
    }
}
