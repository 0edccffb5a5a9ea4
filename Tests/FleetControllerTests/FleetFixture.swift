import FleetCore
import FleetTesting
import Foundation
import Testing

/// One server of a throwaway catalog, as the YAML a user writes.
struct ServerManifest {
    var name = "time"
    var version: String
    /// A YAML flow list.
    var command = #"["python3", "${MANIFEST_DIR}/time/server.py", "--port", "${PORT}"]"#
    var port: Int? = nil
    var replicas = 2
    var interval = "1s"
    var timeout = "1s"
    var requireTools = "[now, convert]"
    var rollout = "strategy: rolling\n    maxSurge: 1\n    maxUnavailable: 0"
    var deadline = "20s"
    /// Extra `spec` lines (indented two spaces), e.g. env or slo.
    var extra = ""
}

/// A catalog in a temporary directory (the repository's Python time server plus a few broken ones),
/// driven through the built `mcpfleet` binary, with the local driver.
struct FleetFixture {
    let root: String
    let basePort: Int

    init(_ label: String) throws {
        root = NSTemporaryDirectory() + "mcpfleet-\(label)-\(UUID().uuidString.prefix(8))"
        basePort = 23_000 + Int.random(in: 0..<300) * 20
        let dir = root + "/cat/time"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: TestEnvironment.repositoryRoot() + "/Manifests/servers/time/server.py", toPath: dir + "/server.py")
        // Listens on its port and accepts connections, but never answers (a hung server).
        try Data("""
        import socket, sys, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
        held = []
        while True:
            c, _ = s.accept(); held.append(c)
        """.utf8).write(to: URL(fileURLWithPath: dir + "/hang.py"))
        // A release that fails at start-up, saying why on its output.
        try Data("import sys\nprint('boom: cannot load /etc/time.conf', flush=True)\nsys.exit(2)\n".utf8).write(to: URL(fileURLWithPath: dir + "/crash.py"))
        // A file the release names as its command, without the executable bit.
        try Data("#!/bin/sh\nexec python3 server.py\n".utf8).write(to: URL(fileURLWithPath: dir + "/not-executable.sh"))
    }

    var dir: String { root + "/cat" }
    var stateDirectory: String { root + "/state" }

    /// `documents`: more YAML documents (policies, …) appended to the catalog.
    /// `environment`: more keys of the Environment's spec (indented two spaces).
    func write(_ servers: [ServerManifest], restartBackoff: String = "1s", documents: String = "", environment: String = "") throws {
        var yaml = """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata:
          name: dev
        spec:
          driver: local
          portRange: \(basePort)-\(basePort + 19)
          stateDir: \(stateDirectory)
          secretsDir: \(root)/secrets
          local:
            restartBackoff: \(restartBackoff)
        \(environment)
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata:
          name: research
        spec:
          isolation: shared
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: SLO
        metadata:
          name: probed
        spec:
          successRate: "90%"
          analysis:
            provider: probe
            interval: 1s
            count: 5
            failureLimit: 2

        """
        for s in servers {
            yaml += """
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Server
            metadata:
              name: \(s.name)
            spec:
              version: "\(s.version)"
              tenant: research
              artifact:
                command: \(s.command)
              transport:
                type: streamable-http
                port: \(s.port ?? basePort)
                path: /mcp
              replicas: \(s.replicas)
              health:
                probe: mcp
                interval: \(s.interval)
                timeout: \(s.timeout)
                failureThreshold: 2
                requireTools: \(s.requireTools)
              rollout:
                \(s.rollout)
                progressDeadline: \(s.deadline)
            \(s.extra)

            """
        }
        if !documents.isEmpty { yaml += "---\n" + documents + "\n" }
        try yaml.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
    }

    /// Runs `mcpfleet ARGS` to completion (bounded).
    @discardableResult
    func fleet(_ args: [String], timeout: Duration = .seconds(120)) async throws -> (status: Int32, out: String) {
        try await runFleet(args, timeout: timeout)
    }

    /// The long-running controller (JSON logs at debug level, so tests can follow its steps).
    func controller(_ extra: [String] = []) throws -> TestProcess {
        try TestProcess(try TestEnvironment.mcpfleetBinary(),
                        ["run", dir, "--no-stop-on-exit", "--metrics-address", "", "--poll", "100ms", "--resync", "2s", "--log-level", "debug"] + extra)
    }

    func status() async throws -> LiveState {
        let p = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["status", dir, "-o", "json"])
        let code = try await p.wait(timeout: .seconds(30))
        guard code == 0, let start = p.output.firstIndex(of: "{") else { throw TestFailure("status failed (\(code)): \(p.output)") }
        return try JSONDecoder().decode(LiveState.self, from: Data(p.output[start...].utf8))
    }

    func server(_ name: String = "time") async throws -> LiveServer? { try await status().server(name) }

    /// Waits (90 s) until `name` is stable with `replicas` ready, failing at once with the controller's
    /// output if it exits meanwhile.
    func waitStable(_ what: String, controller: TestProcess, replicas: Int = 2, name: String = "time") async throws {
        try await waitUntil(what, timeout: .seconds(90), every: .milliseconds(200)) {
            if !controller.isRunning { throw TestFailure("controller exited: \(controller.output.suffix(2000))") }
            let s = try await server(name)
            return s?.phase == .stable && s?.readyReplicas == replicas
        }
    }

    /// `status -o json` checked against Schemas/live-state.schema.json by Python's jsonschema.
    func statusValidatesAgainstTheSchema() async throws {
        let out = try await fleet(["status", dir, "-o", "json"]).out
        try out.write(toFile: root + "/status.json", atomically: true, encoding: .utf8)
        let check = try TestProcess("/usr/bin/env", ["python3", "-c", """
            import json, sys
            from jsonschema import Draft202012Validator
            schema = json.load(open(sys.argv[1])); doc = json.load(open(sys.argv[2]))
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(doc)]
            print("\\n".join(errors)); sys.exit(1 if errors else 0)
            """, TestEnvironment.repositoryRoot() + "/Schemas/live-state.schema.json", root + "/status.json"])
        guard try await check.wait() == 0 else { throw TestFailure("status -o json does not match the schema: \(check.output)") }
    }

    struct History: Decodable {
        var revisions: [RevisionRecord]
        var audit: [AuditEntry]
    }

    func history(_ name: String = "time") async throws -> History {
        let p = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["history", name, "-C", dir, "-o", "json", "--limit", "10000"])
        let code = try await p.wait(timeout: .seconds(30))
        guard code == 0, let start = p.output.firstIndex(of: "{") else { throw TestFailure("history failed (\(code)): \(p.output)") }
        return try JSONDecoder().decode(History.self, from: Data(p.output[start...].utf8))
    }

    /// The revision a catalog of `servers` renders for `name` (what `plan -o json` calls it).
    func revision(_ name: String = "time") async throws -> String {
        let r = try await fleet(["plan", dir, "-o", "json"])
        guard let start = r.out.firstIndex(of: "{"),
              let plan = try JSONSerialization.jsonObject(with: Data(r.out[start...].utf8)) as? [String: Any],
              let desired = plan["desired"] as? [String: Any], let servers = desired["servers"] as? [[String: Any]],
              let rev = servers.first(where: { $0["name"] as? String == name })?["revision"] as? String else {
            throw TestFailure("no revision for \(name) in the plan: \(r.out.prefix(400))")
        }
        return rev
    }

    /// Server processes started from this catalog (by command line), with their ports.
    func serverProcesses() -> [(pid: Int32, port: String)] { catalogServerProcesses(root: root) }

    func cleanUp() {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            if String(decoding: data, as: UTF8.self).contains(root) { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// Runs `mcpfleet ARGS` to completion (bounded): its exit status and output.
func runFleet(_ args: [String], timeout: Duration) async throws -> (status: Int32, out: String) {
    let p = try TestProcess(try TestEnvironment.mcpfleetBinary(), args)
    let status = try await p.wait(timeout: timeout)
    return (status, p.output)
}

/// Processes running a `server.py` from under `root` (by command line), with their `--port`, by pid.
func catalogServerProcesses(root: String) -> [(pid: Int32, port: String)] {
    var found: [(pid: Int32, port: String)] = []
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
        guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
        let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        guard args.contains(where: { $0.hasPrefix(root) && $0.hasSuffix("server.py") }), let i = args.firstIndex(of: "--port"), i + 1 < args.count else { continue }
        found.append((pid: pid, port: args[i + 1]))
    }
    return found.sorted { $0.pid < $1.pid }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

extension TestProcess {
    /// Log lines (JSON objects) the controller wrote so far.
    var logLines: [[String: Any]] {
        output.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }
}
