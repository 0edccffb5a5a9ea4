import FleetTesting
import Foundation
import Testing

/// The example catalog in Manifests/ under the controller with the local driver, end to end from the
/// built binary: the quick start's fleet, exercised the way an operator would.
@Suite(.serialized) struct ExampleFleetCLITests {

    /// POSTs an MCP `initialize` and reports whether a JSON-RPC result came back (JSON or SSE).
    func answersInitialize(_ port: Int) throws -> Bool {
        let body = #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcpfleet-test","version":"1"}}}"#
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", "-X", "POST", "http://127.0.0.1:\(port)/mcp",
                                           "-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream", "-d", body])
        return r.stdout.contains("\"serverInfo\"")
    }

    /// Pids of the fleet's processes listening on the example ports, found through /proc.
    func fleetPids(_ catalog: String) throws -> [Int32] {
        let r = try run("/usr/bin/pgrep", ["-f", "(mcp-everything-server|time/server.py) --port 18[12][0-9][0-9]"])
        return r.stdout.split(separator: "\n").compactMap { Int32($0) }
    }

    @Test func exampleFleetRunsRollsHealsAndStops() async throws {
        let server = try TestEnvironment.everythingServer()
        let dir = try makeTempDirectory("example-fleet")
        try FileManager.default.copyItem(atPath: packageRoot + "/Manifests", toPath: dir + "/Manifests")
        let path = (URL(fileURLWithPath: server).deletingLastPathComponent().path) + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        func fleet(_ args: String...) throws -> RunResult { try run(mcpfleetBinary, args, cwd: dir, environment: ["PATH": path]) }
        // The ports of running instances, as `status -o json` reports them (rollouts move replicas between port slots).
        func ports() throws -> [Int] {
            let status = try fleet("status", "Manifests", "--env", "local", "-o", "json")
            let live = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            let servers = live?["servers"] as? [[String: Any]] ?? []
            return servers.flatMap { ($0["revisions"] as? [[String: Any]] ?? []).flatMap { $0["instances"] as? [[String: Any]] ?? [] } }
                .filter { $0["state"] as? String == "running" }.compactMap { $0["port"] as? Int }.sorted()
        }
        defer { _ = Result { try fleet("stop", "Manifests", "--env", "local") } }

        // Up: every replica of both real MCP servers answers initialize.
        let up = try fleet("run", "Manifests", "--env", "local", "--once", "--timeout", "120s", "--metrics-address", "")
        #expect(up.status == 0, "\(up.all.suffix(3000))")
        #expect(try ports() == [18100, 18101, 18200, 18201])
        for port in try ports() { #expect(try answersInitialize(port), "port \(port)") }
        #expect(try fleetPids(dir).count == 4)

        // A change rolls out: a new revision replaces the old one, and the fleet still answers.
        let file = dir + "/Manifests/servers/everything.yaml"
        let text = try String(contentsOfFile: file, encoding: .utf8)
        try text.replacingOccurrences(of: "memory: 128Mi", with: "memory: 160Mi").write(toFile: file, atomically: true, encoding: .utf8)
        let plan = try fleet("plan", "Manifests", "--env", "local")
        #expect(plan.status == 1 && plan.stdout.contains("~ server everything"), "\(plan.all)")
        let rolled = try fleet("run", "Manifests", "--env", "local", "--once", "--timeout", "120s", "--metrics-address", "")
        #expect(rolled.status == 0, "\(rolled.all.suffix(3000))")
        #expect(try fleet("plan", "Manifests", "--env", "local").status == 0)
        let history = try fleet("history", "everything", "-C", "Manifests", "--env", "local")
        #expect(history.stdout.contains("superseded"), "\(history.all)")
        #expect(try ports().count == 4)
        for port in try ports() { #expect(try answersInitialize(port), "port \(port)") }

        // A killed replica is replaced under the controller; a restarted controller adopts, never duplicates.
        let before = try fleetPids(dir)
        #expect(before.count == 4)
        let victim = try #require(before.first)
        kill(victim, SIGKILL)
        let healed = try fleet("run", "Manifests", "--env", "local", "--once", "--timeout", "120s", "--metrics-address", "")
        #expect(healed.status == 0, "\(healed.all.suffix(3000))")
        try await waitUntil("all four replicas answering", timeout: .seconds(60), every: .milliseconds(250)) {
            let p = try ports()
            guard p.count == 4 else { return false }
            return try p.allSatisfy(answersInitialize)
        }
        let served = try ports()
        let after = try fleetPids(dir)
        #expect(after.count == 4, "duplicates or missing replicas: \(after)")
        #expect(!after.contains(victim))
        #expect(Set(after).intersection(before).count == 3, "the surviving replicas were adopted, not restarted")

        // Stop: nothing left running.
        let stopped = try fleet("stop", "Manifests", "--env", "local")
        #expect(stopped.status == 0, "\(stopped.all)")
        #expect(try fleetPids(dir).isEmpty)
        for port in served { #expect(!(try answersInitialize(port)), "port \(port) still answers") }
    }
}
