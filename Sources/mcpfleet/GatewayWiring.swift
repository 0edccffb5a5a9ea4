import FleetCore
import FleetGateway
import FleetYAML
import Foundation
import Logging
import FleetController
import Prometheus

/// How the CLI builds the gateway from a catalog and a driver: settings, secrets (tokens, signing
/// key — read from files, held as digests or keys, never printed), routes and health rows.
enum GatewayWiring {
    /// The documented default for local environments (docs/runbook.md, "Gateway").
    static let defaultLocalAddress = "127.0.0.1:9470"

    /// Where the gateway listens for `run`: the flag, else the environment's setting, else (local only,
    /// and not with --once) the default. Empty means off.
    static func address(flag: String?, environment: Environment, once: Bool) -> String? {
        if let flag { return flag.isEmpty ? nil : flag }
        if let a = environment.gateway?.address { return a }
        return environment.driver == .local && !once ? defaultLocalAddress : nil
    }

    static func configuration(_ environment: Environment) -> GatewayConfiguration {
        var c = GatewayConfiguration()
        // Event-loop threads (default: one per core), e.g. 1 on a host where the servers need the cores.
        if let t = ProcessInfo.processInfo.environment["MCPFLEET_GATEWAY_THREADS"].flatMap(Int.init), t > 0 { c.threads = t }
        guard let g = environment.gateway else { return c }
        if let v = g.maxConnections { c.maxConnections = v }
        if let v = g.maxBodyBytes { c.maxBodyBytes = v }
        if let v = g.headerTimeout { c.headerTimeout = v }
        if let v = g.idleTimeout { c.idleTimeout = v }
        if let v = g.upstreamTimeout { c.upstreamTimeout = v }
        if let v = g.consecutiveFailures { c.breakerFailures = v }
        if let v = g.ejectionTime { c.breakerEjection = v }
        return c
    }

    static func absolute(_ path: String, against base: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: base, isDirectory: true)).standardizedFileURL.path
    }

    /// The drivers' own rule: local resolves against the working directory (default `<stateDir>/secrets`),
    /// systemd and Kubernetes against the manifest root.
    static func secretsDirectory(_ environment: Environment, manifestRoot: String) -> String {
        // Set where the secrets are mounted apart from the manifests (the gateway's Kubernetes Deployment).
        if let d = ProcessInfo.processInfo.environment["MCPFLEET_SECRETS_DIR"], !d.isEmpty { return d }
        let cwd = FileManager.default.currentDirectoryPath
        if environment.driver == .local {
            return absolute(environment.secretsDir ?? environment.effectiveStateDir + "/secrets", against: cwd)
        }
        return absolute(environment.secretsDir ?? environment.effectiveStateDir + "/secrets", against: absolute(manifestRoot, against: cwd))
    }

    /// A secret's bytes, without trailing newlines. Errors name the reference and file, never the value.
    static func readSecret(_ ref: SecretReference, directory: String, for purpose: String = "the gateway") throws -> [UInt8] {
        let path = "\(directory)/\(ref.name)/\(ref.key)"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandFailure(message: "\(ref) for \(purpose): cannot read \(path)")
        }
        var bytes = Array(data)
        while let last = bytes.last, last == 0x0a || last == 0x0d { bytes.removeLast() }
        guard !bytes.isEmpty else { throw CommandFailure(message: "\(ref) for \(purpose): \(path) is empty") }
        return bytes
    }

    /// The session-signing key: the environment's secret, else a random key kept (0600) in the state directory.
    static func signer(_ environment: Environment, manifestRoot: String) throws -> SessionSigner {
        do {
            if let ref = environment.gateway?.signingKey {
                return try SessionSigner(key: try readSecret(ref, directory: secretsDirectory(environment, manifestRoot: manifestRoot)))
            }
            let base = environment.driver == .local ? FileManager.default.currentDirectoryPath : absolute(manifestRoot, against: FileManager.default.currentDirectoryPath)
            let dir = absolute(environment.effectiveStateDir, against: base) + "/gateway"
            let path = dir + "/signing.key"
            if let existing = FileManager.default.contents(atPath: path), existing.count >= 32 {
                return try SessionSigner(key: Array(existing))
            }
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            var g = SystemRandomNumberGenerator()
            let key = (0..<32).map { _ in UInt8.random(in: 0...255, using: &g) }
            guard FileManager.default.createFile(atPath: path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
                throw CommandFailure(message: "cannot write the gateway's signing key \(path)")
            }
            return try SessionSigner(key: key)
        } catch let e as GatewayError {
            throw CommandFailure(message: "environment \(environment.name): \(e)")
        }
    }

    /// Route policy per server: its tenant's tokens (as digests) and rate limit, its own rate limit.
    static func policies(_ catalog: Catalog, environment: Environment, manifestRoot: String) throws -> [String: RoutePolicy] {
        let dir = secretsDirectory(environment, manifestRoot: manifestRoot)
        var tenants: [String: (BearerTokens, RateLimit?)] = [:]
        for t in catalog.tenants {
            let tokens = try (t.gateway?.tokens ?? []).map { String(decoding: try readSecret($0, directory: dir), as: UTF8.self) }
            tenants[t.name] = (BearerTokens(tokens: tokens), t.gateway?.rateLimit.map(rate))
        }
        var out: [String: RoutePolicy] = [:]
        for s in catalog.servers(in: environment) {
            let t = tenants[s.tenant]
            out[s.name] = RoutePolicy(tokens: t?.0 ?? BearerTokens(tokens: []), tenantRate: t?.1, serverRate: s.gateway?.rateLimit.map(rate),
                                     tools: s.tools)
        }
        return out
    }

    static func rate(_ r: GatewayRateLimit) -> RateLimit { RateLimit(requestsPerSecond: Double(r.requestsPerSecond), burst: r.burst) }

    /// Routes for what the driver runs now. A server the catalog does not know (unmanaged) gets a route
    /// only if it has no tenant tokens to check — i.e. the default open policy; managed ones get theirs.
    static func routes(driver: any RuntimeDriver, live: LiveState, policies: [String: RoutePolicy]) async -> RouteTable {
        await RouteTable.build(live: LiveState(servers: live.servers.filter(\.managed)),
                               endpoints: { try await driver.endpoints(server: $0, revision: $1) },
                               policy: { server, _ in policies[server] ?? RoutePolicy() })
    }

    static func endpoint(_ address: String, server: String) -> String { FleetStatusView.endpoint(address, server: server) }

    static func serverHealth(live: LiveState, desired: DesiredState?, gateway: String?) -> [ServerHealth] {
        var names = Set(live.servers.map(\.name))
        for d in desired?.servers ?? [] { names.insert(d.name) }
        let liveIndex = Dictionary(live.servers.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let desiredIndex = desired?.serverIndex() ?? [:]
        return names.sorted().map { name in
            let s = liveIndex[name].map { live.servers[$0] }, d = desiredIndex[name].map { desired!.servers[$0] }
            return ServerHealth(name: name, tenant: s?.tenant ?? d?.tenant ?? "default", endpoint: gateway.map { endpoint($0, server: name) },
                                phase: s?.phase.rawValue ?? "absent", desiredReplicas: d?.replicas, readyReplicas: s?.readyReplicas ?? 0,
                                servingRevision: s?.servingRevision?.revision, targetRevision: s?.targetRevision)
        }
    }

    /// The access log for an environment: the flag's path ("-" is standard error, "" off), else
    /// `<stateDir>/gateway-access.log` for host drivers and standard error on Kubernetes.
    static func accessLog(flag: String?, environment: Environment) throws -> AccessLog {
        let path: String
        if let flag {
            if flag.isEmpty { return .off }
            path = flag
        } else if environment.driver == .kubernetes {
            path = "-"
        } else {
            let dir = absolute(environment.effectiveStateDir, against: FileManager.default.currentDirectoryPath)
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            path = dir + "/gateway-access.log"
        }
        do { return try AccessLog.file(path) } catch { throw CommandFailure(message: "\(error)") }
    }
}

extension GatewayWiring {
    /// The HTTP stack for an environment (limits from `spec.gateway`, the signing key, the access log),
    /// its metrics on `registry` beside the controller's.
    static func server(environment: Environment, manifestRoot: String, traffic: Traffic, ops: OpsEndpoints,
                       accessLog flag: String?, logger: Logger) throws -> GatewayServer {
        GatewayServer(state: traffic.state, metrics: traffic.gatewayMetrics, signer: try signer(environment, manifestRoot: manifestRoot),
                             ops: ops, accessLog: try accessLog(flag: flag, environment: environment), logger: logger)
    }
}

/// Route policies (tokens, rate limits) as of the manifests on disk: re-read when the directory
/// changes. A catalog that stops loading, or a token file that disappears, keeps the last good
/// policies (the error is logged by the gateway's refresh), so a bad edit never opens a route.
actor GatewayPolicies {
    let path: String
    let environment: Environment
    let manifestRoot: String
    /// How the files are told changed: the controller's manifest source (inotify) where there is one,
    /// else a walk of the files on every call.
    let fingerprintFiles: @Sendable () -> String
    private var fingerprint: String?
    private var last: [String: RoutePolicy]?

    init(path: String, environment: Environment, manifestRoot: String, fingerprint: (@Sendable () -> String)? = nil) {
        self.path = path
        self.environment = environment
        self.manifestRoot = manifestRoot
        fingerprintFiles = fingerprint ?? { DirectoryFingerprint.compute(path) }
    }

    func current() throws -> [String: RoutePolicy] {
        let now = fingerprintFiles()
        if now == fingerprint, let last { return last }
        let loaded = LoadedCatalog.load(path: path)
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            if let last { return last }
            throw CommandFailure(message: "the catalog in \(path) is invalid; the gateway has no route policies")
        }
        let env = loaded.catalog.environment(environment.name) ?? environment
        let policies = try GatewayWiring.policies(loaded.catalog, environment: env, manifestRoot: manifestRoot)
        fingerprint = now
        last = policies
        return policies
    }
}
