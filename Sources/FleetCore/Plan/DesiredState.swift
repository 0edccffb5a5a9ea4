import Crypto

/// One field of a server's running spec, as the plan shows it and as the revision hashes it.
/// `display` is what people read (`256Mi`); `canonical` is normalised (`268435456`) so equivalent
/// spellings hash alike. Neither ever holds a secret value: secrets appear only as references.
public struct SpecField: Codable, Hashable, Sendable {
    public var path: String
    public var display: String
    public var canonical: String

    public init(path: String, display: String, canonical: String? = nil) {
        self.path = path
        self.display = display
        self.canonical = canonical ?? display
    }
}

public struct DesiredEnvVar: Codable, Hashable, Sendable {
    public var name: String
    public var value: String?
    public var secretRef: SecretReference?
    /// Set on a variable decoded from a persisted spec (a saved plan, a driver's state) whose plain value
    /// was sensitive: the value's digest. `value` stays nil until `DesiredServer.unseal` supplies it.
    public var sealed: String?

    public init(name: String, value: String? = nil, secretRef: SecretReference? = nil, sealed: String? = nil) {
        self.name = name
        self.value = value
        self.secretRef = secretRef
        self.sealed = sealed
    }

    /// A plain value that must never be shown or stored as written (`PlanSafety`).
    public var isSensitive: Bool { value.map { PlanSafety.isSensitive(name: name, value: $0) } ?? false }

    private enum CodingKeys: String, CodingKey { case name, value, secretRef, sealed }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        value = try c.decodeIfPresent(String.self, forKey: .value)
        secretRef = try c.decodeIfPresent(SecretReference.self, forKey: .secretRef)
        sealed = try c.decodeIfPresent(String.self, forKey: .sealed)
    }

    /// A sensitive plain value is written as its digest (`sealed`), never as itself.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        if let value {
            if isSensitive { try c.encode(PlanSafety.digest(value), forKey: .sealed) } else { try c.encode(value, forKey: .value) }
        } else {
            try c.encodeIfPresent(sealed, forKey: .sealed)
        }
        try c.encodeIfPresent(secretRef, forKey: .secretRef)
    }
}

public struct DesiredCanaryStep: Codable, Hashable, Sendable {
    public var weight: Int?
    public var replicas: Int?
    /// Milliseconds, or nil; `untilPromoted` waits for `mcpfleet promote`.
    public var pauseMs: Int64?
    public var untilPromoted: Bool
    public var analysis: Bool

    public init(weight: Int? = nil, replicas: Int? = nil, pauseMs: Int64? = nil, untilPromoted: Bool = false, analysis: Bool = false) {
        self.weight = weight
        self.replicas = replicas
        self.pauseMs = pauseMs
        self.untilPromoted = untilPromoted
        self.analysis = analysis
    }
}

public struct DesiredRollout: Codable, Hashable, Sendable {
    public var strategy: RolloutStrategy
    public var maxSurge: Int
    public var maxUnavailable: Int
    public var steps: [DesiredCanaryStep]
    public var autoRollback: Bool
    public var progressDeadlineMs: Int64
    /// `maxSurge` and `maxUnavailable` as written (`25%`), which plans compare: the resolved counts
    /// above move with the replica count, the setting does not.
    public var maxSurgeSpec: String?
    public var maxUnavailableSpec: String?
    /// `rollout.drainTimeout` as written (nil: the default, `TrafficRules.defaultDrainTimeoutMs`).
    public var drainTimeoutMs: Int64?

    public init(strategy: RolloutStrategy = .rolling, maxSurge: Int = 1, maxUnavailable: Int = 0, steps: [DesiredCanaryStep] = [],
                autoRollback: Bool = true, progressDeadlineMs: Int64 = 600_000, maxSurgeSpec: String? = nil, maxUnavailableSpec: String? = nil,
                drainTimeoutMs: Int64? = nil) {
        self.drainTimeoutMs = drainTimeoutMs
        self.strategy = strategy
        self.maxSurge = maxSurge
        self.maxUnavailable = maxUnavailable
        self.steps = steps
        self.autoRollback = autoRollback
        self.progressDeadlineMs = progressDeadlineMs
        self.maxSurgeSpec = maxSurgeSpec
        self.maxUnavailableSpec = maxUnavailableSpec
    }
}

public struct DesiredHealth: Codable, Hashable, Sendable {
    public var probe: ProbeKind
    public var path: String?
    public var intervalMs: Int64
    public var timeoutMs: Int64
    public var failureThreshold: Int
    public var requireTools: [String]

    public init(probe: ProbeKind = .mcp, path: String? = nil, intervalMs: Int64 = 10_000, timeoutMs: Int64 = 2_000, failureThreshold: Int = 3,
                requireTools: [String] = []) {
        self.probe = probe
        self.path = path
        self.intervalMs = intervalMs
        self.timeoutMs = timeoutMs
        self.failureThreshold = failureThreshold
        self.requireTools = requireTools
    }
}

public struct DesiredSLO: Codable, Hashable, Sendable {
    public var name: String
    public var successRate: Double?
    public var latencyP95Ms: Int64?
    public var provider: AnalysisProviderKind
    public var intervalMs: Int64
    public var count: Int
    public var failureLimit: Int
    public var prometheusAddress: String?
    public var successRateQuery: String?
    public var latencyP95Query: String?
    /// `analysis.minimumCalls` (the gateway provider; nil: `SLOMath.defaultMinimumCalls`).
    public var minimumCalls: Int?
    /// True when the SLO names no provider and `provider` is the environment's default
    /// (`TrafficRules.defaultProvider`); nil otherwise.
    public var providerDefaulted: Bool?
    /// `analysis.compareWithStable` (the gateway provider; nil: off).
    public var compareWithStable: Bool?
    /// `analysis.stableTolerance` as a fraction (nil: `SLOMath.defaultStableTolerance`).
    public var stableTolerance: Double?

    public init(name: String, successRate: Double? = nil, latencyP95Ms: Int64? = nil, provider: AnalysisProviderKind = .probe,
                intervalMs: Int64 = 60_000, count: Int = 5, failureLimit: Int = 1, prometheusAddress: String? = nil,
                successRateQuery: String? = nil, latencyP95Query: String? = nil) {
        self.name = name
        self.successRate = successRate
        self.latencyP95Ms = latencyP95Ms
        self.provider = provider
        self.intervalMs = intervalMs
        self.count = count
        self.failureLimit = failureLimit
        self.prometheusAddress = prometheusAddress
        self.successRateQuery = successRateQuery
        self.latencyP95Query = latencyP95Query
    }

    private enum CodingKeys: String, CodingKey {
        case name, successRate, latencyP95Ms, provider, intervalMs, count, failureLimit, prometheusAddress, successRateQuery, latencyP95Query, minimumCalls
        case providerDefaulted, compareWithStable, stableTolerance
    }

    /// A Prometheus address with credentials (or a query carrying a token) is written sealed.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        func seal(_ v: String?) -> String? { v.map { PlanSafety.looksLikeSecret($0) ? PlanSafety.sealed($0) : $0 } }
        try c.encode(name, forKey: .name)
        try c.encodeIfPresent(successRate, forKey: .successRate)
        try c.encodeIfPresent(latencyP95Ms, forKey: .latencyP95Ms)
        try c.encode(provider, forKey: .provider)
        try c.encode(intervalMs, forKey: .intervalMs)
        try c.encode(count, forKey: .count)
        try c.encode(failureLimit, forKey: .failureLimit)
        try c.encodeIfPresent(seal(prometheusAddress), forKey: .prometheusAddress)
        try c.encodeIfPresent(seal(successRateQuery), forKey: .successRateQuery)
        try c.encodeIfPresent(seal(latencyP95Query), forKey: .latencyP95Query)
        try c.encodeIfPresent(minimumCalls, forKey: .minimumCalls)
        try c.encodeIfPresent(providerDefaulted, forKey: .providerDefaulted)
        try c.encodeIfPresent(compareWithStable, forKey: .compareWithStable)
        try c.encodeIfPresent(stableTolerance, forKey: .stableTolerance)
    }
}

/// Everything a driver needs to run one server in one environment, with its revision: a content hash
/// of every field that changes what runs. Replicas are not part of it (scaling is not a rollout).
public struct DesiredServer: Codable, Hashable, Sendable {
    public var name: String
    public var tenant: String { willSet { pinFields() } }
    public var version: String { willSet { pinFields() } }
    public var revision: String
    public var replicas: Int
    public var image: String? { willSet { pinFields() } }
    public var command: [String]? { willSet { pinFields() } }
    public var workingDirectory: String? { willSet { pinFields() } }
    public var digest: String? { willSet { pinFields() } }
    public var transport: TransportType { willSet { pinFields() } }
    public var port: Int? { willSet { pinFields() } }
    public var path: String { willSet { pinFields() } }
    public var env: [DesiredEnvVar] { willSet { pinFields() } }
    public var cpu: String? { willSet { pinFields() } }
    public var memory: String? { willSet { pinFields() } }
    public var cpuMillis: Int? { willSet { pinFields() } }
    public var memoryBytes: Int64? { willSet { pinFields() } }
    public var health: DesiredHealth { willSet { pinFields() } }
    public var rollout: DesiredRollout { didSet { settingsHash = nil } }
    public var slo: DesiredSLO? { didSet { settingsHash = nil } }
    public var labels: [String: String] { didSet { settingsHash = nil } }
    /// `spec.gateway.rateLimit`: read by the gateway, not by the server's processes (no revision).
    public var gatewayRateLimit: GatewayRateLimit? { didSet { settingsHash = nil } }
    /// The manifest's directory relative to the manifest root, for `${MANIFEST_DIR}`.
    public var manifestDirectory: String
    /// `ServerSettings.hash` of this server's settings, taken at render (nil otherwise: computed when
    /// asked). Derived: left out of equality, hashing and coding.
    var settingsHash: Int? = nil
    /// Fields set explicitly (decoded, or assigned); nil for a rendered server, whose fields are derived
    /// from the properties above only when read — most plans never show them, and building every display
    /// string was most of the render time.
    var explicitFields: [SpecField]? = nil

    /// The fields the revision hashes, in display order.
    public var fields: [SpecField] {
        get { explicitFields ?? Renderer.specFields(self) }
        set { explicitFields = newValue }
    }

    /// Before a derived server's inputs change, its fields are frozen as they were rendered (the fields
    /// describe the revision, which does not change with them either).
    private mutating func pinFields() {
        if explicitFields == nil { explicitFields = Renderer.specFields(self) }
    }

    /// The renderer's: fields derived on demand. (Spelled out: property observers hide some parameters
    /// of the memberwise initialiser.)
    init(name: String, tenant: String, version: String, revision: String, replicas: Int, image: String?, command: [String]?, workingDirectory: String?, digest: String?, transport: TransportType, port: Int?, path: String, env: [DesiredEnvVar], cpu: String?, memory: String?, cpuMillis: Int?, memoryBytes: Int64?, health: DesiredHealth, rollout: DesiredRollout, slo: DesiredSLO?, labels: [String: String], manifestDirectory: String) {
        self.name = name
        self.tenant = tenant
        self.version = version
        self.revision = revision
        self.replicas = replicas
        self.image = image
        self.command = command
        self.workingDirectory = workingDirectory
        self.digest = digest
        self.transport = transport
        self.port = port
        self.path = path
        self.env = env
        self.cpu = cpu
        self.memory = memory
        self.cpuMillis = cpuMillis
        self.memoryBytes = memoryBytes
        self.health = health
        self.rollout = rollout
        self.slo = slo
        self.labels = labels
        self.manifestDirectory = manifestDirectory
    }

    private enum CodingKeys: String, CodingKey {
        case name, tenant, version, revision, replicas, image, command, workingDirectory, digest, transport, port, path, env, cpu, memory, cpuMillis, memoryBytes, health, rollout, slo, labels, gatewayRateLimit, manifestDirectory, fields
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        tenant = try c.decode(String.self, forKey: .tenant)
        version = try c.decode(String.self, forKey: .version)
        revision = try c.decode(String.self, forKey: .revision)
        replicas = try c.decode(Int.self, forKey: .replicas)
        image = try c.decodeIfPresent(String.self, forKey: .image)
        command = try c.decodeIfPresent([String].self, forKey: .command)
        workingDirectory = try c.decodeIfPresent(String.self, forKey: .workingDirectory)
        digest = try c.decodeIfPresent(String.self, forKey: .digest)
        transport = try c.decode(TransportType.self, forKey: .transport)
        port = try c.decodeIfPresent(Int.self, forKey: .port)
        path = try c.decode(String.self, forKey: .path)
        env = try c.decode([DesiredEnvVar].self, forKey: .env)
        cpu = try c.decodeIfPresent(String.self, forKey: .cpu)
        memory = try c.decodeIfPresent(String.self, forKey: .memory)
        cpuMillis = try c.decodeIfPresent(Int.self, forKey: .cpuMillis)
        memoryBytes = try c.decodeIfPresent(Int64.self, forKey: .memoryBytes)
        health = try c.decode(DesiredHealth.self, forKey: .health)
        rollout = try c.decode(DesiredRollout.self, forKey: .rollout)
        slo = try c.decodeIfPresent(DesiredSLO.self, forKey: .slo)
        labels = try c.decode([String: String].self, forKey: .labels)
        gatewayRateLimit = try c.decodeIfPresent(GatewayRateLimit.self, forKey: .gatewayRateLimit)
        manifestDirectory = try c.decode(String.self, forKey: .manifestDirectory)
        explicitFields = try c.decode([SpecField].self, forKey: .fields)
    }

    // Same keys, order and presence as the synthesised conformance this replaces.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(tenant, forKey: .tenant)
        try c.encode(version, forKey: .version)
        try c.encode(revision, forKey: .revision)
        try c.encode(replicas, forKey: .replicas)
        try c.encodeIfPresent(image, forKey: .image)
        // Sensitive arguments (`--token=…`, a token after `--api-key`) are written sealed.
        try c.encodeIfPresent(command.map(Self.sealedArguments), forKey: .command)
        try c.encodeIfPresent(workingDirectory, forKey: .workingDirectory)
        try c.encodeIfPresent(digest, forKey: .digest)
        try c.encode(transport, forKey: .transport)
        try c.encodeIfPresent(port, forKey: .port)
        try c.encode(path, forKey: .path)
        try c.encode(env, forKey: .env)
        try c.encodeIfPresent(cpu, forKey: .cpu)
        try c.encodeIfPresent(memory, forKey: .memory)
        try c.encodeIfPresent(cpuMillis, forKey: .cpuMillis)
        try c.encodeIfPresent(memoryBytes, forKey: .memoryBytes)
        try c.encode(health, forKey: .health)
        try c.encode(rollout, forKey: .rollout)
        try c.encodeIfPresent(slo, forKey: .slo)
        try c.encode(labels, forKey: .labels)
        try c.encodeIfPresent(gatewayRateLimit, forKey: .gatewayRateLimit)
        try c.encode(manifestDirectory, forKey: .manifestDirectory)
        try c.encode(fields, forKey: .fields)
    }

    static func sealedArguments(_ argv: [String]) -> [String] {
        guard PlanSafety.anySensitiveArgument(argv) else { return argv }
        return zip(argv, PlanSafety.sensitiveArguments(argv)).map { $1 ? PlanSafety.sealed($0) : $0 }
    }

    /// Digests of the sensitive values this spec lacks: it was decoded from a persisted form that
    /// sealed them. A driver must not run it before `unseal` supplies them.
    public var sealedDigests: [String] {
        var out = env.compactMap(\.sealed)
        out += (command ?? []).compactMap(PlanSafety.sealedDigest)
        if let slo {
            out += [slo.prometheusAddress, slo.successRateQuery, slo.latencyP95Query].compactMap { $0.flatMap(PlanSafety.sealedDigest) }
        }
        return out
    }

    /// Puts sensitive values back (by digest, from `Renderer.sensitiveValues` of the same manifests).
    /// Returns the digests no value was found for (empty when the spec is whole again).
    @discardableResult
    public mutating func unseal(_ values: [String: String]) -> [String] {
        guard !sealedDigests.isEmpty else { return [] }
        var missing: [String] = []
        func open(_ s: String) -> String {
            guard let d = PlanSafety.sealedDigest(s) else { return s }
            if let v = values[d] { return v }
            missing.append(d)
            return s
        }
        var newEnv = env
        for i in newEnv.indices {
            guard let d = newEnv[i].sealed else { continue }
            if let v = values[d] { newEnv[i].value = v; newEnv[i].sealed = nil } else { missing.append(d) }
        }
        if newEnv != env { env = newEnv }
        if let c = command, c.contains(where: { PlanSafety.sealedDigest($0) != nil }) { command = c.map(open) }
        if var o = slo {
            o.prometheusAddress = o.prometheusAddress.map(open)
            o.successRateQuery = o.successRateQuery.map(open)
            o.latencyP95Query = o.latencyP95Query.map(open)
            slo = o
        }
        return missing
    }

    public static func == (a: DesiredServer, b: DesiredServer) -> Bool {
        guard a.name == b.name
            && a.tenant == b.tenant
            && a.version == b.version
            && a.revision == b.revision
            && a.replicas == b.replicas
            && a.image == b.image
            && a.command == b.command
            && a.workingDirectory == b.workingDirectory
            && a.digest == b.digest
            && a.transport == b.transport
            && a.port == b.port
            && a.path == b.path
            && a.env == b.env
            && a.cpu == b.cpu
            && a.memory == b.memory
            && a.cpuMillis == b.cpuMillis
            && a.memoryBytes == b.memoryBytes
            && a.health == b.health
            && a.rollout == b.rollout
            && a.slo == b.slo
            && a.labels == b.labels
            && a.manifestDirectory == b.manifestDirectory else { return false }
        // Two derived servers with equal inputs have equal fields.
        return (a.explicitFields == nil && b.explicitFields == nil) || a.fields == b.fields
    }

    // `fields` is left out: equal servers still hash alike, and hashing it would derive it.
    public func hash(into h: inout Hasher) {
        h.combine(name)
        h.combine(tenant)
        h.combine(version)
        h.combine(revision)
        h.combine(replicas)
        h.combine(image)
        h.combine(command)
        h.combine(workingDirectory)
        h.combine(digest)
        h.combine(transport)
        h.combine(port)
        h.combine(path)
        h.combine(env)
        h.combine(cpu)
        h.combine(memory)
        h.combine(cpuMillis)
        h.combine(memoryBytes)
        h.combine(health)
        h.combine(rollout)
        h.combine(slo)
        h.combine(labels)
        h.combine(manifestDirectory)
    }
}

public struct DesiredTenant: Codable, Hashable, Sendable {
    public var name: String
    public var isolation: Isolation
    public var namespace: String
    public var fields: [SpecField]
    /// Who else may connect (Kubernetes NetworkPolicy of strict tenants); nil in states saved before it existed.
    public var allowFrom: [NetworkPeer]?
}

/// The driver-neutral desired state of one environment.
public struct DesiredState: Codable, Hashable, Sendable {
    public var environment: String
    public var driver: DriverKind
    public var tenants: [DesiredTenant]
    public var servers: [DesiredServer]
    /// The environment, the policies that apply to it and the SLOs its servers name, as plans compare them.
    public var objects: [CatalogObject] = []

    private enum CodingKeys: String, CodingKey { case environment, driver, tenants, servers, objects }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        environment = try c.decode(String.self, forKey: .environment)
        driver = try c.decode(DriverKind.self, forKey: .driver)
        tenants = try c.decode([DesiredTenant].self, forKey: .tenants)
        servers = try c.decode([DesiredServer].self, forKey: .servers)
        objects = try c.decodeIfPresent([CatalogObject].self, forKey: .objects) ?? []
    }

    /// One server by name. Compares names in place (`first(where:)` copied every `DesiredServer` it
    /// passed over: at 3,000 servers that was a tenth of a cold converge's CPU, once per reconcile).
    public func server(_ name: String) -> DesiredServer? {
        for i in servers.indices where servers[i].name == name { return servers[i] }
        return nil
    }

    /// Each server's position in `servers` by name (the first, for a repeated name): for look-ups of
    /// many servers in one pass, which `server(_:)` (a scan) would make O(N²).
    public func serverIndex() -> [String: Int] {
        var index: [String: Int] = [:]
        index.reserveCapacity(servers.count)
        for i in servers.indices where index[servers[i].name] == nil { index[servers[i].name] = i }
        return index
    }
}

public enum Renderer {
    /// Renders the servers an environment selects, each with its revision.
    public static func desiredState(_ catalog: Catalog, environment: Environment) -> DesiredState {
        // Not `catalog.servers(in:)`: that copies every selected Server first.
        // Each SLO is rendered once, not once per server that names it.
        var slos: [String: DesiredSLO] = [:]
        for o in catalog.slos where slos[o.name] == nil { slos[o.name] = desiredSLO(o, environment: environment) }
        // Servers are read in place (a buffer, borrowed): copying a `Server` retains and releases its
        // ~30 references. Each renders on its own; Parallel.map keeps the order and uses every core.
        // (`pointee` is an addressor: a borrow. A buffer subscript or `catalog.servers[i]` copied.)
        let servers = catalog.servers.withUnsafeBufferPointer { all -> [DesiredServer] in
            guard let base = all.baseAddress else { return [] }
            var selected: [Int] = []
            selected.reserveCapacity(all.count)
            for i in 0..<all.count where environment.selects(at: base + i) { selected.append(i) }
            // One scratch buffer for the revision bytes per run of servers.
            return Parallel.map(selected.count, minimumChunk: 256, state: { [UInt8]() }) { scratch, k in
                let p = base + selected[k]
                return desiredServer(at: p, slo: p.pointee.slo.flatMap { slos[$0] }, scratch: &scratch)
            }
        }
        let tenantNames = Set(servers.map(\.tenant))
        let tenants = catalog.tenants.filter { tenantNames.contains($0.name) }.map(desiredTenant)
        var state = DesiredState(environment: environment.name, driver: environment.driver, servers: servers, tenants: tenants)
        state.objects = objects(catalog, environment: environment, sloNames: Set(servers.compactMap { $0.slo?.name }))
        return state
    }

    static func ms(_ d: Duration) -> Int64 {
        d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }

    /// `environment` decides the provider of an SLO that names none (nil: `probe`).
    public static func desiredServer(_ s: Server, catalog: Catalog, environment: Environment? = nil) -> DesiredServer {
        withUnsafePointer(to: s) { desiredServer(at: $0, slo: s.slo.flatMap { catalog.slo($0) }.map { desiredSLO($0, environment: environment) }) }
    }

    /// The provider an SLO is measured by in `environment`: the one it names, else the environment's
    /// default (`TrafficRules.defaultProvider`; `probe` without an environment).
    static func provider(_ o: SLO, environment: Environment?) -> (kind: AnalysisProviderKind, defaulted: Bool) {
        if let p = o.analysis.provider { return (p, false) }
        return (environment.map(TrafficRules.defaultProvider) ?? .probe, true)
    }

    static func desiredSLO(_ o: SLO, environment: Environment?) -> DesiredSLO {
        let provider = provider(o, environment: environment)
        var d = DesiredSLO(name: o.name, successRate: o.successRate, latencyP95Ms: o.latencyP95.map(ms), provider: provider.kind,
                   intervalMs: ms(o.analysis.interval), count: o.analysis.count, failureLimit: o.analysis.failureLimit,
                   prometheusAddress: o.analysis.prometheus?.address, successRateQuery: o.analysis.prometheus?.successRateQuery,
                   latencyP95Query: o.analysis.prometheus?.latencyP95Query)
        d.minimumCalls = o.analysis.minimumCalls
        if provider.defaulted { d.providerDefaulted = true }
        if o.analysis.compareWithStable { d.compareWithStable = true }
        d.stableTolerance = o.analysis.stableTolerance
        return d
    }

    /// `slo` is the server's SLO, rendered (nil when it names none, or one that does not exist). The server
    /// is read in place, field by field (`pointee` borrows; a `Server` argument was copied whole).
    static func desiredServer(at p: UnsafePointer<Server>, slo: DesiredSLO?) -> DesiredServer {
        var scratch: [UInt8] = []
        return desiredServer(at: p, slo: slo, scratch: &scratch)
    }

    static func desiredServer(at p: UnsafePointer<Server>, slo: DesiredSLO?, scratch: inout [UInt8]) -> DesiredServer {
        // In place: `map` over the env list copied each EnvVar whole (description included).
        var env = p.pointee.env.mapInPlace { e -> DesiredEnvVar in
            switch e.pointee.source {
            case .value(let v): return DesiredEnvVar(name: e.pointee.name, value: v)
            case .secret(let ref): return DesiredEnvVar(name: e.pointee.name, secretRef: ref)
            }
        }
        env.sort { $0.name < $1.name }
        let h = p.pointee.health
        let health = DesiredHealth(probe: h.probe, path: h.path, intervalMs: ms(h.interval), timeoutMs: ms(h.timeout), failureThreshold: h.failureThreshold, requireTools: h.requireTools)
        let r = p.pointee.rollout
        let steps = r.steps.map { step -> DesiredCanaryStep in
            var weight: Int?, replicas: Int?
            switch step.size {
            case .weight(let w): weight = w
            case .replicas(let n): replicas = n
            }
            var pauseMs: Int64?, until = false
            switch step.pause {
            case .duration(let d)?: pauseMs = ms(d)
            case .untilPromoted?: until = true
            case nil: break
            }
            return DesiredCanaryStep(weight: weight, replicas: replicas, pauseMs: pauseMs, untilPromoted: until, analysis: step.analysis ?? (p.pointee.slo != nil))
        }
        var maxUnavailable = r.maxUnavailable.resolve(p.pointee.replicas, roundUp: false)
        var maxSurge = r.maxSurge.resolve(p.pointee.replicas, roundUp: true)
        if maxSurge == 0 && maxUnavailable == 0 { maxSurge = 1 }
        if r.strategy == .recreate { maxSurge = 0; maxUnavailable = p.pointee.replicas }
        let rollout = DesiredRollout(strategy: r.strategy, maxSurge: maxSurge, maxUnavailable: maxUnavailable, steps: steps, autoRollback: r.autoRollback, progressDeadlineMs: ms(r.progressDeadline),
                                     maxSurgeSpec: r.maxSurge.description, maxUnavailableSpec: r.maxUnavailable.description,
                                     drainTimeoutMs: r.drainTimeout.map(ms))
        var d = DesiredServer(
            name: p.pointee.name, tenant: p.pointee.tenant, version: p.pointee.version, revision: "", replicas: p.pointee.replicas,
            image: p.pointee.artifact.image, command: p.pointee.artifact.command, workingDirectory: p.pointee.artifact.workingDirectory, digest: p.pointee.artifact.digest,
            transport: p.pointee.transport.type, port: p.pointee.transport.port, path: p.pointee.transport.path, env: env,
            cpu: p.pointee.resources?.cpu, memory: p.pointee.resources?.memory, cpuMillis: p.pointee.resources?.cpuMillis, memoryBytes: p.pointee.resources?.memoryBytes,
            health: health, rollout: rollout, slo: slo, labels: p.pointee.metadata.labels, manifestDirectory: p.pointee.source.relativeDirectory)
        d.gatewayRateLimit = p.pointee.gateway?.rateLimit
        d.revision = revision(of: d, scratch: &scratch)
        d.settingsHash = ServerSettings.hash(d.rollout, d.slo?.name, d.labels, d.gatewayRateLimit)
        return d
    }

    /// Whether `quote` changes anything inside the quotes: a `"`, `\\` or control byte (UTF-8 never
    /// uses bytes below 0x80 inside a multi-byte character). Scans the string's own bytes when it has
    /// them in one piece (native strings do), rather than index by index through the UTF-8 view.
    static func needsEscaping(_ s: String) -> Bool {
        func bad(_ c: UInt8) -> Bool { c < 0x20 || c == 0x22 || c == 0x5c }
        if let r = s.utf8.withContiguousStorageIfAvailable({ $0.contains(where: bad) }) { return r }
        return s.utf8.contains(where: bad)
    }

    /// Quoted for display so that `1.10` and `"1.10"` read as what they are: strings.
    static func quote(_ s: String) -> String {
        // Most values need no escaping: one concatenation instead of a scalar-by-scalar copy.
        if !needsEscaping(s) { return "\"" + s + "\"" }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out += u.value < 0x20 ? "\\u{\(String(u.value, radix: 16))}" : String(u)
            }
        }
        return out + "\""
    }

    /// A rendered server's fields, from its own properties (what `revision(of: DesiredServer)` hashes).
    static func specFields(_ s: DesiredServer) -> [SpecField] {
        let health = s.health
        var f: [SpecField] = []
        f.reserveCapacity(18 + s.env.count)
        f.append(SpecField(path: "version", display: quote(s.version)))
        f.append(SpecField(path: "tenant", display: s.tenant))
        if let v = s.image { f.append(SpecField(path: "artifact.image", display: v)) }
        if let v = s.command {
            // A sensitive argument is shown masked and hashed by its sealed digest (what `revision` writes).
            if PlanSafety.anySensitiveArgument(v) {
                let sensitive = PlanSafety.sensitiveArguments(v)
                let shown = zip(v, sensitive).map { $1 ? PlanSafety.masked($0) : quote($0) }
                let hashed = zip(v, sensitive).map { $1 ? PlanSafety.sealed($0) : quote($0) }
                f.append(SpecField(path: "artifact.command", display: "[" + shown.joined(separator: ", ") + "]", canonical: "[" + hashed.joined(separator: ", ") + "]"))
            } else {
                f.append(SpecField(path: "artifact.command", display: "[" + v.map(quote).joined(separator: ", ") + "]"))
            }
        }
        if let v = s.workingDirectory { f.append(SpecField(path: "artifact.workingDirectory", display: quote(v))) }
        if let v = s.digest { f.append(SpecField(path: "artifact.digest", display: v)) }
        f.append(SpecField(path: "transport.type", display: s.transport.rawValue))
        if let p = s.port { f.append(SpecField(path: "transport.port", display: String(p))) }
        f.append(SpecField(path: "transport.path", display: s.path))
        for e in s.env {
            if let ref = e.secretRef {
                f.append(SpecField(path: "env." + e.name, display: "secretRef(" + ref.name + "/" + ref.key + ")"))
            } else if let v = e.value {
                // A plain value under a secret-looking name or shaped like a credential is shown masked
                // and hashed by its digest: neither form carries the bytes.
                let sensitive = PlanSafety.isSensitive(name: e.name, value: v)
                f.append(SpecField(path: "env." + e.name, display: sensitive ? PlanSafety.masked(v) : quote(v),
                                   canonical: sensitive ? PlanSafety.digest(v) : "value:" + v))
            } else if let d = e.sealed {
                f.append(SpecField(path: "env." + e.name, display: "(sensitive, " + d.prefix(19) + ")", canonical: d))
            }
        }
        if let c = s.cpu { f.append(SpecField(path: "resources.cpu", display: c, canonical: String(s.cpuMillis ?? 0) + "m")) }
        if let m = s.memory { f.append(SpecField(path: "resources.memory", display: m, canonical: String(s.memoryBytes ?? 0))) }
        f.append(SpecField(path: "health.probe", display: health.probe.rawValue))
        if let p = health.path { f.append(SpecField(path: "health.path", display: p)) }
        f.append(SpecField(path: "health.interval", display: Syntax.format(.milliseconds(health.intervalMs)), canonical: String(health.intervalMs) + "ms"))
        f.append(SpecField(path: "health.timeout", display: Syntax.format(.milliseconds(health.timeoutMs)), canonical: String(health.timeoutMs) + "ms"))
        f.append(SpecField(path: "health.failureThreshold", display: String(health.failureThreshold)))
        if !health.requireTools.isEmpty { f.append(SpecField(path: "health.requireTools", display: "[" + health.requireTools.joined(separator: ", ") + "]")) }
        return f
    }

    /// The revision of a rendered server: the same digest as `revision(of: specFields(s))`, with the
    /// canonical bytes written straight into one buffer, already in path order (no field values, no
    /// display strings, no sort). Keep in step with `specFields`.
    /// `scratch` is emptied first and its capacity kept: one buffer serves a whole run of servers. Arrays are read in place through `pointee`: iterating them copied each element.
    static func revision(of s: borrowing DesiredServer, scratch b: inout [UInt8]) -> String {
        b.removeAll(keepingCapacity: true)
        b.reserveCapacity(1024)
        // `path NUL canonical` per field, LF-separated and LF-terminated.
        func start(_ path: StaticString) {
            if !b.isEmpty { b.append(0x0a) }
            b.append(contentsOf: UnsafeBufferPointer(start: path.utf8Start, count: path.utf8CodeUnitCount))
        }
        func field(_ path: StaticString) {
            start(path)
            b.append(0)
        }
        func text(_ v: String) { b.append(contentsOf: v.utf8) }
        func quoted(_ v: String) {
            if !needsEscaping(v) {
                b.append(0x22); b.append(contentsOf: v.utf8); b.append(0x22)
            } else {
                b.append(contentsOf: quote(v).utf8)
            }
        }
        func number<I: BinaryInteger>(_ n: I) {
            // Small non-negative numbers (all of them, in practice) without a String per number.
            guard n >= 0, n < 1_000_000_000_000 else { return text(String(n)) }
            var v = UInt64(n), digits: (UInt64, Int) = (0, 0)
            repeat { digits.0 = digits.0 &* 16 &+ v % 10; digits.1 += 1; v /= 10 } while v > 0
            for _ in 0..<digits.1 { b.append(0x30 &+ UInt8(digits.0 & 0xf)); digits.0 >>= 4 }
        }
        func list(_ items: [String], quoting: Bool) {
            b.append(0x5b)
            items.withUnsafeBufferPointer { all in
                for i in 0..<all.count {
                    if i > 0 { b.append(0x2c); b.append(0x20) }
                    if quoting { quoted((all.baseAddress! + i).pointee) } else { text((all.baseAddress! + i).pointee) }
                }
            }
            b.append(0x5d)
        }
        // Paths in `String` order, which is byte order for these ASCII paths.
        if let command = s.command {
            field("artifact.command")
            if PlanSafety.anySensitiveArgument(command) {
                let sensitive = PlanSafety.sensitiveArguments(command)
                b.append(0x5b)
                for (i, arg) in command.enumerated() {
                    if i > 0 { b.append(0x2c); b.append(0x20) }
                    if sensitive[i] { text(PlanSafety.sealed(arg)) } else { quoted(arg) }
                }
                b.append(0x5d)
            } else {
                list(command, quoting: true)
            }
        }
        if let v = s.digest { field("artifact.digest"); text(v) }
        if let v = s.image { field("artifact.image"); text(v) }
        if let v = s.workingDirectory { field("artifact.workingDirectory"); quoted(v) }
        // Env is sorted by name, so `env.NAME` paths are in order too.
        s.env.withUnsafeBufferPointer { env in
            for i in 0..<env.count {
                let e = env.baseAddress! + i
                if let ref = e.pointee.secretRef {
                    start("env."); text(e.pointee.name); b.append(0)
                    text("secretRef("); text(ref.name); b.append(0x2f); text(ref.key); b.append(0x29)
                } else if let v = e.pointee.value {
                    start("env."); text(e.pointee.name); b.append(0)
                    if PlanSafety.isSensitive(name: e.pointee.name, value: v) {
                        text(PlanSafety.digest(v))
                    } else {
                        text("value:"); text(v)
                    }
                } else if let d = e.pointee.sealed {
                    start("env."); text(e.pointee.name); b.append(0); text(d)
                }
            }
        }
        field("health.failureThreshold"); number(s.health.failureThreshold)
        field("health.interval"); number(s.health.intervalMs); text("ms")
        if let p = s.health.path { field("health.path"); text(p) }
        field("health.probe"); text(s.health.probe.rawValue)
        if !s.health.requireTools.isEmpty { field("health.requireTools"); list(s.health.requireTools, quoting: false) }
        field("health.timeout"); number(s.health.timeoutMs); text("ms")
        if s.cpu != nil { field("resources.cpu"); number(s.cpuMillis ?? 0); text("m") }
        if s.memory != nil { field("resources.memory"); number(s.memoryBytes ?? 0) }
        field("tenant"); text(s.tenant)
        field("transport.path"); text(s.path)
        if let p = s.port { field("transport.port"); number(p) }
        field("transport.type"); text(s.transport.rawValue)
        field("version"); quoted(s.version)
        b.append(0x0a)
        return hexPrefix(SHA256.hash(data: b), 12)
    }

    /// First 12 hex digits of SHA-256 over the canonical field list (as Kubernetes' pod-template-hash,
    /// short enough to read, long enough not to collide within one server's history).
    public static func revision(of fields: [SpecField]) -> String {
        // `path NUL canonical LF` per field in path order, hashed as one buffer (the same digest as
        // feeding the pieces one by one, without an array per piece).
        let sorted = fields.sorted(by: { $0.path < $1.path })
        var bytes: [UInt8] = []
        bytes.reserveCapacity(sorted.reduce(0) { $0 + $1.path.utf8.count + $1.canonical.utf8.count + 2 })
        for field in sorted {
            bytes.append(contentsOf: field.path.utf8)
            bytes.append(0)
            bytes.append(contentsOf: field.canonical.utf8)
            bytes.append(0x0a)
        }
        return hexPrefix(SHA256.hash(data: bytes), 12)
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    static func hexPrefix<D: Sequence>(_ digest: D, _ count: Int) -> String where D.Element == UInt8 {
        let hex = hexDigits
        var out: [UInt8] = []
        out.reserveCapacity(count + 1)
        for byte in digest {
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0x0f)])
            if out.count >= count { break }
        }
        return String(decoding: out.prefix(count), as: UTF8.self)
    }

    static func desiredTenant(_ t: Tenant) -> DesiredTenant {
        var f: [SpecField] = [SpecField(path: "isolation", display: t.isolation.rawValue), SpecField(path: "namespace", display: t.kubernetesNamespace)]
        let q = t.quota
        if let v = q.cpu { f.append(SpecField(path: "quota.cpu", display: v, canonical: "\(q.cpuMillis ?? 0)m")) }
        if let v = q.memory { f.append(SpecField(path: "quota.memory", display: v, canonical: String(q.memoryBytes ?? 0))) }
        if let v = q.maxServers { f.append(SpecField(path: "quota.maxServers", display: String(v))) }
        if let v = q.maxReplicas { f.append(SpecField(path: "quota.maxReplicas", display: String(v))) }
        if let v = q.tasks { f.append(SpecField(path: "quota.tasks", display: String(v))) }
        if let g = t.gateway {
            // Tokens by reference only; the gateway reads their files.
            if !g.tokens.isEmpty { f.append(SpecField(path: "gateway.tokens", display: "[" + g.tokens.map(\.description).joined(separator: ", ") + "]")) }
            if let r = g.rateLimit { f.append(SpecField(path: "gateway.rateLimit", display: r.description)) }
        }
        if !t.allowFrom.isEmpty { f.append(SpecField(path: "allowFrom", display: "[" + t.allowFrom.map(\.description).joined(separator: "; ") + "]")) }
        return DesiredTenant(name: t.name, isolation: t.isolation, namespace: t.kubernetesNamespace, fields: f, allowFrom: t.allowFrom.isEmpty ? nil : t.allowFrom)
    }
}
