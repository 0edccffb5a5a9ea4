import FleetCore
import FleetLocal
import FleetState
import FleetTesting
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Against real processes: the SDK's mcp-everything-server, the Python time server, a stdio server
/// behind the bridge, and small scripts. Serialized: each test starts several servers on 2 cores.
@Suite(.serialized) struct LocalDriverTests {
    @Test func scalesUpAndDownAndReplacesAKilledReplica() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("scale")
        defer { removeTree(dir) }
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        let server = desiredServer("everything", command: [binary, "--port", "${PORT}"], port: 21000)
        do {
            try await driver.scale(server, replicas: 0)
            #expect(instances(try await driver.observe(), "everything").isEmpty)

            try await driver.scale(server, replicas: 3)
            #expect(try await waitUntil(deadline: .seconds(30)) { try await driver.observe().server("everything")?.readyReplicas == 3 })
            for port in 21000..<21003 { #expect(try await mcpInitialize(port: port).isEmpty == false) }
            let three = instances(try await driver.observe(), "everything")
            #expect(three.map(\.slot) == [0, 1, 2] && three.map(\.port) == [21000, 21001, 21002])
            #expect(Set(three.compactMap(\.pid)).count == 3)
            #expect(try await driver.endpoints(server: "everything", revision: server.revision).map(\.url)
                    == (21000..<21003).map { "http://127.0.0.1:\($0)/mcp" })
            #expect(try await driver.observe().server("everything")?.revisions.first?.fields == server.fields)

            try await driver.scale(server, replicas: 3) // idempotent
            #expect(instances(try await driver.observe(), "everything").compactMap(\.pid) == three.compactMap(\.pid))

            try await driver.scale(server, replicas: 5)
            #expect(try await waitUntil(deadline: .seconds(30)) { try await driver.observe().server("everything")?.readyReplicas == 5 })
            let five = instances(try await driver.observe(), "everything")
            #expect(Array(five.compactMap(\.pid).prefix(3)) == three.compactMap(\.pid))

            try await driver.scale(server, replicas: 2)
            let two = instances(try await driver.observe(), "everything")
            #expect(two.map(\.slot) == [0, 1])
            for gone in five.dropFirst(2).compactMap(\.pid) { #expect(!isAlive(gone), "pid \(gone) still running after scale-down") }
            let serving: [Int] = (21000..<21005).flatMap { (port: Int) -> [Int] in processes(matching: [binary, String(port)]) }
            #expect(serving.count == 2)

            // kill -9 one replica: the supervisor counts a restart and brings it back on the same port.
            let victim = try #require(two[1].pid)
            kill(pid_t(victim), SIGKILL)
            var seen: [LiveInstance] = []
            #expect(try await waitUntil(deadline: .seconds(20)) {
                seen = instances(try await driver.observe(), "everything")
                return seen.count == 2 && (seen[1].restarts ?? 0) >= 1 && seen[1].pid != victim && seen.allSatisfy { $0.state == .running }
            }, "after kill -9 of \(victim): \(seen)")
            #expect(try await mcpInitialize(port: 21001).isEmpty == false)

            // A second revision takes the next free slots, never those of the first.
            let next = desiredServer("everything", command: [binary, "--port", "${PORT}"], port: 21000, version: "1.1")
            try await driver.scale(next, replicas: 1)
            let nextInstances = try #require(try await driver.observe().server("everything")?.revisions.first { $0.revision == next.revision }?.instances)
            #expect(nextInstances.map(\.slot) == [2])
            try await driver.removeRevision(server: "everything", revision: next.revision)
            try await driver.removeRevision(server: "everything", revision: next.revision)
            #expect(try await driver.observe().server("everything")?.revisions.map(\.revision) == [server.revision])

            let pids = instances(try await driver.observe(), "everything").compactMap(\.pid)
            try await driver.removeServer(named: "everything")
            try await driver.removeServer(named: "everything")
            #expect(try await driver.observe().servers.isEmpty)
            for pid in pids { #expect(!isAlive(pid)) }
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
        for port in 21000..<21005 { #expect(processes(matching: [binary, String(port)]).isEmpty, "something still serves port \(port)") }
    }

    @Test func aNewDriverAdoptsRunningInstances() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("adopt")
        defer { removeTree(dir) }
        let server = desiredServer("adopted", command: [binary, "--port", "${PORT}"], port: 21100)
        let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await first.scale(server, replicas: 2)
        #expect(try await waitUntil(deadline: .seconds(30)) { try await first.observe().server("adopted")?.readyReplicas == 2 })
        let pids = instances(try await first.observe(), "adopted").compactMap(\.pid)
        // The controller goes away without stopping its instances.
        await first.shutdown(stopInstances: false)

        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            #expect(instances(try await second.observe(), "adopted").compactMap(\.pid) == pids)
            try await second.start()
            try await second.scale(server, replicas: 2)
            #expect(instances(try await second.observe(), "adopted").compactMap(\.pid) == pids)
            #expect(try await second.observe().server("adopted")?.readyReplicas == 2)
            #expect(processes(matching: [binary, "21100"]).count == 1 && processes(matching: [binary, "21101"]).count == 1)

            // It keeps supervising what it adopted.
            kill(pid_t(pids[0]), SIGKILL)
            #expect(try await waitUntil(deadline: .seconds(20)) {
                let now = instances(try await second.observe(), "adopted")
                return now.first?.restarts == 1 && now.first?.pid != pids[0] && now.first?.state == .running
            })
            #expect(processes(matching: [binary, "21100"]).count == 1)
        } catch {
            await second.shutdown(stopInstances: true)
            throw error
        }
        let last = instances(try await second.observe(), "adopted").compactMap(\.pid)
        await second.shutdown(stopInstances: true)
        for pid in last + pids { #expect(!isAlive(pid), "pid \(pid) still running after shutdown") }
    }

    /// An instance that died while no controller ran is not adopted: the new driver reads the state once,
    /// under its lock (design 0008 phase 4), and starts that instance again; the live one is adopted.
    @Test func anInstanceThatDiedWhileNoControllerRanIsStartedAgain() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("died")
        defer { removeTree(dir) }
        let server = desiredServer("died", command: [binary, "--port", "${PORT}"], port: 21150)
        let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await first.scale(server, replicas: 2)
        #expect(try await waitUntil(deadline: .seconds(30)) { try await first.observe().server("died")?.readyReplicas == 2 })
        let pids = instances(try await first.observe(), "died").compactMap(\.pid)
        try #require(pids.count == 2)
        await first.shutdown(stopInstances: false)
        // Between the two controllers, one instance dies.
        kill(pid_t(pids[0]), SIGKILL)
        #expect(try await waitUntil(deadline: .seconds(10)) { !isAlive(pids[0]) })

        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await second.start()
            let seen = instances(try await second.observe(), "died")
            #expect(seen.first { $0.slot == 0 }?.pid != pids[0], "the dead pid is not taken for the instance")
            #expect(seen.first { $0.slot == 1 }?.pid == pids[1], "the live one is adopted")
            #expect(try await waitUntil(deadline: .seconds(30)) {
                let now = instances(try await second.observe(), "died")
                return now.count == 2 && now.allSatisfy { $0.state == .running && $0.healthy } && now.first { $0.slot == 0 }?.pid != pids[0]
            })
        } catch {
            await second.shutdown(stopInstances: true)
            throw error
        }
        let last = instances(try await second.observe(), "died").compactMap(\.pid)
        await second.shutdown(stopInstances: true)
        for pid in last + pids { #expect(!isAlive(pid), "pid \(pid) still running after shutdown") }
    }

    /// A controller killed after starting an instance but before recording its pid: the next one finds
    /// the process by the marker in its environment and adopts it instead of starting a duplicate.
    @Test func anUnrecordedInstanceIsFoundAndAdopted() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("unrecorded")
        defer { removeTree(dir) }
        let server = desiredServer("unrecorded", command: [binary, "--port", "${PORT}"], port: 21150)
        let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await first.scale(server, replicas: 1)
        let pid = try #require(instances(try await first.observe(), "unrecorded").first?.pid)
        await first.shutdown(stopInstances: false)
        try first.database.execute("UPDATE local_instances SET pid = NULL, start_time = NULL WHERE server = 'unrecorded'")

        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await second.start()
            #expect(try await waitUntil(deadline: .seconds(30)) { try await second.observe().server("unrecorded")?.readyReplicas == 1 })
            #expect(instances(try await second.observe(), "unrecorded").first?.pid == pid)
            #expect(processes(matching: [binary, "21150"]) == [pid])
        } catch {
            await second.shutdown(stopInstances: true)
            throw error
        }
        await second.shutdown(stopInstances: true)
        #expect(!isAlive(pid))
    }

    @Test func aRecycledPidIsNotAdopted() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("recycled")
        defer { removeTree(dir) }
        let server = desiredServer("recycled", command: [binary, "--port", "${PORT}"], port: 21200)
        let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await first.scale(server, replicas: 1)
        let original = try #require(instances(try await first.observe(), "recycled").first?.pid)
        await first.shutdown(stopInstances: false)
        kill(pid_t(original), SIGKILL)
        var status: Int32 = 0
        _ = waitpid(pid_t(original), &status, 0)

        // An unrelated process now holds the recorded pid (as after pid reuse). Start times count in clock
        // ticks (10 ms): let one pass, so the stranger's start time differs from the recorded one as a reused pid's would.
        let recorded = try #require(try first.database.query("SELECT start_time FROM local_instances WHERE server = 'recycled'").first?[0].int64)
        #expect(try await waitUntil(deadline: .seconds(5)) { uptimeTicks() > recorded + 1 })
        let stranger = Process()
        stranger.executableURL = URL(fileURLWithPath: "/bin/sleep")
        stranger.arguments = ["120"]
        try stranger.run()
        defer { stranger.terminate() }
        try first.database.execute("UPDATE local_instances SET pid = ? WHERE server = 'recycled'", [.integer(Int64(stranger.processIdentifier))])

        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            let seen = try #require(instances(try await second.observe(), "recycled").first)
            #expect(seen.pid == nil && seen.state != .running)
            try await second.start()
            #expect(try await waitUntil(deadline: .seconds(30)) { try await second.observe().server("recycled")?.readyReplicas == 1 })
            let replacement = try #require(instances(try await second.observe(), "recycled").first?.pid)
            #expect(replacement != Int(stranger.processIdentifier))
            #expect(stranger.isRunning, "the driver must not signal a process that is not its own")
        } catch {
            await second.shutdown(stopInstances: true)
            throw error
        }
        await second.shutdown(stopInstances: true)
        #expect(stranger.isRunning)
    }

    @Test func aCommandThatExitsAtOnceIsReportedFailed() async throws {
        let dir = try makeTemporaryDirectory("failing")
        defer { removeTree(dir) }
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        let server = desiredServer("broken", command: ["false"], port: 21300)
        do {
        try await driver.scale(server, replicas: 1)
        #expect(try await waitUntil(deadline: .seconds(20)) {
            guard let i = instances(try await driver.observe(), "broken").first else { return false }
            return i.state == .failed && !i.healthy && (i.reason ?? "").contains("exited with status 1") && (i.restarts ?? 0) >= 1
        })
        let revision = try #require(try await driver.observe().server("broken")?.revisions.first)
        #expect(revision.replicas == 1 && revision.ready == 0)
        #expect(try await driver.endpoints(server: "broken", revision: server.revision).count <= 1)

        // Configuration errors surface from scale, naming the server and the reference.
        let missingProgram = desiredServer("missing", command: ["no-such-program-mcpfleet"], port: 21310)
        await #expect { try await driver.scale(missingProgram, replicas: 1) } throws: { error in
            "\(error)".contains("server/missing") && "\(error)".contains("no-such-program-mcpfleet")
        }
        let missingSecret = desiredServer("secretless", command: ["true"], port: 21320,
                                          env: [EnvVar(name: "API_TOKEN", source: .secret(SecretReference(name: "api", key: "token")))])
        await #expect { try await driver.scale(missingSecret, replicas: 1) } throws: { error in
            "\(error)".contains("server/secretless") && "\(error)".contains("api/token")
        }
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
    }

    @Test func secretsReachTheEnvironmentAndArgumentsArriveVerbatim() async throws {
        let dir = try makeTemporaryDirectory("env")
        defer { removeTree(dir) }
        let secretValue = "s3cr3t-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir + "/secrets/api", withIntermediateDirectories: true)
        try Data((secretValue + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/secrets/api/token"))
        try FileManager.default.createDirectory(atPath: dir + "/manifests/servers/dump", withIntermediateDirectories: true)
        try Data("""
        import json, os, sys, time
        with open(os.path.join(os.environ["OUT_DIR"], "dump-%s.json" % os.environ["PORT"]), "w") as f:
            json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "cwd": os.getcwd()}, f)
        time.sleep(600)
        """.utf8).write(to: URL(fileURLWithPath: dir + "/manifests/servers/dump/dump.py"))
        let hostile = ["a b", "it's \"quoted\"", "; rm -rf / ;", "$(touch pwned)", "`id`", "*"]
        // The interpreter itself, not a version manager's shim that adds variables of its own.
        let server = desiredServer("dump", command: [try realPython(), "${MANIFEST_DIR}/dump.py", "${PORT}", "${REPLICA}"] + hostile, port: 21400,
                                   env: [EnvVar(name: "API_TOKEN", source: .secret(SecretReference(name: "api", key: "token"))),
                                         EnvVar(name: "OUT_DIR", source: .value(dir))],
                                   manifestDirectory: "servers/dump")
        let driver = try LocalDriver(environment: testEnvironment(secretsDir: dir + "/secrets"), manifestRoot: dir + "/manifests", stateDirectory: dir + "/state")
        try await driver.scale(server, replicas: 1)
        let out = dir + "/dump-21400.json"
        let written = try await waitUntil(deadline: .seconds(20)) { FileManager.default.fileExists(atPath: out) && (FileManager.default.contents(atPath: out)?.count ?? 0) > 0 }
        await driver.shutdown(stopInstances: true)
        #expect(written)
        let dump = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        #expect(dump["argv"] as? [String] == ["21400", "0"] + hostile)
        #expect(dump["cwd"] as? String == dir + "/manifests/servers/dump")
        let env = try #require(dump["env"] as? [String: String])
        #expect(env["API_TOKEN"] == secretValue)
        #expect(env["PORT"] == "21400" && env["MCP_PORT"] == "21400" && env["OUT_DIR"] == dir)
        #expect(Set(env.keys).isSubset(of: ["PATH", "HOME", "LANG", "API_TOKEN", "OUT_DIR", "PORT", "MCP_PORT", "MCPFLEET_INSTANCE", "LC_CTYPE"]),
                "unexpected variables: \(env.keys.sorted())")
        #expect(!FileManager.default.fileExists(atPath: dir + "/manifests/servers/dump/pwned"))

        // The secret is nowhere in what the driver wrote: state database (and its WAL), logs.
        let written_files = FileManager.default.enumerator(atPath: dir + "/state")?.allObjects.compactMap { $0 as? String } ?? []
        #expect(written_files.contains("state.db"))
        for file in written_files {
            let data = FileManager.default.contents(atPath: dir + "/state/" + file) ?? Data()
            #expect(data.range(of: Data(secretValue.utf8)) == nil, "the secret appears in \(file)")
        }
    }

    @Test func logsAreRotated() async throws {
        let dir = try makeTemporaryDirectory("logs")
        defer { removeTree(dir) }
        let script = "import time\nfor i in range(3000):\n    print('line %05d ' % i + 'x' * 90, flush=True)\n    time.sleep(0.001)\ntime.sleep(600)\n"
        let server = desiredServer("chatty", command: ["python3", "-c", script], port: 21500)
        let driver = try LocalDriver(environment: testEnvironment(maxLogBytes: 16 * 1024), manifestRoot: dir, stateDirectory: dir + "/state")
        try await driver.scale(server, replicas: 1)
        let log = dir + "/state/logs/chatty/chatty-\(server.revision)-0.log"
        let rotated = try await waitUntil(deadline: .seconds(30)) {
            FileManager.default.fileExists(atPath: log + ".3") && (FileManager.default.contents(atPath: log)?.count ?? 0) > 0
        }
        await driver.shutdown(stopInstances: true)
        #expect(rotated)
        #expect(!FileManager.default.fileExists(atPath: log + ".4"))
        for suffix in [".1", ".2", ".3"] {
            let size = FileManager.default.contents(atPath: log + suffix)?.count ?? 0
            #expect(size >= 16 * 1024, "\(suffix) holds \(size) bytes")
        }
        let text = String(decoding: FileManager.default.contents(atPath: log + ".3") ?? Data(), as: UTF8.self)
        #expect(text.contains("line "))
    }

    @Test func stdioServersRunBehindTheBridge() async throws {
        let dir = try makeTemporaryDirectory("stdio")
        defer { removeTree(dir) }
        try Data("""
        from mcp.server.mcpserver import MCPServer
        server = MCPServer("stdio-echo")

        @server.tool()
        def echo(text: str) -> str:
            return text

        server.run()
        """.utf8).write(to: URL(fileURLWithPath: dir + "/echo.py"))
        let server = desiredServer("echo", command: ["python3", "${MANIFEST_DIR}/echo.py"], port: 21600, transport: .stdio)
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await driver.scale(server, replicas: 2)
            #expect(try await waitUntil(deadline: .seconds(30)) { try await driver.observe().server("echo")?.readyReplicas == 2 })
            #expect(try await mcpInitialize(port: 21600) == "stdio-echo")
            #expect(try await mcpInitialize(port: 21601) == "stdio-echo")
            // The bridged server dies with its bridge's group: nothing left behind after a kill -9 of the bridge.
            let bridge = try #require(instances(try await driver.observe(), "echo").first?.pid)
            kill(pid_t(bridge), SIGKILL)
            #expect(try await waitUntil(deadline: .seconds(20)) {
                let now = instances(try await driver.observe(), "echo")
                return now.first?.restarts == 1 && now.first?.state == .running
            })
            #expect(try await mcpInitialize(port: 21600) == "stdio-echo")
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
        #expect(processes(matching: [dir + "/echo.py"]).isEmpty)
    }

    @Test func runsThePythonTimeServerFromTheCatalog() async throws {
        let dir = try makeTemporaryDirectory("time")
        defer { removeTree(dir) }
        let server = desiredServer("time", command: ["python3", "${MANIFEST_DIR}/time/server.py", "--port", "${PORT}"], port: 21700,
                                   manifestDirectory: "servers")
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: repositoryRoot + "/Manifests", stateDirectory: dir + "/state")
        do {
            try await driver.scale(server, replicas: 2)
            #expect(try await waitUntil(deadline: .seconds(40)) { try await driver.observe().server("time")?.readyReplicas == 2 })
            #expect(try await mcpInitialize(port: 21700) == "time")
            #expect(try await mcpInitialize(port: 21701) == "time")
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        let pids = instances(try await driver.observe(), "time").compactMap(\.pid)
        await driver.shutdown(stopInstances: true)
        for pid in pids { #expect(!isAlive(pid)) }
    }

    @Test func onlyOneControllerSupervisesAStateDirectory() async throws {
        let dir = try makeTemporaryDirectory("lock")
        defer { removeTree(dir) }
        let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await first.start()
        await #expect(throws: DriverError.self) { try await second.start() }
        await first.shutdown(stopInstances: true)
        try await second.start()
        await second.shutdown(stopInstances: true)
        // Tenants are recorded and reported.
        let tenants = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        let json = #"{"name":"team-a","isolation":"shared","namespace":"mcp-team-a","fields":[{"path":"isolation","display":"shared","canonical":"shared"}]}"#
        let tenant = try JSONDecoder().decode(DesiredTenant.self, from: Data(json.utf8))
        try await tenants.ensureTenant(tenant)
        try await tenants.ensureTenant(tenant)
        #expect(try await tenants.observe().tenants.map(\.name) == ["team-a"])
        try await tenants.removeTenant(named: "team-a")
        try await tenants.removeTenant(named: "team-a")
        #expect(try await tenants.observe().tenants.isEmpty)
    }
}
