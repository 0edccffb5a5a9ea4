import FleetCore
import FleetLocal
import FleetTesting
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `rescale` on real processes: a new driver (a restarted controller) grows the old revision from the
/// definition `state.db` keeps for it, so the new instance runs the old command, not the current one.
@Suite(.serialized) struct LocalRescaleTests {
    func commandLine(_ pid: Int) -> [String] {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return String(decoding: data, as: UTF8.self).split(separator: "\0").map(String.init)
    }

    @Test func aRestartedDriverRescalesTheOldRevisionWithItsOwnCommand() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("rescale")
        defer { removeTree(dir) }
        let old = desiredServer("rescaled", command: [binary, "--port", "${PORT}"], port: 21300, version: "1.0")
        // The new code: another command line (it need not become ready for this test).
        let next = desiredServer("rescaled", command: ["/bin/sh", "-c", "exec sleep 300", "new-code", "${PORT}"], port: 21300, version: "2.0")
        #expect(old.revision != next.revision)
        let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await first.scale(old, replicas: 1)
        try await first.scale(next, replicas: 1)
        #expect(try await waitUntil(deadline: .seconds(30)) {
            try await first.observe().server("rescaled")?.revisions.first { $0.revision == old.revision }?.ready == 1
        })
        await first.shutdown(stopInstances: false)

        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await second.start()
            try await second.rescale(server: "rescaled", revision: old.revision, tenant: "default", replicas: 2)
            #expect(try await waitUntil(deadline: .seconds(30)) {
                try await second.observe().server("rescaled")?.revisions.first { $0.revision == old.revision }?.ready == 2
            })
            let live = try await second.observe()
            let olds = instances(live, "rescaled").filter { $0.revision == old.revision }
            #expect(olds.map(\.port) == [21300, 21302])
            for instance in olds {
                let pid = try #require(instance.pid)
                #expect(commandLine(pid) == [binary, "--port", String(instance.port ?? 0)], "instance \(instance.id)")
            }
            #expect(try await mcpInitialize(port: 21302).isEmpty == false)
            // The stored definition is unchanged: version and fields as rendered for the old revision.
            let revision = live.server("rescaled")?.revisions.first { $0.revision == old.revision }
            #expect(revision?.version == "1.0")
            #expect(revision?.fields == old.fields)

            // Down to 0 and back up, still from the kept definition.
            try await second.rescale(server: "rescaled", revision: old.revision, tenant: "default", replicas: 0)
            #expect(instances(try await second.observe(), "rescaled").filter { $0.revision == old.revision }.isEmpty)

            // Without a kept definition: up is refused by name, down to 0 is a no-op.
            try await second.rescale(server: "rescaled", revision: "never-deployed", tenant: "default", replicas: 0)
            let error = await #expect(throws: DriverError.self) {
                try await second.rescale(server: "rescaled", revision: "never-deployed", tenant: "default", replicas: 1)
            }
            #expect(error?.terminal == true)
            #expect(error?.message.contains("no definition of revision never-deployed is kept") == true)
        } catch {
            await second.shutdown(stopInstances: true)
            throw error
        }
        let last = instances(try await second.observe(), "rescaled").compactMap(\.pid)
        await second.shutdown(stopInstances: true)
        for pid in last { #expect(!isAlive(pid), "pid \(pid) still running after shutdown") }
    }
}
