internal import CSQLite
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value bound to or read from an SQLite statement.
public enum SQLiteValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var string: String? {
        switch self {
        case .text(let s): return s
        case .blob(let b): return String(decoding: b, as: UTF8.self)
        case .integer(let i): return String(i)
        case .real(let d): return String(d)
        case .null: return nil
        }
    }

    public var int64: Int64? {
        switch self {
        case .integer(let i): return i
        case .real(let d): return Int64(d)
        case .text(let s): return Int64(s)
        default: return nil
        }
    }

    public var int: Int? { int64.map { Int($0) } }
}

extension SQLiteValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(nilLiteral: ()) { self = .null }

    public init(_ value: String?) { self = value.map { .text($0) } ?? .null }
    public init(_ value: Int?) { self = value.map { .integer(Int64($0)) } ?? .null }
    public init(_ value: Int64?) { self = value.map { .integer($0) } ?? .null }
}

/// One result row; columns by index or by name.
public struct SQLiteRow: Sendable, Hashable {
    public var columns: [String]
    public var values: [SQLiteValue]

    public subscript(_ index: Int) -> SQLiteValue { values[index] }
    public subscript(_ name: String) -> SQLiteValue {
        guard let i = columns.firstIndex(of: name) else { return .null }
        return values[i]
    }
}

public struct SQLiteError: Error, Sendable, CustomStringConvertible {
    /// The database file the error concerns.
    public var path: String
    public var code: Int32
    public var message: String

    public var description: String { "\(path): sqlite error \(code): \(message)" }

    /// The file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB, with extended codes): retrying cannot help.
    public var isDamage: Bool { code & 0xff == SQLITE_CORRUPT || code & 0xff == SQLITE_NOTADB }
}

/// A state database that fails its integrity check (`PRAGMA quick_check`) or is not a database at all.
/// Nothing was written to it; it must be restored from a backup or moved aside.
public struct StateDamage: Error, Sendable, CustomStringConvertible {
    public var path: String
    /// The first problems SQLite reported.
    public var detail: String

    public var description: String { "the state database \(path) is damaged (\(detail))" }
}

/// A connection to one SQLite database file, safe to share between tasks (calls are serialised).
///
/// Opened in WAL mode with `synchronous=FULL`: WAL alone already survives a killed process (a commit
/// is in the WAL before `COMMIT` returns); FULL also fsyncs the WAL on each commit so that a power
/// loss cannot forget a step the controller has already taken in the world. Writes here are few (one
/// per rollout step or instance change), so the fsync costs nothing that matters.
///
/// Every statement is prepared and its parameters bound; SQL text is never built from values.
/// Drivers may keep their own tables in the same file, versioned by `migrate(component:steps:)`.
public final class SQLiteDatabase: Sendable {
    public let path: String
    private let handle: Mutex<Connection>
    /// Bumped by `restore(from:)`, which replaces the content through the backup API (counted neither
    /// by `total_changes()` nor by `data_version`): part of `ChangeStamp`.
    private let replacements = Atomic<Int64>(0)

    /// Opens (creating if needed) the database at `path`. Missing parent directories are created
    /// with mode 0700, a new database file with mode 0600 (its WAL and SHM files inherit that).
    /// An existing file is checked first (`PRAGMA quick_check`): a damaged one throws `StateDamage`
    /// before anything is written to it.
    public init(path: String, busyTimeoutMilliseconds: Int32 = 5000) throws {
        self.path = path
        try Self.prepareFile(path)
        try Self.checkIntegrity(path)
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw SQLiteError(path: path, code: rc, message: message)
        }
        sqlite3_extended_result_codes(db, 1)
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
        let connection = Connection(db: db, path: path)
        do {
            // Two processes opening a new file at once (a controller starting while `status` polls) can
            // meet in rollback-journal mode, where SQLite answers SQLITE_BUSY at once instead of waiting
            // (deadlock avoidance): retry the switch to WAL for as long as the busy timeout allows.
            let deadline = ContinuousClock.now + .milliseconds(Int(busyTimeoutMilliseconds))
            var mode: String?
            while true {
                do {
                    mode = try connection.query("PRAGMA journal_mode=WAL").first?[0].string
                    break
                } catch let e as SQLiteError where e.code & 0xff == SQLITE_BUSY && ContinuousClock.now < deadline {
                    usleep(10_000)
                }
            }
            guard mode?.lowercased() == "wal" else {
                throw SQLiteError(path: path, code: SQLITE_ERROR, message: "cannot switch to WAL journal mode (got \(mode ?? "nothing"))")
            }
            try connection.execute("PRAGMA synchronous=FULL")
            try connection.execute("PRAGMA foreign_keys=ON")
        } catch {
            sqlite3_close_v2(db)
            throw error
        }
        handle = Mutex(connection)
    }

    deinit {
        _ = handle.withLock { sqlite3_close_v2($0.db) }
    }

    /// Runs one statement (parameters bound, never interpolated).
    public func execute(_ sql: String, _ parameters: [SQLiteValue] = []) throws {
        try handle.withLock { try $0.execute(sql, parameters) }
    }

    public func query(_ sql: String, _ parameters: [SQLiteValue] = []) throws -> [SQLiteRow] {
        try handle.withLock { try $0.query(sql, parameters) }
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction: committed when it returns, rolled back when it throws.
    public func transaction<T>(_ body: (borrowing Connection) throws -> T) throws -> T {
        try handle.withLock { conn in
            try conn.execute("BEGIN IMMEDIATE")
            do {
                let result = try body(conn)
                try conn.execute("COMMIT")
                return result
            } catch {
                // The original error is what matters; a failed rollback leaves SQLite to undo at close.
                _ = sqlite3_exec(conn.db, "ROLLBACK", nil, nil, nil)
                throw error
            }
        }
    }

    /// What a reader caching decoded rows compares to know that nothing was written since: equal stamps
    /// mean no row changed — not through this connection (`total_changes()`, which a write in progress
    /// under `transaction` already counts), not by another process or connection (`PRAGMA data_version`),
    /// and no `restore(from:)`. Read a stamp *before* the rows it vouches for.
    public struct ChangeStamp: Sendable, Hashable {
        var ownChanges: Int64
        var dataVersion: Int64
        var replacements: Int64
    }

    public func changeStamp() throws -> ChangeStamp {
        try handle.withLock { try $0.changeStamp(replacements: replacements.load(ordering: .acquiring)) }
    }

    /// The stamp inside a `transaction`, after its writes: what `changeStamp()` answers once it commits
    /// (this connection's own commit does not move `data_version`).
    public func changeStamp(_ conn: borrowing Connection) throws -> ChangeStamp {
        try conn.changeStamp(replacements: replacements.load(ordering: .acquiring))
    }

    /// The schema version of the file's primary owner (`PRAGMA user_version`).
    public func userVersion() throws -> Int {
        try query("PRAGMA user_version").first?[0].int ?? 0
    }

    /// Brings the file's primary schema up to `steps.count` by `PRAGMA user_version`: step i (SQL
    /// script, may hold several statements) runs, with the version bump, in one transaction.
    public func migrate(_ steps: [String]) throws {
        try transaction { conn in
            let current = try conn.query("PRAGMA user_version").first?[0].int ?? 0
            guard current <= steps.count else {
                throw SQLiteError(path: path, code: SQLITE_ERROR, message: "schema version \(current) is newer than this mcpfleet knows (\(steps.count))")
            }
            for i in current..<steps.count {
                try conn.executeScript(steps[i])
            }
            // PRAGMA takes no bound parameters; the value is an integer we computed.
            try conn.execute("PRAGMA user_version=\(steps.count)")
        }
    }

    /// Versions tables that a component (a driver) keeps in the same file, apart from the primary schema.
    public func migrate(component: String, steps: [String]) throws {
        try transaction { conn in
            try conn.execute("CREATE TABLE IF NOT EXISTS schema_components (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
            let current = try conn.query("SELECT version FROM schema_components WHERE component = ?", [.text(component)]).first?[0].int ?? 0
            guard current <= steps.count else {
                throw SQLiteError(path: path, code: SQLITE_ERROR, message: "schema of \(component) is at version \(current), newer than this mcpfleet knows (\(steps.count))")
            }
            for i in current..<steps.count {
                try conn.executeScript(steps[i])
            }
            try conn.execute("INSERT INTO schema_components (component, version) VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                             [.text(component), .integer(Int64(steps.count))])
        }
    }

    /// Runs one query on a read-only connection to `path` (the file is not changed, not even its journal mode).
    /// Not inlined: Swift 6.3.1's optimizer crashes inlining it (its non-copyable `Connection`) into
    /// `checkIntegrity` in a release build ("Cannot initialize a nonCopyable type with a guaranteed value").
    @inline(never)
    public static func readOnlyQuery(_ path: String, _ sql: String, _ parameters: [SQLiteValue] = []) throws -> [SQLiteRow] {
        let db = try openRaw(path, flags: SQLITE_OPEN_READONLY)
        defer { sqlite3_close_v2(db) }
        sqlite3_busy_timeout(db, 5000)
        return try Connection(db: db, path: path).query(sql, parameters)
    }

    /// A connection of its own to `path` (the caller closes it), for one-off work beside the shared one.
    private static func openRaw(_ path: String, flags: Int32) throws -> OpaquePointer {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
            sqlite3_close_v2(db)
            throw SQLiteError(path: path, code: rc, message: message)
        }
        return db
    }

    /// `PRAGMA quick_check` on a read-only connection: throws `StateDamage` naming the first problems.
    public static func checkIntegrity(_ path: String) throws {
        let rows: [SQLiteRow]
        do {
            rows = try readOnlyQuery(path, "PRAGMA quick_check(20)")
        } catch let e as SQLiteError where e.isDamage {
            throw StateDamage(path: path, detail: e.message)
        }
        let problems = rows.compactMap { $0[0].string }.filter { $0 != "ok" }
        guard problems.isEmpty else {
            let text = problems.joined(separator: "; ").replacingOccurrences(of: "\n", with: " ")
            throw StateDamage(path: path, detail: "quick_check: " + (text.count > 240 ? String(text.prefix(240)) + "…" : text))
        }
    }

    /// Copies the whole database into a new file at `destination` with SQLite's online backup API: a
    /// consistent snapshot while writers carry on. The file is created with mode 0600 and checked.
    public func backup(to destination: String) throws {
        try Self.prepareFile(destination)
        let dest = try Self.openRaw(destination, flags: SQLITE_OPEN_READWRITE)
        defer { sqlite3_close_v2(dest) }
        // The other connection is this function's alone; the lock guards ours.
        let other = ConnectionPointer(db: dest)
        try handle.withLock { src in try Self.copy(from: ConnectionPointer(db: src.db), to: other, destinationPath: destination) }
    }

    /// Replaces this database's content with `source`'s (a file made by `backup(to:)`), through the
    /// backup API, so the WAL and every open connection stay consistent.
    public func restore(from source: String) throws {
        try Self.checkIntegrity(source)
        let src = try Self.openRaw(source, flags: SQLITE_OPEN_READONLY)
        defer { sqlite3_close_v2(src) }
        let other = ConnectionPointer(db: src)
        let path = self.path
        defer { replacements.add(1, ordering: .releasing) }
        try handle.withLock { dest in try Self.copy(from: other, to: ConnectionPointer(db: dest.db), destinationPath: path) }
    }

    /// A raw connection handed into the lock for one backup call (used by one thread at a time).
    struct ConnectionPointer: @unchecked Sendable {
        let db: OpaquePointer
    }

    private static func copy(from source: ConnectionPointer, to destination: ConnectionPointer, destinationPath: String) throws {
        let src = source.db, dest = destination.db
        guard let backup = sqlite3_backup_init(dest, "main", src, "main") else {
            throw SQLiteError(path: destinationPath, code: sqlite3_errcode(dest), message: String(cString: sqlite3_errmsg(dest)))
        }
        var step = SQLITE_OK
        var waits = 0
        repeat {
            step = sqlite3_backup_step(backup, -1)
            // Another connection holds a lock: wait a little (up to 10 s), as the busy timeout would.
            if step == SQLITE_BUSY || step == SQLITE_LOCKED { waits += 1; sqlite3_sleep(20) }
        } while (step == SQLITE_OK || step == SQLITE_BUSY || step == SQLITE_LOCKED) && waits < 500
        let finish = sqlite3_backup_finish(backup)
        guard step == SQLITE_DONE, finish == SQLITE_OK else {
            throw SQLiteError(path: destinationPath, code: step == SQLITE_DONE ? finish : step, message: String(cString: sqlite3_errmsg(dest)))
        }
    }

    private static func prepareFile(_ path: String) throws {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        // Create the file ourselves so its mode is 0600 whatever the umask; SQLite keeps an existing file's
        // mode. Only when it does not exist yet (O_EXCL): closing a descriptor of a file this process already
        // has open through SQLite would drop every POSIX lock the process holds on it (fcntl locks are per
        // process and file), and another process could then take this one's connections for gone —
        // checkpoint and delete the WAL under them, losing every later write for new readers.
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            close(fd)
        } else if errno != EEXIST {
            throw SQLiteError(path: path, code: SQLITE_CANTOPEN, message: "cannot create: \(String(cString: strerror(errno)))")
        }
    }

    /// `mkdir -p` with mode 0700 for the directories it creates.
    public static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + part
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw SQLiteError(path: current, code: SQLITE_CANTOPEN, message: "cannot create directory: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The connection inside a lock or transaction. Not sendable: use it only inside the closure.
    public struct Connection: ~Copyable {
        let db: OpaquePointer
        let path: String

        /// Runs one statement (parameters bound, never interpolated).
        public func execute(_ sql: String, _ parameters: [SQLiteValue] = []) throws {
            _ = try run(sql, parameters, collect: false)
        }

        public func query(_ sql: String, _ parameters: [SQLiteValue] = []) throws -> [SQLiteRow] {
            try run(sql, parameters, collect: true)
        }

        /// Number of rows the last statement changed.
        public var changes: Int { Int(sqlite3_changes(db)) }

        func changeStamp(replacements: Int64) throws -> ChangeStamp {
            let version = try query("PRAGMA data_version").first?[0].int64 ?? 0
            return ChangeStamp(ownChanges: sqlite3_total_changes64(db), dataVersion: version, replacements: replacements)
        }

        /// Runs a script of several statements without parameters (schema migrations).
        public func executeScript(_ sql: String) throws {
            var utf8 = Array(sql.utf8CString)
            try utf8.withUnsafeMutableBufferPointer { buf in
                guard var cursor = UnsafePointer(buf.baseAddress) else { return }
                while cursor.pointee != 0 {
                    var stmt: OpaquePointer?
                    var tail: UnsafePointer<CChar>?
                    let rc = sqlite3_prepare_v2(db, cursor, -1, &stmt, &tail)
                    guard rc == SQLITE_OK else { throw error(rc) }
                    defer { sqlite3_finalize(stmt) }
                    if let stmt {
                        var step = sqlite3_step(stmt)
                        while step == SQLITE_ROW { step = sqlite3_step(stmt) }
                        guard step == SQLITE_DONE else { throw error(step) }
                    }
                    guard let tail, tail != cursor else { break }
                    cursor = tail
                }
            }
        }

        private func error(_ rc: Int32) -> SQLiteError {
            SQLiteError(path: path, code: rc, message: String(cString: sqlite3_errmsg(db)))
        }

        private func run(_ sql: String, _ parameters: [SQLiteValue], collect: Bool) throws -> [SQLiteRow] {
            var stmt: OpaquePointer?
            let rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
            guard rc == SQLITE_OK, let stmt else { throw error(rc) }
            defer { sqlite3_finalize(stmt) }
            guard Int(sqlite3_bind_parameter_count(stmt)) == parameters.count else {
                throw SQLiteError(path: path, code: SQLITE_RANGE, message: "statement takes \(sqlite3_bind_parameter_count(stmt)) parameters, \(parameters.count) given")
            }
            let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
            for (i, value) in parameters.enumerated() {
                let index = Int32(i + 1)
                let bound: Int32
                switch value {
                case .null: bound = sqlite3_bind_null(stmt, index)
                case .integer(let v): bound = sqlite3_bind_int64(stmt, index, v)
                case .real(let v): bound = sqlite3_bind_double(stmt, index, v)
                case .text(let v): bound = sqlite3_bind_text(stmt, index, v, -1, transient)
                case .blob(let v):
                    bound = v.withUnsafeBytes { sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32($0.count), transient) }
                }
                guard bound == SQLITE_OK else { throw error(bound) }
            }
            var rows: [SQLiteRow] = []
            let count = sqlite3_column_count(stmt)
            let names = (0..<count).map { String(cString: sqlite3_column_name(stmt, $0)) }
            while true {
                let step = sqlite3_step(stmt)
                if step == SQLITE_DONE { break }
                guard step == SQLITE_ROW else { throw error(step) }
                guard collect else { continue }
                var values: [SQLiteValue] = []
                values.reserveCapacity(Int(count))
                for c in 0..<count {
                    switch sqlite3_column_type(stmt, c) {
                    case SQLITE_INTEGER: values.append(.integer(sqlite3_column_int64(stmt, c)))
                    case SQLITE_FLOAT: values.append(.real(sqlite3_column_double(stmt, c)))
                    case SQLITE_TEXT: values.append(.text(sqlite3_column_text(stmt, c).map { String(cString: $0) } ?? ""))
                    case SQLITE_BLOB:
                        let n = Int(sqlite3_column_bytes(stmt, c))
                        if let p = sqlite3_column_blob(stmt, c), n > 0 {
                            values.append(.blob(Array(UnsafeRawBufferPointer(start: p, count: n))))
                        } else {
                            values.append(.blob([]))
                        }
                    default: values.append(.null)
                    }
                }
                rows.append(SQLiteRow(columns: names, values: values))
            }
            return rows
        }
    }
}
