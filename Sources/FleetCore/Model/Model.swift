/// The manifest model (`mcpfleet.io/v1alpha1`); see docs/designs/0001-manifest-model.md.
public enum APIVersion {
    public static let v1alpha1 = "mcpfleet.io/v1alpha1"
}

public enum Kind: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    // Declaration order is apply order: tenants and policies before servers.
    case environment = "Environment"
    case tenant = "Tenant"
    case policy = "Policy"
    case slo = "SLO"
    case server = "Server"

    private var order: Int { Kind.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: Kind, b: Kind) -> Bool { a.order < b.order }
}

/// Where each field of an object came from, keyed by dotted path (`spec.tenant`, `spec.env[1].value`).
/// Kept beside the model (not inside its equality) so cross-document rules can point at the right line.
public struct FieldLocations: Sendable, Hashable {
    public var document: SourceLocation
    /// Recorded paths and positions, in recording order; a path recorded again replaces its position.
    /// A few per object, looked up only to place a diagnostic: pairs, not a dictionary per object.
    private var recorded: [(path: String, location: SourceLocation)] = []

    public init(document: SourceLocation) { self.document = document }

    /// The recorded positions by path.
    public var fields: [String: SourceLocation] {
        Dictionary(recorded.map { ($0.path, $0.location) }, uniquingKeysWith: { _, new in new })
    }

    /// Records (or re-records) where `path` is.
    public mutating func record(_ path: String, _ location: SourceLocation) {
        if let i = recorded.firstIndex(where: { $0.path == path }) { recorded[i].location = location } else { recorded.append((path, location)) }
    }

    public subscript(path: String) -> SourceLocation {
        recorded.first { $0.path == path }?.location ?? document
    }

    public static func == (a: FieldLocations, b: FieldLocations) -> Bool { a.document == b.document && a.fields == b.fields }

    public func hash(into h: inout Hasher) {
        h.combine(document)
        h.combine(fields)
    }
}

public struct ObjectMeta: Sendable, Hashable {
    public var name: String
    public var labels: [String: String] = [:]
    public var annotations: [String: String] = [:]

    public init(name: String, labels: [String: String] = [:], annotations: [String: String] = [:]) {
        self.name = name
        self.labels = labels
        self.annotations = annotations
    }
}

/// Where a document was read from: the file as shown in diagnostics and its path relative to the root.
public struct DocumentSource: Sendable, Hashable {
    public var file: String
    public var relativePath: String
    public var index: Int

    public init(file: String, relativePath: String, index: Int) {
        self.file = file
        self.relativePath = relativePath
        self.index = index
    }

    /// Directory of the manifest relative to the manifest root ("" at the root).
    public var relativeDirectory: String {
        // The last `/` byte (a path separator wherever it stands; no Character walk).
        guard let slash = relativePath.utf8.lastIndex(of: 0x2f) else { return "" }
        return String(relativePath[..<slash])
    }
}

// MARK: Server

public enum TransportType: String, Sendable, Hashable, Codable, CaseIterable {
    case stdio
    case streamableHTTP = "streamable-http"
    case sse
}

public struct Artifact: Sendable, Hashable {
    public var image: String?
    public var command: [String]?
    public var workingDirectory: String?
    public var digest: String?

    public init(image: String? = nil, command: [String]? = nil, workingDirectory: String? = nil, digest: String? = nil) {
        self.image = image
        self.command = command
        self.workingDirectory = workingDirectory
        self.digest = digest
    }
}

public struct Transport: Sendable, Hashable {
    public var type: TransportType
    public var port: Int?
    public var path: String

    public init(type: TransportType, port: Int? = nil, path: String? = nil) {
        self.type = type
        self.port = port
        self.path = path ?? (type == .sse ? "/sse" : "/mcp")
    }
}

public struct SecretReference: Sendable, Hashable, Codable, CustomStringConvertible {
    public var name: String
    public var key: String

    public init(name: String, key: String) {
        self.name = name
        self.key = key
    }

    public var description: String { "secret \(name)/\(key)" }
}

public struct EnvVar: Sendable, Hashable {
    public enum Source: Sendable, Hashable {
        case value(String)
        case secret(SecretReference)
    }

    public var name: String
    public var source: Source
    public var isSecret: Bool
    public var description: String?

    public init(name: String, source: Source, isSecret: Bool = false, description: String? = nil) {
        self.name = name
        self.source = source
        self.isSecret = isSecret
        self.description = description
    }
}

public struct Resources: Sendable, Hashable {
    /// CPU in millicores.
    public var cpuMillis: Int?
    public var memoryBytes: Int64?
    /// The text as written, for display and rendering (`500m`, `256Mi`).
    public var cpu: String?
    public var memory: String?

    public init(cpu: String? = nil, cpuMillis: Int? = nil, memory: String? = nil, memoryBytes: Int64? = nil) {
        self.cpu = cpu
        self.cpuMillis = cpuMillis
        self.memory = memory
        self.memoryBytes = memoryBytes
    }
}

public enum ProbeKind: String, Sendable, Hashable, Codable, CaseIterable {
    case mcp, http, tcp
}

public struct HealthCheck: Sendable, Hashable {
    public var probe: ProbeKind = .mcp
    public var path: String?
    public var interval: Duration = .seconds(10)
    public var timeout: Duration = .seconds(2)
    public var failureThreshold: Int = 3
    public var requireTools: [String] = []

    public init() {}
}

public enum RolloutStrategy: String, Sendable, Hashable, Codable, CaseIterable {
    case rolling, canary, recreate
}

/// An integer or a percentage of the replica count (`maxSurge: 25%`).
public enum IntOrPercent: Sendable, Hashable, CustomStringConvertible {
    case count(Int)
    case percent(Int)

    /// Resolves against a replica count; `roundUp` as Kubernetes does for maxSurge, down for maxUnavailable.
    public func resolve(_ total: Int, roundUp: Bool) -> Int {
        switch self {
        case .count(let n): return n
        case .percent(let p):
            let scaled = total * p
            return roundUp ? (scaled + 99) / 100 : scaled / 100
        }
    }

    public var description: String {
        switch self {
        case .count(let n): return String(n)
        // Concatenation, not interpolation: rendered for every server (a small string, no allocation).
        case .percent(let p): return String(p) + "%"
        }
    }
}

public enum CanaryPause: Sendable, Hashable {
    case duration(Duration)
    case untilPromoted
}

public struct CanaryStep: Sendable, Hashable {
    public enum Size: Sendable, Hashable {
        case weight(Int)
        case replicas(Int)
    }

    public var size: Size
    public var pause: CanaryPause?
    public var analysis: Bool?

    public init(size: Size, pause: CanaryPause? = nil, analysis: Bool? = nil) {
        self.size = size
        self.pause = pause
        self.analysis = analysis
    }

    /// Replicas on the new revision at this step, for a server of `total` replicas (at least 1).
    public func newReplicas(of total: Int) -> Int {
        switch size {
        case .replicas(let n): return min(n, total)
        case .weight(let w): return min(total, max(1, (total * w + 99) / 100))
        }
    }
}

public struct RolloutSpec: Sendable, Hashable {
    public var strategy: RolloutStrategy = .rolling
    public var maxSurge: IntOrPercent = .percent(25)
    public var maxUnavailable: IntOrPercent = .count(0)
    public var steps: [CanaryStep] = []
    public var autoRollback: Bool = true
    public var progressDeadline: Duration = .seconds(600)
    /// How long a replica about to stop may keep its open gateway sessions (nil: 30 s; design 0009).
    public var drainTimeout: Duration?

    public init() {}

    /// Extra instance slots a rollout may use beyond `replicas` (host drivers size port blocks with it).
    public func surgeSlots(replicas: Int) -> Int {
        switch strategy {
        case .recreate: return 0
        case .canary: return replicas
        case .rolling:
            let surge = maxSurge.resolve(replicas, roundUp: true)
            let unavailable = maxUnavailable.resolve(replicas, roundUp: false)
            // As Kubernetes: both zero would deadlock, so one surge slot is allowed.
            return surge == 0 && unavailable == 0 ? 1 : surge
        }
    }
}

public struct SupplyChainSpec: Sendable, Hashable {
    /// Paths relative to the manifest root (already resolved from the manifest file's directory).
    public var artifact: String?
    public var signature: String?
    public var sbom: String?
    public var scan: String?
    public var provenance: String?

    public init(artifact: String? = nil, signature: String? = nil, sbom: String? = nil, scan: String? = nil, provenance: String? = nil) {
        self.artifact = artifact
        self.signature = signature
        self.sbom = sbom
        self.scan = scan
        self.provenance = provenance
    }

    public var isEmpty: Bool { artifact == nil && signature == nil && sbom == nil && scan == nil && provenance == nil }
}

public struct Server: Sendable, Hashable {
    public var metadata: ObjectMeta
    public var description: String?
    public var version: String
    public var tenant: String
    public var artifact: Artifact
    public var transport: Transport
    public var env: [EnvVar] = []
    public var replicas: Int = 1
    public var resources: Resources?
    public var health = HealthCheck()
    public var rollout = RolloutSpec()
    public var slo: String?
    public var supplyChain: SupplyChainSpec?
    public var environments: [String]?
    public var gateway: ServerGatewaySettings?
    /// `spec.contract`: the committed contract file, relative to the manifest root (docs/designs/0010-tool-contracts.md).
    public var contract: String?
    /// `spec.tools`: the tools the gateway lets clients see and call.
    public var tools: ToolAccess?
    public var source: DocumentSource
    public var locations: FieldLocations

    public var name: String { metadata.name }

    public init(metadata: ObjectMeta, version: String, tenant: String, artifact: Artifact, transport: Transport, source: DocumentSource, locations: FieldLocations) {
        self.metadata = metadata
        self.version = version
        self.tenant = tenant
        self.artifact = artifact
        self.transport = transport
        self.source = source
        self.locations = locations
    }

    /// Instance slots a host driver reserves: replicas plus rollout surge.
    public var portBlockSize: Int { max(1, replicas + rollout.surgeSlots(replicas: replicas)) }
}

// MARK: Policy

public enum PolicyMode: String, Sendable, Hashable, Codable, CaseIterable {
    case enforce, warn
}

public enum SeverityCeiling: String, Sendable, Hashable, Codable, CaseIterable, Comparable {
    case none, low, medium, high, critical

    private var rank: Int { SeverityCeiling.allCases.firstIndex(of: self) ?? 0 }
    public static func < (a: SeverityCeiling, b: SeverityCeiling) -> Bool { a.rank < b.rank }
}

public struct TrustedKeySpec: Sendable, Hashable {
    public enum Material: Sendable, Hashable {
        case pem(String)
        /// Path relative to the manifest root.
        case file(String)
    }

    public var name: String
    public var material: Material

    public init(name: String, material: Material) {
        self.name = name
        self.material = material
    }
}

public struct Policy: Sendable, Hashable {
    public var metadata: ObjectMeta
    public var mode: PolicyMode = .enforce
    public var environments: [String]?
    public var requireSignature = false
    public var trustedKeys: [TrustedKeySpec] = []
    public var requireSBOM = false
    public var maxSeverity: SeverityCeiling = .critical
    public var requireScan = false
    public var requireProvenance = false
    public var requireDigest = false
    public var allowedRegistries: [String] = []
    public var allowedCommands: [String] = []
    /// `spec.contracts`: what a surface that differs from the committed contract does (nil: not set here).
    public var contracts: ContractsMode?
    public var source: DocumentSource
    public var locations: FieldLocations

    public var name: String { metadata.name }

    public init(metadata: ObjectMeta, source: DocumentSource, locations: FieldLocations) {
        self.metadata = metadata
        self.source = source
        self.locations = locations
    }

    public func applies(to environment: String) -> Bool {
        environments.map { $0.contains(environment) } ?? true
    }
}

// MARK: SLO

public enum AnalysisProviderKind: String, Sendable, Hashable, Codable, CaseIterable {
    case probe, prometheus
    /// Tool calls through the gateway (design 0009).
    case gateway
}

public struct PrometheusAnalysis: Sendable, Hashable {
    public var address: String
    public var successRateQuery: String?
    public var latencyP95Query: String?

    public init(address: String, successRateQuery: String? = nil, latencyP95Query: String? = nil) {
        self.address = address
        self.successRateQuery = successRateQuery
        self.latencyP95Query = latencyP95Query
    }
}

public struct AnalysisSpec: Sendable, Hashable {
    /// The provider the SLO names; nil: the environment's default (`TrafficRules.defaultProvider`).
    public var provider: AnalysisProviderKind?
    public var interval: Duration = .seconds(30)
    public var count = 5
    public var failureLimit = 1
    public var prometheus: PrometheusAnalysis?
    /// `gateway` provider: fewer tool calls than this in an interval is inconclusive (nil: 20).
    public var minimumCalls: Int?
    /// `gateway` provider: the canary also fails when its success rate is below the stable revision's
    /// over the same interval by more than `stableTolerance` (design 0016).
    public var compareWithStable = false
    /// Percentage points as a fraction (`1%` → 0.01; nil: `SLOMath.defaultStableTolerance`); the text is kept for display.
    public var stableTolerance: Double?
    public var stableToleranceText: String?

    public init() {}
}

public struct SLO: Sendable, Hashable {
    public var metadata: ObjectMeta
    /// Objective as a fraction in [0, 1] (`99.5%` → 0.995); the text is kept for display.
    public var successRate: Double?
    public var successRateText: String?
    public var latencyP95: Duration?
    public var analysis = AnalysisSpec()
    public var source: DocumentSource
    public var locations: FieldLocations

    public var name: String { metadata.name }

    public init(metadata: ObjectMeta, source: DocumentSource, locations: FieldLocations) {
        self.metadata = metadata
        self.source = source
        self.locations = locations
    }
}

// MARK: Tenant

public enum Isolation: String, Sendable, Hashable, Codable, CaseIterable {
    case strict, shared
}

public struct TenantQuota: Sendable, Hashable {
    public var cpu: String?
    public var cpuMillis: Int?
    public var memory: String?
    public var memoryBytes: Int64?
    public var maxServers: Int?
    public var maxReplicas: Int?
    public var tasks: Int?

    public init() {}

    public var isEmpty: Bool { cpuMillis == nil && memoryBytes == nil && maxServers == nil && maxReplicas == nil && tasks == nil }
}

public struct Tenant: Sendable, Hashable {
    public var metadata: ObjectMeta
    public var displayName: String?
    public var isolation: Isolation = .strict
    public var namespace: String?
    public var quota = TenantQuota()
    public var gateway: TenantGatewaySettings?
    /// `spec.allowFrom`: who else may connect to the tenant's servers on Kubernetes (strict isolation).
    public var allowFrom: [NetworkPeer] = []
    public var source: DocumentSource
    public var locations: FieldLocations

    public var name: String { metadata.name }
    public var kubernetesNamespace: String { namespace ?? "mcp-\(metadata.name)" }

    public init(metadata: ObjectMeta, source: DocumentSource, locations: FieldLocations) {
        self.metadata = metadata
        self.source = source
        self.locations = locations
    }
}

// MARK: Environment

public enum DriverKind: String, Sendable, Hashable, Codable, CaseIterable {
    case local, systemd, kubernetes

    public var isHost: Bool { self != .kubernetes }
}

public struct PortRange: Sendable, Hashable, CustomStringConvertible {
    public var lower: Int
    public var upper: Int

    public init(lower: Int, upper: Int) {
        self.lower = lower
        self.upper = upper
    }

    public func contains(_ block: Range<Int>) -> Bool { block.lowerBound >= lower && block.upperBound - 1 <= upper }
    public var description: String { "\(lower)-\(upper)" }
}

public struct LocalSettings: Sendable, Hashable {
    public var logDir: String?
    public var maxLogBytes: Int?
    public var restartBackoff: Duration?

    public init() {}
}

public struct SystemdSettings: Sendable, Hashable {
    public var unitDir: String = "/run/systemd/system"
    public var unitPrefix: String = "mcp"
    public var relax: [String] = []

    public init() {}
}

public struct KubernetesSettings: Sendable, Hashable {
    public var context: String?
    public var kubeconfig: String?
    public var inCluster = false
    public var namespacePrefix: String?
    public var fieldManager: String = "mcpfleet"
    public var imagePullSecrets: [String] = []

    public init() {}
}

public struct Environment: Sendable, Hashable {
    public var metadata: ObjectMeta
    public var driver: DriverKind
    public var description: String?
    public var portRange: PortRange?
    public var stateDir: String?
    public var secretsDir: String?
    public var serverSelector: [String: String] = [:]
    public var local: LocalSettings?
    public var systemd: SystemdSettings?
    public var kubernetes: KubernetesSettings?
    public var gateway: EnvironmentGatewaySettings?
    /// `spec.notifications`: where rollout events go (docs/designs/0012).
    public var notifications: [NotificationTarget] = []
    public var source: DocumentSource
    public var locations: FieldLocations

    public var name: String { metadata.name }

    public init(metadata: ObjectMeta, driver: DriverKind, source: DocumentSource, locations: FieldLocations) {
        self.metadata = metadata
        self.driver = driver
        self.source = source
        self.locations = locations
    }

    /// Whether this environment runs the server: its `environments` list and this selector both agree.
    public func selects(_ server: Server) -> Bool {
        withUnsafePointer(to: server) { selects(at: $0) }
    }

    /// The same, reading the server in place (`pointee` borrows; passing a `Server` out of an array
    /// copied it, ~30 retains and releases, for each server of a large catalog).
    func selects(at server: UnsafePointer<Server>) -> Bool {
        if let only = server.pointee.environments, !only.contains(metadata.name) { return false }
        return serverSelector.allSatisfy { server.pointee.metadata.labels[$0.key] == $0.value }
    }

    public var effectiveStateDir: String {
        if let stateDir { return stateDir }
        return driver == .systemd ? "/var/lib/mcpfleet/\(metadata.name)" : ".mcpfleet/\(metadata.name)"
    }
}

/// Every object of a manifest directory, each kind sorted by name.
public struct Catalog: Sendable, Hashable {
    public var servers: [Server] = []
    public var policies: [Policy] = []
    public var slos: [SLO] = []
    public var tenants: [Tenant] = []
    public var environments: [Environment] = []
    /// Plain values the manifests carry that must never be shown (sensitive by name or by shape):
    /// rendered diagnostics mask them wherever they would appear.
    public var sensitiveValues: Set<String> = []

    public init() {}

    public func server(_ name: String) -> Server? { servers.first { $0.name == name } }
    public func tenant(_ name: String) -> Tenant? { tenants.first { $0.name == name } }
    public func slo(_ name: String) -> SLO? { slos.first { $0.name == name } }
    public func environment(_ name: String) -> Environment? { environments.first { $0.name == name } }

    /// The servers an environment runs, in name order.
    public func servers(in environment: Environment) -> [Server] { servers.filter { environment.selects($0) } }
}
