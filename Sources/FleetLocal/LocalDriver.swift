import FleetCore
import FleetState
import Foundation

/// The embedded default driver: each replica is a supervised child process on this machine.
///
/// Instances of a server take port slots (`port + slot`, the lowest slot no other revision of the
/// server holds); each runs in its own process group with a minimal environment (PATH, HOME, LANG,
/// the server's values and secrets read from `<secretsDir>/<name>/<key>`, PORT, MCP_PORT), its
/// output appended to `logs/<server>/<server>-<revision>-<slot>.log` (rotated at
/// `spec.local.maxLogBytes`, 3 kept). Exited instances restart with a backoff bounded by
/// `spec.local.restartBackoff` (see `LocalSupervisor.backoff`). An instance is ready only while its
/// port's listener is its own process; one whose port another process holds is not started, and the
/// holder is named. `transport: stdio` servers run behind a small stdio-to-HTTP
/// bridge (python3, standard library only). Every instance is in `state.db` before it is started and
/// carries a marker in its environment, so a new driver on the same state directory adopts what is
/// still running (pid alive and start time unchanged) instead of starting duplicates.
///
/// Supervision (restarts, log rotation, port checks) runs from `start()` — called by the controller, or
/// lazily by the first change — until `stop()` or `shutdown(stoppingInstances:desired:)`; one process at a
/// time may supervise a state directory. While it runs, `observe` answers from the supervisor's table.
public final class LocalDriver: RuntimeDriver {
    public let kind = DriverKind.local
    public let stateDirectory: String
    /// The state file (`state.db`); a `SQLiteRolloutStore` may share it.
    public let database: SQLiteDatabase
    let supervisor: LocalSupervisor

    /// `sensitiveValues`: sensitive plain values by digest from the manifests as they are now (see
    /// `LocalConfiguration.sensitiveValues`); nil when the catalog carries none.
    public init(environment: Environment, manifestRoot: String, stateDirectory: String? = nil, sensitiveValues: (@Sendable () -> [String: String])? = nil) throws {
        let cwd = FileManager.default.currentDirectoryPath
        let state = LocalSupervisor.absolute(stateDirectory ?? environment.effectiveStateDir, against: cwd)
        self.stateDirectory = state
        let resource = "environment/\(environment.name)"
        do {
            try SQLiteDatabase.makeDirectories(state + "/bin")
        } catch {
            throw DriverError(resource, "cannot create state directory \(state): \(error)")
        }
        let bridge = state + "/bin/" + StdioBridge.fileName
        if FileManager.default.contents(atPath: bridge) != Data(StdioBridge.script.utf8) {
            guard FileManager.default.createFile(atPath: bridge, contents: Data(StdioBridge.script.utf8), attributes: [.posixPermissions: 0o600]) else {
                throw DriverError(resource, "cannot write \(bridge)")
            }
        }
        let inherited = ProcessInfo.processInfo.environment.filter { ["PATH", "HOME", "LANG"].contains($0.key) }
        let configuration = LocalConfiguration(
            environmentName: environment.name,
            manifestRoot: LocalSupervisor.absolute(manifestRoot, against: cwd),
            stateDirectory: state,
            logDirectory: environment.local?.logDir.map { LocalSupervisor.absolute($0, against: cwd) } ?? state + "/logs",
            secretsDirectory: environment.secretsDir.map { LocalSupervisor.absolute($0, against: cwd) } ?? state + "/secrets",
            bridgeScript: bridge,
            maxLogBytes: environment.local?.maxLogBytes ?? 10 * 1024 * 1024,
            maxBackoff: environment.local?.restartBackoff ?? .seconds(30),
            inherited: inherited,
            sensitiveValues: sensitiveValues)
        database = try SQLiteDatabase(path: state + "/state.db")
        if try LocalStateTables.isFresh(database) {
            // No state, yet processes this state directory started still run: the database was lost.
            // Starting afresh would orphan them (and clash with them on their ports): refuse, say how to recover.
            let orphans = ProcessControl.instancesLogging(under: configuration.logDirectory, marker: LocalSupervisor.markerVariable)
            if !orphans.isEmpty { throw LocalStateLost(database: database.path, stateDirectory: state, processes: orphans) }
        }
        supervisor = try LocalSupervisor(configuration: configuration, tables: LocalStateTables(database: database))
    }

    /// A rollout store in the same file as the driver's state.
    public func rolloutStore() throws -> SQLiteRolloutStore { try SQLiteRolloutStore(database: database) }

    /// Begins supervising: adopts instances a previous controller left running, restarts the ones that
    /// died, stops strays. Idempotent; the first `scale` calls it.
    public func start() async throws { try await supervisor.start() }

    /// Ends supervision; instances keep running, and the next `start` (here or in another process) adopts them.
    public func stop() async { await supervisor.shutdown(stopInstances: false) }

    /// Ends supervision. With `stoppingInstances`, every instance is stopped (SIGTERM to its process group,
    /// up to 5 s, then SIGKILL) and reaped; they stay recorded, and the next controller starts them again.
    public func shutdown(stoppingInstances: Bool, desired: DesiredState?) async throws {
        await supervisor.shutdown(stopInstances: stoppingInstances)
    }

    /// Ends supervision (see `shutdown(stoppingInstances:desired:)`).
    public func shutdown(stopInstances: Bool) async { await supervisor.shutdown(stopInstances: stopInstances) }

    public func observe() async throws -> LiveState { try await supervisor.observe(.all) }

    /// From the supervisor's table, which its own starts, exits, adoptions and port checks keep current:
    /// O(the scope's instances), no connection to any instance.
    public func observe(_ scope: ObserveScope) async throws -> LiveState { try await supervisor.observe(scope) }

    /// Bumped by every change to the supervisor's table (start, exit, adoption, port verdict, stop, a
    /// revision or tenant recorded), never by a tick that finds nothing new.
    public func liveGeneration() async -> UInt64? { await supervisor.generation }

    public func ensureTenant(_ tenant: DesiredTenant) async throws { try await supervisor.ensureTenant(tenant) }

    public func removeTenant(named name: String) async throws { try await supervisor.removeTenant(named: name) }

    public func scale(_ server: DesiredServer, replicas: Int) async throws { try await supervisor.scale(server, replicas: replicas) }

    /// From the revision's stored definition (`state.db`), which it does not rewrite.
    public func rescale(server: String, revision: String, tenant: String, replicas: Int) async throws {
        try await supervisor.rescale(server: server, revision: revision, replicas: replicas)
    }

    public func removeRevision(server: String, revision: String) async throws {
        try await supervisor.removeRevision(server: server, revision: revision)
    }

    public func removeServer(named name: String) async throws { try await supervisor.removeServer(named: name) }

    public func endpoints(server: String, revision: String) async throws -> [Endpoint] {
        try await supervisor.endpoints(server: server, revision: revision)
    }
}

/// The local driver's database is missing or empty while instances it started still run (found by the
/// marker in their environment and their output going to this state directory's logs).
public struct LocalStateLost: Error, Sendable, CustomStringConvertible {
    public var database: String
    public var stateDirectory: String
    public var processes: [PortOwnership.Holder]

    public var description: String {
        "the state database \(database) is missing or empty, but \(processes.count) instance(s) started from \(stateDirectory) still run: "
            + processes.map(\.description).joined(separator: ", ")
    }
}
