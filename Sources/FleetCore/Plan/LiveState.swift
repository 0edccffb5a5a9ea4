import Crypto

/// What a driver reports about one environment: per server, the revisions running with their replica
/// counts and health, the rollout phase and the controller's bookkeeping (last good revision, pins,
/// revisions marked failed). Serialisable (`Schemas/live-state.schema.json`) so CI can plan against a
/// saved snapshot.
public struct LiveState: Codable, Hashable, Sendable {
    public var environment: String?
    public var driver: String?
    public var servers: [LiveServer]
    public var tenants: [LiveTenant]
    /// The environment, policies and SLOs in force, when the baseline records them (a catalog at a git
    /// revision does; a runtime does not): nil means "not recorded", so the plan cannot compare them.
    public var objects: [CatalogObject]?

    public init(environment: String? = nil, driver: String? = nil, servers: [LiveServer] = [], tenants: [LiveTenant] = [], objects: [CatalogObject]? = nil) {
        self.environment = environment
        self.driver = driver
        self.servers = servers
        self.tenants = tenants
        self.objects = objects
    }

    enum CodingKeys: String, CodingKey { case environment, driver, servers, tenants, objects }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        environment = try c.decodeIfPresent(String.self, forKey: .environment)
        driver = try c.decodeIfPresent(String.self, forKey: .driver)
        servers = try c.decodeIfPresent([LiveServer].self, forKey: .servers) ?? []
        tenants = try c.decodeIfPresent([LiveTenant].self, forKey: .tenants) ?? []
        objects = try c.decodeIfPresent([CatalogObject].self, forKey: .objects)
    }

    public func server(_ name: String) -> LiveServer? { servers.first { $0.name == name } }

    /// The live state a catalog would have once fully converged: every server at its desired revision
    /// with all replicas ready, its settings and (given the catalog's verdicts) its admission, and the
    /// catalog's objects. `plan --against GIT-REF` diffs against this for the old catalog.
    public static func converged(_ desired: DesiredState, verdicts: [String: PolicyVerdict] = [:]) -> LiveState {
        LiveState(
            environment: desired.environment, driver: desired.driver.rawValue,
            servers: desired.servers.map { d in
                var l = LiveServer(name: d.name, tenant: d.tenant, revisions: [
                    LiveRevision(revision: d.revision, version: d.version, replicas: d.replicas, ready: d.replicas, fields: d.fields),
                ], lastGoodRevision: d.revision)
                l.settings = ServerSettings(d)
                l.admission = verdicts[d.name]?.admission
                return l
            },
            tenants: desired.tenants.map { LiveTenant(name: $0.name, fields: $0.fields) },
            objects: desired.objects)
    }

    /// A fingerprint of what a plan depends on (revisions, replica counts, pins, pauses, tenants), so a
    /// saved plan can refuse to apply when the live state has moved. Health and pids are left out.
    public var fingerprint: String {
        // Numbered lines, one per server then per tenant (each by name), hashed as `Renderer.revision`
        // hashes fields whose paths are the line numbers — so in the order of the numbers as strings
        // ("10" before "2"). Written as bytes into one buffer: this runs on every plan, over every server.
        var text: [UInt8] = []
        text.reserveCapacity(servers.count * 96 + tenants.count * 128)
        var ends: [Int] = []
        ends.reserveCapacity(servers.count + tenants.count)
        func add(_ s: String) { text.append(contentsOf: s.utf8) }
        servers.withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }
            // In place through `pointee` (a borrow): copying each LiveServer retained all its fields.
            for i in Planner.nameOrder(all.count, { (base + $0).pointee.name }) {
                let s = base + i
                add("s "); add(s.pointee.name); add(" "); add(s.pointee.tenant ?? ""); add(s.pointee.managed ? " true " : " false ")
                func revisionList(_ revisions: [LiveRevision]) {
                    revisions.withUnsafeBufferPointer { rs in
                        guard let rb = rs.baseAddress else { return }
                        for k in 0..<rs.count {
                            if k > 0 { add(",") }
                            add((rb + k).pointee.revision); add("x"); add(String((rb + k).pointee.replicas))
                        }
                    }
                }
                if s.pointee.revisions.count > 1 { revisionList(s.pointee.revisions.sorted { $0.revision < $1.revision }) } else { revisionList(s.pointee.revisions) }
                add(" pin="); add(s.pointee.pinnedRevision ?? ""); add(s.pointee.paused ? " paused=true failed=" : " paused=false failed=")
                if !s.pointee.failedRevisions.isEmpty {
                    for (k, f) in s.pointee.failedRevisions.sorted().enumerated() {
                        if k > 0 { add(",") }
                        add(f)
                    }
                }
                ends.append(text.count)
            }
        }
        for t in tenants.sorted(by: { $0.name < $1.name }) {
            add("t "); add(t.name); add(t.managed ? " true " : " false ")
            for (k, f) in (t.fields ?? []).enumerated() {
                if k > 0 { add(";") }
                add(f.path); add("="); add(f.canonical)
            }
            ends.append(text.count)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count + ends.count * 8)
        func line(_ n: Int) {
            bytes.append(contentsOf: String(n).utf8)
            bytes.append(0)
            bytes.append(contentsOf: text[(n == 0 ? 0 : ends[n - 1])..<ends[n]])
            bytes.append(0x0a)
        }
        // 0..<count in the order of their decimal strings, generated (a preorder walk of the digit
        // trie) rather than sorted by string comparison: "0", then 1, 10, 100, …, 11, …, 2, ….
        if !ends.isEmpty {
            line(0)
            let last = ends.count - 1
            var n = 1
            for _ in 0..<last {
                line(n)
                if n * 10 <= last {
                    n *= 10
                } else {
                    while n % 10 == 9 || n >= last { n /= 10 }
                    n += 1
                }
            }
        }
        return Renderer.hexPrefix(SHA256.hash(data: bytes), 12)
    }
}

public enum RolloutPhase: String, Codable, Hashable, Sendable, CaseIterable {
    case stable, progressing, paused, analyzing, degraded, rolledBack = "rolled-back", failed
}

public struct LiveInstance: Codable, Hashable, Sendable {
    public enum State: String, Codable, Hashable, Sendable {
        case starting, running, stopping, stopped, failed
    }

    public var id: String
    public var revision: String
    public var slot: Int?
    public var port: Int?
    public var pid: Int?
    public var state: State
    public var healthy: Bool
    public var reason: String?
    public var restarts: Int?
    /// The last lines of the instance's log, for an instance that is not healthy (secret values redacted).
    public var logTail: [String]?
    /// The runtime cannot start this instance, and retrying will not change that (no such executable,
    /// a missing secret, an invalid port): its revision fails at once.
    public var unstartable: Bool?

    public init(id: String, revision: String, slot: Int? = nil, port: Int? = nil, pid: Int? = nil, state: State, healthy: Bool, reason: String? = nil,
                restarts: Int? = nil, logTail: [String]? = nil, unstartable: Bool? = nil) {
        self.id = id
        self.revision = revision
        self.slot = slot
        self.port = port
        self.pid = pid
        self.state = state
        self.healthy = healthy
        self.reason = reason
        self.restarts = restarts
        self.logTail = logTail
        self.unstartable = unstartable
    }
}

public struct LiveRevision: Codable, Hashable, Sendable {
    public var revision: String
    public var version: String?
    /// Instances of this revision that exist (desired by the runtime).
    public var replicas: Int
    /// Instances that are running and healthy.
    public var ready: Int
    /// The spec fields this revision was deployed with (secret-safe), so a plan can say what changes.
    public var fields: [SpecField]?
    public var instances: [LiveInstance]?
    /// Why the runtime's object no longer matches what was applied for this revision (edited by hand);
    /// nil when it matches or the driver cannot tell.
    public var drift: String?

    public init(revision: String, version: String? = nil, replicas: Int, ready: Int, fields: [SpecField]? = nil, instances: [LiveInstance]? = nil) {
        self.revision = revision
        self.version = version
        self.replicas = replicas
        self.ready = ready
        self.fields = fields
        self.instances = instances
    }
}

public struct LiveServer: Codable, Hashable, Sendable {
    public var name: String
    public var tenant: String?
    /// Only objects mcpfleet owns are ever pruned.
    public var managed: Bool
    public var revisions: [LiveRevision]
    public var phase: RolloutPhase
    /// The revision a rollout in progress is heading to.
    public var targetRevision: String?
    public var lastGoodRevision: String?
    /// Set by `mcpfleet rollback`: this revision is held until released.
    public var pinnedRevision: String?
    /// The pin was forced past a gate (`mcpfleet rollback --force`).
    public var pinForced: Bool
    /// Revisions that failed a rollout; not retried until the manifests change the revision again.
    public var failedRevisions: [String]
    public var paused: Bool
    /// The controller's note on the server: why it is held, failed or not ready (status NOTES).
    public var message: String?
    /// Rollout settings, SLO and labels in force, when the baseline records them (nil: not recorded).
    public var settings: ServerSettings?
    /// The supply-chain verdict in force and its evidence, when the baseline records it.
    public var admission: Admission?
    /// The serving revision's tool contract (`status` fills it in from the revision records).
    public var contract: LiveContract?

    public init(name: String, tenant: String? = nil, managed: Bool = true, revisions: [LiveRevision], phase: RolloutPhase = .stable,
                targetRevision: String? = nil, lastGoodRevision: String? = nil, pinnedRevision: String? = nil, failedRevisions: [String] = [], paused: Bool = false,
                message: String? = nil, pinForced: Bool = false) {
        self.name = name
        self.tenant = tenant
        self.managed = managed
        self.revisions = revisions
        self.phase = phase
        self.targetRevision = targetRevision
        self.lastGoodRevision = lastGoodRevision
        self.pinnedRevision = pinnedRevision
        self.pinForced = pinForced
        self.failedRevisions = failedRevisions
        self.paused = paused
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case name, tenant, managed, revisions, phase, targetRevision, lastGoodRevision, pinnedRevision, pinForced, failedRevisions, paused, message,
             settings, admission, contract
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        tenant = try c.decodeIfPresent(String.self, forKey: .tenant)
        managed = try c.decodeIfPresent(Bool.self, forKey: .managed) ?? true
        revisions = try c.decodeIfPresent([LiveRevision].self, forKey: .revisions) ?? []
        phase = try c.decodeIfPresent(RolloutPhase.self, forKey: .phase) ?? .stable
        targetRevision = try c.decodeIfPresent(String.self, forKey: .targetRevision)
        lastGoodRevision = try c.decodeIfPresent(String.self, forKey: .lastGoodRevision)
        pinnedRevision = try c.decodeIfPresent(String.self, forKey: .pinnedRevision)
        pinForced = try c.decodeIfPresent(Bool.self, forKey: .pinForced) ?? false
        failedRevisions = try c.decodeIfPresent([String].self, forKey: .failedRevisions) ?? []
        paused = try c.decodeIfPresent(Bool.self, forKey: .paused) ?? false
        message = try c.decodeIfPresent(String.self, forKey: .message)
        settings = try c.decodeIfPresent(ServerSettings.self, forKey: .settings)
        admission = try c.decodeIfPresent(Admission.self, forKey: .admission)
        contract = try c.decodeIfPresent(LiveContract.self, forKey: .contract)
    }

    public var totalReplicas: Int { revisions.reduce(0) { $0 + $1.replicas } }
    public var readyReplicas: Int { revisions.reduce(0) { $0 + $1.ready } }

    /// The revision serving now: the pin, else the one with most replicas (ties go to the last good one).
    public var servingRevision: LiveRevision? {
        Self.servingIndex(revisions, pinned: pinnedRevision, lastGood: lastGoodRevision).map { revisions[$0] }
    }

    /// Where `servingRevision` is in `revisions`: the pinned one, else the first with most replicas
    /// (as `max(by:)` picks), a tie going to the last good revision. Reads the list in place.
    static func servingIndex(_ revisions: [LiveRevision], pinned: String?, lastGood: String?) -> Int? {
        revisions.withUnsafeBufferPointer { rs -> Int? in
            guard let base = rs.baseAddress, rs.count > 0 else { return nil }
            if let pin = pinned {
                for i in 0..<rs.count where (base + i).pointee.revision == pin { return i }
            }
            var best = 0
            for i in 1..<max(rs.count, 1) {
                let a = base + best, b = base + i
                let less = a.pointee.replicas != b.pointee.replicas ? a.pointee.replicas < b.pointee.replicas
                    : (b.pointee.revision == lastGood && a.pointee.revision != lastGood)
                if less { best = i }
            }
            return best
        }
    }

    /// Replicas on the first entry of `revision`, and on every entry of other revisions; in place.
    static func replicaSplit(_ revisions: [LiveRevision], _ revision: String) -> (current: Int, others: Int) {
        revisions.withUnsafeBufferPointer { rs in
            var current: Int?, others = 0
            for i in 0..<rs.count {
                let r = rs.baseAddress! + i
                if r.pointee.revision == revision { current = current ?? r.pointee.replicas } else { others += r.pointee.replicas }
            }
            return (current ?? 0, others)
        }
    }
}

/// Which tool contract a server serves: its digest (`sha256:<hex>`), the revision it was recorded
/// from, and how many tools it has (docs/designs/0010-tool-contracts.md).
public struct LiveContract: Codable, Hashable, Sendable {
    public var digest: String
    public var revision: String
    public var tools: Int

    public init(digest: String, revision: String, tools: Int) {
        self.digest = digest
        self.revision = revision
        self.tools = tools
    }

    /// `sha256:` and the first 12 hex digits, as `status` shows it.
    public var shortDigest: String { String(digest.prefix(19)) }
}

public struct LiveTenant: Codable, Hashable, Sendable {
    public var name: String
    public var managed: Bool
    public var fields: [SpecField]?

    public init(name: String, managed: Bool = true, fields: [SpecField]? = nil) {
        self.name = name
        self.managed = managed
        self.fields = fields
    }

    enum CodingKeys: String, CodingKey { case name, managed, fields }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        managed = try c.decodeIfPresent(Bool.self, forKey: .managed) ?? true
        fields = try c.decodeIfPresent([SpecField].self, forKey: .fields)
    }
}
