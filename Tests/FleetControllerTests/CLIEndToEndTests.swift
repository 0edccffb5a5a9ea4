import FleetCore
import FleetTesting
import Foundation
import Testing

// The built `mcpfleet` binary with the real local driver and the repository's Python MCP time server:
// rollouts promoted and rolled back, and the controller SIGKILLed at random moments of rollouts.

/// A throwaway catalog: one local environment, the time server at `version` (`bad`: it requires a tool the
/// server lacks, so its instances never pass the MCP probe).
struct TestCatalog {
    let root: String
    let basePort: Int

    init() throws {
        root = NSTemporaryDirectory() + "mcpfleet-e2e-\(UUID().uuidString.prefix(8))"
        basePort = 20_000 + Int.random(in: 0..<400) * 10
        try FileManager.default.createDirectory(atPath: root + "/cat/time", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestEnvironment.repositoryRoot() + "/Manifests/servers/time/server.py", toPath: root + "/cat/time/server.py")
    }

    var dir: String { root + "/cat" }

    /// `pause`: the canary step's; `arguments`: appended to the server's command line.
    func write(version: String, bad: Bool = false, strategy: String = "rolling", replicas: Int = 2, deadline: String = "8s",
               pause: String = "300ms", arguments: [String] = []) throws {
        let tools = bad ? "[now, weather]" : "[now, convert]"
        let rollout = strategy == "canary"
            ? "strategy: canary\n    steps:\n      - replicas: 1\n        pause: \(pause)\n    progressDeadline: \(deadline)"
            : "strategy: \(strategy)\n    maxSurge: 1\n    maxUnavailable: 0\n    progressDeadline: \(deadline)"
        let yaml = """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata:
          name: dev
        spec:
          driver: local
          portRange: \(basePort)-\(basePort + 9)
          stateDir: \(root)/state
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata:
          name: research
        spec:
          isolation: shared
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata:
          name: time
        spec:
          version: "\(version)"
          tenant: research
          artifact:
            command: ["python3", "${MANIFEST_DIR}/time/server.py", "--port", "${PORT}"\(arguments.map { ", \"\($0)\"" }.joined())]
          transport:
            type: streamable-http
            port: \(basePort)
            path: /mcp
          replicas: \(replicas)
          health:
            probe: mcp
            interval: 300ms
            timeout: 2s
            failureThreshold: 2
            requireTools: \(tools)
          rollout:
            \(rollout)

        """
        try yaml.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
    }

    /// Runs `mcpfleet ARGS` to completion (bounded) and returns its exit status and standard output.
    @discardableResult
    func fleet(_ args: [String], timeout: Duration = .seconds(120)) async throws -> (status: Int32, out: String) {
        try await runFleet(args, timeout: timeout)
    }

    func live() async throws -> LiveServer? {
        let p = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["status", dir, "-o", "json"])
        _ = try await p.wait(timeout: .seconds(30))
        guard let start = p.output.firstIndex(of: "{") else { return nil }
        let state = try JSONDecoder().decode(LiveState.self, from: Data(p.output[start...].utf8))
        return state.server("time")
    }

    /// Processes of this catalog's servers (by their command line), with their ports.
    func serverProcesses() -> [(pid: Int32, port: String)] { catalogServerProcesses(root: root) }

    func cleanUp() {
        for p in serverProcesses() { kill(p.pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

@Suite(.serialized) struct CLIEndToEndTests {
    @Test func goodVersionPromotedBadVersionRolledBackAndStays() async throws {
        let c = try TestCatalog()
        defer { c.cleanUp() }
        try c.write(version: "1.0", strategy: "canary")
        var r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        #expect(r.status == 0, "\(r.out)")
        let first = try await c.live()
        #expect(first?.phase == .stable && first?.readyReplicas == 2)

        try c.write(version: "1.1", strategy: "canary")
        r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        #expect(r.status == 0, "\(r.out)")
        let promoted = try await c.live()
        #expect(promoted?.revisions.filter { $0.replicas > 0 }.map(\.version) == ["1.1"])
        #expect(promoted?.lastGoodRevision == promoted?.servingRevision?.revision)

        try c.write(version: "1.2", bad: true, strategy: "canary", deadline: "4s")
        r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        #expect(r.status == 0, "\(r.out)")
        let rolledBack = try await c.live()
        #expect(rolledBack?.phase == .rolledBack)
        #expect(rolledBack?.revisions.filter { $0.replicas > 0 }.map(\.version) == ["1.1"])
        #expect(rolledBack?.failedRevisions.count == 1)
        // Stays rolled back: another pass does not try 1.2 again.
        r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        let again = try await c.live()
        #expect(again?.revisions.filter { $0.replicas > 0 }.map(\.version) == ["1.1"])
        let history = try await c.fleet(["history", "time", "-C", c.dir])
        #expect(history.out.contains("rolled-back") && history.out.contains("promoted"))
        #expect(c.serverProcesses().count == 2)
    }

    /// SIGKILL the controller at random moments of rollouts, restart it, and check it always converges,
    /// never with fewer ready instances than allowed nor more instances than allowed, never duplicates.
    @Test func killNineDuringRolloutsAlwaysConverges() async throws {
        let c = try TestCatalog()
        defer { c.cleanUp() }
        try c.write(version: "0")
        let r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        #expect(r.status == 0, "\(r.out)")

        let violations = Violations()
        let sampler = Task {
            while !Task.isCancelled {
                // Bookkeeping: never more instances than replicas + maxSurge (3) recorded.
                if let s = try? await c.live(), s.totalReplicas > 3 {
                    await violations.add("\(s.totalReplicas) instances exist (max 3): \(s.revisions.map { "\($0.revision):\($0.replicas)/\($0.ready)" })")
                }
                // What actually serves: at least replicas − maxUnavailable (2) ports answering, at most 3 instances.
                let ports = Set(c.serverProcesses().map(\.port))
                let serving = ports.filter { TestEnvironment.isListening(Int($0) ?? 0) }
                if serving.count < 2 { await violations.add("only \(serving.count) instances serving: \(serving.sorted())") }
                if ports.count > 3 { await violations.add("\(ports.count) instances running: \(ports.sorted())") }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        let trials = 20
        for trial in 1...trials {
            try c.write(version: "\(trial)")
            let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--no-stop-on-exit", "--metrics-address", "", "--poll", "100ms"])
            try await Task.sleep(for: .milliseconds(Int.random(in: 50...2500)))
            controller.signal(SIGKILL)
            _ = try await controller.wait(timeout: .seconds(10))
        }
        // A last controller, left to finish.
        let final = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "90s"])
        sampler.cancel()
        _ = await sampler.value
        #expect(final.status == 0, "\(final.out)")
        let s = try await c.live()
        #expect(s?.phase == .stable)
        #expect(s?.revisions.filter { $0.replicas > 0 }.map(\.version) == ["\(trials)"])
        #expect(s?.readyReplicas == 2)
        #expect(c.serverProcesses().count == 2, "\(c.serverProcesses())")
        let v = await violations.all
        #expect(v.isEmpty, "\(v.prefix(10))")
    }
}

actor Violations {
    var all: [String] = []
    func add(_ s: String) { all.append(s) }
}
