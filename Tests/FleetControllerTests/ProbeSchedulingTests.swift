import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Testing

/// The probe scheduler's order: a new instance's first probe — what its rollout waits for — starts before
/// the periodic probes of instances already ready, however many of those are due (at 3,000 instances the
/// periodic probes alone filled every slot and new instances were never probed).
@Suite(.serialized) struct ProbeSchedulingTests {
    func server(_ name: String, replicas: Int, intervalMs: Int64) -> DesiredServer {
        DesiredServer(name: name, version: "1", revision: "\(name)-rev-1", replicas: replicas, command: ["/bin/true"],
                      health: DesiredHealth(probe: .mcp, intervalMs: intervalMs, timeoutMs: 2_000, failureThreshold: 2, requireTools: ["now"]),
                      rollout: DesiredRollout(strategy: .rolling, maxSurge: 1, maxUnavailable: 0, autoRollback: true, progressDeadlineMs: 60_000))
    }

    @Test func aNewInstanceIsProbedAheadOfPeriodicProbesThatFillEverySlot() async throws {
        let port = TestEnvironment.freePort()
        let time = try await TestEnvironment.startMCPServer("time", port: port)
        defer { time.signal(SIGKILL) }
        let driver = InMemoryDriver(readyAfterObserves: 1)
        // Four servers of three instances, each due for a probe all the time (every millisecond), and one slot.
        let busy = (0..<4).map { server("busy-\($0)", replicas: 3, intervalMs: 1) }
        for s in busy + [server("late", replicas: 1, intervalMs: 1)] { await driver.setPorts([port], revision: s.revision) }
        let store = InMemoryRolloutStore()
        let source = SourceBox(busy)
        var configuration = fastConfiguration()
        configuration.probeConcurrency = 1
        let controller = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(), logger: quietLogger(),
                                    configuration: configuration, transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
        let task = Task { try await controller.run() }
        defer { task.cancel() }
        try await waitUntil("the busy servers stable", timeout: .seconds(30)) {
            for s in busy where await store.record(server: s.name)?.phase != .stable { return false }
            return true
        }

        // A server arrives (last in the catalog's order, as a probe walk meets it): its instance is probed
        // and its rollout completes while the twelve periodic probes keep coming due.
        await source.set(busy + [server("late", replicas: 1, intervalMs: 1)])
        try await waitUntil("the new server probed ready and stable", timeout: .seconds(20)) {
            let r = await store.record(server: "late")
            return r?.phase == .stable && r?.stableRevision == "late-rev-1" && r?.probes.values.first?.healthy == true
        }
        // The periodic probes went on meanwhile (they run late, never not at all).
        let busyNotes = await store.record(server: "busy-0")?.probes ?? [:]
        #expect(busyNotes.count == 3 && busyNotes.values.allSatisfy(\.healthy), "\(busyNotes)")
    }
}
