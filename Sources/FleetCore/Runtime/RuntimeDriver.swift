/// Where an instance of a server can be reached, for probes.
public struct Endpoint: Codable, Hashable, Sendable {
    public var instance: String
    public var host: String
    public var port: Int
    public var path: String

    public init(instance: String, host: String, port: Int, path: String) {
        self.instance = instance
        self.host = host
        self.port = port
        self.path = path
    }

    public var url: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)" }
}

/// A runtime error that names the resource it concerns; the CLI turns it into text and an exit code.
public struct DriverError: Error, Sendable, CustomStringConvertible {
    public var resource: String
    public var message: String
    /// True when retrying cannot help (bad input); the controller stops retrying, as controller-runtime's TerminalError.
    public var terminal: Bool

    public init(_ resource: String, _ message: String, terminal: Bool = false) {
        self.resource = resource
        self.message = message
        self.terminal = terminal
    }

    public var description: String { "\(resource): \(message)" }
}

/// The seam between the controller and a runtime (local processes, systemd, Kubernetes).
///
/// The model is uniform across drivers: a server runs as one *revision group* per revision (host
/// drivers: instances in port slots; Kubernetes: one Deployment per revision, a shared Service), and
/// the controller's rollout machine moves replicas between groups. Every call states the desired end
/// state of one object and is idempotent, so a controller killed between calls converges on restart.
public protocol RuntimeDriver: Sendable {
    var kind: DriverKind { get }

    /// Live state of every object this driver owns (and, marked unmanaged, others it can see). Rollout
    /// bookkeeping (phase, last good, pins, failed revisions) comes from the `RolloutStore`, not from here.
    func observe() async throws -> LiveState

    /// Creates or updates a tenant's isolation unit (slice, namespace + quota + network policy).
    func ensureTenant(_ tenant: DesiredTenant) async throws

    func removeTenant(named name: String) async throws

    /// Makes exactly `replicas` instances of `server.revision` exist, starting or stopping instances
    /// (0 keeps the group's definition but runs nothing). Never touches other revisions of the server.
    func scale(_ server: DesiredServer, replicas: Int) async throws

    /// Removes every instance and the definition of one revision of a server.
    func removeRevision(server: String, revision: String) async throws

    /// Removes everything of a server (every revision, its service).
    func removeServer(named name: String) async throws

    /// Endpoints of the running instances of a revision, for health probes.
    func endpoints(server: String, revision: String) async throws -> [Endpoint]

    /// Live state of one server or of everything (see `ObserveScope`). Drivers that keep a live-state
    /// cache answer from it; the default filters `observe()`. Design: docs/designs/0008-live-state-cache.md.
    func observe(_ scope: ObserveScope) async throws -> LiveState

    /// Begins keeping live state current (caches, watches, supervision); until then `observe` reads the
    /// runtime directly. Idempotent. The default does nothing.
    func start() async throws

    /// Ends what `start` began (watches, background work); instances keep running. The default does nothing.
    func stop() async
}

/// What an observation covers: everything (the sync key, `status`, `plan`) or one server (its reconcile).
public enum ObserveScope: Hashable, Sendable, CustomStringConvertible {
    case all
    case server(String)

    public var description: String {
        switch self {
        case .all: return "all"
        case .server(let name): return "server/\(name)"
        }
    }
}

extension RuntimeDriver {
    public func observe(_ scope: ObserveScope) async throws -> LiveState {
        try await observe().scoped(to: scope)
    }

    public func start() async throws {}
    public func stop() async {}
}

extension LiveState {
    /// The part of this state a scope covers: for `.server(name)` that server only (none when it does not
    /// exist) and every tenant (tenants are few, and a server's reconcile checks its tenant).
    public func scoped(to scope: ObserveScope) -> LiveState {
        guard case .server(let name) = scope else { return self }
        var out = self
        out.servers = servers.filter { $0.name == name }
        return out
    }
}

/// Why a revision ended as it did, for `mcpfleet history`.
public enum RevisionOutcome: String, Codable, Hashable, Sendable {
    case pending, promoted, rolledBack = "rolled-back", superseded, blocked
}

/// One revision of a server as mcpfleet saw it: what it was, when, with which evidence, and how it ended.
public struct RevisionRecord: Codable, Hashable, Sendable {
    public var server: String
    public var revision: String
    public var version: String
    public var fields: [SpecField]
    /// Unix epoch milliseconds.
    public var createdAt: Int64
    public var outcome: RevisionOutcome
    public var reason: String?
    public var manifestCommit: String?
    public var evidence: EvidenceSummary?

    public init(server: String, revision: String, version: String, fields: [SpecField], createdAt: Int64, outcome: RevisionOutcome,
                reason: String? = nil, manifestCommit: String? = nil, evidence: EvidenceSummary? = nil) {
        self.server = server
        self.revision = revision
        self.version = version
        self.fields = fields
        self.createdAt = createdAt
        self.outcome = outcome
        self.reason = reason
        self.manifestCommit = manifestCommit
        self.evidence = evidence
    }
}

/// The controller's bookkeeping for one server, persisted before every step it takes.
public struct RolloutRecord: Codable, Hashable, Sendable {
    public var server: String
    public var phase: RolloutPhase
    /// The revision serving before the rollout began (the last good revision).
    public var stableRevision: String?
    /// The revision being rolled out, when a rollout is in progress.
    public var targetRevision: String?
    public var pinnedRevision: String?
    public var failedRevisions: [String]
    public var paused: Bool
    /// Canary step index (or rolling batch number) reached.
    public var step: Int
    /// Unix epoch milliseconds when the current step began (pauses and deadlines count from here).
    public var stepStartedAt: Int64
    /// Set by `mcpfleet promote`: the current `untilPromoted` pause may end.
    public var promoted: Bool
    /// Results of the current analysis run: true = measurement passed.
    public var measurements: [Bool]
    public var message: String?
    public var updatedAt: Int64

    public init(server: String, phase: RolloutPhase = .stable, stableRevision: String? = nil, targetRevision: String? = nil, pinnedRevision: String? = nil,
                failedRevisions: [String] = [], paused: Bool = false, step: Int = 0, stepStartedAt: Int64 = 0, promoted: Bool = false,
                measurements: [Bool] = [], message: String? = nil, updatedAt: Int64 = 0) {
        self.server = server
        self.phase = phase
        self.stableRevision = stableRevision
        self.targetRevision = targetRevision
        self.pinnedRevision = pinnedRevision
        self.failedRevisions = failedRevisions
        self.paused = paused
        self.step = step
        self.stepStartedAt = stepStartedAt
        self.promoted = promoted
        self.measurements = measurements
        self.message = message
        self.updatedAt = updatedAt
    }
}

/// One line of the append-only audit log: what changed, why, from which commit, and how it ended.
public struct AuditEntry: Codable, Hashable, Sendable {
    public var time: Int64
    public var server: String
    public var action: String
    public var revision: String?
    public var reason: String
    public var manifestCommit: String?
    public var outcome: String
    public var correlationId: String?

    public init(time: Int64, server: String, action: String, revision: String? = nil, reason: String, manifestCommit: String? = nil, outcome: String, correlationId: String? = nil) {
        self.time = time
        self.server = server
        self.action = action
        self.revision = revision
        self.reason = reason
        self.manifestCommit = manifestCommit
        self.outcome = outcome
        self.correlationId = correlationId
    }
}

/// Durable rollout state: a local SQLite database for host drivers, annotations/objects on Kubernetes.
/// Writes are transactional: a crash leaves either the old or the new record, never half of one.
public protocol RolloutStore: Sendable {
    func record(server: String) async throws -> RolloutRecord?
    func records() async throws -> [RolloutRecord]
    func save(_ record: RolloutRecord) async throws
    func removeRecord(server: String) async throws
    func revisions(server: String) async throws -> [RevisionRecord]
    func saveRevision(_ revision: RevisionRecord) async throws
    func appendAudit(_ entry: AuditEntry) async throws
    func audit(server: String?, limit: Int) async throws -> [AuditEntry]
}

extension LiveState {
    /// Folds the controller's bookkeeping into what a driver observed.
    public func merging(_ records: [RolloutRecord]) -> LiveState {
        var out = self
        let byName = Dictionary(records.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a })
        for i in out.servers.indices {
            guard let r = byName[out.servers[i].name] else { continue }
            out.servers[i].phase = r.phase
            out.servers[i].targetRevision = r.targetRevision
            out.servers[i].lastGoodRevision = r.stableRevision
            out.servers[i].pinnedRevision = r.pinnedRevision
            out.servers[i].failedRevisions = r.failedRevisions
            out.servers[i].paused = r.paused
        }
        return out
    }
}
