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

    /// A controller with real MCP probes and one probe slot, running until the task is cancelled.
    func runWithOneProbeSlot(source: SourceBox, driver: InMemoryDriver, store: any RolloutStore) throws -> Task<Void, any Error> {
        var configuration = fastConfiguration()
        configuration.probeConcurrency = 1
        let controller = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(), logger: quietLogger(),
                                    configuration: configuration, transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
        return Task { try await controller.run() }
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
        let task = try runWithOneProbeSlot(source: source, driver: driver, store: store)
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

    /// Holds the first contract write of one server until opened (a store write queued behind a cold
    /// converge's applies).
    final class HeldContractStore: RolloutStoreDecorator, @unchecked Sendable {
        let inner: any RolloutStore
        let server: String
        private let lock = NSLock()
        private var open = false
        private var held = false
        private var waiting: [CheckedContinuation<Void, Never>] = []
        init(_ inner: any RolloutStore, holding server: String) { self.inner = inner; self.server = server }
        var isHolding: Bool { lock.withLock { held && !open } }
        func release() {
            let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
                open = true
                defer { waiting = [] }
                return waiting
            }
            for waiter in waiters { waiter.resume() }
        }
        func saveRevision(_ revision: RevisionRecord) async throws {
            if revision.server == server, revision.contract != nil {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let go = lock.withLock { () -> Bool in
                        held = true
                        if !open { waiting.append(continuation) }
                        return open
                    }
                    if go { continuation.resume() }
                }
            }
            try await inner.saveRevision(revision)
        }
    }

    @Test func recordingAFirstContractDoesNotHoldTheProbeSlot() async throws {
        let port = TestEnvironment.freePort()
        let time = try await TestEnvironment.startMCPServer("time", port: port)
        defer { time.signal(SIGKILL) }
        let driver = InMemoryDriver(readyAfterObserves: 1)
        let first = server("first", replicas: 1, intervalMs: 60_000), second = server("second", replicas: 1, intervalMs: 60_000)
        for s in [first, second] { await driver.setPorts([port], revision: s.revision) }
        let store = HeldContractStore(InMemoryRolloutStore(), holding: "first")
        let source = SourceBox([first])
        let task = try runWithOneProbeSlot(source: source, driver: driver, store: store)
        defer { task.cancel() }
        // The first server's instance answered its first probe; recording the surface it serves is held.
        try await waitUntil("the first contract write held", timeout: .seconds(20)) { store.isHolding }
        // Another server's first probe still gets the one slot, and its rollout completes meanwhile.
        await source.set([first, second])
        try await waitUntil("the second server probed ready and stable", timeout: .seconds(20)) {
            let r = try await store.record(server: "second")
            return r?.phase == .stable && r?.probes.values.first?.healthy == true
        }
        #expect(try await store.record(server: "first")?.phase != .stable)
        // Released, the first one's verdict is recorded and its rollout completes too, with its contract.
        store.release()
        try await waitUntil("the first server stable", timeout: .seconds(20)) {
            try await store.record(server: "first")?.phase == .stable
        }
        #expect(try await store.revisions(server: "first").last?.contract != nil)
    }
}
