public import FleetCore
/// Input and output types of the supply-chain gate. Inputs are deliberately independent of the
/// FleetCore manifest model: the integrator maps a `Policy` document to `GatePolicy` and a
/// `Server` (plus its resolved paths) to `ArtifactEvidence`. What was verified is recorded as
/// FleetCore's `EvidenceSummary`, the form plans, verdicts and revision history carry.

/// Vulnerability severity, as reported by scanners, and the ceiling levels of a policy
/// (`none`, `low`, `medium`, `high`, `critical`). Named `VulnerabilitySeverity` so that it does not
/// collide with `FleetCore.Severity` (diagnostic severity) in files that import both modules.
///
/// Order: `none < unknown < negligible < low < medium < high < critical`. A finding whose severity
/// the scanner could not rate (`Unknown`/`UNKNOWN`) only exceeds the ceiling `none`.
public enum VulnerabilitySeverity: String, Sendable, Codable, Hashable, CaseIterable, Comparable {
    case none, unknown, negligible, low, medium, high, critical

    var rank: Int {
        switch self {
        case .none: 0
        case .unknown: 1
        case .negligible: 2
        case .low: 3
        case .medium: 4
        case .high: 5
        case .critical: 6
        }
    }

    public static func < (a: VulnerabilitySeverity, b: VulnerabilitySeverity) -> Bool { a.rank < b.rank }

    /// The ceiling levels a policy may name (`spec.maxSeverity`).
    public static let ceilingLevels: [VulnerabilitySeverity] = [.none, .low, .medium, .high, .critical]

    /// Parse a scanner's spelling (`Critical`, `CRITICAL`, `critical`); nil for anything else.
    public init?(scannerValue: String) {
        self.init(rawValue: scannerValue.lowercased())
    }
}

public enum GateMode: String, Sendable, Codable, Hashable {
    /// Failures block the rollout.
    case enforce
    /// Failures are reported; the rollout proceeds (decision `.warned`).
    case warn
}

/// One `Policy` document, reduced to what the gate needs. Build one per policy that applies to the
/// environment being rolled out; the gate does not look at environments itself.
public struct GatePolicy: Sendable, Hashable {
    public var name: String
    public var mode: GateMode
    public var requireSignature: Bool
    public var trustedKeys: [TrustedKey]
    public var requireSBOM: Bool
    /// Highest vulnerability severity that is allowed. `.critical` (the default) means no ceiling.
    public var maxSeverity: VulnerabilitySeverity
    /// A scan report must be present. Implied when `maxSeverity` is below `.critical`.
    public var requireScan: Bool
    public var requireProvenance: Bool
    public var requireDigest: Bool
    /// Globs over the image repository (`registry.example.com/mcp/*`). Empty: any registry.
    public var allowedRegistries: [String]
    /// Globs over the resolved absolute path of `command[0]` (`/opt/mcp/bin/*`). Empty: any command.
    public var allowedCommands: [String]

    public init(
        name: String, mode: GateMode = .enforce, requireSignature: Bool = false, trustedKeys: [TrustedKey] = [],
        requireSBOM: Bool = false, maxSeverity: VulnerabilitySeverity = .critical, requireScan: Bool = false,
        requireProvenance: Bool = false, requireDigest: Bool = false, allowedRegistries: [String] = [],
        allowedCommands: [String] = []
    ) {
        self.name = name
        self.mode = mode
        self.requireSignature = requireSignature
        self.trustedKeys = trustedKeys
        self.requireSBOM = requireSBOM
        self.maxSeverity = maxSeverity
        self.requireScan = requireScan
        self.requireProvenance = requireProvenance
        self.requireDigest = requireDigest
        self.allowedRegistries = allowedRegistries
        self.allowedCommands = allowedCommands
    }

    /// Whether a scan report is required (explicitly, or implied by a ceiling below `critical`).
    public var scanRequired: Bool { requireScan || maxSeverity < .critical }

    /// A stable digest of every field that influences a verdict (keys by fingerprint). Part of the
    /// verification cache key, so changing a policy or rotating a key invalidates cached verdicts.
    public var fingerprint: String {
        var s = "policy\u{0}\(name)\u{0}\(mode.rawValue)\u{0}\(requireSignature)\u{0}"
        s += trustedKeys.map { "\($0.name)=\($0.fingerprint)" }.joined(separator: ",")
        s += "\u{0}\(requireSBOM)\u{0}\(maxSeverity.rawValue)\u{0}\(requireScan)\u{0}\(requireProvenance)\u{0}\(requireDigest)\u{0}"
        s += allowedRegistries.joined(separator: "\u{1}") + "\u{0}" + allowedCommands.joined(separator: "\u{1}")
        return sha256Hex(Array(s.utf8))
    }
}

/// What is known about one server's artifact, with every path already resolved to an absolute path.
public struct ArtifactEvidence: Sendable, Hashable {
    public var server: String
    public var version: String
    /// OCI reference from `spec.artifact.image`, if any.
    public var image: String?
    /// Resolved absolute path of `command[0]`, or nil (image-only server, or not resolvable).
    public var commandPath: String?
    /// The file whose bytes are signed: `supplyChain.artifact` resolved, else `commandPath`.
    public var artifactPath: String?
    /// `spec.artifact.digest`, `sha256:<64 hex>`.
    public var declaredDigest: String?
    public var signaturePath: String?
    public var sbomPath: String?
    public var scanPath: String?
    public var provenancePath: String?

    public init(
        server: String, version: String, image: String? = nil, commandPath: String? = nil,
        artifactPath: String? = nil, declaredDigest: String? = nil, signaturePath: String? = nil,
        sbomPath: String? = nil, scanPath: String? = nil, provenancePath: String? = nil
    ) {
        self.server = server
        self.version = version
        self.image = image
        self.commandPath = commandPath
        self.artifactPath = artifactPath ?? commandPath
        self.declaredDigest = declaredDigest
        self.signaturePath = signaturePath
        self.sbomPath = sbomPath
        self.scanPath = scanPath
        self.provenancePath = provenancePath
    }
}

public enum GateDecision: String, Sendable, Codable, Hashable {
    case admitted, blocked, warned
}

/// One problem found by one policy. `check` is a stable identifier (`signature`, `sbom`, `scan`,
/// `provenance`, `digest`, `registry`, `command`) that callers and tests can key on.
public struct GateFinding: Sendable, Codable, Hashable {
    public var policy: String
    public var mode: GateMode
    public var check: String
    public var message: String

    public init(policy: String, mode: GateMode, check: String, message: String) {
        self.policy = policy
        self.mode = mode
        self.check = check
        self.message = message
    }
}

public struct GateVerdict: Sendable, Codable, Hashable {
    public var server: String
    public var decision: GateDecision
    /// Human-readable, specific problems, deduplicated across policies, in check order.
    public var reasons: [String]
    /// The same problems with the policy, mode and check that produced each one.
    public var findings: [GateFinding]
    public var evidence: EvidenceSummary?

    public init(server: String, decision: GateDecision, reasons: [String], findings: [GateFinding] = [], evidence: EvidenceSummary?) {
        self.server = server
        self.decision = decision
        self.reasons = reasons
        self.findings = findings
        self.evidence = evidence
    }
}

public struct ScanSummary: Sendable, Codable, Hashable {
    /// `grype` or `trivy`.
    public var scanner: String
    /// Number of findings per severity (keys are `VulnerabilitySeverity` raw values; zero counts omitted).
    public var counts: [String: Int]
    /// Highest severity found; `.none` for a clean report.
    public var highest: VulnerabilitySeverity

    public init(scanner: String, counts: [String: Int], highest: VulnerabilitySeverity) {
        self.scanner = scanner
        self.counts = counts
        self.highest = highest
    }

    public func count(_ s: VulnerabilitySeverity) -> Int { counts[s.rawValue] ?? 0 }
    public var total: Int { counts.values.reduce(0, +) }

    /// The counts as recorded with a verdict and a revision (`FleetCore.ScanCounts`): the four named
    /// severities, everything else as `other`.
    public var scanCounts: ScanCounts {
        let named = ["critical", "high", "medium", "low"]
        return ScanCounts(scanner: scanner, critical: counts["critical"] ?? 0, high: counts["high"] ?? 0,
                          medium: counts["medium"] ?? 0, low: counts["low"] ?? 0,
                          other: counts.filter { !named.contains($0.key) }.values.reduce(0, +), highest: highest.rawValue)
    }
}

/// Errors from parsing keys and evidence files. `description` is the human-readable message.
public struct SupplyChainError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
