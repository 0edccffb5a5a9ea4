import FleetCore
import Foundation

/// Session draining between a controller and gateways in other processes (design 0016), through the
/// state database they already share on a host (systemd, or `mcpfleet gateway` beside `mcpfleet run
/// --gateway-address ""`):
/// - the controller marks the replicas a scale-down will stop (`mark`); each mark bumps a generation;
/// - every gateway, at each route refresh, applies the marks (no new sessions there) and publishes the
///   open sessions it routes per replica, with the generation its installed routes carry (`publish`);
/// - the controller waits until the marked replicas hold no session in any live gateway *and* every live
///   gateway has installed the marks (`openSessions`), or the drain timeout passes.
/// A gateway that has not published for `freshMs` is gone (or hung): it routes nothing and is not waited for.
public final class SQLiteDrainBoard: Sendable {
    public let database: SQLiteDatabase
    /// A gateway not heard from for this long is ignored (and its rows pruned after an hour).
    public let freshMs: Int64

    static let component = "gateway-drain"
    static let schema: [String] = [
        """
        CREATE TABLE gateway_drain (server TEXT NOT NULL, replica TEXT NOT NULL, since INTEGER NOT NULL, PRIMARY KEY (server, replica));
        CREATE TABLE gateway_drain_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
        INSERT INTO gateway_drain_generation (id, value) VALUES (1, 0);
        CREATE TABLE gateway_sessions (gateway TEXT NOT NULL, server TEXT NOT NULL, replica TEXT NOT NULL, open INTEGER NOT NULL,
            PRIMARY KEY (gateway, server, replica));
        CREATE TABLE gateway_heartbeats (gateway TEXT PRIMARY KEY, seen_generation INTEGER NOT NULL, updated_at INTEGER NOT NULL);
        """,
    ]

    public init(database: SQLiteDatabase, freshMs: Int64 = 10_000) throws {
        self.database = database
        self.freshMs = freshMs
        try database.migrate(component: Self.component, steps: Self.schema)
    }

    /// A process already holding a connection to the file must share it (`init(database:)`): see `SQLiteDatabase.init(path:)`.
    public convenience init(path: String, freshMs: Int64 = 10_000) throws {
        try self.init(database: try SQLiteDatabase(path: path), freshMs: freshMs)
    }

    /// Marks (or, `false`, unmarks) replicas; returns the generation that includes the change.
    @discardableResult
    public func mark(server: String, replicas: [String], draining: Bool, now: Int64) throws -> Int64 {
        try database.transaction { conn in
            for r in replicas {
                if draining {
                    try conn.execute("INSERT INTO gateway_drain (server, replica, since) VALUES (?, ?, ?) ON CONFLICT(server, replica) DO NOTHING",
                                     [.text(server), .text(r), .integer(now)])
                } else {
                    try conn.execute("DELETE FROM gateway_drain WHERE server = ? AND replica = ?", [.text(server), .text(r)])
                }
            }
            try conn.execute("UPDATE gateway_drain_generation SET value = value + 1 WHERE id = 1")
            return try conn.query("SELECT value FROM gateway_drain_generation WHERE id = 1").first?[0].int64 ?? 0
        }
    }

    /// Lifts every mark: a controller starting has no drain under way (one that died mid-drain left its marks).
    public func clearMarks() throws {
        try database.transaction { conn in
            try conn.execute("DELETE FROM gateway_drain")
            try conn.execute("UPDATE gateway_drain_generation SET value = value + 1 WHERE id = 1")
        }
    }

    /// The replicas marked draining, per server, and the generation they belong to (read together).
    /// No write lock taken: the generation is read first, so marks newer than it may come along (a gateway
    /// then reports an older generation than it applied — the controller waits a refresh longer), never the reverse.
    public func marks() throws -> (generation: Int64, replicas: [String: Set<String>]) {
        let generation = try database.query("SELECT value FROM gateway_drain_generation WHERE id = 1").first?[0].int64 ?? 0
        var out: [String: Set<String>] = [:]
        for row in try database.query("SELECT server, replica FROM gateway_drain") {
            guard let s = row.values[0].string, let r = row.values[1].string else { continue }
            out[s, default: []].insert(r)
        }
        return (generation, out)
    }

    /// A gateway's report: the open sessions it routes per (server, replica) — replacing its last report —
    /// and the generation of the marks its installed routes carry.
    public func publish(gateway: String, seenGeneration: Int64, open: [(server: String, replica: String, sessions: Int)], now: Int64) throws {
        try database.transaction { conn in
            try conn.execute("DELETE FROM gateway_sessions WHERE gateway = ?", [.text(gateway)])
            for o in open where o.sessions > 0 {
                try conn.execute("INSERT INTO gateway_sessions (gateway, server, replica, open) VALUES (?, ?, ?, ?)",
                                 [.text(gateway), .text(o.server), .text(o.replica), .integer(Int64(o.sessions))])
            }
            try conn.execute("""
                INSERT INTO gateway_heartbeats (gateway, seen_generation, updated_at) VALUES (?, ?, ?)
                ON CONFLICT(gateway) DO UPDATE SET seen_generation = excluded.seen_generation, updated_at = excluded.updated_at
                """, [.text(gateway), .integer(seenGeneration), .integer(now)])
            // Gateways gone for an hour: their rows go.
            let gone = now - 3_600_000
            try conn.execute("DELETE FROM gateway_sessions WHERE gateway IN (SELECT gateway FROM gateway_heartbeats WHERE updated_at < ?)", [.integer(gone)])
            try conn.execute("DELETE FROM gateway_heartbeats WHERE updated_at < ?", [.integer(gone)])
        }
    }

    /// A gateway's last report is gone with it (a clean shutdown).
    public func withdraw(gateway: String) throws {
        try database.transaction { conn in
            try conn.execute("DELETE FROM gateway_sessions WHERE gateway = ?", [.text(gateway)])
            try conn.execute("DELETE FROM gateway_heartbeats WHERE gateway = ?", [.text(gateway)])
        }
    }

    /// Open sessions on `replicas` summed over the live gateways, and whether every live gateway has
    /// installed marks of `generation` or later (until then a new session may still reach them).
    /// Read without a write lock (each statement sees one consistent state of the file).
    public func openSessions(server: String, replicas: [String], generation: Int64, now: Int64) throws -> (open: Int, confirmed: Bool, gateways: Int) {
        let live = try database.query("SELECT gateway, seen_generation FROM gateway_heartbeats WHERE updated_at >= ?", [.integer(now - freshMs)])
        let confirmed = live.allSatisfy { ($0.values[1].int64 ?? 0) >= generation }
        var open = 0
        for r in replicas {
            open += try database.query("""
                SELECT COALESCE(SUM(s.open), 0) FROM gateway_sessions s JOIN gateway_heartbeats h ON h.gateway = s.gateway
                WHERE s.server = ? AND s.replica = ? AND h.updated_at >= ?
                """, [.text(server), .text(r), .integer(now - freshMs)]).first?[0].int ?? 0
        }
        return (open, confirmed, live.count)
    }
}
