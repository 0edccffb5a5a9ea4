import FleetCore
import FleetState
import FleetTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct SQLiteRolloutStoreTests {
    @Test func recordsRoundTripAndUpdate() async throws {
        let root = try makeTemporaryDirectory("records")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state/state.db")
        #expect(try await store.record(server: "web") == nil)
        var web = RolloutRecord(server: "web", phase: .progressing, stableRevision: "aaa", targetRevision: "bbb", failedRevisions: ["ccc"],
                                step: 2, stepStartedAt: 1000, measurements: [true, false], message: "canary 2/3", updatedAt: 1001)
        try await store.save(web)
        try await store.save(RolloutRecord(server: "api"))
        #expect(try await store.record(server: "web") == web)
        web.phase = .stable
        web.targetRevision = nil
        try await store.save(web)
        // A second store on the same file sees what the first committed.
        let other = try SQLiteRolloutStore(path: root + "/state/state.db")
        #expect(try await other.record(server: "web") == web)
        #expect(try await other.records().map(\.server) == ["api", "web"])
        try await other.removeRecord(server: "api")
        try await other.removeRecord(server: "api")
        #expect(try await store.records().map(\.server) == ["web"])
    }

    @Test func revisionsKeepHistoryAndOutcomes() async throws {
        let root = try makeTemporaryDirectory("revisions")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state.db")
        let fields = [SpecField(path: "version", display: "\"1.0\"")]
        var first = RevisionRecord(server: "web", revision: "r1", version: "1.0", fields: fields, createdAt: 10, outcome: .pending, manifestCommit: "abc")
        let second = RevisionRecord(server: "web", revision: "r2", version: "1.1", fields: fields, createdAt: 20, outcome: .pending)
        try await store.saveRevision(second)
        try await store.saveRevision(first)
        try await store.saveRevision(RevisionRecord(server: "api", revision: "x", version: "2", fields: [], createdAt: 5, outcome: .promoted))
        first.outcome = .superseded
        first.reason = "replaced by r2"
        try await store.saveRevision(first)
        let history = try await store.revisions(server: "web")
        #expect(history == [first, second])
    }

    @Test func auditIsAppendOnlyAndNewestLimited() async throws {
        let root = try makeTemporaryDirectory("audit")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state.db")
        for i in 0..<5 {
            try await store.appendAudit(AuditEntry(time: Int64(i), server: i % 2 == 0 ? "web" : "api", action: "scale", revision: "r\(i)", reason: "step \(i)", outcome: "ok"))
        }
        #expect(try await store.audit(server: nil, limit: 3).map(\.time) == [2, 3, 4])
        #expect(try await store.audit(server: "web", limit: 10).map(\.time) == [0, 2, 4])
        #expect(throws: SQLiteError.self) { try store.database.execute("DELETE FROM audit") }
        #expect(throws: SQLiteError.self) { try store.database.execute("UPDATE audit SET server = 'x'") }
        #expect(try await store.audit(server: nil, limit: 100).count == 5)
    }

    /// A real writer process, killed with SIGKILL while it rewrites the record and a second table in
    /// one transaction over and over, leaves a file that opens and holds one whole committed step.
    @Test func survivesAWriterKilledMidTransaction() async throws {
        let root = try makeTemporaryDirectory("crash")
        defer { removeTree(root) }
        let path = root + "/state.db"
        do {
            let store = try SQLiteRolloutStore(path: path)
            try await store.save(RolloutRecord(server: "web", phase: .progressing, targetRevision: "r2", step: 0, message: "start"))
            try store.database.execute("CREATE TABLE crash_probe (n INTEGER NOT NULL, pad BLOB NOT NULL)")
        }
        // Each transaction bumps the step, rewrites a large message and replaces 200 probe rows tagged
        // with the new step: any mix of old and new after the kill would break step == every probe's n.
        let writer = """
        import sqlite3, sys
        con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
        con.execute("PRAGMA journal_mode=WAL")
        while True:
            con.execute("BEGIN IMMEDIATE")
            con.execute("UPDATE rollouts SET record = json_set(record, '$.step', json_extract(record, '$.step') + 1, '$.message', hex(randomblob(20000))) WHERE server = 'web'")
            con.execute("DELETE FROM crash_probe")
            con.execute("INSERT INTO crash_probe (n, pad) WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200) SELECT (SELECT json_extract(record, '$.step') FROM rollouts WHERE server = 'web'), randomblob(2000) FROM c")
            con.execute("COMMIT")
        """
        var lastStep = 0
        for round in 1...3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", writer, path]
            try process.run()
            let reader = try SQLiteRolloutStore(path: path)
            let target = lastStep + 5
            let progressed = try await waitUntil(deadline: .seconds(30)) {
                (try await reader.record(server: "web")?.step ?? 0) >= target
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            #expect(progressed, "round \(round): the writer made no progress")
            #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)

            let reopened = try SQLiteRolloutStore(path: path)
            #expect(try reopened.database.query("PRAGMA integrity_check").first?[0].string == "ok")
            let record = try #require(try await reopened.record(server: "web"))
            #expect(record.step >= target)
            #expect(record.phase == .progressing && record.targetRevision == "r2")
            #expect(record.message?.count == 40000)
            let probes = try reopened.database.query("SELECT count(*), min(n), max(n) FROM crash_probe")[0]
            #expect(probes[0].int == 200 && probes[1].int == record.step && probes[2].int == record.step,
                    "round \(round): record at step \(record.step) but probe rows \(probes.values)")
            lastStep = record.step
        }
    }
}

/// The controller and operator commands (`promote`, `pause`, `rollback`) write the same record from
/// different processes: each saves over the generation it read, so neither loses the other's change.
@Suite struct RolloutRecordCompareAndSwapTests {
    @Test func aWriteBetweenReadAndSaveIsRefusedNotOverwritten() async throws {
        let root = try makeTemporaryDirectory("cas")
        defer { removeTree(root) }
        let controller = try SQLiteRolloutStore(path: root + "/state.db")
        let operatorCLI = try SQLiteRolloutStore(path: root + "/state.db")  // another process's connection
        let first = try #require(try await controller.saveIfUnchanged(RolloutRecord(server: "web", phase: .paused, targetRevision: "r2")))
        #expect(first.generation == 1)
        // Nothing stored yet is generation 0: a second creator loses.
        #expect(try await operatorCLI.saveIfUnchanged(RolloutRecord(server: "web")) == nil)

        // Both read generation 1; the operator promotes first; the controller's step from the old read is refused.
        var step = try #require(try await controller.record(server: "web"))
        var promote = try #require(try await operatorCLI.record(server: "web"))
        promote.promoted = true
        let promoted = try #require(try await operatorCLI.saveIfUnchanged(promote))
        #expect(promoted.generation == 2)
        step.message = "canary paused (step 1 of 2)"
        #expect(try await controller.saveIfUnchanged(step) == nil)
        #expect(try await controller.record(server: "web")?.promoted == true, "the promote survives")

        // Read again and stepped on: saved, with the promote in it.
        var again = try #require(try await controller.record(server: "web"))
        again.message = "promoted"
        let saved = try #require(try await controller.saveIfUnchanged(again))
        #expect(saved.generation == 3 && saved.promoted)
        #expect(try await operatorCLI.record(server: "web") == saved)
    }

    @Test func aRecordWrittenBeforeGenerationsExistedIsGenerationZero() async throws {
        let root = try makeTemporaryDirectory("cas-legacy")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state.db")
        try await store.save(RolloutRecord(server: "web", phase: .stable, stableRevision: "r1"))
        let db = try SQLiteDatabase(path: root + "/state.db")
        // An older controller's JSON has no `generation` key.
        try db.execute("UPDATE rollouts SET record = json_remove(record, '$.generation') WHERE server = 'web'")
        let legacy = try #require(try await store.record(server: "web"))
        #expect(legacy.generation == 0)
        #expect(try await store.saveIfUnchanged(legacy)?.generation == 1)
        #expect(try await store.saveIfUnchanged(legacy) == nil)
    }

    /// Records are decoded once and served from the cache until someone writes: this store, a driver on
    /// the same connection, another process, or a restore. Each kind of write is seen at the next read.
    @Test func decodedRecordsAreCachedUntilAnyoneWrites() async throws {
        let root = try makeTemporaryDirectory("record-cache")
        defer { removeTree(root) }
        let path = root + "/state.db"
        let store = try SQLiteRolloutStore(path: path)
        for name in ["a", "b", "c"] { try await store.save(RolloutRecord(server: name, phase: .stable, stableRevision: "r1")) }
        let first = try await store.records()
        let decodes = store.recordDecodes
        #expect(try await store.records() == first)
        #expect(try await store.record(server: "b") == first[1])
        #expect(try await store.record(server: "zz") == nil)
        #expect(store.recordDecodes == decodes, "nothing written: nothing decoded again")

        // The store's own write: seen, and only the written record is new.
        var b = first[1]
        b.message = "own write"
        try await store.save(b)
        #expect(try await store.records().map(\.message) == [nil, "own write", nil])
        #expect(store.recordDecodes == decodes)

        // Another process (another connection): data_version moves; only the changed row is decoded.
        let other = try SQLiteRolloutStore(path: path)
        var c = first[2]
        c.paused = true
        try await other.save(c)
        #expect(try await store.record(server: "c")?.paused == true)
        #expect(try await store.records().map(\.paused) == [false, false, true])
        #expect(store.recordDecodes == decodes + 2, "the changed row, once per read path")
        try await other.removeRecord(server: "a")
        #expect(try await store.records().map(\.server) == ["b", "c"])
        #expect(try await store.record(server: "a") == nil)

        // A write through the same connection, outside the store (a driver sharing the database).
        try store.database.execute("UPDATE rollouts SET record = json_set(record, '$.message', 'driver') WHERE server = 'b'")
        #expect(try await store.record(server: "b")?.message == "driver")
        #expect(try await store.records().first?.message == "driver")

        // A restore replaces everything: the cache is not trusted past it.
        let backup = root + "/backup.db"
        try store.database.backup(to: backup)
        try await store.save(RolloutRecord(server: "d"))
        #expect(try await store.records().map(\.server) == ["b", "c", "d"])
        try store.database.restore(from: backup)
        #expect(try await store.records().map(\.server) == ["b", "c"])

        // An unreadable row written elsewhere is an error at the next read, never a stale answer.
        try other.database.execute("UPDATE rollouts SET record = 'not json' WHERE server = 'c'")
        await #expect(throws: SQLiteError.self) { try await store.records() }
        await #expect(throws: SQLiteError.self) { try await store.record(server: "c") }
    }
}
