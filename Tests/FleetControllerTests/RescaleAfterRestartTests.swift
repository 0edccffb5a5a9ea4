import FleetController
import FleetCore
import FleetTesting
import Foundation
import Testing

/// A revision this controller process did not render (the stable one, after a restart mid-rollout) is
/// resized from the definition the runtime keeps, never redefined from the current spec relabelled.
@Suite(.serialized) struct RescaleAfterRestartTests {
    func server(_ version: String) -> DesiredServer {
        var s = ctlServer(version, replicas: 2, steps: [DesiredCanaryStep(replicas: 1, untilPromoted: true)])
        s.command = ["/srv/time-server", "--build", "v\(version)"]
        return s
    }

    func start(_ source: SourceBox, _ driver: InMemoryDriver, _ store: InMemoryRolloutStore) -> (Controller, Task<Void, any Error>) {
        let c = Controller(source: { await source.snapshot() }, driver: driver, store: store, clock: SystemClock(),
                           logger: quietLogger(), configuration: fastConfiguration(), extraProviders: [.probe: FixedProvider(results: { _ in .pass })])
        return (c, Task { try await c.run() })
    }

    func replicas(_ driver: InMemoryDriver, _ rev: String) async -> Int {
        await driver.snapshot().server("time")?.revisions.first { $0.revision == rev }?.replicas ?? 0
    }

    @Test func rollbackAfterARestartResizesTheStableRevisionFromItsOwnDefinition() async throws {
        let source = SourceBox([server("1")])
        let driver = InMemoryDriver(readyAfterObserves: 2)
        let store = InMemoryRolloutStore()
        var (controller, task) = start(source, driver, store)
        try await waitUntil("first deployment") {
            let stable = await store.record(server: "time")?.stableRevision == "rev-1"
            let count = await replicas(driver, "rev-1")
            return stable && count == 2
        }
        await source.set([server("2")])
        try await waitUntil("rev-2 waits for promotion", timeout: .seconds(20)) { await store.record(server: "time")?.phase == .paused }
        #expect(await replicas(driver, "rev-1") == 1)
        task.cancel()
        _ = await task.result

        // A new controller process: it rendered rev-2 (desired) but never rev-1.
        let callsBefore = await driver.calls.count
        (controller, task) = start(source, driver, store)
        await store.update(server: "time") { $0.pinnedRevision = "rev-1" } // what `mcpfleet rollback` does
        await controller.queue.add(.server("time"))
        try await waitUntil("rolled back to rev-1", timeout: .seconds(20)) {
            let stable = await store.record(server: "time")?.stableRevision == "rev-1"
            let counts = [await replicas(driver, "rev-1"), await replicas(driver, "rev-2")]
            return stable && counts == [2, 0]
        }
        task.cancel()
        _ = await task.result

        // rev-1 still runs rev-1's command, and it was resized by `rescale`, never redefined by `scale`.
        #expect(await driver.spec(server: "time", revision: "rev-1")?.command == ["/srv/time-server", "--build", "v1"])
        #expect(await driver.specsScaled(server: "time", revision: "rev-1").map(\.command) == [["/srv/time-server", "--build", "v1"]])
        #expect(await driver.spec(server: "time", revision: "rev-1")?.version == "1")
        let after = await driver.calls.dropFirst(callsBefore)
        #expect(after.contains("rescale server/time@rev-1=2"))
        #expect(!after.contains { $0.hasPrefix("scale server/time@rev-1=") }, "\(Array(after))")
        #expect(await driver.rescales > 0)
    }

    /// `RuntimeDriver.shutdown(stoppingInstances:)`'s default (systemd, Kubernetes) stops every revision from
    /// its kept definition, not from the desired spec relabelled.
    @Test func shutdownStoppingInstancesKeepsEachRevisionsDefinition() async throws {
        let driver = InMemoryDriver()
        try await driver.scale(server("1"), replicas: 2)
        try await driver.scale(server("2"), replicas: 1)
        let desired = DesiredState(environment: "test", driver: .local, servers: [server("3")], tenants: [DesiredTenant(name: "default")])
        try await driver.shutdown(stoppingInstances: true, desired: desired)
        #expect(await driver.snapshot().server("time")?.revisions.map(\.replicas) == [0, 0])
        #expect(await driver.spec(server: "time", revision: "rev-1")?.command == ["/srv/time-server", "--build", "v1"])
        #expect(await driver.spec(server: "time", revision: "rev-2")?.command == ["/srv/time-server", "--build", "v2"])
        #expect(await driver.specsScaled(server: "time", revision: "rev-1").count == 1)
        #expect(await driver.specsScaled(server: "time", revision: "rev-2").count == 1)
        #expect(await driver.rescales == 2)
    }

    @Test func aRevisionWithoutAKeptDefinitionCannotBeScaledUpButCanBeStopped() async throws {
        let driver = InMemoryDriver()
        try await driver.rescale(server: "time", revision: "rev-9", tenant: "default", replicas: 0)
        let error = await #expect(throws: DriverError.self) {
            try await driver.rescale(server: "time", revision: "rev-9", tenant: "default", replicas: 1)
        }
        #expect(error?.terminal == true)
        #expect(error?.resource == "server/time")
        #expect(error?.message.contains("no definition of revision rev-9 is kept") == true)
        #expect(await driver.snapshot().server("time") == nil)
    }
}
