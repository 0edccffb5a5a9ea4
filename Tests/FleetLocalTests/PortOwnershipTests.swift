import FleetCore
import FleetLocal
import FleetState
import FleetTesting
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A process that listens on `port` and never answers (or, with `fork`, whose child listens).
func silentListener(port: Int, fork: Bool = false) async throws -> TestProcess {
    let script = """
    import os, socket, time
    def listen():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", \(port))); s.listen(16)
        time.sleep(600)
    if \(fork ? "True" : "False"):
        if os.fork() == 0: listen()
        time.sleep(600)
    else:
        listen()
    """
    let p = try TestProcess("/usr/bin/env", ["python3", "-c", script])
    try await waitUntil("listener on \(port)", timeout: .seconds(20)) {
        if !p.isRunning { throw TestFailure("listener exited: \(p.output)") }
        return TestEnvironment.isListening(port)
    }
    return p
}

/// Issue 13: health means *our* process. The kernel's socket tables decide who holds a replica's port.
@Suite(.serialized) struct PortOwnershipTests {
    @Test func ownedFreeAndForeignListeners() async throws {
        let listener = try await silentListener(port: 21950)
        defer { listener.signal(SIGKILL) }
        // The kernel's two views agree: sock_diag netlink (used) and /proc/net/tcp (the fallback).
        let viaNetlink = try #require(PortOwnership.Listeners.readNetlink())
        #expect(!viaNetlink.inodes(port: 21950).isEmpty)
        #expect(viaNetlink.inodes(port: 21950) == PortOwnership.Listeners.readProcNet().inodes(port: 21950))
        #expect(PortOwnership.verdict(port: 21950, pid: listener.pid) == .owned)
        let stranger = try TestProcess("/bin/sleep", ["60"])
        defer { stranger.signal(SIGKILL) }
        guard case .foreign(let holders) = PortOwnership.verdict(port: 21950, pid: stranger.pid) else {
            Issue.record("a listener of another process must be foreign")
            return
        }
        #expect(holders.map(\.pid) == [listener.pid])
        #expect(holders.first?.command.contains("python") == true, "\(holders)")
        #expect(PortOwnership.verdict(port: 21951, pid: listener.pid) == .free)
        // A listener in a child of the instance's process still belongs to the instance.
        let parent = try await silentListener(port: 21952, fork: true)
        defer { parent.signal(SIGKILL); kill(-parent.pid, SIGKILL) }
        #expect(PortOwnership.verdict(port: 21952, pid: parent.pid) == .owned)
        for p in processes(matching: ["python3", "-c"]) where p != Int(parent.pid) && p != Int(listener.pid) {
            if PortOwnership.verdict(port: 21952, pid: Int32(p)) == .owned { kill(pid_t(p), SIGKILL) }
        }
    }

    @Test func anInstanceIsNotStartedOnATakenPortAndTheHolderIsNamed() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("taken")
        defer { removeTree(dir) }
        let foreign = try await silentListener(port: 21960)
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        let server = desiredServer("taken", command: [binary, "--port", "${PORT}"], port: 21960)
        do {
            try await driver.scale(server, replicas: 1)
            var seen: LiveInstance?
            #expect(try await waitUntil(deadline: .seconds(20)) {
                seen = instances(try await driver.observe(), "taken").first
                return seen?.state == .failed && (seen?.restarts ?? 0) >= 1
            }, "\(String(describing: seen))")
            #expect(seen?.reason?.contains("port 21960 is already in use by pid \(foreign.pid) (") == true && seen?.reason?.contains("python") == true,
                    "\(seen?.reason ?? "-")")
            // The holder is named by its program, never by its arguments (they can carry secrets).
            #expect(seen?.reason?.contains("socket") == false && seen?.reason?.contains("\n") == false, "\(seen?.reason ?? "-")")
            #expect(seen?.healthy == false)
            #expect(try await driver.endpoints(server: "taken", revision: server.revision).isEmpty)
            #expect(processes(matching: [binary, "21960"]).isEmpty, "the replica must not be started on a taken port")
            // Once the holder is gone, the instance starts.
            foreign.signal(SIGKILL)
            _ = try await foreign.wait(timeout: .seconds(10))
            #expect(try await waitUntil(deadline: .seconds(40)) { try await driver.observe().server("taken")?.readyReplicas == 1 })
            #expect(try await mcpInitialize(port: 21960).isEmpty == false)
        } catch {
            foreign.signal(SIGKILL)
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
    }

    @Test func aForeignServerOnARunningInstancesPortIsNotTakenForIt() async throws {
        let dir = try makeTemporaryDirectory("foreign")
        defer { removeTree(dir) }
        // An instance that runs but never listens itself.
        let server = desiredServer("quiet", command: ["python3", "-c", "import time; time.sleep(600)"], port: 21970)
        let driver = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await driver.scale(server, replicas: 1)
            let mine = try #require(instances(try await driver.observe(), "quiet").first?.pid)
            // A real MCP server takes the instance's port.
            let foreign = try await TestEnvironment.startMCPServer("everything", port: 21970)
            defer { foreign.signal(SIGKILL) }
            // The supervisor checks who holds the port of an instance not yet seen listening itself on
            // every tick (not on every observe): the holder is named within one.
            #expect(try await waitUntil(deadline: .seconds(5)) {
                try await instances(driver.observe(), "quiet").first?.reason?.contains("is held by") == true
            })
            let seen = try #require(instances(try await driver.observe(), "quiet").first)
            #expect(seen.pid == mine && !seen.healthy && seen.state == .starting)
            #expect(seen.reason?.contains("port 21970 is held by pid \(foreign.pid)") == true && seen.reason?.contains("not by this instance (pid \(mine))") == true,
                    "\(seen.reason ?? "-")")
            #expect(try await driver.observe().server("quiet")?.readyReplicas == 0)
            // Probes are never pointed at it: the foreign server answers MCP, but it is not the replica.
            #expect(try await driver.endpoints(server: "quiet", revision: server.revision).isEmpty)
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
    }

    @Test func unstartableInstancesSayWhyAndLogTailsHideSecrets() async throws {
        let dir = try makeTemporaryDirectory("unstartable")
        defer { removeTree(dir) }
        // Executable bit set, but not a program: exec fails with ENOEXEC, every time.
        try Data("this is not a program\n".utf8).write(to: URL(fileURLWithPath: dir + "/not-a-program"))
        chmod(dir + "/not-a-program", 0o755)
        let secret = "s3cr3t-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/secrets/api", withIntermediateDirectories: true)
        try Data((secret + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/secrets/api/token"))
        let driver = try LocalDriver(environment: testEnvironment(secretsDir: dir + "/secrets"), manifestRoot: dir, stateDirectory: dir + "/state")
        let broken = desiredServer("broken", command: [dir + "/not-a-program"], port: 21980)
        let script = "import os, sys; print('loading config'); print('token is ' + os.environ['API_TOKEN']); print('fatal: no upstream configured', flush=True); sys.exit(3)"
        let leaky = desiredServer("leaky", command: ["python3", "-c", script], port: 21990,
                                  env: [EnvVar(name: "API_TOKEN", source: .secret(SecretReference(name: "api", key: "token")))])
        do {
            try await driver.scale(broken, replicas: 1)
            var b: LiveInstance?
            #expect(try await waitUntil(deadline: .seconds(20)) {
                b = instances(try await driver.observe(), "broken").first
                return b?.unstartable == true
            }, "\(String(describing: b))")
            #expect(b?.reason?.contains("cannot start") == true && b?.state == .failed, "\(b?.reason ?? "-")")

            try await driver.scale(leaky, replicas: 1)
            var l: LiveInstance?
            #expect(try await waitUntil(deadline: .seconds(20)) {
                l = instances(try await driver.observe(), "leaky").first
                return l?.reason?.contains("exited with status 3") == true && l?.logTail != nil
            }, "\(String(describing: l))")
            let tail = l?.logTail ?? []
            #expect(tail.contains("fatal: no upstream configured"), "\(tail)")
            #expect(tail.contains("token is [secret API_TOKEN]"), "\(tail)")
            #expect(!tail.joined().contains(secret))
            #expect(l?.unstartable == nil)
            // A missing secret file stops the scale with an error retrying cannot fix.
            let secretless = desiredServer("secretless", command: ["true"], port: 21995,
                                           env: [EnvVar(name: "DB", source: .secret(SecretReference(name: "db", key: "password")))])
            await #expect { try await driver.scale(secretless, replicas: 1) } throws: { error in
                (error as? DriverError)?.terminal == true && "\(error)".contains("db/password")
            }
        } catch {
            await driver.shutdown(stopInstances: true)
            throw error
        }
        await driver.shutdown(stopInstances: true)
    }

    @Test func anotherProcessSeesTheReasonAndWhetherAControllerSupervises() async throws {
        let dir = try makeTemporaryDirectory("observer")
        defer { removeTree(dir) }
        let server = desiredServer("crashy", command: ["python3", "-c", "import sys; print('boom'); sys.exit(1)"], port: 22000)
        let supervisor = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        do {
            try await supervisor.scale(server, replicas: 1)
            // `status` opens its own driver on the same state directory while the controller runs.
            let observer = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
            var seen: LiveInstance?
            #expect(try await waitUntil(deadline: .seconds(20)) {
                seen = instances(try await observer.observe(), "crashy").first
                return seen?.reason?.contains("exited with status 1") == true
            }, "\(String(describing: seen))")
            #expect(seen?.reason?.contains("no controller is supervising") == false, "\(seen?.reason ?? "-")")
            #expect(seen?.logTail?.contains("boom") == true)
            await supervisor.shutdown(stopInstances: true)
            let after = try #require(instances(try await observer.observe(), "crashy").first)
            #expect(after.reason?.contains("no controller is supervising") == true, "\(after.reason ?? "-")")
        } catch {
            await supervisor.shutdown(stopInstances: true)
            throw error
        }
    }

    @Test func aLostDatabaseWhileInstancesRunIsRefusedAndARestoreAdoptsThem() async throws {
        let binary = try everythingServer()
        let dir = try makeTemporaryDirectory("lost")
        defer { removeTree(dir) }
        let server = desiredServer("kept", command: [binary, "--port", "${PORT}"], port: 22010)
        let pid: Int
        do {
            let first = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
            try await first.scale(server, replicas: 1)
            #expect(try await waitUntil(deadline: .seconds(30)) { try await first.observe().server("kept")?.readyReplicas == 1 })
            pid = try #require(instances(try await first.observe(), "kept").first?.pid)
            try first.database.backup(to: dir + "/backup.db")
            await first.shutdown(stopInstances: false)
        }
        defer { kill(pid_t(pid), SIGKILL) }
        // The database is truncated while the instance runs.
        try Data().write(to: URL(fileURLWithPath: dir + "/state/state.db"))
        #expect { _ = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state") } throws: { error in
            guard let lost = error as? LocalStateLost else { return false }
            return lost.processes.map(\.pid) == [Int32(pid)] && lost.stateDirectory == dir + "/state"
        }
        #expect(isAlive(pid), "the refusal must leave the instance alone")
        // Restored from the backup, the next driver adopts the instance instead of starting another.
        try SQLiteDatabase(path: dir + "/state/state.db").restore(from: dir + "/backup.db")
        let second = try LocalDriver(environment: testEnvironment(), manifestRoot: dir, stateDirectory: dir + "/state")
        try await second.start()
        #expect(instances(try await second.observe(), "kept").first?.pid == pid)
        #expect(processes(matching: [binary, "22010"]) == [pid])
        await second.shutdown(stopInstances: true)
        #expect(!isAlive(pid))
    }
}
