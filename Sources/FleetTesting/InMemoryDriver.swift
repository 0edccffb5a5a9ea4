import FleetCore

/// A `RuntimeDriver` in memory, for controller tests: instances become ready after a configurable
/// number of `observe` calls; faults are injected per revision (never ready, failing calls).
/// Every state change is recorded in `trace`, so tests can check availability invariants over a run.
public actor InMemoryDriver: RuntimeDriver {
    public struct Instance: Sendable, Hashable {
        public var id: String
        public var observed: Int
        /// Times the instance's process was restarted (`restart(server:)`), reported as `restarts`.
        public var restarts = 0
    }

    struct Group {
        var spec: DesiredServer
        var instances: [Instance]
    }

    struct ServerState {
        var tenant: String
        var groups: [String: Group]
    }

    /// One sample of a server's state after a change: revision → (replicas, ready).
    public struct Sample: Sendable, Hashable {
        public var server: String
        public var revisions: [String: Int]
        public var ready: [String: Int]
        public var total: Int { revisions.values.reduce(0, +) }
        public var totalReady: Int { ready.values.reduce(0, +) }
    }

    public nonisolated let kind: DriverKind
    private var servers: [String: ServerState] = [:]
    private var tenants: [String: DesiredTenant] = [:]
    private var counter = 0
    /// Observe calls after which a new instance counts as ready.
    public var readyAfterObserves: Int
    /// Revisions whose instances never become ready (a server that exits at once or fails its probe).
    public var neverReady: Set<String> = []
    /// Calls to these operations throw (`scale`, `observe`, ...), to test retries.
    public var failingOperations: Set<String> = []
    /// Revisions whose instances cannot start: scaling them up throws a terminal `DriverError` (as a
    /// host driver does for a missing executable or secret).
    public var unstartable: [String: String] = [:]
    public private(set) var calls: [String] = []
    /// How long each `scale` takes before it acts (an API server's round trip under throttling).
    public var scaleDelayMs: Int64 = 0
    /// Calls of `rescale` (resizing a group from the spec it keeps).
    public private(set) var rescales = 0
    /// The specs `scale` was given per `server@revision` (each distinct one in a row once): a real driver
    /// redefines the revision from each, so tests check no other revision's definition reached one.
    private var scaledSpecs: [String: [DesiredServer]] = [:]
    public func specsScaled(server: String, revision: String) -> [DesiredServer] { scaledSpecs["\(server)@\(revision)"] ?? [] }
    /// Observations of everything (`observe()`, `observe(.all)`) and of one server (`observe(.server)`).
    public private(set) var fullObservations = 0
    public private(set) var serverObservations = 0
    /// Calls of `start()` and `stop()` (the controller's lifecycle).
    public private(set) var starts = 0
    public private(set) var stops = 0
    public private(set) var trace: [Sample] = []
    /// Ports of real servers standing in for a revision's instances (instance i answers on port i mod count);
    /// none: no endpoints, probes are skipped.
    public var portsByRevision: [String: [Int]] = [:]

    public init(kind: DriverKind = .local, readyAfterObserves: Int = 1) {
        self.kind = kind
        self.readyAfterObserves = readyAfterObserves
    }

    public func setNeverReady(_ revisions: Set<String>) { neverReady = revisions }
    public func setReadyAfterObserves(_ n: Int) { readyAfterObserves = n }
    public func setFailing(_ operations: Set<String>) { failingOperations = operations }
    public func setUnstartable(_ revision: String, _ message: String?) { unstartable[revision] = message }
    public func setPorts(_ ports: [Int], revision: String) { portsByRevision[revision] = ports }
    public func setScaleDelay(ms: Int64) { scaleDelayMs = ms }

    private func check(_ op: String, _ resource: String) throws {
        calls.append("\(op) \(resource)")
        if failingOperations.contains(op) { throw DriverError(resource, "injected failure of \(op)") }
    }

    private func isReady(_ i: Instance, revision: String) -> Bool {
        !neverReady.contains(revision) && i.observed >= readyAfterObserves
    }

    private func sample(_ name: String) {
        guard let s = servers[name] else { return }
        var revs: [String: Int] = [:], ready: [String: Int] = [:]
        for (rev, g) in s.groups {
            revs[rev] = g.instances.count
            ready[rev] = g.instances.filter { isReady($0, revision: rev) }.count
        }
        trace.append(Sample(server: name, revisions: revs, ready: ready))
    }

    public func observe() async throws -> LiveState {
        try check("observe", "runtime")
        fullObservations += 1
        for name in servers.keys { age(name) }
        return snapshot()
    }

    /// One server's observation ages only that server's instances (as a driver's cache answers for it alone).
    public func observe(_ scope: ObserveScope) async throws -> LiveState {
        guard case .server(let name) = scope else { return try await observe() }
        try check("observe", "server/\(name)")
        serverObservations += 1
        age(name)
        return snapshot().scoped(to: scope)
    }

    public func start() async throws { starts += 1 }
    public func stop() async { stops += 1 }

    /// Zeroes the observation counters (to count one pass).
    public func resetObservations() {
        fullObservations = 0
        serverObservations = 0
    }

    private func age(_ name: String) {
        guard servers[name] != nil else { return }
        for rev in servers[name]!.groups.keys {
            for i in servers[name]!.groups[rev]!.instances.indices { servers[name]!.groups[rev]!.instances[i].observed += 1 }
        }
        sample(name)
    }

    /// Whether instances report their restart count (as host drivers and Kubernetes do); off by default.
    public var reportsRestarts = false
    public func setReportsRestarts(_ on: Bool) { reportsRestarts = on }

    /// Restarts every instance of `server` in place (same ids, a new run: `restarts` goes up).
    public func restart(server: String) {
        guard var s = servers[server] else { return }
        for rev in s.groups.keys { for i in s.groups[rev]!.instances.indices { s.groups[rev]!.instances[i].restarts += 1 } }
        servers[server] = s
    }

    /// The state as `observe` would report it, without ageing instances.
    public func snapshot() -> LiveState {
        let live = servers.keys.sorted().map { name -> LiveServer in
            let s = servers[name]!
            let revs = s.groups.keys.sorted().map { rev -> LiveRevision in
                let g = s.groups[rev]!
                let instances = g.instances.map { i in
                    LiveInstance(id: i.id, revision: rev, state: isReady(i, revision: rev) ? .running : .starting, healthy: isReady(i, revision: rev),
                                 restarts: reportsRestarts ? i.restarts : nil)
                }
                return LiveRevision(revision: rev, version: g.spec.version, replicas: g.instances.count,
                                    ready: instances.filter(\.healthy).count, fields: g.spec.fields, instances: instances)
            }
            return LiveServer(name: name, tenant: s.tenant, revisions: revs)
        }
        let liveTenants = tenants.values.sorted { $0.name < $1.name }.map { LiveTenant(name: $0.name, fields: $0.fields) }
        return LiveState(driver: kind.rawValue, servers: live, tenants: liveTenants)
    }

    public func ensureTenant(_ tenant: DesiredTenant) async throws {
        try check("ensureTenant", "tenant/\(tenant.name)")
        tenants[tenant.name] = tenant
    }

    public func removeTenant(named name: String) async throws {
        try check("removeTenant", "tenant/\(name)")
        tenants[name] = nil
    }

    public func scale(_ server: DesiredServer, replicas: Int) async throws {
        if scaleDelayMs > 0 { try await Task.sleep(for: .milliseconds(scaleDelayMs)) }
        try check("scale", "server/\(server.name)@\(server.revision)=\(replicas)")
        if let message = unstartable[server.revision], replicas > (servers[server.name]?.groups[server.revision]?.instances.count ?? 0) {
            throw DriverError("server/\(server.name)", message, terminal: true)
        }
        var s = servers[server.name] ?? ServerState(tenant: server.tenant, groups: [:])
        var g = s.groups[server.revision] ?? Group(spec: server, instances: [])
        let key = "\(server.name)@\(server.revision)"
        if scaledSpecs[key]?.last != server { scaledSpecs[key, default: []].append(server) }
        resize(&g, revision: server.revision, server: server.name, replicas: replicas)
        s.groups[server.revision] = g
        servers[server.name] = s
        sample(server.name)
    }

    /// Resizes the group from the spec it keeps; counted in `rescales` (and `calls`) so tests see which path ran.
    public func rescale(server: String, revision: String, tenant: String, replicas: Int) async throws {
        try check("rescale", "server/\(server)@\(revision)=\(replicas)")
        rescales += 1
        guard var g = servers[server]?.groups[revision] else {
            if replicas == 0 { return }
            throw DriverError.noKeptDefinition(server: server, revision: revision)
        }
        if let message = unstartable[revision], replicas > g.instances.count {
            throw DriverError("server/\(server)", message, terminal: true)
        }
        resize(&g, revision: revision, server: server, replicas: replicas)
        servers[server]!.groups[revision] = g
        sample(server)
    }

    private func resize(_ g: inout Group, revision: String, server: String, replicas: Int) {
        while g.instances.count < replicas {
            counter += 1
            g.instances.append(Instance(id: "\(server)-\(revision)-\(counter)", observed: 0))
        }
        if g.instances.count > replicas {
            // Stop instances that are not ready first, then the newest (as Kubernetes' ReplicaSet does).
            let rev = revision
            let ordered = g.instances.enumerated().sorted { a, b in
                let ra = isReady(a.element, revision: rev), rb = isReady(b.element, revision: rev)
                return ra != rb ? !ra : a.offset > b.offset
            }
            let drop = Set(ordered.prefix(g.instances.count - replicas).map(\.element.id))
            g.instances.removeAll { drop.contains($0.id) }
        }
    }

    public func removeRevision(server: String, revision: String) async throws {
        try check("removeRevision", "server/\(server)@\(revision)")
        servers[server]?.groups[revision] = nil
        sample(server)
    }

    public func removeServer(named name: String) async throws {
        try check("removeServer", "server/\(name)")
        servers[name] = nil
    }

    public func endpoints(server: String, revision: String) async throws -> [Endpoint] {
        guard let ports = portsByRevision[revision], !ports.isEmpty, let g = servers[server]?.groups[revision] else { return [] }
        return g.instances.enumerated().map { i, instance in
            Endpoint(instance: instance.id, host: "127.0.0.1", port: ports[i % ports.count], path: g.spec.path)
        }
    }

    /// The spec a revision group was created with (what the controller passed to `scale`).
    public func spec(server: String, revision: String) -> DesiredServer? { servers[server]?.groups[revision]?.spec }
}
