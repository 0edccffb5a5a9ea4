import FleetCore
import FleetSystemd
import FleetTesting
import Foundation
import Testing

/// The driver against a real systemd, booted as PID 1 of a throwaway namespace (FleetTesting's
/// `SystemdSandbox`). Units, state and instance files live in the sandbox's private /run; the
/// binaries come from the build directory; ports 22000–22999.
@Suite(.serialized, .enabled(if: SystemdSandbox.unavailableReason == nil, "needs root to boot systemd in a sandbox (CI runs as root)"))
struct SystemdDriverSandboxTests {
    static func withSandbox(_ body: (SystemdSandbox, SystemdDriver) async throws -> Void, relax: [String] = [], secretsDir: String? = nil) async throws {
        let sandbox = try await SystemdSandbox.boot()
        defer { sandbox.shutdown() }
        let driver = try SystemdDriver(environment: Fixtures.environment(secretsDir: secretsDir, relax: relax), manifestRoot: "/srv",
                                       runner: NsenterCommandRunner(pid: sandbox.pid), fileSystemRoot: sandbox.root)
        try await body(sandbox, driver)
    }

    static func revision(_ live: LiveState, _ server: String, _ revision: String) -> LiveRevision? {
        live.server(server)?.revisions.first { $0.revision == revision }
    }

    @Test func deployScaleAndEveryInstanceAnswersInitialize() async throws {
        let hostBinary = try Fixtures.everythingServer()
        try await Self.withSandbox { sandbox, driver in
            let binary = try sandbox.stage(hostBinary)
            let server = try Fixtures.server(name: "everything", command: [binary, "--port", "${PORT}"], port: 22000, replicas: 3)
            try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform", cpuMillis: 2000, memoryBytes: 2 << 30, tasks: 512)), .scale(server, replicas: 3)])
            #expect(await driver.reloadCount == 1)

            for replicas in [3, 5, 2] {
                try await driver.scale(server, replicas: replicas)
                try await waitUntil("\(replicas) ready instances answering initialize", timeout: .seconds(20), every: .milliseconds(100)) {
                    let live = try await driver.observe()
                    guard let rev = Self.revision(live, "everything", server.revision), rev.replicas == replicas, rev.ready == replicas else { return false }
                    for port in 22000..<(22000 + replicas) where !(try await answersInitialize(port: port)) { return false }
                    return true
                }
                let active = try await sandbox.run(["systemctl", "list-units", "--plain", "--no-legend", "--state=active", "mcp-everything-*@*.service"])
                #expect(active.stdout.split(separator: "\n").count == replicas)
                let endpoints = try await driver.endpoints(server: "everything", revision: server.revision)
                #expect(endpoints.map(\.port) == Array(22000..<(22000 + replicas)))
                #expect(endpoints.allSatisfy { $0.path == "/mcp" && $0.host == "127.0.0.1" })
            }
            // Scaling the instance count never reloads: instances read their port from their own file.
            #expect(await driver.reloadCount == 1)
            let live = try await driver.observe()
            #expect(live.server("everything")?.managed == true)
            #expect(live.server("everything")?.tenant == "platform")
            #expect(live.tenants.map(\.name) == ["platform"])
            let cgroup = try await sandbox.run(["systemctl", "show", "-p", "ControlGroup", "mcp-everything-\(server.revision)@0.service"])
            #expect(cgroup.stdout.contains("mcp-platform.slice"))
        }
    }

    @Test func versionChangeRollsWithinTheUnavailableBudget() async throws {
        let hostBinary = try Fixtures.everythingServer()
        try await Self.withSandbox { sandbox, driver in
            let binary = try sandbox.stage(hostBinary)
            let v1 = try Fixtures.server(name: "roll", version: "1.0.0", command: [binary, "--port", "${PORT}"], port: 22100, replicas: 3)
            let v2 = try Fixtures.server(name: "roll", version: "2.0.0", command: [binary, "--port", "${PORT}"], port: 22100, replicas: 3)
            #expect(v1.revision != v2.revision)
            try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(v1, replicas: 3)])
            try await waitUntil("v1 ready", timeout: .seconds(20), every: .milliseconds(100)) { Self.revision(try await driver.observe(), "roll", v1.revision)?.ready == 3 }

            // The controller's rolling step, driven by hand: surge one new, wait ready, retire one old.
            let maxUnavailable = 1
            var newCount = 0, oldCount = 3
            while newCount < 3 {
                newCount += 1
                try await driver.scale(v2, replicas: newCount)
                try await waitUntil("\(newCount) v2 ready", timeout: .seconds(20), every: .milliseconds(100)) { Self.revision(try await driver.observe(), "roll", v2.revision)?.ready == newCount }
                oldCount -= 1
                try await driver.scale(v1, replicas: oldCount)
                let live = try await driver.observe()
                let ready = (Self.revision(live, "roll", v1.revision)?.ready ?? 0) + (Self.revision(live, "roll", v2.revision)?.ready ?? 0)
                #expect(ready >= 3 - maxUnavailable, "ready dropped to \(ready) with \(newCount) new, \(oldCount) old")
                // Both revisions are served at once on distinct ports.
                let ports = try await driver.endpoints(server: "roll", revision: v1.revision).map(\.port) + driver.endpoints(server: "roll", revision: v2.revision).map(\.port)
                #expect(Set(ports).count == ports.count)
                for port in ports { #expect(try await answersInitialize(port: port), "port \(port)") }
            }
            try await driver.removeRevision(server: "roll", revision: v1.revision)
            let live = try await driver.observe()
            #expect(live.server("roll")?.revisions.map(\.revision) == [v2.revision])
            #expect(Self.revision(live, "roll", v2.revision)?.ready == 3)
            #expect(Self.revision(live, "roll", v2.revision)?.version == "2.0.0")
            #expect(!FileManager.default.fileExists(atPath: driver.fileSystemRoot + "/run/systemd/system/mcp-roll-\(v1.revision)@.service"))
        }
    }

    @Test func aProcessThatExitsAtOnceIsUnhealthy() async throws {
        try await Self.withSandbox { _, driver in
            let server = try Fixtures.server(name: "crash", command: ["/bin/false"], port: 22200, replicas: 1)
            try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(server, replicas: 1)])
            var last: LiveInstance?
            try await waitUntil("start-limit-hit", timeout: .seconds(30), every: .milliseconds(100)) {
                let rev = Self.revision(try await driver.observe(), "crash", server.revision)
                #expect(rev?.ready == 0)
                let inst = rev?.instances?.first
                #expect(inst?.healthy == false)
                last = inst
                return inst?.state == .failed
            }
            #expect(last?.reason?.contains("start-limit-hit") == true, "reason: \(last?.reason ?? "none")")
            #expect(try await driver.endpoints(server: "crash", revision: server.revision).isEmpty)
        }
    }

    @Test func tenantSliceLimitsAndDeletionRemovesUnitsAndEmptiedSlice() async throws {
        try await Self.withSandbox { sandbox, driver in
            let tenant = try Fixtures.tenant("team-a", cpuMillis: 500, memoryBytes: 256 << 20, tasks: 64)
            let a = try Fixtures.server(name: "one", tenant: "team-a", command: ["/usr/bin/sleep", "infinity"], port: 22300)
            let b = try Fixtures.server(name: "two", tenant: "team-a", command: ["/usr/bin/sleep", "infinity"], port: 22310)
            try await driver.apply(batch: [.ensureTenant(tenant), .scale(a, replicas: 1), .scale(b, replicas: 2)])
            let slice = #"mcp-team\x2da.slice"#
            let show = try await sandbox.run(["systemctl", "show", slice, "-p", "CPUQuotaPerSecUSec,MemoryMax,TasksMax,ActiveState"])
            #expect(show.stdout == "CPUQuotaPerSecUSec=500ms\nMemoryMax=268435456\nTasksMax=64\nActiveState=active\n")
            try await waitUntil("3 running", timeout: .seconds(20), every: .milliseconds(100)) { (try await driver.observe()).servers.reduce(0) { $0 + $1.readyReplicas } == 3 }

            try await driver.removeServer(named: "one")
            var live = try await driver.observe()
            #expect(live.servers.map(\.name) == ["two"])
            #expect(live.tenants.map(\.name) == ["team-a"], "slice still used by `two`")
            let units = try await sandbox.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", "mcp-one-*"])
            #expect(units.stdout.isEmpty)

            try await driver.removeServer(named: "two")
            live = try await driver.observe()
            #expect(live.servers.isEmpty)
            #expect(live.tenants.isEmpty)
            let files = try FileManager.default.contentsOfDirectory(atPath: sandbox.root + "/run/systemd/system").filter { $0.hasPrefix("mcp-") }
            #expect(files.isEmpty)
            // systemd synthesises any *.slice on demand (`show` says loaded), so: no file behind it, not listed.
            let fragment = try await sandbox.run(["systemctl", "show", slice, "-p", "FragmentPath,ActiveState"]).stdout
            #expect(!fragment.contains("FragmentPath=/"))
            #expect(fragment.contains("ActiveState=inactive"))
            try await waitUntil("slice gone from list-units", timeout: .seconds(5), every: .milliseconds(100)) {
                try await sandbox.run(["systemctl", "list-units", "--all", "--plain", "--no-legend", slice]).stdout.isEmpty
            }
        }
    }

    @Test func unmanagedUnitsAreNeverTouched() async throws {
        try await Self.withSandbox { sandbox, driver in
            let server = try Fixtures.server(name: "own", command: ["/usr/bin/sleep", "infinity"], port: 22350)
            let path = sandbox.root + "/run/systemd/system/mcp-own-\(server.revision)@.service"
            try "[Service]\nExecStart=/usr/bin/sleep infinity\n".write(toFile: path, atomically: true, encoding: .utf8)
            do {
                try await driver.scale(server, replicas: 1)
                Issue.record("overwrote a unit mcpfleet does not own")
            } catch let e as DriverError {
                #expect(e.terminal)
                #expect(e.resource == "server/own")
            }
            try await driver.removeServer(named: "own")
            #expect(FileManager.default.fileExists(atPath: path))
        }
    }

    /// Hostile argv and environment values: loaded into systemd, they arrive verbatim in the process.
    @Test func hostileValuesArriveVerbatimAndInjectNothing() async throws {
        try await Self.withSandbox { sandbox, driver in
            let hostile = [#"100% %n %i"#, #"$HOME ${PATH} $$"#, #"say "hi" 'there'"#, #"back\slash\"#, "ExecStartPre=/bin/touch /pwned", "; rm -rf /"]
            let script = "sleep infinity; :"
            let server = try Fixtures.server(name: "hostile", command: ["/bin/sh", "-c", script, "argv0"] + hostile, port: 22400,
                                             env: [DesiredEnvVar(name: "HOSTILE", value: #"$HOME %i "q" \ ' ;"#)])
            try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(server, replicas: 1)])
            let unit = "mcp-hostile-\(server.revision)@0.service"
            var pid = ""
            try await waitUntil("hostile unit running", timeout: .seconds(20), every: .milliseconds(100)) {
                pid = try await sandbox.run(["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                return pid != "" && pid != "0"
            }
            let cmdline = try await sandbox.run(["cat", "/proc/\(pid)/cmdline"]).stdout
            #expect(cmdline.split(separator: "\0", omittingEmptySubsequences: false).dropLast().map(String.init) == ["/bin/sh", "-c", script, "argv0"] + hostile)
            let environ = try await sandbox.run(["cat", "/proc/\(pid)/environ"]).stdout.split(separator: "\0").map(String.init)
            #expect(environ.contains(#"HOSTILE=$HOME %i "q" \ ' ;"#))
            #expect(environ.contains("MCPFLEET_PORT=22400"))
            let show = try await sandbox.run(["systemctl", "show", "-p", "ExecStart,ExecStartPre", unit]).stdout
            // `systemctl show` prints argv with `$` re-escaped as `$$`; /proc above is the byte-exact proof.
            let shown = hostile.map { $0.replacingOccurrences(of: "$", with: "$$") }.joined(separator: " ")
            #expect(show.contains("argv[]=/bin/sh -c \(script) argv0 \(shown) ;"))
            #expect(!show.contains("ExecStartPre={"))
            #expect(!FileManager.default.fileExists(atPath: sandbox.root + "/pwned"))

            // A newline can never reach a unit: refused before any file is written.
            let evil = try Fixtures.server(name: "evil", command: ["/bin/echo", "a\nExecStartPre=/bin/touch /pwned"], port: 22410)
            await #expect(throws: DriverError.self) { try await driver.scale(evil, replicas: 1) }
            #expect(!FileManager.default.fileExists(atPath: sandbox.root + "/run/systemd/system/mcp-evil-\(evil.revision)@.service"))
        }
    }

    @Test func secretsReachTheProcessOnlyThroughAPrivateFile() async throws {
        let secrets = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-secrets-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: secrets + "/api", withIntermediateDirectories: true)
        defer {
            do { try FileManager.default.removeItem(atPath: secrets) } catch { Issue.record("cleanup of \(secrets): \(error)") }
        }
        let value = "s3cr\"et $HOME `x` \\ %i\nsecond line"
        try (value + "\n").write(toFile: secrets + "/api/token", atomically: true, encoding: .utf8)
        try await Self.withSandbox({ sandbox, driver in
            let server = try Fixtures.server(name: "sec", command: ["/usr/bin/sleep", "infinity"], port: 22500,
                                             env: [DesiredEnvVar(name: "API_TOKEN", secretRef: SecretReference(name: "api", key: "token"))])
            try await driver.apply(batch: [.ensureTenant(Fixtures.tenant("platform")), .scale(server, replicas: 1)])
            let unit = "mcp-sec-\(server.revision)@0.service"
            var pid = ""
            try await waitUntil("secret unit running", timeout: .seconds(20), every: .milliseconds(100)) {
                pid = try await sandbox.run(["systemctl", "show", "-p", "MainPID", "--value", unit]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                return pid != "" && pid != "0"
            }
            let environ = try await sandbox.run(["cat", "/proc/\(pid)/environ"]).stdout.split(separator: "\0").map(String.init)
            #expect(environ.contains("API_TOKEN=" + value))
            let unitText = try String(contentsOfFile: sandbox.root + "/run/systemd/system/mcp-sec-\(server.revision)@.service", encoding: .utf8)
            #expect(!unitText.contains("s3cr"))
            let secretFile = sandbox.root + "/run/mcpfleet/sbx/systemd/secrets/mcp-sec-\(server.revision).env"
            let attrs = try FileManager.default.attributesOfItem(atPath: secretFile)
            #expect((attrs[.posixPermissions] as? Int) == 0o600)
            let show = try await sandbox.run(["systemctl", "show", unit]).stdout
            #expect(!show.contains("s3cr"))
        }, secretsDir: secrets)
    }
}
