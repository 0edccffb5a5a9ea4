import FleetCore
import Synchronization
import Foundation

/// The `RolloutStore` of host drivers: one SQLite file (WAL, transactions), so a controller killed at
/// any moment finds each record either as it was or as it was saved, never half-written.
/// Records are kept as JSON columns beside the keys they are looked up by.
///
/// The audit log is append-only: triggers refuse updates, and deletes except by compaction. A repeat of
/// a recent entry (a retry failing the same way) is counted beside it (`audit_repeats`) instead of
/// appended. Retention is bounded per server: past `auditRetention + auditRetention / 10` entries
/// (checked every 64 appends of the server), the oldest are compacted down to `auditRetention` — folded into
/// `audit_summary` (a count and the first and last time per action, revision and outcome) in the same
/// transaction, never silently dropped.
public final class SQLiteRolloutStore: RolloutStore {
    public let database: SQLiteDatabase
    /// Audit entries kept in full per server (see the type's documentation).
    public let auditRetention: Int
    public static let defaultAuditRetention = 5_000
    /// Appends of a server between two checks of its bound.
    var compactionCheckEvery: Int { max(1, min(64, auditRetention / 10)) }
    private let appendsSinceCheck = Mutex<[String: Int]>([:])

    static let schema: [String] = [
        """
        CREATE TABLE rollouts (server TEXT PRIMARY KEY, record TEXT NOT NULL, updated_at INTEGER NOT NULL);
        CREATE TABLE revisions (
            server TEXT NOT NULL, revision TEXT NOT NULL, created_at INTEGER NOT NULL, record TEXT NOT NULL,
            PRIMARY KEY (server, revision));
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, server TEXT NOT NULL, entry TEXT NOT NULL);
        CREATE INDEX audit_server ON audit (server, id);
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """,
        """
        DROP TRIGGER audit_no_delete;
        CREATE TABLE audit_compaction (active INTEGER NOT NULL);
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit WHEN NOT EXISTS (SELECT 1 FROM audit_compaction)
            BEGIN SELECT RAISE(ABORT, 'the audit log is append-only (old entries are only compacted into audit_summary)'); END;
        CREATE TABLE audit_repeats (id INTEGER PRIMARY KEY REFERENCES audit (id) ON DELETE CASCADE, count INTEGER NOT NULL, last_time INTEGER NOT NULL);
        CREATE TABLE audit_summary (
            server TEXT NOT NULL, action TEXT NOT NULL, revision TEXT NOT NULL, outcome TEXT NOT NULL,
            count INTEGER NOT NULL, first_time INTEGER NOT NULL, last_time INTEGER NOT NULL,
            PRIMARY KEY (server, action, revision, outcome));
        CREATE TABLE store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ]

    /// SQLite calls block (up to the busy timeout while another process holds a lock): they run here, off
    /// Swift's cooperative pool, so a locked database never starves the tasks that must report it.
    private let queue = DispatchQueue(label: "mcpfleet.rollout-store")

    private func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Opens (creating if needed) the store at `path`: parent directories 0700, the file 0600.
    public convenience init(path: String, auditRetention: Int = SQLiteRolloutStore.defaultAuditRetention) throws {
        try self.init(database: SQLiteDatabase(path: path), auditRetention: auditRetention)
    }

    /// Shares a database a driver already opened, so its tables and the rollout records live in one file.
    public init(database: SQLiteDatabase, auditRetention: Int = SQLiteRolloutStore.defaultAuditRetention) throws {
        self.database = database
        self.auditRetention = max(1, auditRetention)
        try database.migrate(Self.schema)
    }

    private static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ value: SQLiteValue, what: String) throws -> T {
        guard let text = value.string else { throw SQLiteError(path: database.path, code: 1, message: "\(what): missing JSON") }
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw SQLiteError(path: database.path, code: 1, message: "\(what): unreadable record: \(error)")
        }
    }

    /// Decoded rollout records, so a read decodes JSON only for rows whose text changed. Whole (every row)
    /// as of `stamp`: while the database's change stamp still equals it, nothing was written — by this
    /// store, a driver sharing the connection, another process (`mcpfleet pause` …) or a restore — and
    /// reads are answered from here without a query. The store's own writes keep it whole (their stamp is
    /// taken inside their transaction, where no other writer can come between).
    struct RecordCache {
        var stamp: SQLiteDatabase.ChangeStamp?
        var rows: [String: (text: String, record: RolloutRecord)] = [:]
        var sorted: [RolloutRecord]?
    }
    private let cache = Mutex(RecordCache())
    private let decodes = Atomic<Int>(0)
    /// Rollout records decoded from JSON so far by this store (what the cache saves shows here).
    public var recordDecodes: Int { decodes.load(ordering: .relaxed) }

    /// Reads and decodes one row, reusing the cached decoding when its text is unchanged.
    private func decodeRecord(server: String, text: SQLiteValue) throws -> RolloutRecord {
        if let t = text.string, let hit = cache.withLock({ $0.rows[server] }), hit.text == t { return hit.record }
        decodes.add(1, ordering: .relaxed)
        return try decode(RolloutRecord.self, text, what: "rollout of \(server)")
    }

    public func record(server: String) async throws -> RolloutRecord? {
        try await offPool { [self] in
            let stamp = try database.changeStamp()
            if let hit = cache.withLock({ c in c.stamp == stamp ? Optional(c.rows[server]?.record) : nil }) { return hit }
            guard let row = try database.query("SELECT record FROM rollouts WHERE server = ?", [.text(server)]).first else { return nil }
            return try decodeRecord(server: server, text: row[0])
        }
    }

    public func records() async throws -> [RolloutRecord] {
        try await offPool { [self] in
            let stamp = try database.changeStamp()
            if let hit = cache.withLock({ c -> [RolloutRecord]? in
                guard c.stamp == stamp else { return nil }
                if c.sorted == nil { c.sorted = c.rows.sorted { $0.key < $1.key }.map(\.value.record) }
                return c.sorted
            }) { return hit }
            var rows: [String: (text: String, record: RolloutRecord)] = [:]
            var sorted: [RolloutRecord] = []
            for row in try database.query("SELECT server, record FROM rollouts ORDER BY server") {
                let server = row[0].string ?? "?"
                let record = try decodeRecord(server: server, text: row[1])
                rows[server] = (row[1].string ?? "", record)
                sorted.append(record)
            }
            cache.withLock { $0 = RecordCache(stamp: stamp, rows: rows, sorted: sorted) }
            return sorted
        }
    }

    /// Runs a write in one transaction; when the cache was whole before it, `update` brings the cache
    /// up to the write and the cache stays whole (else it is refreshed by the next `records()`).
    private func writing<T>(_ body: (borrowing SQLiteDatabase.Connection) throws -> T,
                            update: (inout RecordCache, T) -> Void = { _, _ in }) throws -> T {
        let (before, result, after) = try database.transaction { conn in
            let before = try database.changeStamp(conn)
            let result = try body(conn)
            return (before, result, try database.changeStamp(conn))
        }
        // Only once committed (a failed COMMIT rolls back without moving the stamp back). A commit by
        // anyone else since `after` moves the stamp past it, so the next read refreshes.
        cache.withLock { c in
            if c.stamp == before {
                update(&c, result)
                c.stamp = after
            } else {
                c.stamp = nil
            }
        }
        return result
    }

    /// True when the store holds no rollout record, revision or audit entry: new, or lost and recreated.
    public func holdsNothing() throws -> Bool {
        let row = try database.query("SELECT (SELECT count(*) FROM rollouts) + (SELECT count(*) FROM revisions) + (SELECT count(*) FROM audit)").first
        if case .integer(let n)? = row?[0] { return n == 0 }
        return false
    }

    public func save(_ record: RolloutRecord) async throws {
        _ = try await write(record, expecting: nil)
    }

    public func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord? {
        try await write(record, expecting: record.generation)
    }

    /// One `BEGIN IMMEDIATE` transaction (so another process cannot write between the check and the
    /// write): the stored generation, read without decoding the record, against `expecting`.
    private func write(_ record: RolloutRecord, expecting: Int64?) async throws -> RolloutRecord? {
        try await offPool { [self] in
            try writing({ conn -> (RolloutRecord, String)? in
                let row = try conn.query("SELECT coalesce(json_extract(record, '$.generation'), 0) FROM rollouts WHERE server = ?", [.text(record.server)]).first
                let stored: Int64 = if case .integer(let g)? = row?[0] { g } else { 0 }
                if let expecting, stored != expecting { return nil }
                var out = record
                if expecting != nil { out.generation = stored + 1 }
                let text = try Self.encode(out)
                try conn.execute(
                    "INSERT INTO rollouts (server, record, updated_at) VALUES (?, ?, ?) ON CONFLICT(server) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
                    [.text(out.server), .text(text), .integer(out.updatedAt)])
                return (out, text)
            }, update: { c, written in
                guard let (out, text) = written else { return }
                c.rows[out.server] = (text, out)
                c.sorted = nil
            })?.0
        }
    }

    public func removeRecord(server: String) async throws {
        try await offPool { [self] in
            try writing({ conn in try conn.execute("DELETE FROM rollouts WHERE server = ?", [.text(server)]) },
                        update: { c, _ in c.rows[server] = nil; c.sorted = nil })
        }
    }

    /// Oldest first.
    public func revisions(server: String) async throws -> [RevisionRecord] {
        try await offPool { [self] in
            try database.query("SELECT record FROM revisions WHERE server = ? ORDER BY created_at, rowid", [.text(server)]).map {
                try decode(RevisionRecord.self, $0[0], what: "revision history of \(server)")
            }
        }
    }

    /// Inserts or replaces the record of (server, revision), e.g. to set its outcome.
    public func saveRevision(_ revision: RevisionRecord) async throws {
        try await offPool { [self] in
            try writing { conn in
                try conn.execute(
                    "INSERT INTO revisions (server, revision, created_at, record) VALUES (?, ?, ?, ?) ON CONFLICT(server, revision) DO UPDATE SET record = excluded.record",
                    [.text(revision.server), .text(revision.revision), .integer(revision.createdAt), .text(try Self.encode(revision))])
            }
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await offPool { [self] in
            let text = try Self.encode(entry)
            try writing { conn in
                // Only failures repeat (`isRepeat(of:)`): successful entries are appended without a look back.
                let recent = entry.outcome == "ok" ? [] : try conn.query("SELECT id, entry FROM audit WHERE server = ? ORDER BY id DESC LIMIT ?",
                                                                          [.text(entry.server), .integer(Int64(AuditEntry.repeatWindow))])
                for row in recent {
                    guard let old = try? decode(AuditEntry.self, row[1], what: "audit log"), entry.isRepeat(of: old) else { continue }
                    try conn.execute("""
                        INSERT INTO audit_repeats (id, count, last_time) VALUES (?, 1, ?)
                        ON CONFLICT(id) DO UPDATE SET count = count + 1, last_time = excluded.last_time
                        """, [row[0], .integer(entry.time)])
                    return
                }
                try conn.execute("INSERT INTO audit (time, server, entry) VALUES (?, ?, ?)", [.integer(entry.time), .text(entry.server), .text(text)])
                // The bound is checked every `compactionCheckEvery` appends of the server (counting is a
                // scan) and the first time after opening; compaction starts past 10% over it.
                let due = appendsSinceCheck.withLock { counts -> Bool in
                    let n = counts[entry.server].map { $0 + 1 } ?? compactionCheckEvery
                    counts[entry.server] = n >= compactionCheckEvery ? 0 : n
                    return n >= compactionCheckEvery
                }
                guard due else { return }
                let count = try conn.query("SELECT COUNT(*) FROM audit WHERE server = ?", [.text(entry.server)]).first?[0].int ?? 0
                if count > auditRetention + auditRetention / 10 { try compact(server: entry.server, conn) }
            }
        }
    }

    /// Folds a server's entries older than the newest `auditRetention` into `audit_summary`, then removes
    /// them — one transaction, so the counts and the rows never disagree.
    private func compact(server: String, _ conn: borrowing SQLiteDatabase.Connection) throws {
        guard let cutoff = try conn.query("SELECT id FROM audit WHERE server = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                                          [.text(server), .integer(Int64(auditRetention))]).first?[0] else { return }
        struct Sum { var count: Int64; var first: Int64; var last: Int64 }
        var sums: [[String]: Sum] = [:]
        let rows = try conn.query("""
            SELECT a.entry, r.count, r.last_time FROM audit a LEFT JOIN audit_repeats r ON r.id = a.id
            WHERE a.server = ? AND a.id <= ?
            """, [.text(server), cutoff])
        for row in rows {
            let e = try decode(AuditEntry.self, row[0], what: "audit log")
            let key = [e.action, e.revision ?? "", e.outcome == "ok" ? "ok" : "error"]
            let n = 1 + (row[1].int64 ?? 0)
            let last = max(e.time, row[2].int64 ?? e.time)
            var sum = sums[key] ?? Sum(count: 0, first: e.time, last: last)
            sum.count += n
            sum.first = min(sum.first, e.time)
            sum.last = max(sum.last, last)
            sums[key] = sum
        }
        try conn.execute("INSERT INTO audit_compaction (active) VALUES (1)")
        for (key, sum) in sums {
            try conn.execute("""
                INSERT INTO audit_summary (server, action, revision, outcome, count, first_time, last_time) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(server, action, revision, outcome) DO UPDATE SET count = count + excluded.count,
                    first_time = MIN(first_time, excluded.first_time), last_time = MAX(last_time, excluded.last_time)
                """, [.text(server), .text(key[0]), .text(key[1]), .text(key[2]), .integer(sum.count), .integer(sum.first), .integer(sum.last)])
        }
        try conn.execute("DELETE FROM audit WHERE server = ? AND id <= ?", [.text(server), cutoff])
        try conn.execute("DELETE FROM audit_compaction")
    }

    /// The `limit` most recent entries (of one server, or all), oldest first, with their repeat counts.
    public func audit(server: String?, limit: Int) async throws -> [AuditEntry] {
        try await offPool { [self] in
            let select = "SELECT a.entry, r.count, r.last_time FROM audit a LEFT JOIN audit_repeats r ON r.id = a.id"
            let rows: [SQLiteRow]
            if let server {
                rows = try database.query(select + " WHERE a.server = ? ORDER BY a.id DESC LIMIT ?", [.text(server), .integer(Int64(max(0, limit)))])
            } else {
                rows = try database.query(select + " ORDER BY a.id DESC LIMIT ?", [.integer(Int64(max(0, limit)))])
            }
            return try rows.reversed().map { row in
                var e = try decode(AuditEntry.self, row[0], what: "audit log")
                if let n = row[1].int, n > 0 {
                    e.repeats = n
                    e.lastTime = row[2].int64
                }
                return e
            }
        }
    }

    public func compactedAudit(server: String?) async throws -> [AuditSummary] {
        try await offPool { [self] in
            let select = "SELECT server, action, revision, outcome, count, first_time, last_time FROM audit_summary"
            let rows = try server.map { try database.query(select + " WHERE server = ? ORDER BY first_time, action", [.text($0)]) }
                ?? database.query(select + " ORDER BY server, first_time, action")
            return rows.map {
                AuditSummary(server: $0[0].string ?? "", action: $0[1].string ?? "", revision: ($0[2].string).flatMap { $0.isEmpty ? nil : $0 },
                             outcome: $0[3].string ?? "", count: $0[4].int ?? 0, firstTime: $0[5].int64 ?? 0, lastTime: $0[6].int64 ?? 0)
            }
        }
    }

    public func heartbeat(now: Int64?) async throws {
        try await offPool { [self] in
            try writing { conn in
                if let now {
                    try conn.execute("INSERT INTO store_meta (key, value) VALUES ('controller-heartbeat', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                                     [.text(String(now))])
                } else {
                    try conn.execute("DELETE FROM store_meta WHERE key = 'controller-heartbeat'")
                }
            }
        }
    }

    public var keepsHeartbeat: Bool { true }

    public func lastHeartbeat() async throws -> Int64? {
        try await offPool { [self] in
            try database.query("SELECT value FROM store_meta WHERE key = 'controller-heartbeat'").first?[0].int64
        }
    }

    /// Rows per table of the store in the file at `path` (read-only), for `mcpfleet state` reports; nil
    /// when the file holds no rollout store.
    public static func counts(path: String) throws -> (rollouts: Int, revisions: Int, audit: Int)? {
        let tables = Set(try SQLiteDatabase.readOnlyQuery(path, "SELECT name FROM sqlite_master WHERE type = 'table'").compactMap { $0[0].string })
        guard tables.isSuperset(of: ["rollouts", "revisions", "audit"]) else { return nil }
        // Table names are constants here, never values.
        func n(_ table: String) throws -> Int { try SQLiteDatabase.readOnlyQuery(path, "SELECT COUNT(*) FROM \(table)").first?[0].int ?? 0 }
        return (try n("rollouts"), try n("revisions"), try n("audit"))
    }
}
