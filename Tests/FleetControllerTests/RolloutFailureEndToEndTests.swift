import FleetCore
import FleetTesting
import Foundation
import Testing

/// Issue 13, the way it was found: the built binary, the local driver, real processes on real ports.
/// Each test starts from a good release (two replicas of the Python time server) and breaks the next one.
@Suite(.serialized) struct RolloutFailureEndToEndTests {
    func good(_ version: String, deadline: String = "20s") -> ServerManifest { ServerManifest(version: version, deadline: deadline) }

    /// Starts a controller on a catalog serving `good("1")` and waits until it is stable.
    func start(_ f: FleetFixture) async throws -> TestProcess {
        try f.write([good("1")])
        let controller = try f.controller()
        try await f.waitStable("first release stable", controller: controller)
        return controller
    }

    func rollbackEntry(_ f: FleetFixture, _ revision: String) async throws -> AuditEntry? {
        try await f.history().audit.first { $0.action == "rollback" && $0.revision == revision }
    }

    @Test func unstartableRevisionsAreRolledBackAtOnceWithTheCause() async throws {
        let f = try FleetFixture("unstartable")
        defer { f.cleanUp() }
        let controller = try await start(f)
        defer { controller.signal(SIGKILL) }
        let v1 = try await f.revision()

        // A command that is not executable. Deadline 20 s; the health interval is 1 s.
        var broken = good("2")
        broken.command = #"["${MANIFEST_DIR}/time/not-executable.sh"]"#
        try f.write([broken])
        let v2 = try await f.revision()
        try await waitUntil("rollback of the unstartable revision", timeout: .seconds(30), every: .milliseconds(100)) {
            try await rollbackEntry(f, v2) != nil
        }
        let history = try await f.history()
        let start = try #require(history.audit.first { $0.action == "rollout-start" && $0.revision == v2 })
        let rollback = try #require(history.audit.first { $0.action == "rollback" && $0.revision == v2 })
        #expect(rollback.time - start.time < 2 * 1_000, "rolled back \(rollback.time - start.time) ms after it began (2 × the 1 s health interval allowed)")
        #expect(rollback.reason.contains("is not an executable file"), "\(rollback.reason)")
        let record = try #require(history.revisions.first { $0.revision == v2 })
        #expect(record.outcome == .rolledBack && record.reason?.contains("not-executable.sh is not an executable file") == true, "\(record.reason ?? "-")")
        // status: the cause in NOTES and in -o json, the old revision serving.
        try await waitUntil("status shows the rollback") { try await f.server()?.phase == .rolledBack }
        let s = try #require(try await f.server())
        #expect(s.message?.contains("is not an executable file") == true, "\(s.message ?? "-")")
        #expect(s.servingRevision?.revision == v1 && s.readyReplicas == 2)
        let text = try await f.fleet(["status", f.dir])
        #expect(text.out.contains("rolled-back") && text.out.contains("not-executable.sh is not an executable file"), "\(text.out)")
        let historyText = try await f.fleet(["history", "time", "-C", f.dir])
        #expect(historyText.out.contains("rolled-back") && historyText.out.contains("is not an executable file"), "\(historyText.out)")
        // The controller's log says it at warning level.
        #expect(controller.logLines.contains { ($0["level"] as? String) == "warning" && "\($0)".contains("is not an executable file") })

        // A missing secret: the same, at once.
        var secretless = good("3")
        secretless.extra = "  env:\n    - name: API_TOKEN\n      secretRef: {name: api, key: token}"
        try f.write([secretless])
        let v3 = try await f.revision()
        try await waitUntil("rollback of the revision without its secret", timeout: .seconds(30), every: .milliseconds(100)) {
            try await rollbackEntry(f, v3) != nil
        }
        let again = try await f.history()
        let start3 = try #require(again.audit.first { $0.action == "rollout-start" && $0.revision == v3 })
        let rollback3 = try #require(again.audit.first { $0.action == "rollback" && $0.revision == v3 })
        #expect(rollback3.time - start3.time < 2 * 1_000)
        #expect(rollback3.reason.contains("api/token not found"), "\(rollback3.reason)")

        // Nothing repeats afterwards: many more reconciles (debug "step" lines), not one more audit row.
        let rows = again.audit.count
        let steps = controller.logLines.filter { ($0["message"] as? String) == "step" }.count
        try await waitUntil("more reconciles", timeout: .seconds(60), every: .milliseconds(200)) {
            controller.logLines.filter { ($0["message"] as? String) == "step" }.count > steps + 20
        }
        let after = try await f.history().audit
        #expect(after.count == rows, "audit grew by \(after.count - rows): \(after.suffix(after.count - rows).map { "\($0.action) \($0.outcome)" })")
        // Each distinct failure is one row.
        let errors = after.filter { $0.outcome.hasPrefix("error") }
        #expect(Set(errors.map(\.outcome)).count == errors.count, "\(errors.map(\.outcome))")
        #expect(f.serverProcesses().count == 2)

        // The secret file is added; `resume --retry` rolls the same revision out again, and it starts.
        try FileManager.default.createDirectory(atPath: f.root + "/secrets/api", withIntermediateDirectories: true)
        try Data("t0ken\n".utf8).write(to: URL(fileURLWithPath: f.root + "/secrets/api/token"))
        let resumed = try await f.fleet(["resume", "time", "-C", f.dir, "--retry"])
        #expect(resumed.status == 0, "\(resumed.out)")
        try await waitUntil("the retried revision promoted", timeout: .seconds(90), every: .milliseconds(250)) {
            try await f.history().revisions.first { $0.revision == v3 }?.outcome == .promoted
        }
        #expect(try await f.server()?.servingRevision?.revision == v3)
    }

    @Test func aForeignListenerOnTheReplicasPortFailsItAndTheOldRevisionKeepsServing() async throws {
        let f = try FleetFixture("foreign")
        defer { f.cleanUp() }
        let controller = try await start(f)
        defer { controller.signal(SIGKILL) }
        let v1 = try await f.revision()
        let ours = f.serverProcesses()
        #expect(ours.count == 2)
        // The slot the next revision's first instance takes (port + 2) is held by a real MCP server with
        // the same tools: a probe there would pass.
        let foreignPort = f.basePort + 2
        let foreign = try await TestEnvironment.startMCPServer("time", port: foreignPort)
        defer { foreign.signal(SIGKILL) }

        let sampler = Task {
            var low: [String] = []
            while !Task.isCancelled {
                if let s = try? await f.server(), let serving = s.revisions.first(where: { $0.revision == v1 }), serving.ready < 2 {
                    low.append("\(s.revisions.map { "\($0.revision):\($0.ready)/\($0.replicas)" })")
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
            return low
        }
        try f.write([good("2")])
        let v2 = try await f.revision()
        try await waitUntil("rollback", timeout: .seconds(60), every: .milliseconds(200)) { try await rollbackEntry(f, v2) != nil }
        let rollback = try #require(try await rollbackEntry(f, v2))
        #expect(rollback.reason.contains("port \(foreignPort) is already in use by pid \(foreign.pid)"), "\(rollback.reason)")
        // The revision never counted as ready; the old one served throughout with its own processes.
        #expect(try await f.history().audit.contains { $0.action == "rollout-complete" && $0.revision == v2 } == false)
        try await waitUntil("old revision alone") { try await f.server()?.revisions.filter { $0.replicas > 0 }.map(\.revision) == [v1] }
        sampler.cancel()
        let low = await sampler.value
        #expect(low.isEmpty, "the old revision dropped below 2 ready: \(low.prefix(5))")
        #expect(f.serverProcesses().map(\.pid) == ours.map(\.pid))
        let s = try #require(try await f.server())
        #expect(s.lastGoodRevision == v1 && s.failedRevisions == [v2])

        // A silent listener (accepts, never answers) is no more a replica than a real server.
        foreign.signal(SIGKILL)
        _ = try await foreign.wait(timeout: .seconds(10))
        let silent = try TestProcess("/usr/bin/env", ["python3", f.dir + "/time/hang.py", String(foreignPort)])
        defer { silent.signal(SIGKILL) }
        try await waitUntil("silent listener") { TestEnvironment.isListening(foreignPort) }
        try f.write([good("3")])
        let v3 = try await f.revision()
        // While it tries, status says why (never an empty note).
        try await waitUntil("status names the holder", timeout: .seconds(30), every: .milliseconds(200)) {
            let text = try await f.fleet(["status", f.dir]).out
            return text.contains("port \(foreignPort) is already in use by pid \(silent.pid)")
        }
        try await waitUntil("rollback", timeout: .seconds(60), every: .milliseconds(200)) { try await rollbackEntry(f, v3) != nil }
        #expect(try await rollbackEntry(f, v3)?.reason.contains("port \(foreignPort) is already in use by pid \(silent.pid)") == true)
        #expect(f.serverProcesses().map(\.pid) == ours.map(\.pid))
    }

    @Test func probeFailuresHangsAndCrashLoopsSayWhyEverywhere() async throws {
        let f = try FleetFixture("reasons")
        defer { f.cleanUp() }
        let controller = try await start(f)
        defer { controller.signal(SIGKILL) }

        // 1. The probe's own message: a required tool the server lacks.
        var tools = good("2", deadline: "6s")
        tools.requireTools = "[now, echo]"
        try f.write([tools])
        let v2 = try await f.revision()
        try await waitUntil("status shows the probe failure", timeout: .seconds(30), every: .milliseconds(200)) {
            try await f.server()?.message?.contains("required tool(s) missing: echo") == true
        }
        try await waitUntil("rollback", timeout: .seconds(60), every: .milliseconds(200)) { try await rollbackEntry(f, v2) != nil }
        #expect(try await rollbackEntry(f, v2)?.reason.contains("required tool(s) missing: echo") == true)
        #expect(try await f.history().revisions.first { $0.revision == v2 }?.reason?.contains("required tool(s) missing: echo") == true)
        #expect(controller.logLines.contains { ($0["level"] as? String) == "warning" && "\($0)".contains("required tool(s) missing: echo") })

        // 2. Listening is not ready: a release that accepts connections and never answers `initialize`.
        var hung = good("3", deadline: "8s")
        hung.command = #"["python3", "${MANIFEST_DIR}/time/hang.py", "${PORT}"]"#
        try f.write([hung])
        let v3 = try await f.revision()
        try await waitUntil("the hung instance is probed and not ready", timeout: .seconds(30), every: .milliseconds(200)) {
            guard let s = try await f.server(), let r = s.revisions.first(where: { $0.revision == v3 }), r.replicas > 0 else { return false }
            return r.instances?.contains { !$0.healthy && ($0.reason ?? "").contains("probe failed") } == true
        }
        try await f.statusValidatesAgainstTheSchema()
        let during = try #require(try await f.server())
        #expect(during.revisions.first { $0.revision == v3 }?.ready == 0)
        #expect(during.readyReplicas == 2, "READY counts only instances that pass the MCP probe: \(during.revisions.map { "\($0.ready)/\($0.replicas) \(($0.instances ?? []).map { "\($0.id) \($0.healthy) \($0.reason ?? "")" })" })")
        try await waitUntil("rollback", timeout: .seconds(60), every: .milliseconds(200)) { try await rollbackEntry(f, v3) != nil }
        let hungReason = try #require(try await rollbackEntry(f, v3)?.reason)
        #expect(hungReason.contains("progress deadline") && hungReason.contains("probe failed"), "\(hungReason)")

        // 3. A crash loop fails before its (long) deadline, with the exit status and the last log line.
        var crash = good("4", deadline: "5m")
        crash.command = #"["python3", "${MANIFEST_DIR}/time/crash.py", "--port", "${PORT}"]"#
        try f.write([crash])
        let v4 = try await f.revision()
        let began = ContinuousClock.now
        try await waitUntil("status shows the exit status under a running controller", timeout: .seconds(60), every: .milliseconds(200)) {
            try await f.fleet(["status", f.dir, "-o", "json"]).out.contains("exited with status 2")
        }
        #expect(try await f.fleet(["status", f.dir, "-o", "json"]).out.contains("no controller is supervising") == false)
        try await f.statusValidatesAgainstTheSchema()
        try await waitUntil("rollback of the crash loop", timeout: .seconds(90), every: .milliseconds(200)) { try await rollbackEntry(f, v4) != nil }
        #expect(ContinuousClock.now - began < .seconds(60))
        let crashReason = try #require(try await rollbackEntry(f, v4)?.reason)
        #expect(crashReason.contains("crash-looping") && crashReason.contains("exited with status 2") && crashReason.contains("boom: cannot load /etc/time.conf"),
                "\(crashReason)")
        let text = try await f.fleet(["history", "time", "-C", f.dir]).out
        #expect(text.contains("boom: cannot load /etc/time.conf"), "\(text)")
        #expect(try await f.server()?.readyReplicas == 2)
    }

    @Test func rollbackRespectsTheGatesUnlessForced() async throws {
        let f = try FleetFixture("gates")
        defer { f.cleanUp() }
        let controller = try await start(f)
        defer { controller.signal(SIGKILL) }
        // A revision that failed its rollout is refused as a rollback target.
        var broken = good("2")
        broken.command = #"["${MANIFEST_DIR}/time/not-executable.sh"]"#
        try f.write([broken])
        let v2 = try await f.revision()
        try await waitUntil("rollback", timeout: .seconds(30), every: .milliseconds(100)) { try await rollbackEntry(f, v2) != nil }
        let refused = try await f.fleet(["rollback", "time", "-C", f.dir, "--to", v2])
        #expect(refused.status == 2 && refused.out.contains("not pinning time to \(v2): revision \(v2) failed its rollout"), "\(refused.out)")

        // A revision policy blocks: held, recorded as blocked, and refused as a pin unless forced.
        let policy = """
            apiVersion: mcpfleet.io/v1alpha1
            kind: Policy
            metadata:
              name: sbom-required
            spec:
              mode: enforce
              environments: [dev]
              requireSBOM: true
            """
        try f.write([good("3")], documents: policy)
        let v3 = try await f.revision()
        try await waitUntil("blocked revision recorded", timeout: .seconds(30), every: .milliseconds(200)) {
            try await f.history().revisions.contains { $0.revision == v3 && $0.outcome == .blocked }
        }
        let held = try await f.server()?.message ?? ""
        #expect(held.contains("revision \(v3) is blocked by policy") && held.contains("no SBOM"), "\(held)")
        let blocked = try await f.fleet(["rollback", "time", "-C", f.dir, "--to", v3])
        #expect(blocked.status == 2 && blocked.out.contains("is blocked by policy") && blocked.out.contains("no SBOM"), "\(blocked.out)")
        #expect(try await f.server()?.revisions.contains { $0.revision == v3 && $0.replicas > 0 } == false)
        let forced = try await f.fleet(["rollback", "time", "-C", f.dir, "--to", v3, "--force"])
        #expect(forced.status == 0 && forced.out.contains("Pinned time to revision \(v3) (forced: revision \(v3) is blocked by policy"), "\(forced.out)")
        let pin = try #require(try await f.history().audit.last { $0.action == "pin" })
        #expect(pin.revision == v3 && pin.reason.contains("manual rollback forced past a gate: revision \(v3) is blocked by policy"), "\(pin.reason)")
        try await waitUntil("the forced pin is deployed", timeout: .seconds(60), every: .milliseconds(200)) {
            let s = try await f.server()
            return s?.servingRevision?.revision == v3 && s?.readyReplicas == 2 && s?.pinForced == true
        }
        #expect(try await f.fleet(["status", f.dir]).out.contains("pinned \(v3) (forced)"))
    }
}
