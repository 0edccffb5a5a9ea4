/// Change actions and their symbols, as Terraform prints them.
public enum ChangeAction: String, Codable, Hashable, Sendable, CaseIterable {
    case create, rollout, scale, update, delete

    public var symbol: String {
        switch self {
        case .create: return "+"
        case .rollout, .update: return "~"
        case .scale: return "↕"
        case .delete: return "-"
        }
    }

    public var verb: String {
        switch self {
        case .create: return "create"
        case .rollout: return "roll out"
        case .scale: return "scale"
        case .update: return "update"
        case .delete: return "delete"
        }
    }
}

/// One field that differs: `old` nil for an added field, `new` nil for a removed one.
public struct FieldChange: Codable, Hashable, Sendable {
    public var path: String
    public var old: String?
    public var new: String?

    public init(path: String, old: String?, new: String?) {
        self.path = path
        self.old = old
        self.new = new
    }
}

public enum VerdictDecision: String, Codable, Hashable, Sendable {
    case admitted, warned, blocked
}

public struct ScanCounts: Codable, Hashable, Sendable {
    public var scanner: String
    public var critical: Int
    public var high: Int
    public var medium: Int
    public var low: Int
    public var other: Int
    public var highest: String

    public init(scanner: String, critical: Int, high: Int, medium: Int, low: Int, other: Int, highest: String) {
        self.scanner = scanner
        self.critical = critical
        self.high = high
        self.medium = medium
        self.low = low
        self.other = other
        self.highest = highest
    }
}

/// What the supply-chain gate established for an admitted revision: the audit trail.
public struct EvidenceSummary: Codable, Hashable, Sendable {
    public var artifactDigest: String?
    public var signedBy: String?
    public var signatureAlgorithm: String?
    /// SHA-256 (hex) of the DER public key that verified the signature.
    public var signerFingerprint: String?
    public var signatureDigest: String?
    public var sbomFormat: String?
    public var sbomDigest: String?
    public var scan: ScanCounts?
    public var scanDigest: String?
    public var provenanceVerified: Bool
    public var provenanceDigest: String?

    public init(artifactDigest: String? = nil, signedBy: String? = nil, signatureAlgorithm: String? = nil, sbomFormat: String? = nil,
                sbomDigest: String? = nil, scan: ScanCounts? = nil, provenanceVerified: Bool = false, signerFingerprint: String? = nil,
                signatureDigest: String? = nil, scanDigest: String? = nil, provenanceDigest: String? = nil) {
        self.artifactDigest = artifactDigest
        self.signedBy = signedBy
        self.signatureAlgorithm = signatureAlgorithm
        self.signerFingerprint = signerFingerprint
        self.signatureDigest = signatureDigest
        self.sbomFormat = sbomFormat
        self.sbomDigest = sbomDigest
        self.scan = scan
        self.scanDigest = scanDigest
        self.provenanceVerified = provenanceVerified
        self.provenanceDigest = provenanceDigest
    }
}

public struct PolicyVerdict: Codable, Hashable, Sendable {
    public var server: String
    public var revision: String
    public var decision: VerdictDecision
    public var policies: [String]
    public var reasons: [String]
    public var evidence: EvidenceSummary?

    public init(server: String, revision: String, decision: VerdictDecision, policies: [String], reasons: [String], evidence: EvidenceSummary? = nil) {
        self.server = server
        self.revision = revision
        self.decision = decision
        self.policies = policies
        self.reasons = reasons
        self.evidence = evidence
    }
}

public struct Change: Codable, Hashable, Sendable {
    public var action: ChangeAction
    public var kind: Kind
    public var name: String
    public var tenant: String?
    public var fromRevision: String?
    public var toRevision: String?
    public var fromReplicas: Int?
    public var toReplicas: Int?
    public var fields: [FieldChange]
    /// One line saying why, for people.
    public var reason: String
    /// True when the supply-chain gate blocks this revision in enforce mode: it is never applied.
    public var blocked: Bool

    public init(action: ChangeAction, kind: Kind, name: String, tenant: String? = nil, fromRevision: String? = nil, toRevision: String? = nil,
                fromReplicas: Int? = nil, toReplicas: Int? = nil, fields: [FieldChange] = [], reason: String, blocked: Bool = false) {
        self.action = action
        self.kind = kind
        self.name = name
        self.tenant = tenant
        self.fromRevision = fromRevision
        self.toRevision = toRevision
        self.fromReplicas = fromReplicas
        self.toReplicas = toReplicas
        self.fields = fields
        self.reason = reason
        self.blocked = blocked
    }

    /// `server/time`, as flux prints subjects.
    public var subject: String { "\(kind.rawValue.lowercased())/\(name)" }
}

/// Something the plan deliberately does not change, and why (a pin, a pause, a failed revision).
public struct Hold: Codable, Hashable, Sendable {
    public var server: String
    public var reason: String
    public var revision: String?

    public init(server: String, reason: String, revision: String? = nil) {
        self.server = server
        self.reason = reason
        self.revision = revision
    }
}

public struct PlanSummary: Codable, Hashable, Sendable {
    public var create = 0
    public var rollout = 0
    public var scale = 0
    public var update = 0
    public var delete = 0
    public var blocked = 0
    public var unchanged = 0
    /// Servers deliberately left as they are (pinned, paused, failed revision, rollout in progress).
    public var held = 0

    public init() {}
}

/// A plan: plain data that can be saved and applied exactly (as Terraform's). Deterministic: the same
/// inputs give byte-identical JSON.
public struct Plan: Codable, Hashable, Sendable {
    /// 2: environment settings, sources and what the baseline could not compare; sensitive values sealed.
    public static let formatVersion = 2

    public var formatVersion: Int = Plan.formatVersion
    public var environment: String
    public var driver: DriverKind
    /// What the plan was computed against: `live:<file>`, `git:<ref>`, `runtime:<driver>`.
    public var baseline: String
    /// Fingerprint of the live state the plan was computed against (`LiveState.fingerprint`).
    public var liveFingerprint: String
    public var changes: [Change]
    public var holds: [Hold]
    public var verdicts: [PolicyVerdict]
    public var summary: PlanSummary
    /// What the baseline does not record, so the plan could not compare it (a runtime keeps no rollout
    /// settings or policies): empty when everything was compared.
    public var unrecorded: [String] = []
    /// The environment's settings, so `apply` builds its driver from the plan alone.
    public var environmentSpec: EnvironmentSpec?
    /// The manifests and evidence the plan was made from (set by the CLI), so `apply` can refuse a plan
    /// whose evidence moved.
    public var source: PlanSource?
    /// The desired state of every server and tenant the changes touch, so `apply` needs no manifests.
    /// Sensitive plain values are sealed (their digest only): `apply` takes them from the manifests of
    /// `source`, only while those are byte for byte what the plan was made from.
    public var desired: DesiredState
    /// Contract files that changed between the baseline and the catalog, and tool lists checked against
    /// them (docs/designs/0010-tool-contracts.md). nil when no server names a contract.
    public var contracts: [ContractFileDiff]?

    public var hasChanges: Bool { !changes.isEmpty }
    public var hasBlocked: Bool { changes.contains { $0.blocked } }

    /// `plan` exit status as `kubectl diff`: 0 in sync, 1 changes, 3 changes include blocked servers.
    public var exitCode: Int32 { hasBlocked ? 3 : hasChanges ? 1 : 0 }
}
