import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Testing

/// A controller that starts over (a restart, every `apply`) trusts its predecessor's ready verdicts only
/// for the same run of an instance, on the steady revision (design 0006: never ready unless probed ready).
@Suite(.serialized) struct AdoptionTrustTests {
    func server(intervalMs: Int64) -> DesiredServer {
        DesiredServer(name: "time", version: "1", revision: "rev-1", replicas: 2, command: ["/bin/true"],
                      health: DesiredHealth(probe: .mcp, intervalMs: intervalMs, timeoutMs: 2_000, failureThreshold: 2, requireTools: ["now"]),
                      rollout: DesiredRollout(strategy: .rolling, maxSurge: 1, maxUnavailable: 0, autoRollback: true, progressDeadlineMs: 60_000))
    }

    func controller(intervalMs: Int64, _ driver: InMemoryDriver, _ store: InMemoryRolloutStore) throws -> Controller {
        let source = SourceBox([server(intervalMs: intervalMs)])
        return Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(), logger: quietLogger(),
                          configuration: fastConfiguration(), transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
    }

    @Test func aRestartedControllerTrustsVerdictsOfTheSameRunOnlyAndProbesTheRest() async throws {
        let port = TestEnvironment.freePort()
        let time = try await TestEnvironment.startMCPServer("time", port: port)
        defer { time.signal(SIGKILL) }
        let driver = InMemoryDriver(readyAfterObserves: 1)
        await driver.setReportsRestarts(true)
        await driver.setPorts([port], revision: "rev-1")
        let store = InMemoryRolloutStore()

        // The first controller probes both instances ready; its verdicts name the run they are about.
        let first = try controller(intervalMs: 100, driver, store)
        let t1 = Task { try await first.run() }
        try await waitUntil("rev-1 stable, both instances probed ready", timeout: .seconds(20)) {
            let r = await store.record(server: "time")
            return r?.stableRevision == "rev-1" && r?.phase == .stable && r?.probes.count == 2
                && r?.probes.values.allSatisfy { $0.healthy && $0.restarts == 0 } == true
        }
        t1.cancel()
        _ = await t1.result
        let recorded = await store.record(server: "time")

        // The server stops answering. A new controller whose first probes are spread over a minute settles
        // on the recorded verdicts, probing nothing and rewriting nothing.
        time.signal(SIGKILL)
        let second = try controller(intervalMs: 60_000, driver, store)
        let t2 = Task { try await second.run() }
        try await waitUntil("settled on the recorded verdicts", timeout: .seconds(20)) { await second.isSettled() }
        #expect(!second.metrics.exposition().contains("mcpfleet_probe_duration_seconds_bucket"), "settled without probing")
        #expect(await store.record(server: "time") == recorded, "the record was not rewritten")
        t2.cancel()
        _ = await t2.result

        // The instances restarted since: the verdicts are about an earlier run, so they count for nothing.
        // The new controller probes at once, finds them failing and never counts them ready.
        await driver.restart(server: "time")
        let third = try controller(intervalMs: 100, driver, store)
        let t3 = Task { try await third.run() }
        defer { t3.cancel() }
        try await waitUntil("probed, failing, degraded", timeout: .seconds(20)) {
            await store.record(server: "time")?.phase == .degraded
        }
        #expect(!(await third.isSettled()))
        let notes = await store.record(server: "time")?.probes ?? [:]
        #expect(notes.count == 2 && notes.values.allSatisfy { !$0.healthy && $0.restarts == 1 }, "\(notes)")
    }
}
