import FleetCore
import FleetTesting
import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Issue 13's state and status guarantees through the built binary: a lost or damaged database is an
/// error with a way back, backups restore the history, `/readyz` follows the store, and status tells the truth.
@Suite(.serialized) struct StateEndToEndTests {
    func good(_ version: String) -> ServerManifest { ServerManifest(version: version) }

    func converge(_ f: FleetFixture) async throws {
        let r = try await f.fleet(["run", f.dir, "--once", "--metrics-address", "", "--timeout", "90s"], timeout: .seconds(120))
        #expect(r.status == 0, "\(r.out.suffix(3000))")
    }

    @Test func aTruncatedDatabaseRefusesToStartAndRestoreBringsTheHistoryBack() async throws {
        let f = try FleetFixture("truncated")
        defer { f.cleanUp() }
        try f.write([good("1")])
        try await converge(f)
        try f.write([good("2")])
        try await converge(f)
        let before = try await f.history()
        #expect(before.revisions.count == 2)
        let pids = f.serverProcesses().map(\.pid)
        #expect(pids.count == 2)

        let backup = f.root + "/state-backup.db"
        let saved = try await f.fleet(["state", "backup", backup, "-C", f.dir])
        #expect(saved.status == 0 && saved.out.contains("Backed up the state of environment dev (1 rollout records, 2 revisions"), "\(saved.out)")

        // The file is truncated while the instances run (they keep running).
        try Data().write(to: URL(fileURLWithPath: f.stateDirectory + "/state.db"))
        for command in [["run", f.dir, "--once", "--metrics-address", ""], ["status", f.dir], ["history", "time", "-C", f.dir]] {
            let r = try await f.fleet(command)
            #expect(r.status == 2, "\(command[0]): \(r.out)")
            #expect(r.out.contains("is missing or empty, but 2 instance(s) started from \(f.stateDirectory) still run"), "\(command[0]): \(r.out)")
            #expect(r.out.contains("mcpfleet state restore FILE"), "\(r.out)")
        }
        #expect(f.serverProcesses().map(\.pid) == pids, "the refusal must leave the instances alone")

        let restored = try await f.fleet(["state", "restore", backup, "-C", f.dir])
        #expect(restored.status == 0 && restored.out.contains("Restored the state of environment dev"), "\(restored.out)")
        let after = try await f.history()
        #expect(after.revisions == before.revisions)
        // The next controller adopts what runs: the same processes, stable.
        try await converge(f)
        #expect(f.serverProcesses().map(\.pid) == pids)
        let s = try #require(try await f.server())
        #expect(s.phase == .stable && s.readyReplicas == 2)
    }

    @Test func aDamagedDatabaseIsRefusedAndRestoreMovesItAside() async throws {
        let f = try FleetFixture("damaged")
        defer { f.cleanUp() }
        try f.write([good("1")])
        try await converge(f)
        let backup = f.root + "/backup.db"
        #expect(try await f.fleet(["state", "backup", backup, "-C", f.dir]).status == 0)
        // Fold the WAL into the file, then damage pages past the header, as a failing disk would.
        let checkpoint = try TestProcess("/usr/bin/env", ["python3", "-c", "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')",
                                                          f.stateDirectory + "/state.db"])
        #expect(try await checkpoint.wait() == 0, "\(checkpoint.output)")
        let path = f.stateDirectory + "/state.db"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.count >= 4 * 4096)
        for i in (4096 + 100)..<min(bytes.count, 3 * 4096) { bytes[i] = 0xAB }
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let r = try await f.fleet(["run", f.dir, "--once", "--metrics-address", ""])
        #expect(r.status == 2 && r.out.contains("is damaged") && r.out.contains("nothing was changed") && r.out.contains("state restore"), "\(r.out)")
        let restored = try await f.fleet(["state", "restore", backup, "-C", f.dir])
        #expect(restored.status == 0 && restored.out.contains("The previous file is kept at \(path).replaced-"), "\(restored.out)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: f.stateDirectory).filter { $0.hasPrefix("state.db.replaced-") }
        #expect(!kept.isEmpty)
        #expect(try await f.history().revisions.count == 1)
        try await converge(f)
    }

    @Test func restoreRefusesWhileAControllerRuns() async throws {
        let f = try FleetFixture("busy")
        defer { f.cleanUp() }
        try f.write([good("1")])
        try await converge(f)
        let backup = f.root + "/backup.db"
        #expect(try await f.fleet(["state", "backup", backup, "-C", f.dir]).status == 0)
        #expect(try await f.fleet(["state", "backup", backup, "-C", f.dir]).out.contains("already exists"))
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await waitUntil("controller supervising", timeout: .seconds(30)) { controller.output.contains("first sync done") }
        let r = try await f.fleet(["state", "restore", backup, "-C", f.dir])
        #expect(r.status == 2 && r.out.contains("stop it before restoring"), "\(r.out)")
    }

    @Test func readyzFollowsTheStore() async throws {
        let f = try FleetFixture("readyz")
        defer { f.cleanUp() }
        try f.write([good("1")])
        let metrics = TestEnvironment.freePort()
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(),
                                         ["run", f.dir, "--no-stop-on-exit", "--metrics-address", "127.0.0.1:\(metrics)", "--poll", "100ms"])
        defer { controller.signal(SIGKILL) }
        func readyz() async -> (Int, String) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(metrics)/readyz")!)
            request.timeoutInterval = 5
            let session = URLSession(configuration: .ephemeral)
            defer { session.invalidateAndCancel() }
            guard let (data, response) = try? await session.data(for: request) else { return (0, "") }
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        }
        try await waitUntil("ready", timeout: .seconds(60), every: .milliseconds(200)) { await readyz().0 == 200 }
        // Another process takes the database's write lock and keeps it: the store is unwritable.
        let locker = try TestProcess("/usr/bin/env", ["python3", "-c", """
            import sqlite3, sys, time
            db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
            db.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            time.sleep(600)
            """, f.stateDirectory + "/state.db"])
        defer { locker.signal(SIGKILL) }
        try await waitUntil("lock taken", timeout: .seconds(30)) { locker.output.contains("locked") }
        var answer = (0, "")
        try await waitUntil("not ready while the store is locked", timeout: .seconds(60), every: .milliseconds(250)) {
            answer = await readyz()
            return answer.0 == 503
        }
        #expect(answer.1.contains("the rollout store is not writable") && answer.1.contains("locked"), "\(answer.1)")
        #expect(controller.output.contains("the rollout store is not writable"))
        locker.signal(SIGKILL)
        _ = try await locker.wait()
        try await waitUntil("ready again", timeout: .seconds(60), every: .milliseconds(250)) { await readyz().0 == 200 }
    }

    @Test func statusTellsTheTruth() async throws {
        let f = try FleetFixture("status")
        defer { f.cleanUp() }
        var clock = good("1")
        clock.name = "clock"
        clock.port = f.basePort + 10
        try f.write([good("1"), clock])
        // A git work tree: a rollout of uncommitted edits is not attributed to HEAD alone.
        for args in [["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "catalog"]] {
            let git = try TestProcess("/usr/bin/git", ["-C", f.dir] + args)
            #expect(try await git.wait() == 0, "\(git.output)")
        }
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await waitUntil("stable", timeout: .seconds(90), every: .milliseconds(200)) {
            let s = try await f.status()
            return s.servers.count == 2 && s.servers.allSatisfy { $0.phase == .stable && $0.readyReplicas == 2 }
        }

        // An operator pause shows as paused.
        #expect(try await f.fleet(["pause", "time", "-C", f.dir]).status == 0)
        #expect(try await f.server()?.phase == .paused)
        #expect(try await f.fleet(["resume", "time", "-C", f.dir]).status == 0)
        try await waitUntil("resumed") { try await f.server()?.phase == .stable }

        // A replica that stops answering: degraded at 1 of 2, saying why; back to stable when it answers.
        let victim = try #require(f.serverProcesses().first { $0.port == String(f.basePort) })
        kill(victim.pid, SIGSTOP)
        try await waitUntil("degraded", timeout: .seconds(30), every: .milliseconds(200)) {
            let s = try await f.server()
            return s?.phase == .degraded && s?.readyReplicas == 1
        }
        let text = try await f.fleet(["status", f.dir]).out
        #expect(text.contains("degraded") && text.contains("1/2 replicas ready") && text.contains("probe failed"), "\(text)")
        kill(victim.pid, SIGCONT)
        try await waitUntil("stable again", timeout: .seconds(30), every: .milliseconds(200)) { try await f.server()?.phase == .stable }

        // Uncommitted, a canary with analysis: "n of 5 measurements taken" while it measures, never "n/n".
        var canary = good("2")
        canary.rollout = "strategy: canary\n    steps:\n      - replicas: 1\n        analysis: true"
        canary.extra = "  slo: probed"
        try f.write([canary, clock])
        try await waitUntil("analysis under way", timeout: .seconds(60), every: .milliseconds(200)) {
            let out = try await f.fleet(["status", f.dir]).out
            return ["1", "2", "3", "4"].contains { out.contains("analysis: \($0) of 5 measurements taken") }
        }
        try await waitUntil("canary promoted", timeout: .seconds(90), every: .milliseconds(250)) {
            try await f.history().audit.contains { $0.action == "rollout-complete" && $0.reason.contains("replaced") }
        }
        let history = try await f.fleet(["history", "time", "-C", f.dir]).out
        #expect(history.contains("+ uncommitted changes"), "\(history)")

        // A deleted server leaves status (row and notes).
        try f.write([canary])
        try await waitUntil("clock gone", timeout: .seconds(60), every: .milliseconds(250)) {
            let out = try await f.fleet(["status", f.dir]).out
            return !out.contains("clock")
        }
        #expect(!controller.output.contains("no controller is supervising"))
    }
}
