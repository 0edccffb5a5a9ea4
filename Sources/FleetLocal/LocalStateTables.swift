import FleetCore
import FleetState
import Foundation

/// The local driver's tables in the state database (beside the rollout store's): what it was asked
/// to run, and every instance with the pid and start time that identify its process.
struct LocalStateTables: Sendable {
    let database: SQLiteDatabase

    static let component = "local-driver"
    static let schema = [
        """
        CREATE TABLE local_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE local_revisions (
            server TEXT NOT NULL, revision TEXT NOT NULL, spec TEXT NOT NULL, created_at INTEGER NOT NULL,
            PRIMARY KEY (server, revision));
        CREATE TABLE local_instances (
            server TEXT NOT NULL, slot INTEGER NOT NULL, revision TEXT NOT NULL, port INTEGER NOT NULL, tenant TEXT NOT NULL,
            pid INTEGER, start_time INTEGER, restarts INTEGER NOT NULL DEFAULT 0, intent TEXT NOT NULL,
            PRIMARY KEY (server, slot),
            FOREIGN KEY (server, revision) REFERENCES local_revisions (server, revision) ON DELETE CASCADE);
        CREATE TABLE local_tenants (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
        """,
        """
        ALTER TABLE local_instances ADD COLUMN reason TEXT;
        ALTER TABLE local_instances ADD COLUMN unstartable INTEGER NOT NULL DEFAULT 0;
        """,
    ]

    struct InstanceRow: Hashable, Sendable {
        var server: String
        var slot: Int
        var revision: String
        var port: Int
        var tenant: String
        var pid: Int32?
        var startTime: Int64?
        var restarts: Int
        /// "run", or "stop" once the driver decided to stop it (a restarted driver finishes the stop).
        var intent: String
        /// Why it last stopped or could not start (exit status or signal, port held, exec error).
        var reason: String? = nil
        /// It cannot start and retrying will not help.
        var unstartable = false
    }

    init(database: SQLiteDatabase) throws {
        self.database = database
        try database.migrate(component: Self.component, steps: Self.schema)
    }

    /// True when the file holds no local-driver state yet: a new state directory, or one whose
    /// database was lost (deleted, truncated) — the two look alike here; running processes tell them apart.
    static func isFresh(_ database: SQLiteDatabase) throws -> Bool {
        let tables = try database.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'local_meta'")
        guard !tables.isEmpty else { return true }
        return try database.query("SELECT value FROM local_meta WHERE key = 'driver-id'").isEmpty
    }

    /// A random id for this state directory, put in each instance's environment so a restarted driver can
    /// recognise its own processes even when it died before recording their pids.
    func driverID() throws -> String {
        try database.transaction { conn in
            if let id = try conn.query("SELECT value FROM local_meta WHERE key = 'driver-id'").first?[0].string { return id }
            let id = UUID().uuidString.lowercased()
            try conn.execute("INSERT INTO local_meta (key, value) VALUES ('driver-id', ?)", [.text(id)])
            return id
        }
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    func revisions() throws -> [DesiredServer] {
        try database.query("SELECT spec FROM local_revisions ORDER BY server, created_at, revision").map {
            try JSONDecoder().decode(DesiredServer.self, from: Data(($0[0].string ?? "").utf8))
        }
    }

    func saveRevision(_ server: DesiredServer, now: Int64) throws {
        try database.execute(
            "INSERT INTO local_revisions (server, revision, spec, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(server, revision) DO UPDATE SET spec = excluded.spec",
            [.text(server.name), .text(server.revision), .text(try Self.encode(server)), .integer(now)])
    }

    func deleteRevision(server: String, revision: String) throws {
        try database.execute("DELETE FROM local_revisions WHERE server = ? AND revision = ?", [.text(server), .text(revision)])
    }

    func instances() throws -> [InstanceRow] {
        try database.query("SELECT server, slot, revision, port, tenant, pid, start_time, restarts, intent, reason, unstartable FROM local_instances ORDER BY server, slot").map {
            InstanceRow(server: $0[0].string ?? "", slot: $0[1].int ?? 0, revision: $0[2].string ?? "", port: $0[3].int ?? 0, tenant: $0[4].string ?? "",
                        pid: $0[5].int64.map { Int32(truncatingIfNeeded: $0) }, startTime: $0[6].int64, restarts: $0[7].int ?? 0, intent: $0[8].string ?? "run",
                        reason: $0[9].string, unstartable: ($0[10].int ?? 0) != 0)
        }
    }

    func insert(_ rows: [InstanceRow]) throws {
        try database.transaction { conn in
            for r in rows {
                try conn.execute(
                    "INSERT INTO local_instances (server, slot, revision, port, tenant, pid, start_time, restarts, intent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [.text(r.server), .integer(Int64(r.slot)), .text(r.revision), .integer(Int64(r.port)), .text(r.tenant),
                     r.pid.map { .integer(Int64($0)) } ?? .null, r.startTime.map { .integer($0) } ?? .null, .integer(Int64(r.restarts)), .text(r.intent)])
            }
        }
    }

    func updateProcess(_ row: InstanceRow) throws {
        try database.execute("UPDATE local_instances SET pid = ?, start_time = ?, restarts = ?, reason = ?, unstartable = ? WHERE server = ? AND slot = ?",
                             [row.pid.map { .integer(Int64($0)) } ?? .null, row.startTime.map { .integer($0) } ?? .null, .integer(Int64(row.restarts)),
                              row.reason.map { .text($0) } ?? .null, .integer(row.unstartable ? 1 : 0), .text(row.server), .integer(Int64(row.slot))])
    }

    func markStopping(server: String, slots: [Int]) throws {
        try database.transaction { conn in
            for slot in slots {
                try conn.execute("UPDATE local_instances SET intent = 'stop' WHERE server = ? AND slot = ?", [.text(server), .integer(Int64(slot))])
            }
        }
    }

    func deleteInstance(server: String, slot: Int) throws {
        try database.execute("DELETE FROM local_instances WHERE server = ? AND slot = ?", [.text(server), .integer(Int64(slot))])
    }

    func tenants() throws -> [DesiredTenant] {
        try database.query("SELECT spec FROM local_tenants ORDER BY name").map {
            try JSONDecoder().decode(DesiredTenant.self, from: Data(($0[0].string ?? "").utf8))
        }
    }

    func saveTenant(_ tenant: DesiredTenant) throws {
        try database.execute("INSERT INTO local_tenants (name, spec) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET spec = excluded.spec",
                             [.text(tenant.name), .text(try Self.encode(tenant))])
    }

    func deleteTenant(_ name: String) throws {
        try database.execute("DELETE FROM local_tenants WHERE name = ?", [.text(name)])
    }
}
