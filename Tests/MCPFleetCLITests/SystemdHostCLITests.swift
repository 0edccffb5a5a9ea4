import FleetTesting
import Foundation
import Testing

/// `mcpfleet apply`, `plan` and `status` against a systemd host environment, with the built binary
/// running inside a real systemd sandbox (as it would on a host), driving real units that run the
/// official Swift SDK's MCP server.
@Suite(.serialized) struct SystemdHostCLITests {
    func catalog(replicas: Int, binary: String) -> String {
        """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: platform}
        spec: {quota: {cpu: "2", memory: 1Gi, tasks: 256}}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: host}
        spec:
          driver: systemd
          portRange: 22800-22899
          stateDir: /run/mcpfleet-state
          systemd: {unitDir: /run/systemd/system}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: everything}
        spec:
          version: "0.12.1"
          tenant: platform
          artifact: {command: ["\(binary)", "--port", "${PORT}"]}
          transport: {type: streamable-http, port: 22800}
          replicas: \(replicas)
          resources: {cpu: 250m, memory: 128Mi}
          health: {probe: mcp, interval: 1s, timeout: 2s}
          rollout: {strategy: rolling, maxSurge: 1, maxUnavailable: 0}

        """
    }

    func answersInitialize(_ port: Int) throws -> Bool {
        let body = #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcpfleet-test","version":"1"}}}"#
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", "-X", "POST", "http://127.0.0.1:\(port)/mcp",
                                           "-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream", "-d", body])
        return r.stdout.contains("\"serverInfo\"")
    }

    @Test func applyPlanAndStatusAgainstAHostEnvironment() async throws {
        if let why = SystemdSandbox.unavailableReason {
            Issue.record("the systemd sandbox is unavailable: \(why)")
            return
        }
        let server = try TestEnvironment.everythingServer()
        let sandbox = try await SystemdSandbox.boot()
        defer { sandbox.shutdown() }
        let fleet = try sandbox.stage(mcpfleetBinary)
        let everything = try sandbox.stage(server)
        // The catalog lives inside the sandbox too (its /tmp is private).
        let dir = "/run/mcpfleet-catalog"
        try FileManager.default.createDirectory(atPath: sandbox.root + dir, withIntermediateDirectories: true)
        try catalog(replicas: 2, binary: everything).write(toFile: sandbox.root + dir + "/fleet.yaml", atomically: true, encoding: .utf8)

        let before = try await sandbox.run([fleet, "plan", dir, "--env", "host", "--no-color"])
        #expect(before.status == 1, "\(before.stdout)\(before.stderr)")
        #expect(before.stdout.contains("+ server everything"))

        let applied = try await sandbox.run([fleet, "apply", dir, "--env", "host", "--timeout", "90s"])
        #expect(applied.status == 0, "\(applied.stdout)\(applied.stderr.suffix(3000))")
        let units = try await sandbox.systemctl("list-units", "--plain", "--no-legend", "--state=active", "mcp-everything-*")
        #expect(units.stdout.split(separator: "\n").count == 2, "\(units.stdout)")
        for port in [22800, 22801] { #expect(try answersInitialize(port), "port \(port)") }
        let slice = try await sandbox.systemctl("show", "mcp-platform.slice", "-p", "MemoryMax", "-p", "TasksMax")
        #expect(slice.stdout.contains("TasksMax=256"), "\(slice.stdout)")

        let inSync = try await sandbox.run([fleet, "plan", dir, "--env", "host"])
        #expect(inSync.status == 0, "\(inSync.stdout)\(inSync.stderr)")
        let status = try await sandbox.run([fleet, "status", dir, "--env", "host"])
        #expect(status.stdout.contains("2/2"), "\(status.stdout)")

        // Scaling is not a rollout: a third instance joins, the first two keep running.
        try catalog(replicas: 3, binary: everything).write(toFile: sandbox.root + dir + "/fleet.yaml", atomically: true, encoding: .utf8)
        let scale = try await sandbox.run([fleet, "plan", dir, "--env", "host", "--no-color"])
        #expect(scale.status == 1 && scale.stdout.contains("↕ server everything  (replicas 2 → 3)"), "\(scale.stdout)")
        let scaled = try await sandbox.run([fleet, "apply", dir, "--env", "host", "--timeout", "90s"])
        #expect(scaled.status == 0, "\(scaled.stderr.suffix(3000))")
        for port in [22800, 22801, 22802] { #expect(try answersInitialize(port), "port \(port)") }

        // The state database is lost (truncated) while the units run: refused, naming the recovery paths.
        let backup = try await sandbox.run([fleet, "state", "backup", "/run/state-backup.db", "-C", dir, "--env", "host"])
        #expect(backup.status == 0, "\(backup.stderr)")
        let database = sandbox.root + "/run/mcpfleet-state/state.db"
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        try Data().write(to: URL(fileURLWithPath: database))
        let lost = try await sandbox.run([fleet, "status", dir, "--env", "host"])
        #expect(lost.status != 0)
        #expect(lost.stderr.contains("is missing or empty") && lost.stderr.contains("everything") && lost.stderr.contains("mcpfleet state restore")
                && lost.stderr.contains("mcpfleet state adopt"), "\(lost.stderr)")
        let refusedRun = try await sandbox.run([fleet, "run", dir, "--env", "host", "--once"])
        #expect(refusedRun.status != 0 && refusedRun.stderr.contains("is missing or empty"), "\(refusedRun.stderr.suffix(2000))")
        for port in [22800, 22801, 22802] { #expect(try answersInitialize(port), "the units kept serving: port \(port)") }
        // Restoring the backup brings the history back.
        let restored = try await sandbox.run([fleet, "state", "restore", "/run/state-backup.db", "-C", dir, "--env", "host"])
        #expect(restored.status == 0, "\(restored.stderr)")
        let history = try await sandbox.run([fleet, "history", "everything", "-C", dir, "--env", "host"])
        #expect(history.status == 0 && history.stdout.contains("0.12.1"), "\(history.stdout)\(history.stderr)")

        // Without a backup, `state adopt` is the audited way to start from empty state.
        for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
        try Data().write(to: URL(fileURLWithPath: database))
        let adopt = try await sandbox.run([fleet, "state", "adopt", "-C", dir, "--env", "host", "--reason", "disk replaced"])
        #expect(adopt.status == 0, "\(adopt.stderr)")
        let again = try await sandbox.run([fleet, "status", dir, "--env", "host"])
        #expect(again.status == 0 && again.stdout.contains("everything"), "\(again.stdout)\(again.stderr)")
        let adoptTwice = try await sandbox.run([fleet, "state", "adopt", "-C", dir, "--env", "host"])
        #expect(adoptTwice.status != 0 && adoptTwice.stderr.contains("not empty"), "\(adoptTwice.stderr)")
    }
}
