/// What a plan compares beyond revisions and replica counts (docs/designs/0007-complete-plans.md):
/// the catalog objects that govern an environment (the Environment itself, the policies that apply to
/// it, the SLOs its servers name), each server's settings (rollout, SLO, labels) and each server's
/// admission (its supply-chain verdict and the digests of the evidence behind it).
///
/// None of these makes a new revision — changing them restarts nothing — but each changes what runs
/// or what is admitted, so a plan lists them (`update`, `create`, `delete`) with their field paths.

/// An Environment, Policy or SLO as a plan compares it: field paths relative to `spec`, secret-safe.
public struct CatalogObject: Codable, Hashable, Sendable {
    public var kind: Kind
    public var name: String
    public var fields: [SpecField]

    public init(kind: Kind, name: String, fields: [SpecField]) {
        self.kind = kind
        self.name = name
        self.fields = fields
    }
}

/// What a server runs *with* beyond its revision: how it rolls out, the SLO gating it, its labels.
public struct ServerSettings: Codable, Hashable, Sendable {
    public private(set) var rollout: DesiredRollout
    public private(set) var slo: String?
    public private(set) var labels: [String: String]
    public private(set) var gatewayRateLimit: GatewayRateLimit?
    /// `Self.hash(…)` of the three, taken once (here, and for a desired server at render): the planner
    /// compares these for every server instead of the settings. Seeded per process (never persisted,
    /// recomputed when decoded), so no input can be crafted to collide.
    let hash: Int

    public init(rollout: DesiredRollout, slo: String?, labels: [String: String], gatewayRateLimit: GatewayRateLimit? = nil) {
        self.rollout = rollout
        self.slo = slo
        self.labels = labels
        self.gatewayRateLimit = gatewayRateLimit
        hash = Self.hash(rollout, slo, labels, gatewayRateLimit)
    }

    public init(_ d: DesiredServer) { self.init(rollout: d.rollout, slo: d.slo?.name, labels: d.labels, gatewayRateLimit: d.gatewayRateLimit) }

    static func hash(_ rollout: DesiredRollout, _ slo: String?, _ labels: [String: String], _ gatewayRateLimit: GatewayRateLimit?) -> Int {
        var h = Hasher()
        h.combine(rollout)
        h.combine(slo)
        h.combine(labels)
        h.combine(gatewayRateLimit)
        return h.finalize()
    }

    private enum CodingKeys: String, CodingKey { case rollout, slo, labels, gatewayRateLimit }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(rollout: try c.decode(DesiredRollout.self, forKey: .rollout), slo: try c.decodeIfPresent(String.self, forKey: .slo),
                  labels: try c.decode([String: String].self, forKey: .labels),
                  gatewayRateLimit: try c.decodeIfPresent(GatewayRateLimit.self, forKey: .gatewayRateLimit))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(rollout, forKey: .rollout)
        try c.encodeIfPresent(slo, forKey: .slo)
        try c.encode(labels, forKey: .labels)
        try c.encodeIfPresent(gatewayRateLimit, forKey: .gatewayRateLimit)
    }

    /// Whether the live server's settings are `ServerSettings(d)`, by their hashes (nil when the live
    /// side records none). `Hasher` is SipHash with a key drawn per process: an accidental collision is
    /// a 2^-64 chance and none can be aimed at. Read in place: the planner asks this of every server.
    static func match(_ live: UnsafePointer<LiveServer>, _ d: UnsafePointer<DesiredServer>) -> Bool? {
        guard let liveHash = live.pointee.settings?.hash else { return nil }
        let desiredHash = d.pointee.settingsHash ?? hash(d.pointee.rollout, d.pointee.slo?.name, d.pointee.labels, d.pointee.gatewayRateLimit)
        return liveHash == desiredHash
    }
    // (A mismatch only in the resolved surge counts, after a scale, yields no field change: `fields`
    // shows the settings as written.)

    /// The settings as plan fields, in a fixed order.
    public var fields: [SpecField] {
        let r = rollout
        var f: [SpecField] = [
            SpecField(path: "rollout.strategy", display: r.strategy.rawValue),
            SpecField(path: "rollout.maxSurge", display: r.maxSurgeSpec ?? String(r.maxSurge)),
            SpecField(path: "rollout.maxUnavailable", display: r.maxUnavailableSpec ?? String(r.maxUnavailable)),
        ]
        for (i, step) in r.steps.enumerated() {
            var parts: [String] = []
            if let w = step.weight { parts.append("weight \(w)%") }
            if let n = step.replicas { parts.append("\(n) replica\(n == 1 ? "" : "s")") }
            if let p = step.pauseMs { parts.append("pause " + Syntax.format(.milliseconds(p))) }
            if step.untilPromoted { parts.append("pause until promoted") }
            parts.append(step.analysis ? "analysis" : "no analysis")
            f.append(SpecField(path: "rollout.steps[\(i)]", display: parts.joined(separator: ", ")))
        }
        f.append(SpecField(path: "rollout.autoRollback", display: String(r.autoRollback)))
        f.append(SpecField(path: "rollout.progressDeadline", display: Syntax.format(.milliseconds(r.progressDeadlineMs)), canonical: "\(r.progressDeadlineMs)ms"))
        if let d = r.drainTimeoutMs { f.append(SpecField(path: "rollout.drainTimeout", display: Syntax.format(.milliseconds(d)), canonical: "\(d)ms")) }
        if let slo { f.append(SpecField(path: "slo", display: slo)) }
        for (k, v) in labels.sorted(by: { $0.key < $1.key }) {
            f.append(SpecField(path: "labels." + k, display: PlanSafety.display(name: k, v), canonical: PlanSafety.isSensitive(name: k, value: v) ? PlanSafety.digest(v) : v))
        }
        if let r = gatewayRateLimit { f.append(SpecField(path: "gateway.rateLimit", display: r.description)) }
        return f
    }
}

/// A server's standing with the supply-chain gate: the verdict and what it rested on.
public struct Admission: Codable, Hashable, Sendable {
    public var decision: VerdictDecision
    /// `supplyChain.verdict` first, then the evidence digests and the key that verified the signature.
    public var fields: [SpecField]

    public init(decision: VerdictDecision, fields: [SpecField]) {
        self.decision = decision
        self.fields = fields
    }
}

extension PolicyVerdict {
    /// The verdict as a plan compares it: a changed decision or a changed evidence digest is a change.
    public var admission: Admission {
        var f = [SpecField(path: "supplyChain.verdict", display: decision.rawValue)]
        func digest(_ path: String, _ d: String?) {
            if let d { f.append(SpecField(path: "supplyChain." + path, display: String(d.prefix(19)), canonical: d)) }
        }
        let e = evidence
        digest("artifact", e?.artifactDigest)
        digest("signature", e?.signatureDigest)
        if let k = e?.signedBy { f.append(SpecField(path: "supplyChain.signedBy", display: k + (e?.signerFingerprint.map { " (sha256:\($0.prefix(12)))" } ?? ""), canonical: k + " " + (e?.signerFingerprint ?? ""))) }
        digest("sbom", e?.sbomDigest)
        digest("scan", e?.scanDigest)
        digest("provenance", e?.provenanceDigest)
        return Admission(decision: decision, fields: f)
    }
}

/// An Environment's settings as a saved plan carries them, so `apply plan.json` builds the same driver
/// wherever it runs (`environment(named:)` gives the model back).
public struct EnvironmentSpec: Codable, Hashable, Sendable {
    public var driver: DriverKind
    public var portRange: String?
    public var stateDir: String?
    public var secretsDir: String?
    public var serverSelector: [String: String]
    public var logDir: String?
    public var maxLogBytes: Int?
    public var restartBackoffMs: Int64?
    public var unitDir: String?
    public var unitPrefix: String?
    public var relax: [String]?
    public var context: String?
    public var kubeconfig: String?
    public var inCluster: Bool?
    public var namespacePrefix: String?
    public var fieldManager: String?
    public var imagePullSecrets: [String]?
    /// `spec.gateway`, as plan fields (secrets only as references): what the gateway serving this
    /// environment is told, so a plan applied from file starts the same gateway.
    public var gateway: GatewaySpec?

    public struct GatewaySpec: Codable, Hashable, Sendable {
        public var address: String?
        public var signingKey: SecretReference?
        public var maxConnections: Int?
        public var maxBodyBytes: Int?
        public var headerTimeoutMs: Int64?
        public var idleTimeoutMs: Int64?
        public var upstreamTimeoutMs: Int64?
        public var consecutiveFailures: Int?
        public var ejectionTimeMs: Int64?

        init(_ g: EnvironmentGatewaySettings) {
            address = g.address
            signingKey = g.signingKey
            maxConnections = g.maxConnections
            maxBodyBytes = g.maxBodyBytes
            headerTimeoutMs = g.headerTimeout.map(Renderer.ms)
            idleTimeoutMs = g.idleTimeout.map(Renderer.ms)
            upstreamTimeoutMs = g.upstreamTimeout.map(Renderer.ms)
            consecutiveFailures = g.consecutiveFailures
            ejectionTimeMs = g.ejectionTime.map(Renderer.ms)
        }

        var settings: EnvironmentGatewaySettings {
            var g = EnvironmentGatewaySettings()
            g.address = address
            g.signingKey = signingKey
            g.maxConnections = maxConnections
            g.maxBodyBytes = maxBodyBytes
            g.headerTimeout = headerTimeoutMs.map { .milliseconds($0) }
            g.idleTimeout = idleTimeoutMs.map { .milliseconds($0) }
            g.upstreamTimeout = upstreamTimeoutMs.map { .milliseconds($0) }
            g.consecutiveFailures = consecutiveFailures
            g.ejectionTime = ejectionTimeMs.map { .milliseconds($0) }
            return g
        }
    }

    public init(_ e: Environment) {
        driver = e.driver
        portRange = e.portRange?.description
        stateDir = e.stateDir
        secretsDir = e.secretsDir
        serverSelector = e.serverSelector
        logDir = e.local?.logDir
        maxLogBytes = e.local?.maxLogBytes
        restartBackoffMs = e.local?.restartBackoff.map(Renderer.ms)
        unitDir = e.systemd?.unitDir
        unitPrefix = e.systemd?.unitPrefix
        relax = e.systemd?.relax
        context = e.kubernetes?.context
        kubeconfig = e.kubernetes?.kubeconfig
        inCluster = e.kubernetes?.inCluster
        namespacePrefix = e.kubernetes?.namespacePrefix
        fieldManager = e.kubernetes?.fieldManager
        imagePullSecrets = e.kubernetes?.imagePullSecrets
        gateway = e.gateway.map(GatewaySpec.init)
    }

    /// The Environment these settings describe; `origin` names where it came from in messages.
    public func environment(named name: String, origin: String) -> Environment {
        let location = SourceLocation(file: origin, line: 1, column: 1)
        var e = Environment(metadata: ObjectMeta(name: name), driver: driver, source: DocumentSource(file: origin, relativePath: origin, index: 0),
                            locations: FieldLocations(document: location))
        if let r = portRange {
            let parts = r.split(separator: "-")
            if parts.count == 2, let lo = Int(parts[0]), let hi = Int(parts[1]) { e.portRange = PortRange(lower: lo, upper: hi) }
        }
        e.stateDir = stateDir
        e.secretsDir = secretsDir
        e.serverSelector = serverSelector
        e.gateway = gateway?.settings
        switch driver {
        case .local:
            if logDir != nil || maxLogBytes != nil || restartBackoffMs != nil {
                var l = LocalSettings()
                l.logDir = logDir
                l.maxLogBytes = maxLogBytes
                l.restartBackoff = restartBackoffMs.map { .milliseconds($0) }
                e.local = l
            }
        case .systemd:
            var s = SystemdSettings()
            if let unitDir { s.unitDir = unitDir }
            if let unitPrefix { s.unitPrefix = unitPrefix }
            s.relax = relax ?? []
            e.systemd = s
        case .kubernetes:
            var k = KubernetesSettings()
            k.context = context
            k.kubeconfig = kubeconfig
            k.inCluster = inCluster ?? false
            k.namespacePrefix = namespacePrefix
            if let fieldManager { k.fieldManager = fieldManager }
            k.imagePullSecrets = imagePullSecrets ?? []
            e.kubernetes = k
        }
        return e
    }
}

/// A file a plan was made from, by its digest: apply refuses the plan when one has moved.
public struct FileDigest: Codable, Hashable, Sendable {
    /// Relative to the manifest root, or absolute for a file outside it (an artifact on PATH).
    public var path: String
    public var sha256: String

    public init(path: String, sha256: String) {
        self.path = path
        self.sha256 = sha256
    }
}

/// Where a saved plan came from: the manifest root (absolute), its git commit, and the digests of the
/// manifests and of the supply-chain evidence the verdicts rest on.
public struct PlanSource: Codable, Hashable, Sendable {
    public var root: String
    public var commit: String?
    public var manifests: [FileDigest]
    public var evidence: [FileDigest]

    public init(root: String, commit: String?, manifests: [FileDigest], evidence: [FileDigest]) {
        self.root = root
        self.commit = commit
        self.manifests = manifests
        self.evidence = evidence
    }
}

extension Renderer {
    /// The objects that govern an environment: itself, the policies that apply to it and the SLOs its
    /// servers name (in that order, each by name).
    static func objects(_ catalog: Catalog, environment: Environment, sloNames: Set<String>) -> [CatalogObject] {
        var out = [environmentObject(environment)]
        for p in catalog.policies where p.applies(to: environment.name) { out.append(policyObject(p)) }
        for o in catalog.slos where sloNames.contains(o.name) { out.append(sloObject(o, environment: environment)) }
        return out
    }

    static func environmentObject(_ e: Environment) -> CatalogObject {
        var f = [SpecField(path: "driver", display: e.driver.rawValue)]
        func add(_ path: String, _ v: String?) {
            guard let v else { return }
            let sensitive = PlanSafety.isSensitive(name: path, value: v)
            f.append(SpecField(path: path, display: sensitive ? PlanSafety.masked(v) : v, canonical: sensitive ? PlanSafety.digest(v) : v))
        }
        add("portRange", e.portRange?.description)
        add("stateDir", e.stateDir)
        add("secretsDir", e.secretsDir)
        for (k, v) in e.serverSelector.sorted(by: { $0.key < $1.key }) { add("serverSelector." + k, v) }
        if let l = e.local {
            add("local.logDir", l.logDir)
            add("local.maxLogBytes", l.maxLogBytes.map(String.init))
            add("local.restartBackoff", l.restartBackoff.map(Syntax.format))
        }
        if let s = e.systemd {
            add("systemd.unitDir", s.unitDir)
            add("systemd.unitPrefix", s.unitPrefix)
            if !s.relax.isEmpty { add("systemd.relax", "[" + s.relax.joined(separator: ", ") + "]") }
        }
        if let k = e.kubernetes {
            add("kubernetes.context", k.context)
            add("kubernetes.kubeconfig", k.kubeconfig)
            add("kubernetes.inCluster", String(k.inCluster))
            add("kubernetes.namespacePrefix", k.namespacePrefix)
            add("kubernetes.fieldManager", k.fieldManager)
            if !k.imagePullSecrets.isEmpty { add("kubernetes.imagePullSecrets", "[" + k.imagePullSecrets.joined(separator: ", ") + "]") }
        }
        if let g = e.gateway {
            add("gateway.address", g.address)
            add("gateway.signingKey", g.signingKey?.description)
            add("gateway.maxConnections", g.maxConnections.map(String.init))
            add("gateway.maxBodyBytes", g.maxBodyBytes.map(String.init))
            add("gateway.headerTimeout", g.headerTimeout.map(Syntax.format))
            add("gateway.idleTimeout", g.idleTimeout.map(Syntax.format))
            add("gateway.upstreamTimeout", g.upstreamTimeout.map(Syntax.format))
            add("gateway.consecutiveFailures", g.consecutiveFailures.map(String.init))
            add("gateway.ejectionTime", g.ejectionTime.map(Syntax.format))
        }
        // Receivers by name: adding, removing or retargeting one shows in the plan. Their secrets are
        // references (`secret NAME/KEY`), and a URL with a credential in it is refused at validate time.
        for n in e.notifications {
            let at = "notifications." + n.name
            add(at + ".type", n.kind.rawValue)
            add(at + ".url", n.url)
            // References name a secret file, never a value: shown as written.
            for (key, ref) in [("urlSecretRef", n.urlSecretRef), ("signingKey", n.signingKey), ("token", n.token)] {
                if let ref { f.append(SpecField(path: at + "." + key, display: ref.description)) }
            }
            add(at + ".repository", n.repository)
            add(at + ".apiURL", n.apiURL)
            add(at + ".events", n.events.map { "[" + $0.map(\.rawValue).sorted().joined(separator: ", ") + "]" })
            add(at + ".servers", n.servers.map { "[" + $0.sorted().joined(separator: ", ") + "]" })
        }
        return CatalogObject(kind: .environment, name: e.name, fields: f)
    }

    /// Every rule of a policy, defaults included, so switching one on shows as `false → true`. A trusted
    /// key shows as the digest of its PEM text, or its file (the CLI puts the key's fingerprint there).
    static func policyObject(_ p: Policy) -> CatalogObject {
        var f = [SpecField(path: "mode", display: p.mode.rawValue)]
        if let envs = p.environments { f.append(SpecField(path: "environments", display: "[" + envs.joined(separator: ", ") + "]")) }
        f.append(SpecField(path: "requireSignature", display: String(p.requireSignature)))
        for k in p.trustedKeys {
            switch k.material {
            case .pem(let text):
                let d = PlanSafety.digest(text.split(whereSeparator: \.isWhitespace).joined())
                f.append(SpecField(path: "trustedKeys." + k.name, display: "pem " + d.prefix(19), canonical: d))
            case .file(let path):
                f.append(SpecField(path: "trustedKeys." + k.name, display: "file " + path))
            }
        }
        f.append(SpecField(path: "requireSBOM", display: String(p.requireSBOM)))
        f.append(SpecField(path: "maxSeverity", display: p.maxSeverity.rawValue))
        f.append(SpecField(path: "requireScan", display: String(p.requireScan)))
        f.append(SpecField(path: "requireProvenance", display: String(p.requireProvenance)))
        f.append(SpecField(path: "requireDigest", display: String(p.requireDigest)))
        f.append(SpecField(path: "allowedRegistries", display: "[" + p.allowedRegistries.joined(separator: ", ") + "]"))
        f.append(SpecField(path: "allowedCommands", display: "[" + p.allowedCommands.joined(separator: ", ") + "]"))
        return CatalogObject(kind: .policy, name: p.name, fields: f)
    }

    static func sloObject(_ o: SLO, environment: Environment) -> CatalogObject {
        var f: [SpecField] = []
        if let t = o.successRateText, let v = o.successRate { f.append(SpecField(path: "successRate", display: t, canonical: String(v))) }
        if let l = o.latencyP95 { f.append(SpecField(path: "latencyP95", display: Syntax.format(l), canonical: "\(ms(l))ms")) }
        let a = o.analysis
        // A provider the SLO does not name is the environment's default: shown as such (design 0016).
        let provider = provider(o, environment: environment)
        f.append(SpecField(path: "analysis.provider", display: provider.kind.rawValue + (provider.defaulted ? " (default here)" : ""),
                           canonical: provider.kind.rawValue))
        f.append(SpecField(path: "analysis.interval", display: Syntax.format(a.interval), canonical: "\(ms(a.interval))ms"))
        f.append(SpecField(path: "analysis.count", display: String(a.count)))
        f.append(SpecField(path: "analysis.failureLimit", display: String(a.failureLimit)))
        if let m = a.minimumCalls { f.append(SpecField(path: "analysis.minimumCalls", display: String(m))) }
        if a.compareWithStable { f.append(SpecField(path: "analysis.compareWithStable", display: "true")) }
        if let t = a.stableTolerance, let text = a.stableToleranceText {
            f.append(SpecField(path: "analysis.stableTolerance", display: text, canonical: String(t)))
        }
        if let p = a.prometheus {
            for (path, v) in [("address", p.address), ("successRateQuery", p.successRateQuery), ("latencyP95Query", p.latencyP95Query)] {
                guard let v else { continue }
                let sensitive = PlanSafety.looksLikeSecret(v)
                f.append(SpecField(path: "analysis.prometheus." + path, display: sensitive ? PlanSafety.masked(v) : Renderer.quote(v),
                                   canonical: sensitive ? PlanSafety.digest(v) : v))
            }
        }
        return CatalogObject(kind: .slo, name: o.name, fields: f)
    }

    /// Every sensitive value a desired state carries, by digest: what `DesiredServer.unseal` needs to
    /// make a sealed spec (a saved plan's, a driver's persisted one) whole again.
    public static func sensitiveValues(_ state: DesiredState) -> [String: String] {
        var out: [String: String] = [:]
        for s in state.servers {
            for e in s.env {
                if let v = e.value, PlanSafety.isSensitive(name: e.name, value: v) { out[PlanSafety.digest(v)] = v }
            }
            if let c = s.command {
                for (arg, sensitive) in zip(c, PlanSafety.sensitiveArguments(c)) where sensitive { out[PlanSafety.digest(arg)] = arg }
            }
            if let o = s.slo {
                for v in [o.prometheusAddress, o.successRateQuery, o.latencyP95Query].compactMap({ $0 }) where PlanSafety.looksLikeSecret(v) {
                    out[PlanSafety.digest(v)] = v
                }
            }
        }
        return out
    }
}
