import FleetCore
import Foundation

/// The `RolloutStore` of host drivers: one SQLite file (WAL, transactions), so a controller killed at
/// any moment finds each record either as it was or as it was saved, never half-written.
/// Records are kept as JSON columns beside the keys they are looked up by. The audit table is
/// append-only: triggers refuse updates and deletes.
public final class SQLiteRolloutStore: RolloutStore {
    public let database: SQLiteDatabase

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
    ]

    /// Opens (creating if needed) the store at `path`: parent directories 0700, the file 0600.
    public convenience init(path: String) throws {
        try self.init(database: SQLiteDatabase(path: path))
    }

    /// Shares a database a driver already opened, so its tables and the rollout records live in one file.
    public init(database: SQLiteDatabase) throws {
        self.database = database
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

    public func record(server: String) async throws -> RolloutRecord? {
        guard let row = try database.query("SELECT record FROM rollouts WHERE server = ?", [.text(server)]).first else { return nil }
        return try decode(RolloutRecord.self, row[0], what: "rollout of \(server)")
    }

    public func records() async throws -> [RolloutRecord] {
        try database.query("SELECT server, record FROM rollouts ORDER BY server").map {
            try decode(RolloutRecord.self, $0[1], what: "rollout of \($0[0].string ?? "?")")
        }
    }

    public func save(_ record: RolloutRecord) async throws {
        try database.execute(
            "INSERT INTO rollouts (server, record, updated_at) VALUES (?, ?, ?) ON CONFLICT(server) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
            [.text(record.server), .text(try Self.encode(record)), .integer(record.updatedAt)])
    }

    public func removeRecord(server: String) async throws {
        try database.execute("DELETE FROM rollouts WHERE server = ?", [.text(server)])
    }

    /// Oldest first.
    public func revisions(server: String) async throws -> [RevisionRecord] {
        try database.query("SELECT record FROM revisions WHERE server = ? ORDER BY created_at, rowid", [.text(server)]).map {
            try decode(RevisionRecord.self, $0[0], what: "revision history of \(server)")
        }
    }

    /// Inserts or replaces the record of (server, revision), e.g. to set its outcome.
    public func saveRevision(_ revision: RevisionRecord) async throws {
        try database.execute(
            "INSERT INTO revisions (server, revision, created_at, record) VALUES (?, ?, ?, ?) ON CONFLICT(server, revision) DO UPDATE SET record = excluded.record",
            [.text(revision.server), .text(revision.revision), .integer(revision.createdAt), .text(try Self.encode(revision))])
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try database.execute("INSERT INTO audit (time, server, entry) VALUES (?, ?, ?)",
                             [.integer(entry.time), .text(entry.server), .text(try Self.encode(entry))])
    }

    /// The `limit` most recent entries (of one server, or all), oldest first.
    public func audit(server: String?, limit: Int) async throws -> [AuditEntry] {
        let rows: [SQLiteRow]
        if let server {
            rows = try database.query("SELECT entry FROM audit WHERE server = ? ORDER BY id DESC LIMIT ?", [.text(server), .integer(Int64(max(0, limit)))])
        } else {
            rows = try database.query("SELECT entry FROM audit ORDER BY id DESC LIMIT ?", [.integer(Int64(max(0, limit)))])
        }
        return try rows.reversed().map { try decode(AuditEntry.self, $0[0], what: "audit log") }
    }
}
