import FleetCore
import Foundation

/// What the driver keeps of a Namespace.
struct CachedNamespace: Sendable, Hashable {
    var name: String
    var tenant: String?
    var fields: [SpecField]?

    init(_ object: KubeObject) {
        name = object.name
        tenant = object.labels[KubernetesRenderer.labelTenant]
        fields = KubernetesRenderer.decodeFields(object.annotations[KubernetesRenderer.annotationFields])
    }
}

/// What the driver keeps of a Deployment (a revision group, or a Deployment someone else made).
struct CachedDeployment: Sendable, Hashable {
    var namespace: String
    var name: String
    /// The server it belongs to: the instance label (for a foreign Deployment without one, its name).
    var server: String
    var revision: String?
    var tenant: String?
    var version: String?
    /// From the `mcpfleet.io/fields` annotation of a Deployment an older mcpfleet made; else nil, and
    /// the driver adds them from the rollout store's revision records.
    var fields: [SpecField]?
    /// Set when the containers no longer match the spec digest mcpfleet recorded (edited by hand).
    var drift: String?
    var replicas: Int
    var ready: Int

    /// A Deployment mcpfleet manages: nil without the instance and revision labels.
    static func managed(_ object: KubeObject) -> CachedDeployment? {
        let labels = object.labels
        guard let server = labels[KubernetesRenderer.labelInstance], let revision = labels[KubernetesRenderer.labelRevision] else { return nil }
        return CachedDeployment(object, server: server, revision: revision)
    }

    static func foreign(_ object: KubeObject) -> CachedDeployment? {
        CachedDeployment(object, server: object.labels[KubernetesRenderer.labelInstance] ?? object.name, revision: nil)
    }

    private init(_ object: KubeObject, server: String, revision: String?) {
        let status = DeploymentStatus(object)
        let annotations = object.annotations
        namespace = object.namespace ?? ""
        name = object.name
        self.server = server
        self.revision = revision
        tenant = object.labels[KubernetesRenderer.labelTenant]
        version = annotations[KubernetesRenderer.annotationVersion]
        fields = revision == nil ? nil : KubernetesRenderer.decodeFields(annotations[KubernetesRenderer.annotationFields])
        if revision != nil, let recorded = annotations[KubernetesRenderer.annotationSpecDigest],
           let live = KubernetesRenderer.specDigest(ofDeployment: object.json), live != recorded {
            drift = "Deployment \(namespace)/\(name) was edited outside mcpfleet: its containers (image, command, args, env or ports) "
                + "no longer match what mcpfleet applied (\(recorded.prefix(19))…, now \(live.prefix(19))…)"
        }
        replicas = status.replicas
        ready = status.ready
    }
}

/// What the driver keeps of a Pod: its instance as `observe` reports it and, while it runs, its endpoint.
struct CachedPod: Sendable, Hashable {
    var server: String
    var revision: String
    var instance: LiveInstance
    var endpoint: Endpoint?

    init?(_ pod: KubeObject) {
        guard let server = pod.labels[KubernetesRenderer.labelInstance], let revision = pod.labels[KubernetesRenderer.labelRevision] else { return nil }
        self.server = server
        self.revision = revision
        instance = KubernetesDriver.instance(pod, revision: revision)
        endpoint = KubernetesDriver.endpoint(pod)
    }

    var revisionKey: String { server + "/" + revision }
}

/// The tenants mcpfleet's namespaces stand for, and which namespaces are mcpfleet's.
struct TenantIndex {
    var tenants: [LiveTenant]
    var tenantOfNamespace: [String: String?]

    init(_ namespaces: [CachedNamespace]) {
        var tenants: [LiveTenant] = []
        var tenantOfNamespace: [String: String?] = [:]
        for ns in namespaces {
            tenantOfNamespace[ns.name] = ns.tenant
            guard let tenant = ns.tenant else { continue }
            tenants.append(LiveTenant(name: tenant, managed: true, fields: ns.fields))
        }
        self.tenants = tenants.sorted { $0.name < $1.name }
        self.tenantOfNamespace = tenantOfNamespace
    }
}

/// The objects one observation is made of, from lists or from the informers' caches.
struct ObservedObjects {
    var namespaces: [CachedNamespace] = []
    /// Made from `namespaces` when not given (the cache keeps one, rebuilt when a namespace changes).
    var tenantIndex: TenantIndex?
    var deployments: [CachedDeployment] = []
    var pods: [CachedPod] = []
    /// Deployments in mcpfleet's tenant namespaces that mcpfleet does not manage.
    var foreign: [CachedDeployment] = []

    /// The live state these objects describe: the same from lists and from the cache.
    func liveState(environment: String) -> LiveState {
        let index = tenantIndex ?? TenantIndex(namespaces)
        let tenantOfNamespace = index.tenantOfNamespace
        var podsByRevision: [String: [LiveInstance]] = [:]
        for pod in pods { podsByRevision[pod.revisionKey, default: []].append(pod.instance) }

        var servers: [String: LiveServer] = [:]
        for d in deployments {
            guard let revision = d.revision else { continue }
            let instances = podsByRevision[d.server + "/" + revision]?.sorted { $0.id < $1.id }
            var live = LiveRevision(revision: revision, version: d.version, replicas: d.replicas, ready: d.ready, fields: d.fields, instances: instances)
            live.drift = d.drift
            servers[d.server, default: LiveServer(name: d.server, tenant: d.tenant, revisions: [])].revisions.append(live)
        }
        // Deployments in tenant namespaces that mcpfleet does not manage are reported as unmanaged, so a
        // plan can say a name is taken and pruning never touches them.
        for d in foreign.sorted(by: { ($0.namespace, $0.name) < ($1.namespace, $1.name) }) where servers[d.server] == nil {
            guard let tenant = tenantOfNamespace[d.namespace] else { continue }  // only mcpfleet's namespaces
            servers[d.server] = LiveServer(name: d.server, tenant: tenant, managed: false,
                                           revisions: [LiveRevision(revision: d.name, replicas: d.replicas, ready: d.ready)])
        }
        var list = Array(servers.values)
        for i in list.indices { list[i].revisions.sort { $0.revision < $1.revision } }
        return LiveState(environment: environment, driver: DriverKind.kubernetes.rawValue,
                         servers: list.sorted { $0.name < $1.name }, tenants: index.tenants)
    }
}

/// The Kubernetes driver's live-state cache: one informer (LIST + WATCH) per resource type the driver
/// owns — Namespaces, Deployments, Pods and Services labelled `app.kubernetes.io/managed-by=mcpfleet` —
/// and one for the Deployments *not* so labelled (kept as small projections; only those in
/// mcpfleet's namespaces are reported, as unmanaged servers). Five watches, whatever the number of
/// tenants or servers; steady state costs them (renewed once per `stallTimeout`) and nothing else.
/// Design: docs/designs/0008-live-state-cache.md.
final class KubernetesLiveCache: @unchecked Sendable {
    let client: KubeClient
    let configuration: InformerConfiguration
    let namespaces: Informer<CachedNamespace>
    let deployments: Informer<CachedDeployment>
    let pods: Informer<CachedPod>
    let services: Informer<String>
    let foreign: Informer<CachedDeployment>

    private let lock = NSLock()
    // Guarded by `lock`:
    private var running = false
    private var tenantIndex: TenantIndex?
    private var namespaceChanges = 0
    private var subscribers: [UUID: AsyncStream<ObserveScope>.Continuation] = [:]

    init(client: KubeClient, configuration: InformerConfiguration) {
        self.client = client
        self.configuration = configuration
        let managed = KubernetesRenderer.managedSelector
        let unmanaged = "\(KubernetesRenderer.labelManagedBy)!=\(KubernetesRenderer.managedBy)"
        let box = WeakBox<KubernetesLiveCache>()
        namespaces = Informer(client: client, type: .namespace, labelSelector: managed, configuration: configuration,
                              transform: { CachedNamespace($0) },
                              onChange: { _ in box.value?.namespacesChanged() })
        deployments = Informer(client: client, type: .deployment, labelSelector: managed, configuration: configuration,
                               transform: CachedDeployment.managed, index: { $0.server },
                               onChange: { box.value?.notify($0, server: \.server) })
        pods = Informer(client: client, type: .pod, labelSelector: managed, configuration: configuration,
                        transform: CachedPod.init, index: { $0.server },
                        onChange: { box.value?.notify($0, server: \.server) })
        services = Informer(client: client, type: .service, labelSelector: managed, configuration: configuration,
                            transform: { $0.name })
        foreign = Informer(client: client, type: .deployment, labelSelector: unmanaged, configuration: configuration,
                           transform: CachedDeployment.foreign, index: { $0.server },
                           onChange: { box.value?.notify($0, server: \.server) })
        box.value = self
    }

    private var informers: [any InformerLifecycle] { [namespaces, deployments, pods, services, foreign] }

    var isRunning: Bool { lock.withLock { running } }

    func start() {
        lock.withLock { running = true }
        for informer in informers { informer.start() }
    }

    deinit { stopWithoutWaiting() }

    /// Stops every informer without waiting (for deinitializers).
    func stopWithoutWaiting() {
        lock.withLock { running = false }
        for informer in informers { informer.stopWithoutWaiting() }
    }

    func stop() async {
        lock.withLock { running = false }
        for informer in informers { await informer.stop() }
        let subs: [AsyncStream<ObserveScope>.Continuation] = lock.withLock {
            defer { subscribers = [:] }
            return Array(subscribers.values)
        }
        subs.forEach { $0.finish() }
    }

    /// Waits until every informer listed once.
    func waitUntilSynced(timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        for informer in informers { try await informer.waitUntilSynced(timeout: max(.zero, deadline - .now)) }
    }

    var statistics: [String: InformerStatistics] {
        Dictionary(informers.map { ($0.description, $0.statisticsValue) }, uniquingKeysWith: { a, _ in a })
    }

    // MARK: Reads

    func objects(_ scope: ObserveScope) -> ObservedObjects {
        var o = ObservedObjects()
        o.tenantIndex = currentTenantIndex()
        switch scope {
        case .all:
            o.deployments = deployments.items
            o.pods = pods.items
            o.foreign = foreign.items
        case .server(let name):
            o.deployments = deployments.items(indexedBy: name)
            o.pods = pods.items(indexedBy: name)
            o.foreign = foreign.items(indexedBy: name)
        }
        return o
    }

    func endpoints(server: String, revision: String) -> [Endpoint] {
        pods.items(indexedBy: server).filter { $0.revision == revision }.compactMap(\.endpoint).sorted { $0.instance < $1.instance }
    }

    func deployments(ofServer server: String) -> [CachedDeployment] { deployments.items(indexedBy: server) }

    /// Rebuilt only after a namespace changed: a scoped observe must not cost O(tenants).
    private func currentTenantIndex() -> TenantIndex {
        let (known, generation) = lock.withLock { (tenantIndex, namespaceChanges) }
        if let known { return known }
        let index = TenantIndex(namespaces.items)
        lock.withLock { if namespaceChanges == generation { tenantIndex = index } }  // unless a namespace changed meanwhile
        return index
    }

    fileprivate func namespacesChanged() {
        lock.withLock {
            tenantIndex = nil
            namespaceChanges += 1
        }
        publish(.all)
    }

    func namespace(ofTenant tenant: String) -> String? { namespaces.items.first { $0.tenant == tenant }?.name }

    func hasManagedNamespace(_ name: String) -> Bool { namespaces.item(namespace: nil, name: name) != nil }

    func hasService(namespace: String, name: String) -> Bool { services.item(namespace: namespace, name: name) != nil }

    // MARK: Own writes

    func ingest(_ object: KubeObject) {
        // Not reported as changes: the reconcile that wrote them knows (what the API server does next is).
        switch object.type {
        case .namespace?: namespaces.ingest(object, notifying: false)
        case .deployment?: deployments.ingest(object, notifying: false)
        case .service?: services.ingest(object, notifying: false)
        default: break
        }
    }

    func forget(_ type: ResourceType, namespace: String?, name: String) {
        switch type {
        case .namespace: namespaces.forget(namespace: nil, name: name)
        case .deployment: deployments.forget(namespace: namespace, name: name)
        case .service: services.forget(namespace: namespace, name: name)
        default: break
        }
    }

    // MARK: Changes

    /// Scopes whose live state changed (a server, or `.all` after a relist), for a controller that
    /// queues reconciles on changes rather than polling. Ends when the cache stops.
    func changes() -> AsyncStream<ObserveScope> {
        let (stream, continuation) = AsyncStream.makeStream(of: ObserveScope.self, bufferingPolicy: .bufferingNewest(4096))
        let id = UUID()
        lock.withLock { subscribers[id] = continuation }
        continuation.onTermination = { [weak self] _ in self?.lock.withLock { _ = self?.subscribers.removeValue(forKey: id) } }
        return stream
    }

    fileprivate func publish(_ scope: ObserveScope) {
        let subs = lock.withLock { Array(subscribers.values) }
        for s in subs { s.yield(scope) }
    }

    fileprivate func notify<Item: Hashable>(_ change: InformerChange<Item>, server: KeyPath<Item, String>) {
        switch change {
        case .upserted(let old, let new):
            if old == new { return }  // a change to nothing the driver reads (e.g. a managedFields edit)
            if let old, old[keyPath: server] != new[keyPath: server] { publish(.server(old[keyPath: server])) }
            publish(.server(new[keyPath: server]))
        case .deleted(let item): publish(.server(item[keyPath: server]))
        case .relisted: publish(.all)
        }
    }
}

/// Start/stop/sync of informers of any item type.
protocol InformerLifecycle: Sendable {
    func start()
    func stop() async
    func stopWithoutWaiting()
    func waitUntilSynced(timeout: Duration) async throws
    var description: String { get }
    var statisticsValue: InformerStatistics { get }
}

extension Informer: InformerLifecycle {
    var statisticsValue: InformerStatistics { statistics }
}

final class WeakBox<T: AnyObject>: @unchecked Sendable {
    private let lock = NSLock()
    private weak var object: T?
    var value: T? {
        get { lock.withLock { object } }
        set { lock.withLock { object = newValue } }
    }
}
