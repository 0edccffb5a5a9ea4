import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Testing

/// Issue 17 with the built binary, the local driver and a real Python MCP server whose tools change
/// between two releases (Tests/Fixtures/contracts/versioned_server.py).
@Suite(.serialized) struct ContractEndToEndTests {
    static let fixtures = TestEnvironment.repositoryRoot() + "/Tests/Fixtures/contracts"

    func fixture(_ label: String) throws -> FleetFixture {
        let f = try FleetFixture(label)
        try FileManager.default.copyItem(atPath: Self.fixtures + "/versioned_server.py", toPath: f.dir + "/time/versioned.py")
        return f
    }

    func release(_ n: String, replicas: Int = 2, extra: String = "  contract: contracts/time.json", switchFile: String? = nil,
                 rollout: String = "strategy: rolling\n    maxSurge: 1\n    maxUnavailable: 0") -> ServerManifest {
        var s = ServerManifest(version: "\(n).0.0")
        s.command = #"["python3", "${MANIFEST_DIR}/time/versioned.py", "--port", "${PORT}", "--release", "\#(n)""# + (switchFile.map { #", "--switch", "\#($0)""# } ?? "") + "]"
        s.replicas = replicas
        s.requireTools = "[now]"
        s.rollout = rollout
        s.extra = extra
        return s
    }

    static let enforce = """
    apiVersion: mcpfleet.io/v1alpha1
    kind: Policy
    metadata:
      name: contracts
    spec:
      contracts: enforce
    """

    func git(_ args: String..., in dir: String) async throws {
        let p = try TestProcess("/usr/bin/env", ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "commit.gpgsign=false"] + args, directory: dir)
        guard try await p.wait(timeout: .seconds(30)) == 0 else { throw TestFailure("git \(args.joined(separator: " ")): \(p.output)") }
    }

    func contractFile(_ f: FleetFixture) -> String { f.dir + "/contracts/time.json" }

    /// The part of a plan that is about contracts (the rest names temporary paths and ports).
    static func section(_ out: String, format: String) throws -> String {
        switch format {
        case "json":
            let plan = try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            let contracts = try #require(plan["contracts"])
            let data = try JSONSerialization.data(withJSONObject: contracts, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            return String(decoding: data, as: UTF8.self) + "\n"
        case "markdown":
            let start = try #require(out.range(of: "**Contracts**"))
            return String(out[start.lowerBound...])
        default:
            let start = try #require(out.range(of: "Contracts:\n"))
            let rest = out[start.lowerBound...]
            let end = rest.range(of: "\n\n")?.upperBound ?? rest.endIndex
            return String(rest[..<end])
        }
    }

    @Test func pullIsByteStableAndPlanListsTheChangesBetweenTwoCommits() async throws {
        let f = try fixture("contract-plan")
        defer { f.cleanUp() }
        try f.write([release("1", extra: "  contract: contracts/time.json\n  tools:\n    deny: [legacy, \"drop_*\"]")])
        // Nothing runs: the artifact is started locally for the read, and stopped after.
        let first = try await f.fleet(["contract", "pull", "time", "-C", f.dir])
        #expect(first.status == 0, "\(first.out)")
        #expect(first.out.contains("started locally") && first.out.contains("3 tools"), "\(first.out)")
        let bytes1 = try Data(contentsOf: URL(fileURLWithPath: contractFile(f)))
        let second = try await f.fleet(["contract", "pull", "time", "-C", f.dir])
        #expect(second.status == 0, "\(second.out)")
        let bytes2 = try Data(contentsOf: URL(fileURLWithPath: contractFile(f)))
        #expect(bytes1 == bytes2, "two pulls of the same release differ")
        #expect(f.serverProcesses().isEmpty, "the locally started instance was left running: \(f.serverProcesses())")
        let contract = try ServerContract.decode(bytes1, file: "time.json")
        #expect(contract.toolNames == ["convert", "legacy", "now"] && contract.digest == ServerContract.digest(of: String(decoding: bytes1, as: UTF8.self)))

        try await git("init", "-q", "-b", "main", in: f.dir)
        try await git("add", "-A", in: f.dir)
        try await git("commit", "-q", "-m", "release 1", in: f.dir)
        try f.write([release("2", extra: "  contract: contracts/time.json\n  tools:\n    deny: [legacy, \"drop_*\"]")])
        #expect(try await f.fleet(["contract", "pull", "time", "-C", f.dir]).status == 0)
        try await git("commit", "-q", "-am", "release 2", in: f.dir)

        for (format, golden) in [("text", "plan.txt"), ("json", "plan.json"), ("markdown", "plan.md")] {
            let r = try await f.fleet(["plan", f.dir, "--against", "HEAD~1", "-o", format, "--no-color"].filter { format == "text" || $0 != "--no-color" })
            #expect(r.status == 1, "\(r.out)")
            let got = try Self.section(r.out, format: format)
            let path = Self.fixtures + "/" + golden
            if ProcessInfo.processInfo.environment["UPDATE_GOLDENS"] != nil { try got.write(toFile: path, atomically: true, encoding: .utf8) }
            let want = try String(contentsOfFile: path, encoding: .utf8)
            #expect(got == want, "plan -o \(format) differs from \(golden):\n\(got)")
        }
        // A plan against the same commit lists no contract change.
        let same = try await f.fleet(["plan", f.dir, "--against", "HEAD", "--no-color"])
        #expect(!same.out.contains("BREAKING"), "\(same.out)")
    }

    @Test func anEnforcedCanaryWithADriftedSurfaceIsRolledBack() async throws {
        let f = try fixture("contract-canary")
        defer { f.cleanUp() }
        let canary = "strategy: canary\n    steps:\n      - replicas: 1\n        pause: 30s"
        try f.write([release("1", rollout: canary)], documents: Self.enforce)
        #expect(try await f.fleet(["contract", "pull", "time", "-C", f.dir]).status == 0)
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await f.waitStable("release 1 stable", controller: controller)
        let v1 = try await f.revision()
        // Release 2 under release 1's committed contract: the canary serves a drifted surface.
        try f.write([release("2", rollout: canary)], documents: Self.enforce)
        let v2 = try await f.revision()
        try await waitUntil("rollback of the drifted canary", timeout: .seconds(60), every: .milliseconds(200)) {
            try await f.history().audit.contains { $0.action == "rollback" && $0.revision == v2 }
        }
        let history = try await f.history()
        let record = try #require(history.revisions.first { $0.revision == v2 })
        #expect(record.outcome == .rolledBack, "\(record)")
        #expect(record.reason?.contains("new required parameter `tz`") == true && record.reason?.contains("tool `legacy`: removed") == true, "\(record.reason ?? "-")")
        #expect(history.audit.contains { $0.action == "contract-drift" && $0.revision == v2 && $0.outcome == "failed" })
        // The stable revision keeps serving, with the contract it recorded when it became healthy.
        try await waitUntil("status shows the rollback") { try await f.server()?.phase == .rolledBack }
        let s = try #require(try await f.server())
        #expect(s.servingRevision?.revision == v1 && s.readyReplicas == 2, "\(s)")
        #expect(s.message?.contains("new required parameter `tz`") == true, "\(s.message ?? "-")")
        let stableRecord = try #require(history.revisions.first { $0.revision == v1 })
        let committed = try ServerContract.decode(try Data(contentsOf: URL(fileURLWithPath: contractFile(f))), file: "time.json")
        #expect(stableRecord.contract?.digest == committed.digest)
        let status = try await f.fleet(["status", f.dir])
        #expect(status.out.contains("rolled-back") && status.out.contains("`tz`") && status.out.contains("contract \(committed.shortDigest)"), "\(status.out)")
        // `status -o json` carries the same contract (issue 17), and still matches its schema.
        #expect(try await f.server()?.contract == LiveContract(digest: committed.digest, revision: v1, tools: committed.tools.count))
        try await f.statusValidatesAgainstTheSchema()
        let text = try await f.fleet(["history", "time", "-C", f.dir, "--contract"])
        #expect(text.out.contains("contract: \(committed.digest)") && text.out.contains("tool convert(") && text.out.contains("new required parameter `tz`"), "\(text.out)")
        #expect(controller.logLines.contains { ($0["level"] as? String) == "warning" && "\($0)".contains("contract drift") })
    }

    @Test func underWarnADriftedReleaseRollsOutAndIsReported() async throws {
        let f = try fixture("contract-warn")
        defer { f.cleanUp() }
        try f.write([release("1")])
        #expect(try await f.fleet(["contract", "pull", "time", "-C", f.dir]).status == 0)
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await f.waitStable("release 1 stable", controller: controller)
        try f.write([release("2")])
        let v2 = try await f.revision()
        try await waitUntil("release 2 serving", timeout: .seconds(60), every: .milliseconds(200)) {
            let s = try await f.server()
            return s?.phase == .stable && s?.servingRevision?.revision == v2 && s?.readyReplicas == 2
        }
        let history = try await f.history()
        let drift = try #require(history.audit.first { $0.action == "contract-drift" && $0.revision == v2 })
        #expect(drift.outcome == "warned" && drift.reason.contains("new required parameter `tz`"), "\(drift)")
        #expect(history.revisions.first(where: { $0.revision == v2 })?.outcome == .promoted)
        // Its own surface is what it recorded (release 2's), not the committed file's.
        #expect(history.revisions.first(where: { $0.revision == v2 })?.contract?.toolNames == ["convert", "now", "weather"])
    }

    @Test func aSurfaceChangingWhileRunningIsReportedWithinOneProbeInterval() async throws {
        let f = try fixture("contract-change")
        defer { f.cleanUp() }
        let switchFile = f.root + "/switch"
        try f.write([release("1", extra: "", switchFile: switchFile)], documents: Self.enforce)
        let metricsPort = TestEnvironment.freePort()
        let controller = try f.controller(["--metrics-address", "127.0.0.1:\(metricsPort)"])
        defer { controller.signal(SIGKILL) }
        try await waitUntil("release 1 stable with its contract recorded", timeout: .seconds(90), every: .milliseconds(200)) {
            if !controller.isRunning { throw TestFailure("controller exited: \(controller.output.suffix(2000))") }
            let s = try await f.server()
            guard s?.phase == .stable && s?.readyReplicas == 2 else { return false }
            return try await f.history().revisions.contains { $0.contract != nil }
        }
        #expect(try await f.history().audit.contains { $0.action == "contract-recorded" })
        // The server swaps its tools under the running revision (both instances, within 50 ms).
        let switched = Int64(Date().timeIntervalSince1970 * 1000)
        try Data().write(to: URL(fileURLWithPath: switchFile))
        try await waitUntil("the change reported", timeout: .seconds(20), every: .milliseconds(100)) {
            try await f.history().audit.contains { $0.action == "contract-changed" }
        }
        let entry = try #require(try await f.history().audit.first { $0.action == "contract-changed" })
        print("contract change reported \(entry.time - switched) ms after the switch file was written")
        // One probe interval (1 s) plus one probe's own time limit (timeout 1 s) and the swap's 50 ms.
        #expect(entry.time - switched < 2_050 + 500, "reported \(entry.time - switched) ms after the change")
        #expect(entry.outcome == "failed" && entry.reason.contains("tool `weather`: added"), "\(entry)")
        #expect(controller.logLines.contains { ($0["level"] as? String) == "warning" && ($0["message"] as? String) == "contract changed" })
        let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
        let metrics = String(decoding: try await http.send(HTTPRequest(url: "http://127.0.0.1:\(metricsPort)/metrics")).body, as: UTF8.self)
        #expect(metrics.contains(#"mcpfleet_contract_changes_total{server="time",revision=""#), "\(metrics.split(separator: "\n").filter { $0.contains("contract") })")
        // Under enforce its instances go out of service (their probes fail).
        try await waitUntil("instances out of service", timeout: .seconds(20), every: .milliseconds(200)) {
            try await f.server()?.readyReplicas == 0
        }
    }
}
