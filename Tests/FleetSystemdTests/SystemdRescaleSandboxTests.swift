import FleetCore
import FleetSystemd
import FleetTesting
import Foundation
import Testing

/// `rescale` against a real systemd (FleetTesting's `SystemdSandbox`): a new driver (a restarted
/// controller) grows the old revision from its unit template and revision record, writing neither, so
/// the running instance is not restarted and the new one runs the old command.
@Suite(.serialized, .enabled(if: SystemdSandbox.unavailableReason == nil, "needs root to boot systemd in a sandbox (CI runs as root)"))
struct SystemdRescaleSandboxTests {
    @Test func rescaleKeepsTheOldRevisionsUnitAndRecordByteIdentical() async throws {
        let hostBinary = try Fixtures.everythingServer()
        try await SystemdDriverSandboxTests.withSandbox { sandbox, driver in
            let binary = try sandbox.stage(hostBinary)
            let v1 = try Fixtures.server(name: "resc", version: "1.0.0", command: [binary, "--port", "${PORT}"], port: 22600, replicas: 1)
            let v2 = try Fixtures.server(name: "resc", version: "2.0.0", command: ["/bin/sh", "-c", "exec sleep 300", "new-code"], port: 22600, replicas: 1)
            try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(v1, replicas: 1), .scale(v2, replicas: 1)])
            try await waitUntil("v1 ready", timeout: .seconds(20), every: .milliseconds(100)) {
                SystemdDriverSandboxTests.revision(try await driver.observe(), "resc", v1.revision)?.ready == 1
            }
            let unitPath = sandbox.root + "/run/systemd/system/mcp-resc-\(v1.revision)@.service"
            let recordPath = sandbox.root + "/run/mcpfleet/sbx/systemd/revisions/mcp-resc-\(v1.revision).json"
            let unit = try #require(FileManager.default.contents(atPath: unitPath))
            let record = try #require(FileManager.default.contents(atPath: recordPath))
            let invocation = try await sandbox.run(["systemctl", "show", "-p", "InvocationID", "--value", "mcp-resc-\(v1.revision)@0.service"]).stdout

            let restarted = try SystemdDriver(environment: Fixtures.environment(), manifestRoot: "/srv",
                                              runner: NsenterCommandRunner(pid: sandbox.pid), fileSystemRoot: sandbox.root)
            try await restarted.rescale(server: "resc", revision: v1.revision, tenant: "platform", replicas: 2)
            try await waitUntil("v1 at 2 ready", timeout: .seconds(20), every: .milliseconds(100)) {
                SystemdDriverSandboxTests.revision(try await restarted.observe(), "resc", v1.revision)?.ready == 2
            }
            #expect(FileManager.default.contents(atPath: unitPath) == unit)
            #expect(FileManager.default.contents(atPath: recordPath) == record)
            // The running instance was not restarted; the new one runs the old command on its own port.
            #expect(try await sandbox.run(["systemctl", "show", "-p", "InvocationID", "--value", "mcp-resc-\(v1.revision)@0.service"]).stdout == invocation)
            // (an endpoint once its process listens on its port)
            try await waitUntil("both v1 instances listening", timeout: .seconds(20), every: .milliseconds(100)) {
                try await restarted.endpoints(server: "resc", revision: v1.revision).map(\.port) == [22600, 22602]
            }
            #expect(try await answersInitialize(port: 22602))

            // Without a kept definition: up is refused by name, down to 0 is a no-op.
            try await restarted.rescale(server: "resc", revision: "never", tenant: "platform", replicas: 0)
            let error = await #expect(throws: DriverError.self) {
                try await restarted.rescale(server: "resc", revision: "never", tenant: "platform", replicas: 1)
            }
            #expect(error?.terminal == true)
            #expect(error?.message.contains("no definition of revision never is kept") == true)
        }
    }
}
