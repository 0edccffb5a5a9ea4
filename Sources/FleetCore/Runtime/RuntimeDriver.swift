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

    /// Makes exactly `replicas` instances of a revision group the runtime already defines exist, from the
    /// definition the runtime keeps for it (Kubernetes: the Deployment; systemd: the unit template and
    /// revision record; local: the stored revision), never rewriting that definition. For a revision this
    /// controller process did not render (the stable revision after a restart mid-rollout): `scale` would
    /// redefine the group from the spec it is given. A scale-up of a revision with no kept definition
    /// throws a terminal `DriverError`; down to 0 without one does nothing.
    func rescale(server: String, revision: String, tenant: String, replicas: Int) async throws

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

    /// What a controller leaving does: `stop()`, and with `stoppingInstances` every managed revision's
    /// instances are stopped, their definitions kept, so the next controller brings the same revisions
    /// back. `desired` (when known) names each server's tenant. The default rescales each revision to zero.
    func shutdown(stoppingInstances: Bool, desired: DesiredState?) async throws

    /// Scopes whose live state changed (a server, or `.all` after the driver re-read everything), as the
    /// driver's live-state cache sees them, for the controller to queue that reconcile at once rather
    /// than at the next resync. Nil: the driver reports no changes (the default). Call after `start()`.
    func liveChanges() -> AsyncStream<ObserveScope>?

    /// A number that changes whenever anything `observe(.all)` or `endpoints` would answer differently
    /// (an instance started, exited, took or lost its port; a revision or tenant recorded or removed), for
    /// readers that rebuild something from the whole live state (the gateway's route table) to skip the
    /// rebuild while it stays the same. Nil: the driver cannot tell (the default); read it again each time.
    func liveGeneration() async -> UInt64?
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
    public func liveChanges() -> AsyncStream<ObserveScope>? { nil }
    public func liveGeneration() async -> UInt64? { nil }

    public func shutdown(stoppingInstances: Bool, desired: DesiredState?) async throws {
        await stop()
        guard stoppingInstances else { return }
        for s in try await observe(.all).servers where s.managed {
            for r in s.revisions where r.replicas > 0 {
                try await rescale(server: s.name, revision: r.revision, tenant: desired?.server(s.name)?.tenant ?? s.tenant ?? "default", replicas: 0)
            }
        }
    }
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
    /// Failed with nothing to roll back to (a first deployment) or with `autoRollback: false`.
    case failed
    /// Left before its rollout finished (the desired revision changed, or an operator pinned another):
    /// it did not fail, and was never fully rolled out.
    case abandoned
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
    /// The MCP surface the revision served when it first became healthy (docs/designs/0010-tool-contracts.md).
    public var contract: ServerContract?

    public init(server: String, revision: String, version: String, fields: [SpecField], createdAt: Int64, outcome: RevisionOutcome,
                reason: String? = nil, manifestCommit: String? = nil, evidence: EvidenceSummary? = nil, contract: ServerContract? = nil) {
        self.contract = contract
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
    /// Set with the pin by `mcpfleet rollback --force`: the pin holds even where a gate refuses it.
    public var pinForced: Bool
    public var failedRevisions: [String]
    public var paused: Bool
    /// Unix epoch milliseconds when the server was paused; `resume` moves the step clock on by the time
    /// spent paused, so a pause neither restarts nor eats into a canary pause or the progress deadline.
    public var pausedAt: Int64?
    /// Canary step index (or rolling batch number) reached.
    public var step: Int
    /// Unix epoch milliseconds when the current step began (pauses and deadlines count from here), moved
    /// on only by progress (more instances of the target ready than ever in this step) or a resume.
    public var stepStartedAt: Int64
    /// The most instances of the target revision seen ready in the current step (progress high-water mark).
    public var progressReady: Int
    /// Restarts the runtime had counted for the target revision's instances when the rollout began.
    public var restartBaseline: Int
    /// Set by `mcpfleet promote`: the current `untilPromoted` pause may end.
    public var promoted: Bool
    /// Results of the current analysis run: true = measurement passed.
    public var measurements: [Bool]
    public var message: String?
    /// Why each of `failedRevisions` failed (the reason of its rollback), for status and holds.
    public var failureReasons: [String: String]
    /// The controller's last probe verdict per instance id (what `status` folds into READY).
    public var probes: [String: ProbeNote]
    public var updatedAt: Int64
    /// How many times the record was saved. The controller and operator commands (`promote`, `pause`,
    /// `rollback`, …) write the same record; each saves over the generation it read
    /// (`RolloutStore.saveIfUnchanged`), so neither silently overwrites the other's change.
    public var generation: Int64
    /// Restarts of the serving revision outside rollouts, so a steady-state crash loop is announced
    /// once per episode (`RolloutMachine.watchCrashLoop`).
    public var crashWatch: CrashLoopWatch?

    public init(server: String, phase: RolloutPhase = .stable, stableRevision: String? = nil, targetRevision: String? = nil, pinnedRevision: String? = nil,
                pinForced: Bool = false, failedRevisions: [String] = [], paused: Bool = false, pausedAt: Int64? = nil, step: Int = 0,
                stepStartedAt: Int64 = 0, progressReady: Int = 0, restartBaseline: Int = 0, promoted: Bool = false,
                measurements: [Bool] = [], message: String? = nil, failureReasons: [String: String] = [:], probes: [String: ProbeNote] = [:], updatedAt: Int64 = 0, generation: Int64 = 0) {
        self.server = server
        self.phase = phase
        self.stableRevision = stableRevision
        self.targetRevision = targetRevision
        self.pinnedRevision = pinnedRevision
        self.pinForced = pinForced
        self.failedRevisions = failedRevisions
        self.paused = paused
        self.pausedAt = pausedAt
        self.step = step
        self.stepStartedAt = stepStartedAt
        self.progressReady = progressReady
        self.restartBaseline = restartBaseline
        self.promoted = promoted
        self.measurements = measurements
        self.message = message
        self.failureReasons = failureReasons
        self.probes = probes
        self.updatedAt = updatedAt
        self.generation = generation
    }

    /// Records written by earlier versions lack the newer fields: they take their defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        server = try c.decode(String.self, forKey: .server)
        phase = try c.decode(RolloutPhase.self, forKey: .phase)
        stableRevision = try c.decodeIfPresent(String.self, forKey: .stableRevision)
        targetRevision = try c.decodeIfPresent(String.self, forKey: .targetRevision)
        pinnedRevision = try c.decodeIfPresent(String.self, forKey: .pinnedRevision)
        pinForced = try c.decodeIfPresent(Bool.self, forKey: .pinForced) ?? false
        failedRevisions = try c.decodeIfPresent([String].self, forKey: .failedRevisions) ?? []
        paused = try c.decodeIfPresent(Bool.self, forKey: .paused) ?? false
        pausedAt = try c.decodeIfPresent(Int64.self, forKey: .pausedAt)
        step = try c.decodeIfPresent(Int.self, forKey: .step) ?? 0
        stepStartedAt = try c.decodeIfPresent(Int64.self, forKey: .stepStartedAt) ?? 0
        progressReady = try c.decodeIfPresent(Int.self, forKey: .progressReady) ?? 0
        restartBaseline = try c.decodeIfPresent(Int.self, forKey: .restartBaseline) ?? 0
        promoted = try c.decodeIfPresent(Bool.self, forKey: .promoted) ?? false
        measurements = try c.decodeIfPresent([Bool].self, forKey: .measurements) ?? []
        message = try c.decodeIfPresent(String.self, forKey: .message)
        failureReasons = try c.decodeIfPresent([String: String].self, forKey: .failureReasons) ?? [:]
        probes = try c.decodeIfPresent([String: ProbeNote].self, forKey: .probes) ?? [:]
        updatedAt = try c.decodeIfPresent(Int64.self, forKey: .updatedAt) ?? 0
        generation = try c.decodeIfPresent(Int64.self, forKey: .generation) ?? 0
        crashWatch = try c.decodeIfPresent(CrashLoopWatch.self, forKey: .crashWatch)
    }

    /// The phase people see: an operator's pause shows as `paused` whatever step the rollout is at.
    public var displayPhase: RolloutPhase { paused ? .paused : phase }

    /// Holds the server where it is (`mcpfleet pause`, an inconclusive analysis), remembering when.
    public mutating func pause(at now: Int64, message: String) {
        if !paused { pausedAt = now }
        paused = true
        self.message = message
    }

    /// Ends a pause (and a pin): the step clock moves on by the time spent paused, so a timed canary pause
    /// and the progress deadline continue where they were instead of starting over.
    public mutating func resume(at now: Int64) {
        if paused, let since = pausedAt, now > since { stepStartedAt += now - since }
        paused = false
        pausedAt = nil
        pinnedRevision = nil
        pinForced = false
        message = nil
    }
}

/// The restarts of a serving revision outside rollouts: a window of them, and whether a crash-loop
/// episode has been announced (and not yet recovered from).
public struct CrashLoopWatch: Codable, Hashable, Sendable {
    public var revision: String
    /// The restart count (summed over instances) when the window began, and when that was.
    public var baseline: Int
    public var since: Int64
    /// The restart count last seen, and when it last went up.
    public var restarts: Int
    public var lastRestartAt: Int64
    /// Inside an announced episode.
    public var looping: Bool

    public init(revision: String, baseline: Int, since: Int64, restarts: Int, lastRestartAt: Int64, looping: Bool = false) {
        self.revision = revision
        self.baseline = baseline
        self.since = since
        self.restarts = restarts
        self.lastRestartAt = lastRestartAt
        self.looping = looping
    }
}

/// What the controller's probes last said about one instance.
public struct ProbeNote: Codable, Hashable, Sendable {
    public var healthy: Bool
    /// Why the probe failed (the prober's message), when it did.
    public var reason: String?
    /// Which run of the instance the verdict is about: its process id and restart count as the driver
    /// reported them (nil where the driver reports none). A controller that starts over trusts a ready
    /// verdict only for the same run (`trusts(_:)`); a restarted or replaced process is probed first.
    public var pid: Int?
    public var restarts: Int?

    public init(healthy: Bool, reason: String? = nil, pid: Int? = nil, restarts: Int? = nil) {
        self.healthy = healthy
        self.reason = reason
        self.pid = pid
        self.restarts = restarts
    }

    /// The verdict names this run of the instance (a pid, or a restart count where there is no pid)
    /// and says ready, and the driver still calls it running and healthy.
    public func trusts(_ instance: LiveInstance) -> Bool {
        healthy && instance.state == .running && instance.healthy && (pid != nil || restarts != nil)
            && pid == instance.pid && restarts == instance.restarts
    }
}

/// One line of the append-only audit log: what changed, why, from which commit, and how it ended.
/// A rollout step reached: the `index`th of `of` (1-based; the last is the move to every replica),
/// at `weight` percent of the desired replicas, `replicas` of them on the new revision.
public struct RolloutStep: Codable, Hashable, Sendable {
    public var index: Int
    public var of: Int
    public var weight: Int
    public var replicas: Int
    /// How status names it: `step 2 of 3`, `final step`, or the strategy for a single-step rollout.
    public var label: String

    public init(index: Int, of: Int, weight: Int, replicas: Int, label: String) {
        self.index = index
        self.of = of
        self.weight = weight
        self.replicas = replicas
        self.label = label
    }
}

public struct AuditEntry: Codable, Hashable, Sendable {
    public var time: Int64
    public var server: String
    public var action: String
    public var revision: String?
    public var reason: String
    public var manifestCommit: String?
    public var outcome: String
    public var correlationId: String?
    /// Further identical occurrences counted on this entry instead of new rows (see `isRepeat(of:)`).
    public var repeats: Int?
    /// Unix epoch milliseconds of the last repeat.
    public var lastTime: Int64?
    /// Who made an operator's change (`mcpfleet pause` …): the OS user, or the Kubernetes identity
    /// in a cluster. Nil for the controller's own steps.
    public var actor: String?
    /// For a `step` entry: the rollout step reached.
    public var step: RolloutStep?

    public init(time: Int64, server: String, action: String, revision: String? = nil, reason: String, manifestCommit: String? = nil, outcome: String,
                correlationId: String? = nil, repeats: Int? = nil, lastTime: Int64? = nil, actor: String? = nil, step: RolloutStep? = nil) {
        self.step = step
        self.time = time
        self.server = server
        self.action = action
        self.revision = revision
        self.reason = reason
        self.manifestCommit = manifestCommit
        self.outcome = outcome
        self.correlationId = correlationId
        self.repeats = repeats
        self.lastTime = lastTime
        self.actor = actor
    }

    /// The same failure again (a retry failing the same way): an error outcome, with the same server,
    /// action, revision, reason, outcome and commit. Stores count it on the earlier entry instead of
    /// appending a row. Successful entries are events of their own and are always appended.
    public func isRepeat(of other: AuditEntry) -> Bool {
        outcome != "ok" && server == other.server && action == other.action && revision == other.revision && reason == other.reason
            && outcome == other.outcome && manifestCommit == other.manifestCommit
    }

    /// How many recent entries of a server a store searches for the one an entry repeats.
    public static let repeatWindow = 16
}

/// Durable rollout state: a local SQLite database for host drivers, annotations/objects on Kubernetes.
/// Writes are transactional: a crash leaves either the old or the new record, never half of one.
public protocol RolloutStore: Sendable {
    func record(server: String) async throws -> RolloutRecord?
    func records() async throws -> [RolloutRecord]
    /// Writes `record` as given, whatever is stored (tests, tools). The controller and operator commands
    /// write with `saveIfUnchanged`.
    func save(_ record: RolloutRecord) async throws
    /// Compare-and-swap: writes `record` only if the stored record's `generation` is still
    /// `record.generation` (nothing stored, when it is 0), as generation + 1, and returns what it wrote;
    /// nil when another writer saved in between — read the record again and redo the change.
    func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord?
    /// `saveIfUnchanged(record)` and, only if that saved, `then` in order: one reconcile step's record
    /// with the revisions and audit entries it writes before it acts. A store that can makes it one
    /// write (the default writes them one after the other); either way all of it is durable before
    /// this returns, and none of `then` is written when the record was not.
    func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord?
    func removeRecord(server: String) async throws
    func revisions(server: String) async throws -> [RevisionRecord]
    func saveRevision(_ revision: RevisionRecord) async throws
    /// Appends `entry`, unless it is a failure repeating one of the server's last `AuditEntry.repeatWindow`
    /// entries (`isRepeat(of:)`): then that entry's `repeats` and `lastTime` count it instead, so a
    /// failure retried for an hour is one row with a count, never a row per retry.
    func appendAudit(_ entry: AuditEntry) async throws
    func audit(server: String?, limit: Int) async throws -> [AuditEntry]
    /// Notes that a controller is alive and the store writable (it writes); nil: the controller stops.
    /// A store that cannot keep it has the default, which does nothing.
    func heartbeat(now: Int64?) async throws
    /// When a running controller last wrote a heartbeat (nil: none runs, or the store keeps none).
    func lastHeartbeat() async throws -> Int64?
    /// True when the store keeps heartbeats, so a nil or old one means no controller runs.
    var keepsHeartbeat: Bool { get }
    /// What compaction kept of audit entries it removed (see `AuditSummary`).
    func compactedAudit(server: String?) async throws -> [AuditSummary]
}

/// A revision or audit write that goes with a record (`RolloutStore.saveIfUnchanged(_:then:)`).
public enum Bookkeeping: Sendable, Hashable {
    case revision(RevisionRecord)
    case audit(AuditEntry)

    /// The server it belongs to.
    public var server: String {
        switch self {
        case .revision(let r): return r.server
        case .audit(let e): return e.server
        }
    }
}

extension RolloutStore {
    /// One write after another, through this store's own calls.
    public func saveIfUnchangedOneByOne(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        guard let saved = try await saveIfUnchanged(record) else { return nil }
        for write in then {
            switch write {
            case .revision(let revision): try await saveRevision(revision)
            case .audit(let entry): try await appendAudit(entry)
            }
        }
        return saved
    }

    public func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        try await saveIfUnchangedOneByOne(record, then: then)
    }

    public func heartbeat(now: Int64?) async throws {}
    public func lastHeartbeat() async throws -> Int64? { nil }
    public var keepsHeartbeat: Bool { false }
    /// Counts of audit entries compacted away (stores with bounded retention keep these).
    public func compactedAudit(server: String?) async throws -> [AuditSummary] { [] }
}

/// What compaction kept of old audit entries: how many of one kind, and when the first and last were.
public struct AuditSummary: Codable, Hashable, Sendable {
    public var server: String
    public var action: String
    public var revision: String?
    /// `ok` or `error`.
    public var outcome: String
    public var count: Int
    public var firstTime: Int64
    public var lastTime: Int64

    public init(server: String, action: String, revision: String?, outcome: String, count: Int, firstTime: Int64, lastTime: Int64) {
        self.server = server
        self.action = action
        self.revision = revision
        self.outcome = outcome
        self.count = count
        self.firstTime = firstTime
        self.lastTime = lastTime
    }
}

extension LiveState {
    /// Folds the controller's bookkeeping into what a driver observed. With `probes`, the controller's
    /// probe verdicts (kept in each record) count too: an instance is ready only when the driver calls it
    /// running and healthy *and* the controller's last probe of it passed, and a failed probe's message
    /// becomes the instance's reason. Pass `probes: false` when no controller is alive to have probed.
    public func merging(_ records: [RolloutRecord], probes: Bool = true) -> LiveState {
        var out = self
        let byName = Dictionary(records.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a })
        for i in out.servers.indices {
            guard let r = byName[out.servers[i].name] else { continue }
            out.servers[i].phase = r.displayPhase
            out.servers[i].targetRevision = r.targetRevision
            out.servers[i].lastGoodRevision = r.stableRevision
            out.servers[i].pinnedRevision = r.pinnedRevision
            out.servers[i].pinForced = r.pinForced
            out.servers[i].failedRevisions = r.failedRevisions
            out.servers[i].paused = r.paused
            out.servers[i].message = r.message
            // A server the controller probes (it has verdicts): an instance it has not probed yet is not ready either.
            guard probes, !r.probes.isEmpty else { continue }
            for k in out.servers[i].revisions.indices {
                guard var instances = out.servers[i].revisions[k].instances else { continue }
                for j in instances.indices where instances[j].healthy {
                    guard let note = r.probes[instances[j].id] else {
                        instances[j].healthy = false
                        instances[j].reason = "not probed yet"
                        continue
                    }
                    guard !note.healthy else { continue }
                    instances[j].reason = note.reason.map { "probe failed: \($0)" } ?? "probe failed"
                    instances[j].healthy = false
                }
                out.servers[i].revisions[k].instances = instances
                out.servers[i].revisions[k].ready = min(out.servers[i].revisions[k].ready, instances.filter { $0.state == .running && $0.healthy }.count)
            }
        }
        return out
    }
}

extension DriverError {
    /// A scale-up of a revision whose definition the runtime does not keep (`RuntimeDriver.rescale`).
    public static func noKeptDefinition(server: String, revision: String) -> DriverError {
        DriverError("server/\(server)", "no definition of revision \(revision) is kept; it cannot be scaled up without its spec "
                    + "(change the manifest back to that revision, or roll forward)", terminal: true)
    }
}

/// A runtime whose scale-down would otherwise pick the replicas to stop itself (Kubernetes: the
/// ReplicaSet controller), told which ones to remove first (design 0018) — so the replicas drained
/// are the ones that stop. Host drivers stop their highest-numbered instances and do not conform.
public protocol ScaleDownTargeting: Sendable {
    /// Before a scale-down of `server`'s `revision`: `removing` go first, `keeping` stay.
    func targetScaleDown(server: String, revision: String, tenant: String, removing: [String], keeping: [String]) async throws
}
