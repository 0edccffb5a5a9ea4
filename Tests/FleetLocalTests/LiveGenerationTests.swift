import FleetCore
@testable import FleetLocal
import FleetTesting
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The local driver's live generation (what the gateway's route refresh keys on, issue 14): the same
/// while ticks and port checks find nothing new, changed by an instance's exit and by its restart.
@Suite(.serialized) struct LiveGenerationTests {
    @Test func idleTicksLeaveTheGenerationAloneAndAnExitChangesIt() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("generation")
        defer { removeTree(dir) }
        let spec = desiredServer("gen", command: [binary, "--port", "${PORT}"], port: 21340)
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await driver.start()
            try await driver.scale(spec, replicas: 1)
            try await waitUntil("the instance is ready", timeout: .seconds(30)) {
                try await driver.observe(.server("gen")).server("gen")?.revisions.first?.ready == 1
            }
            let before = try #require(await driver.liveGeneration())
            // What an idle controller does many times a second: ticks (reaping, identity checks), port
            // sweeps, observations and endpoint look-ups. None of it is a change.
            for _ in 0..<25 {
                await driver.supervisor.tick()
                await driver.supervisor.checkPorts(force: true)
                _ = try await driver.observe(.all)
                _ = try await driver.endpoints(server: "gen", revision: spec.revision)
            }
            #expect(await driver.liveGeneration() == before)

            let pid = try #require(instances(try await driver.observe(.all), "gen").first?.pid)
            kill(pid_t(pid), SIGKILL)
            try await waitUntil("the exit changes the generation", timeout: .seconds(10)) {
                await driver.liveGeneration() != before
            }
            // The restart (1 s backoff) and its port taken again change it too, and end ready.
            let afterExit = try #require(await driver.liveGeneration())
            try await waitUntil("the restarted instance is ready", timeout: .seconds(30)) {
                let live = try await driver.observe(.server("gen"))
                return live.server("gen")?.revisions.first?.ready == 1 && instances(live, "gen").first?.pid != pid
            }
            #expect(await driver.liveGeneration() != afterExit)
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
    }
}
