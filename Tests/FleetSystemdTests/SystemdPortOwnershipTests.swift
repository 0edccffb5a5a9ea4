import FleetCore
import FleetState
import FleetSystemd
import FleetTesting
import Foundation
import Testing

/// Issue 13 for systemd: an instance is probed only when its port is held by its own unit's processes
/// (the control group), never when another process took the port. Real systemd in the sandbox.
@Suite(.serialized, .enabled(if: SystemdSandbox.unavailableReason == nil, "needs root to boot systemd in a sandbox (CI runs as root)"))
struct SystemdPortOwnershipTests {
    @Test func aForeignListenerOnAUnitsPortIsNeverAnEndpoint() async throws {
        let hostBinary = try Fixtures.everythingServer()
        let sandbox = try await SystemdSandbox.boot()
        defer { sandbox.shutdown() }
        let driver = try SystemdDriver(environment: Fixtures.environment(), manifestRoot: "/srv",
                                       runner: NsenterCommandRunner(pid: sandbox.pid), fileSystemRoot: sandbox.root)
        // A unit that runs but never listens; a foreign process (on the shared network) takes its port
        // after it started (before, the driver would refuse to start it: see below).
        let quiet = try Fixtures.server(name: "quiet", command: ["/bin/sleep", "600"], port: 22950)
        // A unit that does listen, for contrast.
        let binary = try sandbox.stage(hostBinary)
        let real = try Fixtures.server(name: "real", command: [binary, "--port", "${PORT}"], port: 22960)
        try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(quiet, replicas: 1), .scale(real, replicas: 1)])
        try await waitUntil("both units running, the real one listening", timeout: .seconds(20), every: .milliseconds(100)) {
            let active = try await sandbox.run(["systemctl", "list-units", "--plain", "--no-legend", "--state=running", "mcp-*@*.service"]).stdout
            return active.contains("mcp-quiet-") && active.contains("mcp-real-") && TestEnvironment.isListening(22960)
        }
        let foreign = try TestProcess("/usr/bin/env", ["python3", "-c",
            "import socket, time\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', 22950)); s.listen(8)\ntime.sleep(600)"])
        defer { foreign.signal(SIGKILL) }
        try await waitUntil("foreign listener") { TestEnvironment.isListening(22950) }
        // The unit's control group is readable from here, and holds the unit's process, not the foreign one.
        let show = try await sandbox.run(["systemctl", "show", "-p", "ControlGroup", "--value", "mcp-quiet-\(quiet.revision)@0.service"])
        let pids = try #require(PortOwnership.controlGroupProcesses(show.stdout.trimmingCharacters(in: .whitespacesAndNewlines), root: sandbox.root))
        #expect(!pids.isEmpty && !pids.contains(foreign.pid))
        #expect(try await driver.endpoints(server: "quiet", revision: quiet.revision).isEmpty,
                "a port held by another process must never be probed as the unit")
        #expect(try await driver.endpoints(server: "real", revision: real.revision).map(\.port) == [22960])

        // A second replica whose port (22961) the foreign process holds is not started: the error names
        // the holder; once the port is free, the same scale starts it.
        let squatter = try TestProcess("/usr/bin/env", ["python3", "-c",
            "import socket, time\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', 22961)); s.listen(8)\ntime.sleep(600)"])
        defer { squatter.signal(SIGKILL) }
        try await waitUntil("squatter listening") { TestEnvironment.isListening(22961) }
        do {
            try await driver.scale(real, replicas: 2)
            Issue.record("scaling onto a taken port must fail")
        } catch let error as DriverError {
            #expect(error.resource == "server/real")
            #expect(error.message.contains("port 22961 is already in use by pid \(squatter.pid)"), "\(error.message)")
        }
        let running = try await sandbox.run(["systemctl", "list-units", "--plain", "--no-legend", "--state=running", "mcp-real-*@*.service"]).stdout
        #expect(running.split(separator: "\n").count == 1, "\(running)")
        squatter.signal(SIGKILL)
        try await waitUntil("port free") { !TestEnvironment.isListening(22961) }
        try await driver.scale(real, replicas: 2)
        try await waitUntil("second replica listening", timeout: .seconds(20), every: .milliseconds(100)) { TestEnvironment.isListening(22961) }
        #expect(try await driver.endpoints(server: "real", revision: real.revision).map(\.port) == [22960, 22961])
    }
}
