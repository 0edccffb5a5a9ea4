import ArgumentParser
import FleetCore
import FleetState
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `mcpfleet state backup|restore`: the host drivers' state database (rollout records, revision history,
/// audit log, the local driver's instances), copied with SQLite's online backup API.
struct StateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Back up and restore an environment's state database (host drivers).",
        discussion: """
        The state database holds what the runtime cannot tell: revisions and how they ended, the rollout \
        bookkeeping, the audit log and, for the local driver, which processes are its instances. Back it up \
        while the controller runs (the copy is consistent); restore it with the controller stopped.
        """,
        subcommands: [StateBackupCommand.self, StateRestoreCommand.self, StateAdoptCommand.self])
}

struct StateTarget: ParsableArguments {
    @Argument(help: "The backup file.")
    var file: String

    @Option(name: [.customShort("C"), .customLong("dir")], help: "The manifest directory.")
    var dir: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    func database() throws -> (FleetTarget, String) {
        let target = try FleetTarget.load(path: dir, env: env)
        guard let path = DriverFactory.stateDatabase(environment: target.environment) else {
            throw CommandFailure(message: "environment \(target.environment.name) uses the Kubernetes driver: its state lives in the cluster "
                + "(ConfigMaps labelled mcpfleet.io/store in the controller's namespace); back those up with kubectl")
        }
        return (target, path)
    }
}

struct StateBackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup", abstract: "Copy the state database to FILE (consistent while a controller runs).")

    @OptionGroup var target: StateTarget

    func run() async throws {
        let (fleet, path) = try target.database()
        guard FileManager.default.fileExists(atPath: path) else {
            throw CommandFailure(message: "environment \(fleet.environment.name) has no state database yet (\(path))")
        }
        guard !FileManager.default.fileExists(atPath: target.file) else {
            throw CommandFailure(message: "\(target.file) already exists; choose a new file")
        }
        do {
            let database = try SQLiteDatabase(path: path)
            try database.backup(to: target.file)
            let counts = try SQLiteRolloutStore.counts(path: target.file)
            writeStdout("Backed up the state of environment \(fleet.environment.name) (\(counts?.rollouts ?? 0) rollout records, \(counts?.revisions ?? 0) revisions, "
                        + "\(counts?.audit ?? 0) audit entries) to \(target.file).\n")
        } catch let e as StateDamage {
            throw CommandFailure(message: "\(e); a damaged database is not backed up. Restore an earlier backup with `mcpfleet state restore`")
        }
    }
}

struct StateRestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Replace the state database with FILE (a `state backup`); the current file is kept beside it.",
        discussion: "Stop the controller first. The next `mcpfleet run` adopts the instances the backup knows and still run.")

    @OptionGroup var target: StateTarget

    func run() async throws {
        let (fleet, path) = try target.database()
        guard FileManager.default.fileExists(atPath: target.file) else { throw CommandFailure(message: "\(target.file) does not exist") }
        do {
            try SQLiteDatabase.checkIntegrity(target.file)
        } catch let e as StateDamage {
            throw CommandFailure(message: "\(e); not restored")
        }
        guard let backupCounts = try SQLiteRolloutStore.counts(path: target.file) else {
            throw CommandFailure(message: "\(target.file) is not an mcpfleet state backup (it has no rollout store)")
        }
        let directory = (path as NSString).deletingLastPathComponent
        // One controller at a time: the local driver's supervision lock; for systemd, a live heartbeat
        // (a controller clears it when it stops).
        if fleet.environment.driver == .local {
            let lock = open(directory + "/supervisor.lock", O_RDWR | O_CLOEXEC)
            if lock >= 0 {
                defer { close(lock) }
                guard flock(lock, LOCK_EX | LOCK_NB) == 0 else {
                    throw CommandFailure(message: "a controller is running on \(directory); stop it before restoring its state")
                }
            }
        } else if let row = try? SQLiteDatabase.readOnlyQuery(path, "SELECT value FROM store_meta WHERE key = 'controller-heartbeat'").first,
                  let beat = row[0].int64, Int64(Date().timeIntervalSince1970 * 1000) - beat < ControllerPresence.aliveWithinMs {
            throw CommandFailure(message: "a controller wrote to \(path) moments ago; stop it before restoring its state")
        }
        // Never lose the record: the file being replaced (with its WAL) is moved aside, not deleted.
        var kept: String?
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber, size.intValue > 0 {
            let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
            let aside = "\(path).replaced-\(stamp)"
            for suffix in ["", "-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
                try FileManager.default.moveItem(atPath: path + suffix, toPath: aside + suffix)
            }
            kept = aside
        } else {
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
        }
        let database = try SQLiteDatabase(path: path)
        try database.restore(from: target.file)
        // The backup may hold the heartbeat of the controller that ran when it was taken: none runs now.
        try await SQLiteRolloutStore(database: database).heartbeat(now: nil)
        writeStdout("Restored the state of environment \(fleet.environment.name) from \(target.file): \(backupCounts.rollouts) rollout records, "
                    + "\(backupCounts.revisions) revisions, \(backupCounts.audit) audit entries." + (kept.map { " The previous file is kept at \($0)." } ?? "") + "\n")
    }
}

/// `mcpfleet state adopt`: the recovery path when a systemd environment's state database was lost and
/// there is no backup. The controller refuses to start on an empty database beside mcpfleet's units;
/// this records (in the audit log) that an operator chose to start from empty state and adopt them.
struct StateAdoptCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "adopt",
        abstract: "Start a systemd environment from empty state beside its running units (when the database was lost and no backup exists).",
        discussion: "The units keep running and the next controller adopts them; the revision history, failure records and pins that were in the lost database are not recovered.")

    @Option(name: [.customShort("C"), .customLong("dir")], help: "The manifest directory.")
    var dir: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "Why, for the audit log.")
    var reason: String = "state database lost; no backup"

    func run() async throws {
        let target = try FleetTarget.load(path: dir, env: env)
        guard target.environment.driver == .systemd, let path = DriverFactory.stateDatabase(environment: target.environment) else {
            throw CommandFailure(message: "`state adopt` is for systemd environments; environment \(target.environment.name) uses the \(target.environment.driver.rawValue) driver"
                + (target.environment.driver == .local ? " (a lost local database names the processes to stop, or restore a backup)" : ""))
        }
        let store = try SQLiteRolloutStore(path: path)
        guard try store.holdsNothing() else {
            throw CommandFailure(message: "the state database \(path) is not empty; nothing to adopt")
        }
        let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? "uid \(getuid())"
        try await store.appendAudit(AuditEntry(time: Int64(Date().timeIntervalSince1970 * 1000), server: "environment/\(target.environment.name)",
                                               action: "adopt-lost-state", revision: nil, reason: "\(reason) (by \(user))", outcome: "ok"))
        writeStdout("Environment \(target.environment.name) starts from empty state at \(path); the next `mcpfleet run` adopts the running units.\n")
    }
}
