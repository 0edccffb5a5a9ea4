public import FleetCore
public import FleetHTTP
import Foundation

public struct KubernetesDriverOptions: Sendable, Hashable {
    /// The controller's namespace: strict tenants admit probes from it; the rollout store lives there.
    public var controllerNamespace: String
    /// Recorded on every Deployment the driver applies.
    public var manifestCommit: String?
    public var qps: Double
    public var burst: Int
    public var retry: RetryPolicy
    /// Take ownership of fields another field manager owns (`force=true`); off by default so that a
    /// hand edit (`kubectl scale`, `kubectl edit`) is reported as a conflict instead of overwritten.
    public var forceConflicts: Bool
    /// Every write is sent with `dryRun=All`: validated and admitted by the API server, persisted nowhere.
    public var dryRun: Bool
    /// Requests in flight for bulk operations (`applyAll`, observe's per-namespace lists).
    public var concurrency: Int
    /// The live-state cache (after `start()`): how its watches are kept alive. Set `stallTimeout` to the
    /// controller's resync interval, so a watch that silently stopped is relisted within it.
    public var cache: InformerConfiguration
    /// How long `observe` waits for the cache's first lists before it reports the API server unreachable.
    public var cacheSyncTimeout: Duration

    public init(controllerNamespace: String = "mcpfleet-system", manifestCommit: String? = nil, qps: Double = 50, burst: Int = 100,
                retry: RetryPolicy = .default, forceConflicts: Bool = false, dryRun: Bool = false, concurrency: Int = 16,
                cache: InformerConfiguration = InformerConfiguration(), cacheSyncTimeout: Duration = .seconds(60)) {
        self.controllerNamespace = controllerNamespace
        self.manifestCommit = manifestCommit
        self.qps = qps
        self.burst = burst
        self.retry = retry
        self.forceConflicts = forceConflicts
        self.dryRun = dryRun
        self.concurrency = concurrency
        self.cache = cache
        self.cacheSyncTimeout = cacheSyncTimeout
    }
}

/// What a Deployment's status says, read the way `kubectl rollout status` reads it.
public struct DeploymentStatus: Sendable, Hashable {
    public struct Condition: Sendable, Hashable {
        public var type: String
        public var status: String
        public var reason: String?
        public var message: String?
    }

    public var replicas: Int
    public var readyReplicas: Int
    public var updatedReplicas: Int
    public var availableReplicas: Int
    /// False while the Deployment controller has not yet seen the latest spec: counts may be stale.
    public var observed: Bool
    public var conditions: [Condition]

    public init(_ deployment: KubeObject) {
        let json = deployment.json
        replicas = json[["spec", "replicas"]]?.int ?? 1
        readyReplicas = json[["status", "readyReplicas"]]?.int ?? 0
        updatedReplicas = json[["status", "updatedReplicas"]]?.int ?? 0
        availableReplicas = json[["status", "availableReplicas"]]?.int ?? 0
        let observedGeneration = json[["status", "observedGeneration"]]?.int ?? 0
        observed = observedGeneration >= (deployment.generation ?? 0)
        conditions = (json[["status", "conditions"]]?.array ?? []).map {
            Condition(type: $0["type"]?.string ?? "", status: $0["status"]?.string ?? "", reason: $0["reason"]?.string, message: $0["message"]?.string)
        }
    }

    /// Pods of this revision that count as ready: never more than desired, and only pods of the
    /// current template once the controller has observed the spec.
    public var ready: Int {
        var r = min(readyReplicas, replicas)
        if observed { r = min(r, updatedReplicas) }
        return max(0, r)
    }

    /// `Progressing=False` with `ProgressDeadlineExceeded`, or `ReplicaFailure=True` (quota, admission).
    public var failureReason: String? {
        if let c = conditions.first(where: { $0.type == "ReplicaFailure" && $0.status == "True" }) { return c.message ?? c.reason ?? "ReplicaFailure" }
        if let c = conditions.first(where: { $0.type == "Progressing" && $0.status == "False" }) { return c.message ?? c.reason ?? "not progressing" }
        return nil
    }
}

/// The Kubernetes runtime: one namespace per tenant, one Deployment per server revision, one Service
/// per server, all written by server-side apply as field manager `spec.kubernetes.fieldManager`.
///
/// Until `start()`, every `observe` lists what it covers. After it, a live-state cache (LIST + WATCH per
/// resource type, `KubernetesLiveCache`) answers `observe`, `endpoints` and the driver's own "does it
/// exist" questions, and the results of its own writes go into the cache at once: a reconcile reads no
/// more from the API server. The rollout store from `rolloutStore()` is cached the same way.
public final class KubernetesDriver: RuntimeDriver {
    public let kind: DriverKind = .kubernetes
    public let environment: Environment
    public let client: KubeClient
    public let options: KubernetesDriverOptions
    public let renderOptions: KubernetesRenderOptions
    private let cache = DriverCache()
    let liveCache: KubernetesLiveCache
    private let storeBox = StoreBox()
    private let revisionFields = RevisionFieldsCache()

    public init(environment: Environment, config: ClusterConfig, transport: (any HTTPTransport)? = nil, options: KubernetesDriverOptions = KubernetesDriverOptions()) throws {
        self.environment = environment
        self.options = options
        client = try KubeClient(config: config, transport: transport, fieldManager: environment.kubernetes?.fieldManager ?? "mcpfleet",
                                qps: options.qps, burst: options.burst, retry: options.retry)
        renderOptions = KubernetesRenderOptions(environment: environment, controllerNamespace: options.controllerNamespace, manifestCommit: options.manifestCommit)
        liveCache = KubernetesLiveCache(client: client, configuration: options.cache)
    }

    deinit { liveCache.stopWithoutWaiting() }

    // MARK: Lifecycle

    /// Starts the live-state cache (and the cache of the store `rolloutStore()` returned) and waits for
    /// their first lists. Idempotent.
    public func start() async throws {
        liveCache.start()
        let store = storeBox.value
        store?.start()
        try await liveCache.waitUntilSynced(timeout: options.cacheSyncTimeout)
        try await store?.waitUntilSynced(timeout: options.cacheSyncTimeout)
    }

    /// Stops the watches; `observe` lists again until the next `start()`.
    public func stop() async {
        await liveCache.stop()
        await storeBox.value?.stop()
    }

    /// The rollout store of this driver's cluster (ConfigMaps in the controller namespace), sharing its
    /// client; `start()` and `stop()` start and stop its cache too (it starts at once when the driver
    /// already runs). The same store on every call.
    public func rolloutStore() -> KubernetesRolloutStore {
        let store = storeBox.get { KubernetesRolloutStore(client: client, namespace: options.controllerNamespace, cache: options.cache) }
        if liveCache.isRunning { store.start() }
        return store
    }

    /// Scopes whose live state changed, from the cache's watches (a server, or `.all` after a relist).
    /// Ends when the driver stops. Empty unless started.
    public func changes() -> AsyncStream<ObserveScope> { liveCache.changes() }

    public func liveChanges() -> AsyncStream<ObserveScope>? { liveCache.changes() }

    /// The cache's informers and their counters (lists, watches, relists, stalls, events), by name.
    public var cacheStatistics: [String: InformerStatistics] { liveCache.statistics }

    // MARK: Tenants

    public func ensureTenant(_ tenant: DesiredTenant) async throws {
        let ns = KubernetesRenderer.namespace(for: tenant, options: renderOptions)
        var objects = KubernetesRenderer.tenantObjects(tenant, options: renderOptions)
        // A namespace mcpfleet did not create is used but never claimed (and so never deleted). The cache
        // holds mcpfleet's own namespaces: one found there needs no read.
        let adopted: Bool
        // A namespace that did not exist holds nothing to remove (a cold converge sends no deletes).
        var fresh = false
        if liveCache.isRunning, liveCache.hasManagedNamespace(ns) {
            adopted = false
        } else {
            let existing = try await call { try await self.client.getIfPresent(.namespace, namespace: nil, name: ns) }
            adopted = existing.map { $0.labels[KubernetesRenderer.labelManagedBy] != KubernetesRenderer.managedBy } ?? false
            fresh = existing == nil
        }
        if adopted { objects.removeAll { $0.kind == "Namespace" } } else if let first = objects.first {
            _ = try await apply(first)
            objects.removeFirst()
        }
        for object in objects { _ = try await apply(object) }
        let kinds = Set(objects.map(\.kind))
        // Isolation relaxed or quota dropped: remove what no longer applies.
        if !fresh, !kinds.contains("NetworkPolicy") { try await delete(.networkPolicy, ns, KubernetesRenderer.networkPolicyName) }
        if !fresh, !kinds.contains("ResourceQuota") { try await delete(.resourceQuota, ns, KubernetesRenderer.quotaName) }
        await cache.setTenant(tenant.name, namespace: ns, adopted: adopted)
    }

    public func removeTenant(named name: String) async throws {
        let selector = "\(KubernetesRenderer.labelTenant)=\(name),\(KubernetesRenderer.managedSelector)"
        let owned = try await call { try await self.client.list(.namespace, labelSelector: selector) }.items
        for ns in owned { try await delete(.namespace, nil, ns.name) }
        if let known = await cache.tenant(name), known.adopted {
            for (type, object) in [(ResourceType.networkPolicy, KubernetesRenderer.networkPolicyName), (.resourceQuota, KubernetesRenderer.quotaName),
                                   (.limitRange, KubernetesRenderer.limitRangeName)] {
                try await delete(type, known.namespace, object)
            }
        }
        await cache.removeTenant(name)
    }

    /// The namespace of a tenant: remembered from `ensureTenant`, else found by its label.
    func namespace(ofTenant tenant: String) async throws -> String {
        if let known = await cache.tenant(tenant) { return known.namespace }
        if liveCache.isRunning, let ns = liveCache.namespace(ofTenant: tenant) {
            await cache.setTenant(tenant, namespace: ns, adopted: false)
            return ns
        }
        let selector = "\(KubernetesRenderer.labelTenant)=\(tenant)"
        let found = try await call { try await self.client.list(.namespace, labelSelector: selector) }.items
        if let ns = found.first {
            await cache.setTenant(tenant, namespace: ns.name, adopted: ns.labels[KubernetesRenderer.labelManagedBy] != KubernetesRenderer.managedBy)
            return ns.name
        }
        // An adopted namespace carries no tenant label itself; its LimitRange does.
        let limits = try await call { try await self.client.list(.limitRange, labelSelector: "\(selector),\(KubernetesRenderer.managedSelector)") }.items
        if let ns = limits.first?.namespace {
            await cache.setTenant(tenant, namespace: ns, adopted: true)
            return ns
        }
        throw DriverError("tenant \(tenant)", "has no namespace yet (ensureTenant has not run)")
    }

    // MARK: Servers

    public func scale(_ server: DesiredServer, replicas: Int) async throws {
        let ns = try await namespace(ofTenant: server.tenant)
        let deployment: KubeObject
        let service: KubeObject
        let envSecret: KubeObject?
        let disruptionBudget: KubeObject?
        do {
            deployment = try KubernetesRenderer.deployment(server, namespace: ns, replicas: replicas, options: renderOptions)
            service = try KubernetesRenderer.service(server, namespace: ns)
            envSecret = try KubernetesRenderer.envSecret(server, namespace: ns)
            disruptionBudget = try KubernetesRenderer.podDisruptionBudget(server, namespace: ns)
        } catch {
            throw error.driverError
        }
        // The Service is the same for every revision; apply it once per content, not on every scale (and
        // again when the cache saw it deleted).
        let serviceGone = liveCache.isRunning && !liveCache.hasService(namespace: ns, name: service.name)
        let serviceCurrent = await cache.serviceIsCurrent(service)
        if serviceGone || !serviceCurrent {
            _ = try await apply(service)
            if !options.dryRun { await cache.markService(service) }
        }
        // The revision's sensitive env values first (its pods read them at start), the budget after.
        // Both are applied with the revision's first scale-up only, like the Service per content.
        if let envSecret, replicas > 0, await !cache.isCurrent(envSecret) {
            _ = try await apply(envSecret)
            if !options.dryRun { await cache.markApplied(envSecret, server: server.name) }
        }
        _ = try await apply(deployment)
        if let disruptionBudget, replicas > 0, await !cache.isCurrent(disruptionBudget) {
            _ = try await apply(disruptionBudget)
            if !options.dryRun { await cache.markApplied(disruptionBudget, server: server.name) }
        } else if disruptionBudget == nil, await cache.hasApplied(kind: "PodDisruptionBudget", namespace: ns, name: server.name) {
            // Down to one replica: a budget of "all but one" would block every drain.
            try await delete(.podDisruptionBudget, ns, KubernetesRenderer.podDisruptionBudgetName(server: server.name))
            await cache.forgetApplied(kind: "PodDisruptionBudget", namespace: ns, name: server.name)
        }
    }

    /// A JSON merge patch of the revision's Deployment's `spec.replicas` alone: its pod template (image,
    /// command, env) stays what was applied when the revision was rendered.
    public func rescale(server: String, revision: String, tenant: String, replicas: Int) async throws {
        guard replicas >= 0 else { throw DriverError("server/\(server)", "replicas must not be negative (got \(replicas))", terminal: true) }
        let ns = try await namespace(ofTenant: tenant)
        let name = KubernetesRenderer.deploymentName(server: server, revision: revision)
        let patch = JSONValue.obj(["spec": .obj(["replicas": .int(Int64(replicas))])])
        do {
            let patched = try await client.mergePatch(.deployment, namespace: ns, name: name, patch: patch, dryRun: options.dryRun)
            if !options.dryRun { liveCache.ingest(patched) }
        } catch let error as KubeError where error.isNotFound {
            guard replicas == 0 else { throw DriverError.noKeptDefinition(server: server, revision: revision) }
        } catch let error as KubeError {
            throw error.driverError
        }
    }

    public func removeRevision(server: String, revision: String) async throws {
        for ns in try await namespaces(ofServer: server) {
            try await delete(.deployment, ns, KubernetesRenderer.deploymentName(server: server, revision: revision))
            let secret = KubernetesRenderer.envSecretName(server: server, revision: revision)
            try await delete(.secret, ns, secret)
            await cache.forgetApplied(kind: "Secret", namespace: ns, name: secret)
        }
    }

    public func removeServer(named name: String) async throws {
        let deployments = try await managedDeployments(ofServer: name)
        var namespaces = Set(deployments.map(\.namespace))
        for d in deployments { try await delete(.deployment, d.namespace, d.name) }
        if let known = await cache.serverNamespace(name) { namespaces.insert(known) }
        for ns in namespaces.sorted() {
            try await delete(.podDisruptionBudget, ns, KubernetesRenderer.podDisruptionBudgetName(server: name))
            // Only a Service mcpfleet labelled as its own is deleted.
            if liveCache.isRunning {
                if liveCache.hasService(namespace: ns, name: name) { try await delete(.service, ns, name) }
                continue
            }
            let service = try await call { try await self.client.getIfPresent(.service, namespace: ns, name: name) }
            if let service, service.labels[KubernetesRenderer.labelManagedBy] == KubernetesRenderer.managedBy {
                try await delete(.service, ns, name)
            }
        }
        await cache.forgetServer(name)
    }

    func managedDeployments(ofServer server: String) async throws -> [(namespace: String, name: String)] {
        if liveCache.isRunning {
            try await liveCache.waitUntilSynced(timeout: options.cacheSyncTimeout)
            return liveCache.deployments(ofServer: server).map { ($0.namespace, $0.name) }
        }
        let selector = "\(KubernetesRenderer.labelInstance)=\(server),\(KubernetesRenderer.managedSelector)"
        return try await call { try await self.client.list(.deployment, labelSelector: selector) }.items.map { ($0.namespace ?? "", $0.name) }
    }

    func namespaces(ofServer server: String) async throws -> [String] {
        if let known = await cache.serverNamespace(server) { return [known] }
        return Array(Set(try await managedDeployments(ofServer: server).map(\.namespace))).sorted()
    }

    /// Pod IPs of the revision's running pods with the container port and the MCP path. Pod IPs are
    /// reachable from inside the cluster (where the controller runs); a controller outside the cluster
    /// gets addresses it may not be able to reach and should probe through the Service instead.
    public func endpoints(server: String, revision: String) async throws -> [Endpoint] {
        if liveCache.isRunning {
            try await liveCache.waitUntilSynced(timeout: options.cacheSyncTimeout)
            return liveCache.endpoints(server: server, revision: revision)
        }
        let selector = "\(KubernetesRenderer.labelInstance)=\(server),\(KubernetesRenderer.labelRevision)=\(revision),\(KubernetesRenderer.managedSelector)"
        let pods = try await call { try await self.client.list(.pod, labelSelector: selector) }.items
        return pods.compactMap(Self.endpoint).sorted { $0.instance < $1.instance }
    }

    /// Where a running pod answers (nil while it is not running or is being deleted).
    static func endpoint(_ pod: KubeObject) -> Endpoint? {
        let json = pod.json
        guard json[["status", "phase"]]?.string == "Running", json[["metadata", "deletionTimestamp"]] == nil,
              let ip = json[["status", "podIP"]]?.string, !ip.isEmpty else { return nil }
        let container = json[["spec", "containers"]]?.array?.first { $0["name"]?.string == "mcp" } ?? json[["spec", "containers"]]?.array?.first
        let port = container?["ports"]?.array?.first?["containerPort"]?.int ?? KubernetesRenderer.defaultPort
        let path = pod.annotations[KubernetesRenderer.annotationPath] ?? "/mcp"
        return Endpoint(instance: pod.name, host: ip, port: port, path: path)
    }

    // MARK: Observe

    public func observe() async throws -> LiveState { try await observe(.all) }

    /// From the cache once started (no request); before that, by listing what the scope covers: for
    /// `.all` every managed Namespace, Deployment and Pod and the unmanaged Deployments; for one server
    /// the managed Namespaces and that server's Deployments and Pods (five requests, whatever the size
    /// of the fleet).
    public func observe(_ scope: ObserveScope) async throws -> LiveState {
        // Revisions' fields come from the rollout store's revision records (RevisionFieldsCache), read
        // for a full observe without the cache (`plan`, `status`): a running controller's observes and
        // scoped observes cost no more requests than before.
        await revisionFields.filling(try await observeObjects(scope), readStore: scope == .all && !liveCache.isRunning) { self.rolloutStore() }
    }

    func observeObjects(_ scope: ObserveScope) async throws -> LiveState {
        if liveCache.isRunning {
            try await liveCache.waitUntilSynced(timeout: options.cacheSyncTimeout)
            return liveCache.objects(scope).liveState(environment: environment.name)
        }
        // Without the cache every full observe starts a fresh pass: Services are re-applied once, in case
        // someone deleted one.
        if scope == .all { await cache.resetServices() }
        let objects = try await list(scope)
        for ns in objects.namespaces {
            if let tenant = ns.tenant { await cache.setTenant(tenant, namespace: ns.name, adopted: false) }
        }
        for d in objects.deployments { await cache.setServerNamespace(d.server, d.namespace) }
        return objects.liveState(environment: environment.name)
    }

    func list(_ scope: ObserveScope) async throws -> ObservedObjects {
        let managed = KubernetesRenderer.managedSelector
        let unmanaged = "\(KubernetesRenderer.labelManagedBy)!=\(KubernetesRenderer.managedBy)"
        let serverSelector: String
        if case .server(let name) = scope { serverSelector = "\(KubernetesRenderer.labelInstance)=\(name),\(managed)" } else { serverSelector = managed }
        async let namespaceList = call { try await self.client.list(.namespace, labelSelector: managed) }
        async let deploymentList = call { try await self.client.list(.deployment, labelSelector: serverSelector) }
        async let podList = call { try await self.client.list(.pod, labelSelector: serverSelector) }
        var objects = ObservedObjects()
        objects.namespaces = try await namespaceList.items.map(CachedNamespace.init)
        objects.deployments = try await deploymentList.items.compactMap(CachedDeployment.managed)
        objects.pods = try await podList.items.compactMap(CachedPod.init)
        // Deployments mcpfleet does not manage (only those in its namespaces are reported): all of them,
        // or those named after the server or labelled with it.
        switch scope {
        case .all:
            objects.foreign = try await call { try await self.client.list(.deployment, labelSelector: unmanaged) }.items.compactMap(CachedDeployment.foreign)
        case .server(let name):
            async let labelled = call { try await self.client.list(.deployment, labelSelector: "\(KubernetesRenderer.labelInstance)=\(name),\(unmanaged)") }
            async let named = call { try await self.client.list(.deployment, labelSelector: unmanaged, fieldSelector: "metadata.name=\(name)") }
            for d in try await labelled.items + named.items {
                if let f = CachedDeployment.foreign(d), f.server == name, !objects.foreign.contains(f) { objects.foreign.append(f) }
            }
        }
        return objects
    }

    static func instance(_ pod: KubeObject, revision: String) -> LiveInstance {
        let json = pod.json
        let phase = json[["status", "phase"]]?.string ?? "Pending"
        let ready = (json[["status", "conditions"]]?.array ?? []).contains { $0["type"]?.string == "Ready" && $0["status"]?.string == "True" }
        let statuses = json[["status", "containerStatuses"]]?.array ?? []
        let restarts = statuses.reduce(0) { $0 + ($1["restartCount"]?.int ?? 0) }
        let waiting = statuses.compactMap { $0[["state", "waiting", "reason"]]?.string }.first
        var state: LiveInstance.State
        switch phase {
        case "Running": state = .running
        case "Succeeded": state = .stopped
        case "Failed": state = .failed
        default: state = .starting
        }
        if json[["metadata", "deletionTimestamp"]] != nil { state = .stopping }
        if waiting == "CrashLoopBackOff" || waiting == "ImagePullBackOff" || waiting == "ErrImagePull" { state = .failed }
        let port = json[["spec", "containers"]]?.array?.first?["ports"]?.array?.first?["containerPort"]?.int
        return LiveInstance(id: pod.name, revision: revision, port: port, state: state, healthy: ready, reason: waiting, restarts: restarts)
    }

    // MARK: Plumbing

    /// Server-side apply; the object the API server returns goes into the cache (read your own writes).
    /// A conflict only with this driver's own field manager (`spec.replicas` set by `rescale`'s merge patch,
    /// an update rather than an apply) is taken back by a forced apply.
    func apply(_ object: KubeObject) async throws -> KubeObject {
        let applied: KubeObject
        do {
            applied = try await client.apply(object, force: options.forceConflicts, dryRun: options.dryRun)
        } catch let error as KubeError where error.isConflict && !error.conflicts.isEmpty && error.conflicts.allSatisfy({ $0.manager == client.fieldManager }) {
            applied = try await call { try await self.client.apply(object, force: true, dryRun: self.options.dryRun) }
        } catch let error as KubeError {
            throw error.driverError
        }
        if !options.dryRun { liveCache.ingest(applied) }
        return applied
    }

    func delete(_ type: ResourceType, _ namespace: String?, _ name: String) async throws {
        try await call { _ = try await self.client.delete(type, namespace: namespace, name: name, propagation: .background, dryRun: self.options.dryRun) }
        if !options.dryRun { liveCache.forget(type, namespace: namespace, name: name) }
    }

    /// Runs an API call, turning `KubeError` into the `DriverError` the controller understands.
    func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as KubeError {
            throw error.driverError
        }
    }
}

/// The rollout store `rolloutStore()` made, if any.
final class StoreBox: @unchecked Sendable {
    private let lock = NSLock()
    private var store: KubernetesRolloutStore?
    var value: KubernetesRolloutStore? { lock.withLock { store } }
    func get(_ make: () -> KubernetesRolloutStore) -> KubernetesRolloutStore {
        lock.withLock {
            if let store { return store }
            let made = make()
            store = made
            return made
        }
    }
}

/// What the driver remembers between calls; everything here can be rebuilt from the cluster.
actor DriverCache {
    struct TenantInfo { var namespace: String; var adopted: Bool }

    private var tenants: [String: TenantInfo] = [:]
    private var serverNamespaces: [String: String] = [:]
    private var services: [String: JSONValue] = [:]

    func tenant(_ name: String) -> TenantInfo? { tenants[name] }
    func setTenant(_ name: String, namespace: String, adopted: Bool) {
        if let known = tenants[name], known.namespace == namespace, known.adopted { return }
        tenants[name] = TenantInfo(namespace: namespace, adopted: adopted)
    }
    func removeTenant(_ name: String) { tenants[name] = nil }

    func serverNamespace(_ server: String) -> String? { serverNamespaces[server] }
    func setServerNamespace(_ server: String, _ ns: String) { serverNamespaces[server] = ns }

    func serviceIsCurrent(_ service: KubeObject) -> Bool { services["\(service.namespace ?? "")/\(service.name)"] == service.json }
    func markService(_ service: KubeObject) {
        services["\(service.namespace ?? "")/\(service.name)"] = service.json
        if let ns = service.namespace { serverNamespaces[service.name] = ns }
    }
    func resetServices() { services = [:]; applied = [:] }
    func forgetServer(_ server: String) {
        serverNamespaces[server] = nil
        services = services.filter { !$0.key.hasSuffix("/\(server)") }
        applied = applied.filter { $0.value.server != server }
    }

    /// A server's other objects (its revisions' env Secrets, its PodDisruptionBudget) as last applied.
    private var applied: [String: (server: String, json: JSONValue)] = [:]
    func isCurrent(_ object: KubeObject) -> Bool { applied["\(object.kind)/\(object.namespace ?? "")/\(object.name)"]?.json == object.json }
    func markApplied(_ object: KubeObject, server: String) { applied["\(object.kind)/\(object.namespace ?? "")/\(object.name)"] = (server, object.json) }
    func forgetApplied(kind: String, namespace: String, name: String) { applied["\(kind)/\(namespace)/\(name)"] = nil }
    func hasApplied(kind: String, namespace: String, name: String) -> Bool { applied["\(kind)/\(namespace)/\(name)"] != nil }
}

extension KubernetesDriver: ScaleDownTargeting {
    /// `controller.kubernetes.io/pod-deletion-cost` tells a ReplicaSet which of its ready pods to delete
    /// first (the lowest cost); `removing` get `deletionCostRemove`, `keeping` `deletionCostKeep`.
    public static let deletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"
    public static let deletionCostRemove = -1000
    public static let deletionCostKeep = 1000

    /// Annotates the pods (a merge patch each; a pod already gone is skipped).
    public func targetScaleDown(server: String, revision: String, tenant: String, removing: [String], keeping: [String]) async throws {
        let ns = try await namespace(ofTenant: tenant)
        for (pods, cost) in [(removing, Self.deletionCostRemove), (keeping, Self.deletionCostKeep)] {
            for pod in pods {
                let patch = JSONValue.obj(["metadata": .obj(["annotations": .obj([Self.deletionCostAnnotation: .string(String(cost))])])])
                do {
                    let patched = try await client.mergePatch(.pod, namespace: ns, name: pod, patch: patch, dryRun: options.dryRun)
                    if !options.dryRun { liveCache.ingest(patched) }
                } catch let error as KubeError where error.isNotFound {
                    continue
                } catch let error as KubeError {
                    throw error.driverError
                }
            }
        }
    }
}
