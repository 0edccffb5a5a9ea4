import FleetCore
import FleetSystemd
import FleetTesting
import Foundation
import Testing

/// What `observe` costs on a real systemd (in FleetTesting's sandbox): one batched `systemctl show` per
/// full read, nothing for a settled server, one targeted read for a server the driver just changed.
@Suite(.serialized, .enabled(if: SystemdSandbox.unavailableReason == nil, "needs root to boot systemd in a sandbox (CI runs as root)"))
struct SystemdObserveTests {
    @Test func oneBatchedReadPerResyncNoneForASettledServerOneForAChangedOne() async throws {
        let sandbox = try await SystemdSandbox.boot()
        defer { sandbox.shutdown() }
        let driver = try SystemdDriver(environment: Fixtures.environment(), manifestRoot: "/srv",
                                       runner: NsenterCommandRunner(pid: sandbox.pid), fileSystemRoot: sandbox.root)
        // Each instance holds its own port (endpoints are only instances whose unit holds theirs).
        let listen = ["/usr/bin/python3", "-c",
                      "import socket, sys, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8); time.sleep(1e9)",
                      "${PORT}"]
        let a = try Fixtures.server(name: "a", command: listen, port: 22600, replicas: 2)
        let b = try Fixtures.server(name: "b", command: listen, port: 22610)
        let ab = try Fixtures.server(name: "a-b", command: listen, port: 22620)  // its units match `mcp-a-*`, not `mcp-a-<12>@`
        try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(a, replicas: 2), .scale(b, replicas: 1), .scale(ab, replicas: 1)])
        try await waitUntil("everything running", timeout: .seconds(20), every: .milliseconds(100)) {
            try await driver.observe(.all).servers.map(\.readyReplicas) == [2, 1, 1]
                && [22600, 22601, 22610, 22620].allSatisfy(TestEnvironment.isListening)
        }

        // A full read: one command, whatever the number of units.
        var count = await driver.systemctlCount
        let all = try await driver.observe(.all)
        #expect(await driver.systemctlCount == count + 1)
        #expect(all.servers.map(\.name) == ["a", "a-b", "b"])

        // Settled servers are answered from that read.
        count = await driver.systemctlCount
        for _ in 0..<20 {
            for name in ["a", "a-b", "b", "absent"] {
                #expect(try await driver.observe(.server(name)) == all.scoped(to: .server(name)), "\(name)")
            }
            #expect(try await driver.endpoints(server: "a", revision: a.revision).map(\.port) == [22600, 22601])
        }
        #expect(await driver.systemctlCount == count)

        // The driver's own change marks its server: its next observe reads that server's units only.
        try await driver.scale(a, replicas: 3)
        count = await driver.systemctlCount
        let scoped = try await driver.observe(.server("a"))
        #expect(await driver.systemctlCount == count + 1)
        #expect(scoped.server("a")?.totalReplicas == 3)
        #expect(try await driver.observe(.server("a-b")) == all.scoped(to: .server("a-b")))
        #expect(try await driver.observe(.server("b")) == all.scoped(to: .server("b")))
        #expect(await driver.systemctlCount == count + 1)
        try await waitUntil("the third instance running", timeout: .seconds(20), every: .milliseconds(100)) {
            try await driver.observe(.server("a")).server("a")?.readyReplicas == 3 && TestEnvironment.isListening(22602)
        }
        #expect(try await driver.endpoints(server: "a", revision: a.revision).map(\.port) == [22600, 22601, 22602])

        // Scoped reads agree with a full one.
        let full = try await driver.observe(.all)
        for name in ["a", "a-b", "b"] { #expect(try await driver.observe(.server(name)) == full.scoped(to: .server(name)), "\(name)") }

        // A change from outside the driver reaches a settled server at the next full read (the resync).
        _ = try await sandbox.systemctl("stop", "mcp-b-\(b.revision)@0.service")
        #expect(try await driver.observe(.server("b")).server("b")?.readyReplicas == 1)
        #expect(try await driver.observe(.all).server("b")?.readyReplicas == 0)
        #expect(try await driver.observe(.server("b")).server("b")?.readyReplicas == 0)
    }
}
