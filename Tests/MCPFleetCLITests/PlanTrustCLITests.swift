import FleetTesting
import Foundation
import Testing

/// Issue 12: the CI plan misses nothing and leaks nothing, and a hostile pull request gets an error,
/// not a foothold. Every test runs the built binary against real git repositories, real files and
/// (for secrets) real supervised processes.
@Suite(.serialized) struct PlanTrustCLITests {
    // MARK: - the plan misses nothing

    /// The example catalog (policies, signed evidence, SLOs, canaries) in a fresh git repository.
    func exampleRepository() throws -> String {
        let dir = try makeTempDirectory("plan-trust")
        try git("init", "-q", "-b", "main", in: dir)
        try FileManager.default.copyItem(atPath: packageRoot + "/Manifests", toPath: dir + "/Manifests")
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "base", in: dir)
        return dir
    }

    func edit(_ file: String, _ old: String, _ new: String) throws {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        guard text.contains(old) else { throw CLIError("\(file) does not contain \(old)") }
        try text.replacingOccurrences(of: old, with: new).write(toFile: file, atomically: true, encoding: .utf8)
    }

    struct Edit: CustomStringConvertible, Sendable {
        var description: String
        var env: String
        var exit: Int32
        /// Field paths and object names every format must show.
        var named: [String]
        var apply: @Sendable (String) throws -> Void
    }

    static let edits: [Edit] = [
        Edit(description: "SLO loosened 99.5% → 50%", env: "local", exit: 1, named: ["interactive", "successRate"]) { m in
            try PlanTrustCLITests().edit(m + "/slo.yaml", "successRate: \"99.5%\"", "successRate: \"50%\"")
        },
        Edit(description: "failureLimit 1 → 3", env: "local", exit: 1, named: ["analysis.failureLimit"]) { m in
            try PlanTrustCLITests().edit(m + "/slo.yaml", "failureLimit: 1", "failureLimit: 3")
        },
        Edit(description: "rollout strategy switched", env: "local", exit: 1, named: ["everything", "rollout.strategy"]) { m in
            try PlanTrustCLITests().edit(m + "/servers/everything.yaml", "strategy: rolling", "strategy: recreate")
        },
        Edit(description: "progressDeadline", env: "local", exit: 1, named: ["rollout.progressDeadline"]) { m in
            try PlanTrustCLITests().edit(m + "/servers/time.yaml", "progressDeadline: 15m", "progressDeadline: 45m")
        },
        Edit(description: "autoRollback: false", env: "local", exit: 1, named: ["rollout.autoRollback"]) { m in
            try PlanTrustCLITests().edit(m + "/servers/time.yaml", "autoRollback: true", "autoRollback: false")
        },
        Edit(description: "a Policy added", env: "local", exit: 1, named: ["pinned", "requireDigest"]) { m in
            try """
            apiVersion: mcpfleet.io/v1alpha1
            kind: Policy
            metadata: {name: pinned}
            spec: {mode: warn, environments: [local], requireDigest: true}

            """.write(toFile: m + "/pinned-policy.yaml", atomically: true, encoding: .utf8)
        },
        Edit(description: "a Policy switched from warn to enforce", env: "local", exit: 3, named: ["next", "mode"]) { m in
            try PlanTrustCLITests().edit(m + "/policy.yaml", "mode: warn", "mode: enforce")
        },
        Edit(description: "a server's supplyChain evidence changed", env: "cluster", exit: 1, named: ["time", "supplyChain.scan"]) { m in
            // Another scan report, still under the ceiling.
            try PlanTrustCLITests().edit(m + "/evidence/time-server.grype.json", "\"matches\"", "\"ignoredMatches\": [], \"matches\"")
        },
        Edit(description: "a signed artifact tampered with, revision unchanged", env: "cluster", exit: 3, named: ["time", "supplyChain.verdict"]) { m in
            try PlanTrustCLITests().edit(m + "/servers/time/server.py", "import", "import os  # tampered\nimport")
        },
        Edit(description: "the trusted key swapped, revision unchanged", env: "cluster", exit: 3, named: ["catalog", "trustedKeys.release-2026", "supplyChain.verdict"]) { m in
            let dir = try makeTempDirectory("swapkey")
            let gen = try run("/usr/bin/openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", dir + "/k.pem"])
            guard gen.status == 0 else { throw CLIError(gen.all) }
            let pub = try run("/usr/bin/openssl", ["pkey", "-in", dir + "/k.pem", "-pubout", "-out", m + "/keys/release-2026.pub"])
            guard pub.status == 0 else { throw CLIError(pub.all) }
        },
        Edit(description: "a tenant quota", env: "local", exit: 1, named: ["research", "quota.cpu"]) { m in
            try PlanTrustCLITests().edit(m + "/tenants.yaml", "cpu: \"1\"", "cpu: \"3\"")
        },
        Edit(description: "an environment setting", env: "local", exit: 1, named: ["local", "local.restartBackoff"]) { m in
            try PlanTrustCLITests().edit(m + "/environments/local.yaml", "restartBackoff: 2s", "restartBackoff: 1m")
        },
        Edit(description: "a server label", env: "local", exit: 1, named: ["labels.sdk"]) { m in
            try PlanTrustCLITests().edit(m + "/servers/time.yaml", "sdk: python", "sdk: python3")
        },
        Edit(description: "a gateway setting of the environment", env: "local", exit: 1, named: ["local", "gateway.maxBodyBytes"]) { m in
            try PlanTrustCLITests().edit(m + "/environments/local.yaml", "  local:\n", "  gateway: {maxBodyBytes: 1024}\n  local:\n")
        },
        Edit(description: "a tenant's gateway rate limit", env: "local", exit: 1, named: ["research", "gateway.rateLimit"]) { m in
            try PlanTrustCLITests().edit(m + "/tenants.yaml", "  isolation: strict\n", "  isolation: strict\n  gateway: {rateLimit: {requestsPerSecond: 5}}\n")
        },
        Edit(description: "a server's gateway rate limit", env: "local", exit: 1, named: ["time", "gateway.rateLimit"]) { m in
            try PlanTrustCLITests().edit(m + "/servers/time.yaml", "  tenant: research\n", "  tenant: research\n  gateway: {rateLimit: {requestsPerSecond: 50}}\n")
        },
    ]

    @Test(arguments: edits)
    func everyBehaviourChangingEditIsPlanned(edit: Edit) throws {
        let dir = try exampleRepository()
        let m = dir + "/Manifests"
        // Before the edit, nothing changed: exit 0.
        let same = try mcpfleet("plan", m, "--env", edit.env, "--against", "HEAD")
        #expect(same.status == 0, "\(same.all)")
        try edit.apply(m)
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", edit.description, in: dir)
        for format in ["text", "json", "markdown"] {
            let r = try mcpfleet("plan", m, "--env", edit.env, "--against", "HEAD~1", "-o", format)
            #expect(r.status == edit.exit, "\(edit) (\(format)): exit \(r.status)\n\(r.all)")
            for name in edit.named { #expect(r.stdout.contains(name), "\(edit) (\(format)) does not name \(name)\n\(r.stdout)") }
        }
    }

    // MARK: - hostile links

    @Test func linksOutOfTheRootGetAnErrorAndNoByteOfTheTarget() throws {
        let dir = try makeTempDirectory("hostile")
        let outside = try makeTempDirectory("outside")
        try "token: canary-outside-file-77a1\n".write(toFile: outside + "/secret.yaml", atomically: true, encoding: .utf8)
        try git("init", "-q", "-b", "main", in: dir)
        try FileManager.default.copyItem(atPath: Self.fixtures + "/in-sync/manifests", toPath: dir + "/catalog")
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "base", in: dir)
        try FileManager.default.createSymbolicLink(atPath: dir + "/catalog/x.yaml", withDestinationPath: "/proc/self/environ")
        try FileManager.default.createSymbolicLink(atPath: dir + "/catalog/y.yaml", withDestinationPath: outside + "/secret.yaml")
        // The CI runner's environment, as /proc/self/environ would give it to the reader.
        let canaryEnv = ["CI_JOB_TOKEN": "canary-environ-token-5b3e"]
        func check(_ r: RunResult, _ what: String) {
            #expect(r.all.contains("x.yaml") && r.all.contains("y.yaml"), "\(what) does not name the links:\n\(r.all)")
            #expect(r.all.contains("link-outside-root") || r.all.contains("leads out of the manifest root"), "\(what):\n\(r.all)")
            for forbidden in ["canary-environ-token-5b3e", "CI_JOB_TOKEN", "canary-outside-file-77a1", outside, "/proc/self/environ"] {
                #expect(!r.all.contains(forbidden), "\(what) printed \(forbidden)")
            }
        }
        let validate = try run(mcpfleetBinary, ["validate", dir + "/catalog"], environment: canaryEnv)
        #expect(validate.status == 1)
        check(validate, "validate")
        let json = try run(mcpfleetBinary, ["validate", dir + "/catalog", "-o", "json"], environment: canaryEnv)
        #expect(json.status == 1)
        check(json, "validate -o json")
        for format in ["text", "json", "markdown"] {
            let plan = try run(mcpfleetBinary, ["plan", dir + "/catalog", "--live", try emptyLive(), "-o", format], environment: canaryEnv)
            #expect(plan.status == 2, "\(plan.all)")
            check(plan, "plan -o \(format)")
        }

        // The same links committed: the git baseline refuses them too, naming them.
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "links", in: dir)
        try FileManager.default.removeItem(atPath: dir + "/catalog/x.yaml")
        try FileManager.default.removeItem(atPath: dir + "/catalog/y.yaml")
        let against = try run(mcpfleetBinary, ["plan", dir + "/catalog", "--against", "HEAD"], environment: canaryEnv)
        #expect(against.status == 2, "\(against.all)")
        check(against, "plan --against")

        // Evidence linked out of the root: validate names the field and the link, never the target.
        try FileManager.default.createSymbolicLink(atPath: dir + "/catalog/servers/sbom.json", withDestinationPath: outside + "/secret.yaml")
        try edit(dir + "/catalog/servers/time.yaml", "  transport:", "  supplyChain: {sbom: sbom.json}\n  transport:")
        let evidence = try run(mcpfleetBinary, ["validate", dir + "/catalog"], environment: canaryEnv)
        #expect(evidence.status == 1)
        #expect(evidence.all.contains("time.yaml:") && evidence.all.contains("sbom.json") && evidence.all.contains("[link-outside-root]"), "\(evidence.all)")
        #expect(!evidence.all.contains("canary-outside-file-77a1") && !evidence.all.contains(outside))
    }

    @Test func gitErrorsCarryGitsOwnMessage() throws {
        let dir = try exampleRepository()
        let r = try mcpfleet("plan", dir + "/Manifests", "--env", "local", "--against", "no-such-ref")
        #expect(r.status == 2)
        #expect(r.stderr.contains("failed: fatal:"), "\(r.stderr)")
        #expect(!r.stderr.hasSuffix("failed: \n"))
    }

    // MARK: - secrets appear nowhere

    static let fixtures = packageRoot + "/Tests/Fixtures/plan"
    static let canaries = [
        "canary-secret-file-e41f9a",                                   // in a secret file (secretRef)
        "canary-by-name-0c7d31",                                       // a plain value under a secret-looking name
        "ghp_CanaryByShape0123456789abcdefABCDEF12",                   // a GitHub token under an innocent name
        "https://hooks.slack.com/services/T0CANARY/B0CANARY/CanaryHookValue1234",
        "canary-argument-9e2b55",                                      // after `--api-key` on the command line
    ]

    /// A catalog of one supervised server that records the environment it was started with, outside
    /// the state directory, so the test can tell the values reached it.
    func secretCatalog(_ dir: String, port: Int, extraSecret: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: dir + "/catalog/bin", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/secrets/app", withIntermediateDirectories: true)
        try (Self.canaries[0] + "\n").write(toFile: dir + "/secrets/app/token", atomically: true, encoding: .utf8)
        if let extraSecret { try FileManager.default.createFile(atPath: dir + "/secrets/app/bad", contents: Data(extraSecret.utf8)) }
        try """
        import http.server, os, sys
        port = int(sys.argv[sys.argv.index("--port") + 1])
        with open(os.environ["RECORD"], "a") as f:
            f.write(" ".join([str(os.getpid()), os.environ.get("APP_SECRET", "-"), os.environ.get("API_TOKEN", "-"),
                              os.environ.get("GREETING", "-"), os.environ.get("HOOK", "-"), sys.argv[sys.argv.index("--api-key") + 1]]) + "\\n")
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a):
                pass
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()

        """.write(toFile: dir + "/catalog/bin/server.py", atomically: true, encoding: .utf8)
        try """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: team}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: dev}
        spec:
          driver: local
          portRange: \(port)-\(port + 9)
          stateDir: state
          secretsDir: secrets
          local: {restartBackoff: 1s}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: app}
        spec:
          version: "1.0.0"
          tenant: team
          artifact:
            command: [python3, "${MANIFEST_DIR}/bin/server.py", --port, "${PORT}", --api-key, "\(Self.canaries[4])"]
          transport: {type: streamable-http, port: \(port)}
          health: {probe: tcp, interval: 1s}
          env:
            - {name: RECORD, value: "\(dir)/record.txt"}
            - {name: APP_SECRET, isSecret: true, secretRef: {name: app, key: token}}
            - {name: API_TOKEN, value: "\(Self.canaries[1])"}
            - {name: GREETING, value: "\(Self.canaries[2])"}
            - {name: HOOK, value: "\(Self.canaries[3])"}
        \(extraSecret == nil ? "" : "    - {name: BAD, isSecret: true, secretRef: {name: app, key: bad}}")

        """.write(toFile: dir + "/catalog/fleet.yaml", atomically: true, encoding: .utf8)
    }

    func leaks(_ text: String) -> [String] { Self.canaries.filter { text.contains($0) } }

    /// Every file under `dir`, as bytes (SQLite database, WAL, logs, records).
    func leaksInFiles(under dir: String) throws -> [String] {
        var found: [String] = []
        let e = FileManager.default.enumerator(atPath: dir)
        while let rel = e?.nextObject() as? String {
            let path = dir + "/" + rel
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
                  let data = FileManager.default.contents(atPath: path) else { continue }
            for c in Self.canaries where data.range(of: Data(c.utf8)) != nil { found.append("\(rel): \(c)") }
        }
        return found
    }

    @Test func plantedSecretsAppearNowhere() async throws {
        let dir = try makeTempDirectory("canaries")
        try secretCatalog(dir, port: 21400)
        try git("init", "-q", "-b", "main", in: dir)
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "base", in: dir)
        func fleet(_ args: String...) throws -> RunResult { try run(mcpfleetBinary, args, cwd: dir) }
        defer { _ = Result { try fleet("stop", "catalog") } }
        var outputs: [(String, String)] = []

        let validate = try fleet("validate", "catalog")
        #expect(validate.status == 0, "\(validate.all)")
        #expect(validate.all.contains("possible-secret"))
        outputs.append(("validate", validate.all))
        outputs.append(("validate -o json", try fleet("validate", "catalog", "-o", "json").all))

        // Plans before anything runs, in every format, saved too.
        for format in ["text", "json", "markdown"] {
            let p = try fleet("plan", "catalog", "-o", format, "--out", "plan-\(format).json")
            #expect(p.status == 1, "\(p.all)")
            outputs.append(("plan -o \(format)", p.all))
            outputs.append(("saved plan (\(format))", try String(contentsOfFile: dir + "/plan-\(format).json", encoding: .utf8)))
        }
        #expect(try fleet("plan", "catalog", "-o", "json").stdout.contains("(sensitive, sha256:"))

        // Applied from the saved plan, from another directory: the values reach the process.
        let elsewhere = try makeTempDirectory("apply-elsewhere")
        try FileManager.default.copyItem(atPath: dir + "/plan-json.json", toPath: elsewhere + "/plan.json")
        let applied = try run(mcpfleetBinary, ["apply", elsewhere + "/plan.json", "--timeout", "60s", "--log-level", "debug"], cwd: dir)
        #expect(applied.status == 0, "\(applied.all.suffix(3000))")
        outputs.append(("apply", applied.all))
        let record = try String(contentsOfFile: dir + "/record.txt", encoding: .utf8)
        let fields = try #require(record.split(separator: "\n").last?.split(separator: " ").map(String.init))
        #expect(Array(fields.dropFirst()) == Self.canaries, "the process did not get the real values: \(fields)")

        // Run, status, history, plans against the runtime, a live snapshot and git.
        let ran = try fleet("run", "catalog", "--once", "--timeout", "60s", "--metrics-address", "", "--log-level", "debug")
        #expect(ran.status == 0, "\(ran.all.suffix(3000))")
        outputs.append(("run --once", ran.all))
        outputs.append(("status", try fleet("status", "catalog").all))
        let snapshot = try fleet("status", "catalog", "-o", "json")
        outputs.append(("status -o json", snapshot.all))
        try snapshot.stdout.write(toFile: dir + "/live.json", atomically: true, encoding: .utf8)
        outputs.append(("history", try fleet("history", "app", "-C", "catalog").all))
        outputs.append(("history -o json", try fleet("history", "app", "-C", "catalog", "-o", "json").all))
        for format in ["text", "json", "markdown"] {
            outputs.append(("plan (runtime) -o \(format)", try fleet("plan", "catalog", "-o", format).all))
            outputs.append(("plan --live -o \(format)", try fleet("plan", "catalog", "--live", "live.json", "-o", format).all))
        }
        try edit(dir + "/catalog/fleet.yaml", "version: \"1.0.0\"", "version: \"1.0.1\"")
        try edit(dir + "/catalog/fleet.yaml", Self.canaries[1], Self.canaries[1] + "-v2")
        try git("commit", "-q", "-am", "rotate", in: dir)
        for format in ["text", "json", "markdown"] {
            let p = try fleet("plan", "catalog", "--against", "HEAD~1", "-o", format)
            #expect(p.status == 1, "\(p.all)")
            outputs.append(("plan --against -o \(format)", p.all))
        }

        // A replica killed while no controller runs is started again by the next one from the sealed
        // spec in the state database, its values taken from the manifests.
        try git("reset", "-q", "--hard", "HEAD~1", in: dir)
        let pid = try #require(Int32(fields[0]))
        kill(pid, SIGKILL)
        let healed = try fleet("run", "catalog", "--once", "--timeout", "60s", "--metrics-address", "", "--log-level", "debug")
        #expect(healed.status == 0, "\(healed.all.suffix(3000))")
        outputs.append(("run --once after a kill", healed.all))
        try await waitUntil("the replica restarted", timeout: .seconds(30), every: .milliseconds(200)) {
            (try String(contentsOfFile: dir + "/record.txt", encoding: .utf8)).split(separator: "\n").count >= 2
        }
        let restarted = try String(contentsOfFile: dir + "/record.txt", encoding: .utf8).split(separator: "\n").last?.split(separator: " ").map(String.init) ?? []
        #expect(Array(restarted.dropFirst()) == Self.canaries, "restarted with \(restarted)")

        for (what, text) in outputs { #expect(leaks(text).isEmpty, "\(what) shows \(leaks(text))") }
        let stateLeaks = try leaksInFiles(under: dir + "/state")
        #expect(stateLeaks.isEmpty, "state directory: \(stateLeaks)")
        // The search itself finds what is there: the values are in the manifests and the secret file.
        #expect(try leaksInFiles(under: dir + "/catalog").count == 4)
        #expect(try leaksInFiles(under: dir + "/secrets").count == 1)
        #expect(FileManager.default.fileExists(atPath: dir + "/state/state.db"))
    }

    @Test func aSecretWithANulByteIsAnErrorNotATruncatedValue() throws {
        let dir = try makeTempDirectory("nul-secret")
        try secretCatalog(dir, port: 21420, extraSecret: "before\u{0}after")
        defer { _ = Result { try run(mcpfleetBinary, ["stop", "catalog"], cwd: dir) } }
        let r = try run(mcpfleetBinary, ["run", "catalog", "--once", "--timeout", "10s", "--metrics-address", ""], cwd: dir)
        #expect(r.status != 0)
        #expect(r.all.contains("contains a NUL byte"), "\(r.all.suffix(2000))")
        #expect(!FileManager.default.fileExists(atPath: dir + "/record.txt"), "the server started with a cut secret")
        let history = try run(mcpfleetBinary, ["history", "app", "-C", "catalog"], cwd: dir)
        #expect(history.all.contains("NUL byte"), "\(history.all)")
    }

    // MARK: - a saved plan is the plan

    @Test func aSavedPlanRefusesMovedEvidence() throws {
        let dir = try exampleRepository()
        let m = dir + "/Manifests"
        let out = dir + "/plan.json"
        let p = try mcpfleet("plan", m, "--env", "local", "--live", try emptyLive(), "--out", out)
        #expect(p.status == 1, "\(p.all)")
        let saved = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        #expect(saved["formatVersion"] as? Int == 2)
        #expect((saved["environmentSpec"] as? [String: Any])?["driver"] as? String == "local")
        let source = try #require(saved["source"] as? [String: Any])
        #expect((source["evidence"] as? [[String: Any]])?.contains { $0["path"] as? String == "evidence/time-server.sig" } == true)
        #expect((source["manifests"] as? [[String: Any]])?.count ?? 0 >= 5)
        // The signature changes after the plan: apply refuses before touching anything.
        try edit(m + "/evidence/time-server.sig", "M", "N")
        let elsewhere = try makeTempDirectory("apply-cwd")
        let a = try run(mcpfleetBinary, ["apply", out, "--timeout", "5s"], cwd: elsewhere)
        #expect(a.status == 2, "\(a.all)")
        #expect(a.stderr.contains("evidence changed since the plan was made (evidence/time-server.sig)"), "\(a.stderr)")
        #expect(!FileManager.default.fileExists(atPath: elsewhere + "/.mcpfleet"), "apply read or wrote the current directory")
        // A plan made against a live state that is not what runs is refused too.
        let fresh = try exampleRepository() + "/Manifests"
        let live = dir + "/running.json"
        try #"{"servers": [{"name": "time", "tenant": "research", "revisions": [{"revision": "0123456789ab", "replicas": 1, "ready": 1}]}], "tenants": []}"#
            .write(toFile: live, atomically: true, encoding: .utf8)
        let stalePlan = dir + "/stale.json"
        #expect(try mcpfleet("plan", fresh, "--env", "local", "--live", live, "--out", stalePlan).status == 1)
        let stale = try run(mcpfleetBinary, ["apply", stalePlan, "--timeout", "5s"], cwd: try makeTempDirectory("apply-stale"))
        #expect(stale.status == 2, "\(stale.all)")
        #expect(stale.stderr.contains("the live state changed since the plan was made"), "\(stale.stderr)")
        // An old plan format is refused with a reason.
        let old = dir + "/old.json"
        try #"{"formatVersion": 1}"#.write(toFile: old, atomically: true, encoding: .utf8)
        let refused = try mcpfleet("apply", old)
        #expect(refused.status == 2 && refused.stderr.contains("plan format 1"), "\(refused.all)")
    }

    func emptyLive() throws -> String {
        let dir = try makeTempDirectory("live")
        try #"{"servers": [], "tenants": []}"#.write(toFile: dir + "/live.json", atomically: true, encoding: .utf8)
        return dir + "/live.json"
    }
}
