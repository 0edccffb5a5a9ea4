import FleetCore
import FleetState
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A fresh directory under the system temp dir, removed by the caller.
func makeTemporaryDirectory(_ label: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fleetstate-\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Removes a test's directory; a failure to clean up is not the test's failure.
func removeTree(_ path: String) {
    do { try FileManager.default.removeItem(atPath: path) } catch {}
}

func mode(_ path: String) throws -> Int {
    let attrs = try FileManager.default.attributesOfItem(atPath: path)
    return (attrs[.posixPermissions] as? NSNumber)?.intValue ?? -1
}

@Suite struct SQLiteDatabaseTests {
    @Test func opensInWALWithPrivateFilesAndDirectories() throws {
        let root = try makeTemporaryDirectory("open")
        defer { removeTree(root) }
        let path = root + "/a/b/state.db"
        let db = try SQLiteDatabase(path: path)
        #expect(try db.query("PRAGMA journal_mode").first?[0].string == "wal")
        #expect(try db.query("PRAGMA synchronous").first?[0].int == 2) // FULL
        #expect(try db.query("PRAGMA foreign_keys").first?[0].int == 1)
        #expect(try mode(path) == 0o600)
        #expect(try mode(root + "/a") == 0o700)
        #expect(try mode(root + "/a/b") == 0o700)
    }

    /// A second connection opened by path in a process that holds one already must not drop the first
    /// one's locks (POSIX locks go with any close of the file): another process closing its connection
    /// would then think it was the last, checkpoint and delete the WAL, and every later write of the
    /// first connection would be lost for new readers (seen with the gateway's drain board).
    @Test func aSecondConnectionInTheProcessKeepsTheFirstOnesLocks() async throws {
        let root = try makeTemporaryDirectory("locks")
        defer { removeTree(root) }
        let path = root + "/state.db"
        let first = try SQLiteDatabase(path: path)
        try first.execute("CREATE TABLE t (n INTEGER)")
        try first.execute("INSERT INTO t VALUES (1)")
        let second = try SQLiteDatabase(path: path)
        #expect(try second.query("SELECT count(*) FROM t").first?[0].int == 1)
        // Another process opens, reads and closes (as the last connection it would checkpoint and remove the WAL).
        func otherProcess(_ sql: String) async throws -> String {
            let script = "import sqlite3, sys\ncon = sqlite3.connect(sys.argv[1], timeout=10)\nprint(con.execute(sys.argv[2]).fetchone()[0])\ncon.close()\n"
            let process = Process()
            let out = Pipe()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script, path, sql]
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try await otherProcess("SELECT count(*) FROM t") == "1")
        try first.execute("INSERT INTO t VALUES (2)")
        #expect(FileManager.default.fileExists(atPath: path + "-wal"), "the WAL was removed under an open connection")
        #expect(try await otherProcess("SELECT count(*) FROM t") == "2", "a write after the other process's close was lost")
        withExtendedLifetime(second) {}
    }

    @Test func parametersAreBoundNeverInterpreted() throws {
        let root = try makeTemporaryDirectory("bind")
        defer { removeTree(root) }
        let db = try SQLiteDatabase(path: root + "/t.db")
        try db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT, n INTEGER, b BLOB)")
        let hostile = "x'); DROP TABLE t; -- \"quoted\" ; ünïcode"
        try db.execute("INSERT INTO t (k, v, n, b) VALUES (?, ?, ?, ?)", [.text(hostile), .text(hostile), .integer(42), .blob([0, 1, 2, 255])])
        let rows = try db.query("SELECT k, v, n, b FROM t WHERE k = ?", [.text(hostile)])
        #expect(rows.count == 1)
        #expect(rows[0]["v"] == .text(hostile))
        #expect(rows[0]["n"] == .integer(42))
        #expect(rows[0]["b"] == .blob([0, 1, 2, 255]))
        #expect(throws: SQLiteError.self) { try db.execute("SELECT ?", []) }
    }

    struct Boom: Error {}

    @Test func transactionRollsBackWhenTheBodyThrows() throws {
        let root = try makeTemporaryDirectory("tx")
        defer { removeTree(root) }
        let db = try SQLiteDatabase(path: root + "/t.db")
        try db.execute("CREATE TABLE t (v INTEGER)")
        try db.transaction { conn in try conn.execute("INSERT INTO t VALUES (1)") }
        #expect(throws: Boom.self) {
            try db.transaction { conn in
                try conn.execute("INSERT INTO t VALUES (2)")
                throw Boom()
            }
        }
        #expect(try db.query("SELECT v FROM t").map { $0[0] } == [.integer(1)])
        // The connection is usable again after a rollback.
        try db.transaction { conn in try conn.execute("INSERT INTO t VALUES (3)") }
        #expect(try db.query("SELECT count(*) FROM t").first?[0].int == 2)
    }

    @Test func migrationsRunOnceAndRefuseNewerSchemas() throws {
        let root = try makeTemporaryDirectory("migrate")
        defer { removeTree(root) }
        let path = root + "/t.db"
        let v1 = ["CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);"]
        let v2 = v1 + ["ALTER TABLE a ADD COLUMN y TEXT; CREATE TABLE b (z INTEGER);"]
        do {
            let db = try SQLiteDatabase(path: path)
            try db.migrate(v1)
            try db.migrate(v1)
            #expect(try db.userVersion() == 1)
            #expect(try db.query("SELECT count(*) FROM a").first?[0].int == 1)
            try db.migrate(v2)
            #expect(try db.userVersion() == 2)
            #expect(try db.query("SELECT count(*) FROM b").first?[0].int == 0)
            // A component's tables are versioned apart from user_version.
            try db.migrate(component: "systemd", steps: ["CREATE TABLE systemd_units (name TEXT PRIMARY KEY);"])
            try db.migrate(component: "systemd", steps: ["CREATE TABLE systemd_units (name TEXT PRIMARY KEY);"])
            #expect(try db.userVersion() == 2)
        }
        let reopened = try SQLiteDatabase(path: path)
        #expect(throws: SQLiteError.self) { try reopened.migrate(v1) }
        // A failed migration step leaves the version where it was.
        #expect(throws: SQLiteError.self) { try reopened.migrate(v2 + ["CREATE TABLE a (x INTEGER);"]) }
        #expect(try reopened.userVersion() == 2)
    }
}
