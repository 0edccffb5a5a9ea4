import FleetCore
import FleetState
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 13's state guarantees, on real SQLite files: repeats counted not appended, bounded retention
/// that compacts instead of dropping, integrity checked at open, backups made and restored online.
@Suite struct StateSafetyTests {
    func entry(_ time: Int64, _ action: String, reason: String = "0 → 1 replicas", outcome: String = "ok", server: String = "web") -> AuditEntry {
        AuditEntry(time: time, server: server, action: action, revision: "r2", reason: reason, manifestCommit: "c1", outcome: outcome)
    }

    @Test func aRepeatedFailureIsOneRowWithACount() async throws {
        let root = try makeTemporaryDirectory("repeats")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state.db")
        let failure = "error: server/web: env API_TOKEN: api/token not found"
        for i in 0..<50 { try await store.appendAudit(entry(1_000 + Int64(i), "scale", outcome: failure)) }
        // Interleaved with other entries, still counted on the first (within the repeat window).
        try await store.appendAudit(entry(2_000, "rollout-start", reason: "rollout from r1 to r2"))
        try await store.appendAudit(entry(2_001, "scale", outcome: failure))
        try await store.appendAudit(entry(2_002, "scale", outcome: "error: something else"))
        let audit = try await store.audit(server: "web", limit: 100)
        #expect(audit.map(\.action) == ["scale", "rollout-start", "scale"])
        #expect(audit[0].repeats == 50 && audit[0].lastTime == 2_001 && audit[0].time == 1_000)
        #expect(audit[2].repeats == nil)
        // Rows themselves are still immutable.
        #expect(throws: SQLiteError.self) { try store.database.execute("UPDATE audit SET entry = '{}'") }
    }

    @Test func retentionCompactsOldEntriesIntoCountsNeverDropsThem() async throws {
        let root = try makeTemporaryDirectory("retention")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state.db", auditRetention: 100)
        var time: Int64 = 0
        for i in 0..<500 {
            time += 1
            try await store.appendAudit(entry(time, i % 2 == 0 ? "scale" : "rollout-start", reason: "step \(i)"))
            try await store.appendAudit(entry(time, "other", reason: "step \(i)", server: "api"))
        }
        let kept = try await store.audit(server: "web", limit: 10_000)
        // At most the bound, 10% over it and one check interval (10 appends for a bound of 100).
        #expect(kept.count >= 100 && kept.count <= 120, "\(kept.count) kept")
        #expect(kept.last?.reason == "step 499")
        let summary = try await store.compactedAudit(server: "web")
        // Every entry is accounted for: kept in full or counted.
        #expect(summary.reduce(0) { $0 + $1.count } + kept.count == 500)
        #expect(Set(summary.map(\.action)) == ["scale", "rollout-start"])
        #expect(summary.allSatisfy { $0.firstTime >= 1 && $0.lastTime <= 500 && $0.firstTime <= $0.lastTime })
        // Another server's log is its own.
        #expect(try await store.audit(server: "api", limit: 10_000).count <= 120)
        // Deleting outside compaction is still refused.
        #expect(throws: SQLiteError.self) { try store.database.execute("DELETE FROM audit") }
    }

    @Test func aDamagedDatabaseIsRefusedBeforeAnythingIsWritten() async throws {
        let root = try makeTemporaryDirectory("damaged")
        defer { removeTree(root) }
        let path = root + "/state.db"
        do {
            let store = try SQLiteRolloutStore(path: path)
            for i in 0..<400 { try await store.appendAudit(entry(Int64(i), "scale", reason: "reason \(i) " + String(repeating: "x", count: 80))) }
            try store.database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        // Overwrite the middle of the file (past the header) as a failing disk would.
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        #expect(bytes.count > 5 * 4096)
        for i in (2 * 4096 + 200)..<(4 * 4096) { bytes[i] = 0xAB }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect { try SQLiteDatabase(path: path) } throws: { error in
            guard let damage = error as? StateDamage else { return false }
            return damage.path == path && (damage.detail.contains("quick_check") || damage.detail.contains("malformed"))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before, "the damaged file must be left as it was")
        // Not a database at all.
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: root + "/garbage.db"))
        #expect(throws: StateDamage.self) { try SQLiteDatabase(path: root + "/garbage.db") }
    }

    @Test func backupIsConsistentWhileWritingAndRestoreBringsItBack() async throws {
        let root = try makeTemporaryDirectory("backup")
        defer { removeTree(root) }
        do {
            let store = try SQLiteRolloutStore(path: root + "/state.db")
            try await store.save(RolloutRecord(server: "web", stableRevision: "r1", failedRevisions: ["r0"], failureReasons: ["r0": "crash loop"]))
            try await store.saveRevision(RevisionRecord(server: "web", revision: "r1", version: "1", fields: [], createdAt: 5, outcome: .promoted))
            // A writer keeps going while the backup runs (another connection, as a running controller).
            let writer = Task {
                let other = try SQLiteRolloutStore(path: root + "/state.db")
                for i in 0..<300 { try await other.appendAudit(entry(Int64(i), "scale", reason: "write \(i)")) }
            }
            try store.database.backup(to: root + "/backup.db")
            try await writer.value
        }
        let counts = try #require(try SQLiteRolloutStore.counts(path: root + "/backup.db"))
        #expect(counts.rollouts == 1 && counts.revisions == 1 && counts.audit <= 300)
        try SQLiteDatabase.checkIntegrity(root + "/backup.db")

        // The state is lost: a database with nothing in it (a new file here; the end-to-end tests truncate
        // the real one between processes). Restoring brings the history back.
        let empty = try SQLiteRolloutStore(path: root + "/lost/state.db")
        #expect(try await empty.records().isEmpty)
        try empty.database.restore(from: root + "/backup.db")
        #expect(try await empty.record(server: "web")?.failureReasons == ["r0": "crash loop"])
        #expect(try await empty.revisions(server: "web").map(\.outcome) == [.promoted])
        #expect(try await empty.audit(server: "web", limit: 1000).count == counts.audit)
        // A damaged backup is refused.
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: root + "/bad.db"))
        #expect(throws: StateDamage.self) { try empty.database.restore(from: root + "/bad.db") }
    }

    @Test func heartbeatsAreKept() async throws {
        let root = try makeTemporaryDirectory("heartbeat")
        defer { removeTree(root) }
        let store = try SQLiteRolloutStore(path: root + "/state.db")
        #expect(try await store.lastHeartbeat() == nil)
        try await store.heartbeat(now: 42)
        try await store.heartbeat(now: 43)
        #expect(try await SQLiteRolloutStore(path: root + "/state.db").lastHeartbeat() == 43)
        try await store.heartbeat(now: nil)  // the controller stopped
        #expect(try await store.lastHeartbeat() == nil && store.keepsHeartbeat)
    }

    @Test func recordsOfEarlierVersionsStillDecode() throws {
        let old = #"{"server":"web","phase":"rolled-back","stableRevision":"r1","failedRevisions":["r2"],"paused":false,"step":0,"stepStartedAt":5,"promoted":false,"measurements":[],"updatedAt":6}"#
        let r = try JSONDecoder().decode(RolloutRecord.self, from: Data(old.utf8))
        #expect(r.phase == .rolledBack && r.failedRevisions == ["r2"] && r.failureReasons.isEmpty && r.probes.isEmpty && !r.pinForced)
    }
}
