import FleetCore
import FleetSystemd
import FleetTesting
import Foundation
import Testing

/// Benchmarks/systemd: apply N single-replica servers in one batch to a sandboxed systemd and time it
/// until all are active. Runs only with MCPFLEET_SYSTEMD_BENCH=1 (Benchmarks/systemd/run.sh sets it);
/// prints one JSON line and holds the targets: one daemon-reload, all active within 20 s.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["MCPFLEET_SYSTEMD_BENCH"] == "1", "set MCPFLEET_SYSTEMD_BENCH=1 (Benchmarks/systemd/run.sh)"))
struct SystemdBenchmarkTests {
    @Test func applyManyServersInOneBatch() async throws {
        if let why = SystemdSandbox.unavailableReason { throw FixtureError("benchmark requested but: \(why)") }
        let count = Int(ProcessInfo.processInfo.environment["MCPFLEET_SYSTEMD_BENCH_SERVERS"] ?? "") ?? 200
        let sandbox = try await SystemdSandbox.boot()
        defer { sandbox.shutdown() }
        let driver = try SystemdDriver(environment: Fixtures.environment(), manifestRoot: "/srv",
                                       runner: NsenterCommandRunner(pid: sandbox.pid), fileSystemRoot: sandbox.root)
        let tenants = try (0..<4).map { try Fixtures.tenant("bench\($0)", memoryBytes: 1 << 30, tasks: 4096) }
        let servers = try (0..<count).map { i in
            try Fixtures.server(name: "bench-\(i)", tenant: "bench\(i % 4)", command: ["/usr/bin/sleep", "infinity"], port: 22600 + i)
        }
        let clock = ContinuousClock()
        let start = clock.now
        try await driver.apply(batch: tenants.map(SystemdOperation.ensureTenant) + servers.map { .scale($0, replicas: 1) })
        let applied = clock.now - start
        var active = 0
        try await waitUntil("\(count) active", timeout: .seconds(60), every: .milliseconds(100)) {
            let r = try await sandbox.run(["systemctl", "list-units", "--plain", "--no-legend", "--state=active", "mcp-bench-*@*.service"])
            active = r.stdout.split(separator: "\n").count
            return active == count
        }
        let allActive = clock.now - start
        let observeStart = clock.now
        let live = try await driver.observe()
        let observed = clock.now - observeStart
        let reloads = await driver.reloadCount
        let calls = await driver.systemctlCount
        let secs = { (d: Duration) in Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        print(#"{"benchmark":"systemd-apply","servers":\#(count),"apply_s":\#(secs(applied)),"all_active_s":\#(secs(allActive)),"observe_s":\#(secs(observed)),"daemon_reloads":\#(reloads),"systemctl_calls":\#(calls)}"#)
        #expect(live.servers.reduce(0) { $0 + $1.readyReplicas } == count)
        #expect(reloads == 1)
        #expect(allActive < .seconds(20))

        // Removing them all is one batch too.
        let removeStart = clock.now
        try await driver.apply(batch: servers.map { .removeServer($0.name) })
        print(#"{"benchmark":"systemd-remove","servers":\#(count),"remove_s":\#(secs(clock.now - removeStart)),"daemon_reloads":\#(await driver.reloadCount - reloads)}"#)
        #expect(await driver.reloadCount == reloads + 1)
        #expect(try await driver.observe().servers.isEmpty)
    }
}
