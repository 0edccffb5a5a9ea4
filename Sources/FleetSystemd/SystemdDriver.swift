import FleetCore
import FleetState
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One change of a batch; see `SystemdDriver.apply(batch:)`.
public enum SystemdOperation: Sendable, Hashable {
    case ensureTenant(DesiredTenant)
    case removeTenant(String)
    case scale(DesiredServer, replicas: Int)
    /// Resizes a revision from its unit template and revision record on disk, writing neither (`RuntimeDriver.rescale`).
    case rescale(server: String, revision: String, replicas: Int)
    case removeRevision(server: String, revision: String)
    case removeServer(String)
}

/// What the driver remembers about a revision it deployed (under the state directory), so `observe`
/// can report version, fields and ports without the manifests.
struct RevisionRecordFile: Codable, Hashable {
    var server: String
    var tenant: String
    var revision: String
    var version: String
    var port: Int?
    var path: String
    var fields: [SpecField]
}

struct TenantRecordFile: Codable, Hashable {
    var name: String
    var fields: [SpecField]
}

/// Runs MCP servers as hardened systemd units (see `SystemdRenderer` and docs/designs/0002-systemd-units.md).
///
/// Every call states an end state and is idempotent. A batch writes every file first, then runs one
/// `daemon-reload` (only if a unit file changed), then one `systemctl start` for every instance to
/// start; `reloadCount` counts reloads so benchmarks can hold it to one per batch.
public actor SystemdDriver: RuntimeDriver {
    public nonisolated let kind: DriverKind = .systemd
    public nonisolated let renderer: SystemdRenderer
    public nonisolated let unitDirectory: String
    public nonisolated let secretsDirectory: String?
    /// Where the runtime's file system is seen from this process: "" on the host, `/proc/PID/root` for
    /// a systemd in another mount namespace (the sandbox). Unit texts always use the runtime's paths.
    public nonisolated let fileSystemRoot: String
    let runner: any CommandRunner
    let environmentName: String

    public private(set) var reloadCount = 0
    public private(set) var systemctlCount = 0

    // The live-state cache (docs/designs/0008-live-state-cache.md): what the last `systemctl show` said
    // about each instance unit, the managed templates and tenants from the unit directory, and which
    // servers this driver changed since their units were last read.
    private var units: [String: ShownInstance] = [:]
    private var templates: [String: ManagedTemplate] = [:]
    private var tenantsSeen: [String: LiveTenant] = [:]
    private var listedAll = false
    /// Servers this driver changed, with the change's number: a read that began after it clears it.
    private var touched: [String: Int] = [:]
    private var changes = 0
    private let files = ParsedFiles()

    /// An instance that has restarted counts as healthy only after running this long without a crash.
    public static let stableAfterSeconds: Double = 10

    public init(environment: Environment, manifestRoot: String, runner: any CommandRunner = ProcessCommandRunner(), stateDirectory: String? = nil,
                fileSystemRoot: String = "") throws {
        guard environment.driver == .systemd else {
            throw DriverError("environment/\(environment.name)", "driver is \(environment.driver.rawValue), not systemd", terminal: true)
        }
        self.renderer = try SystemdRenderer(environment: environment, manifestRoot: manifestRoot, stateDirectory: stateDirectory)
        let settings = environment.systemd ?? SystemdSettings()
        _ = try SystemdSyntax.path(settings.unitDir, resource: "environment/\(environment.name)", what: "spec.systemd.unitDir", allowSpaces: false)
        self.unitDirectory = settings.unitDir
        if let s = environment.secretsDir {
            self.secretsDirectory = s.hasPrefix("/") ? s : (manifestRoot.hasSuffix("/") ? manifestRoot : manifestRoot + "/") + s
        } else {
            self.secretsDirectory = nil
        }
        self.fileSystemRoot = fileSystemRoot
        self.runner = runner
        self.environmentName = environment.name
    }

    // MARK: RuntimeDriver

    public func ensureTenant(_ tenant: DesiredTenant) async throws { try await apply(batch: [.ensureTenant(tenant)]) }
    public func removeTenant(named name: String) async throws { try await apply(batch: [.removeTenant(name)]) }
    public func scale(_ server: DesiredServer, replicas: Int) async throws { try await apply(batch: [.scale(server, replicas: replicas)]) }
    public func rescale(server: String, revision: String, tenant: String, replicas: Int) async throws {
        try await apply(batch: [.rescale(server: server, revision: revision, replicas: replicas)])
    }
    public func removeRevision(server: String, revision: String) async throws { try await apply(batch: [.removeRevision(server: server, revision: revision)]) }
    public func removeServer(named name: String) async throws { try await apply(batch: [.removeServer(name)]) }

    /// Restarts every instance of a revision, clearing a `start-limit-hit` (after fixing what crashed).
    public func restart(server: String, revision: String) async throws {
        let base = renderer.unitBase(server: server, revision: revision)
        let units = try await listInstances().filter { $0.base == base }.map(\.unit)
        guard !units.isEmpty else { return }
        defer { touch(server) }
        try await systemctl(["reset-failed"] + units, resource: "server/\(server)", tolerateFailure: true)
        try await systemctl(["restart"] + units, resource: "server/\(server)")
    }

    /// Applies many changes with one `daemon-reload`: stops, then file removals and writes, then the
    /// reload, then starts.
    public func apply(batch: [SystemdOperation]) async throws {
        var listed = try await listInstances()
        var toStop: [String] = [], toStart: [String] = [], toRestart: [String] = [], toResetFailed: [String] = []
        var unitsChanged = false
        var slicesToStop: [String] = []
        var removeAfterStop: [() throws -> Void] = []
        // Instances not started because another process holds their port (the batch's other work goes on).
        var refused: [(resource: String, reason: String)] = []
        var listeners: PortOwnership.Listeners?

        defer { noteOwnChanges(batch) }
        /// Starts or stops instances of one revision until `replicas` exist, from its template on disk.
        func resize(server name: String, revision: String, port: Int?, replicas: Int) throws {
            let resource = "server/\(name)"
            let base = renderer.unitBase(server: name, revision: revision)
            let mine = listed.filter { $0.base == base && $0.exists }
            if mine.count < replicas {
                // Slots are unique across the server's revisions, so old and new never share a port.
                var used = Set(listed.filter { $0.server == name && $0.exists }.map(\.slot))
                var slot = 0
                for _ in mine.count..<replicas {
                    while used.contains(slot) { slot += 1 }
                    used.insert(slot)
                    if let port {
                        let current = listeners ?? PortOwnership.Listeners.read()
                        listeners = current
                        if let holder = foreignHolder(port: port + slot, listeners: current) {
                            refused.append((resource, "not starting replica \(slot): port \(port + slot) is already in use by \(holder)"))
                            continue
                        }
                    }
                    try AtomicFileSystem.write(hostPath(renderer.instanceEnvironmentFile(unitBase: base, slot: slot)), renderer.instanceEnvironment(port: port, slot: slot))
                    let unit = renderer.instanceName(server: name, revision: revision, slot: slot)
                    toStart.append(unit)
                    toResetFailed.append(unit)
                    listed.append(ListedInstance(unit: unit, base: base, server: name, revision: revision, slot: slot, activeState: "activating", subState: "start"))
                }
            } else if mine.count > replicas {
                // Stop the unhealthy first, then the highest slots.
                let victims = mine.sorted { a, b in
                    let ar = a.activeState == "active", br = b.activeState == "active"
                    return ar != br ? !ar : a.slot > b.slot
                }.prefix(mine.count - replicas)
                for v in victims {
                    toStop.append(v.unit)
                    toStart.removeAll { $0 == v.unit }
                    listed.removeAll { $0.unit == v.unit }
                    let envFile = renderer.instanceEnvironmentFile(unitBase: base, slot: v.slot)
                    removeAfterStop.append { [self] in try AtomicFileSystem.remove(hostPath(envFile)) }
                }
            }
        }
        for op in batch {
            switch op {
            case .ensureTenant(let tenant):
                let unit = try renderer.sliceUnit(tenant)
                try checkOwnership(unit.name, resource: "tenant/\(tenant.name)")
                if try AtomicFileSystem.write(hostPath(unitDirectory + "/" + unit.name), unit.text) { unitsChanged = true }
                try writeJSON(TenantRecordFile(name: tenant.name, fields: tenant.fields), to: tenantRecordFile(tenant.name))

            case .removeTenant(let name):
                let slice = renderer.sliceName(tenant: name)
                let users = managedTemplates().filter { $0.tenant == name }
                if !users.isEmpty {
                    throw DriverError("tenant/\(name)", "still has servers (\(Set(users.map(\.server)).sorted().joined(separator: ", "))); remove them first")
                }
                if try removeManagedUnitFile(slice, resource: "tenant/\(name)") {
                    unitsChanged = true
                    slicesToStop.append(slice)
                }
                try AtomicFileSystem.remove(hostPath(tenantRecordFile(name)))

            case .scale(let server, let replicas):
                let resource = "server/\(server.name)"
                guard replicas >= 0 else { throw DriverError(resource, "replicas must not be negative", terminal: true) }
                let unit = try renderer.serviceUnit(server)
                try checkOwnership(unit.name, resource: resource)
                let base = renderer.unitBase(server: server.name, revision: server.revision)
                let mine = listed.filter { $0.base == base && $0.exists }
                if try AtomicFileSystem.write(hostPath(unitDirectory + "/" + unit.name), unit.text) {
                    unitsChanged = true
                    // Same revision, different unit text (e.g. relaxed hardening): running instances pick it up on restart.
                    toRestart += mine.filter { $0.activeState == "active" }.map(\.unit)
                }
                try writeJSON(RevisionRecordFile(server: server.name, tenant: server.tenant, revision: server.revision, version: server.version,
                                                 port: server.port, path: server.path, fields: server.fields),
                              to: renderer.revisionRecordFile(unitBase: base))
                try writeSecrets(server, base: base)
                try resize(server: server.name, revision: server.revision, port: server.port, replicas: replicas)

            case .rescale(let server, let revision, let replicas):
                guard replicas >= 0 else { throw DriverError("server/\(server)", "replicas must not be negative", terminal: true) }
                let base = renderer.unitBase(server: server, revision: revision)
                let template = files.keys(hostPath(unitDirectory + "/" + base + "@.service"))
                let record = files.json(RevisionRecordFile.self, hostPath(renderer.revisionRecordFile(unitBase: base)))
                guard template?["Managed"] == "yes", let record else {
                    // Nothing kept to start from; stopping what still runs needs no definition.
                    guard replicas == 0 else { throw DriverError.noKeptDefinition(server: server, revision: revision) }
                    try resize(server: server, revision: revision, port: nil, replicas: 0)
                    continue
                }
                try resize(server: server, revision: revision, port: record.port, replicas: replicas)

            case .removeRevision(let server, let revision):
                let base = renderer.unitBase(server: server, revision: revision)
                try removeRevisionFiles(base: base, server: server, listed: &listed, toStop: &toStop, toStart: &toStart, unitsChanged: &unitsChanged, removeAfterStop: &removeAfterStop)

            case .removeServer(let name):
                let templates = managedTemplates().filter { $0.server == name }
                var bases = Set(templates.map(\.base))
                bases.formUnion(listed.filter { $0.server == name }.map(\.base))
                for base in bases.sorted() {
                    try removeRevisionFiles(base: base, server: name, listed: &listed, toStop: &toStop, toStart: &toStart, unitsChanged: &unitsChanged, removeAfterStop: &removeAfterStop)
                }
                // A tenant slice left without servers goes too.
                let remaining = managedTemplates()
                for tenant in Set(templates.map(\.tenant)) where !remaining.contains(where: { $0.tenant == tenant }) {
                    let slice = renderer.sliceName(tenant: tenant)
                    if try removeManagedUnitFile(slice, resource: "tenant/\(tenant)") {
                        unitsChanged = true
                        slicesToStop.append(slice)
                    }
                    try AtomicFileSystem.remove(hostPath(tenantRecordFile(tenant)))
                }
            }
        }

        if !toStop.isEmpty {
            try await systemctl(["stop"] + toStop, resource: "environment/\(environmentName)")
            toResetFailed += toStop
        }
        // Emptied slices stop before the reload, so the reload forgets them with their files.
        if !slicesToStop.isEmpty { try await systemctl(["stop"] + slicesToStop, resource: "environment/\(environmentName)", tolerateFailure: true) }
        for remove in removeAfterStop { try remove() }
        if unitsChanged {
            try await systemctl(["daemon-reload"], resource: "environment/\(environmentName)")
            reloadCount += 1
        }
        if !toResetFailed.isEmpty {
            // Forget stopped and failed instances so a slot reused later starts clean.
            try await systemctl(["reset-failed"] + toResetFailed, resource: "environment/\(environmentName)", tolerateFailure: true)
        }
        let restart = toRestart.filter { !toStop.contains($0) }
        // Wait for the start jobs (Type=exec: until each process has exec'd), but a unit whose process
        // exits at once fails its job without failing the batch: the other jobs still run, and the
        // crash shows in `observe` (failed, with its reason) where the controller acts on it.
        if !restart.isEmpty { _ = try await systemctl(["restart"] + restart, resource: "environment/\(environmentName)", tolerateFailure: true) }
        if !toStart.isEmpty { _ = try await systemctl(["start"] + toStart, resource: "environment/\(environmentName)", tolerateFailure: true) }
        if let first = refused.first {
            throw DriverError(first.resource, refused.map(\.reason).joined(separator: "; "))
        }
    }

    /// Who holds `port` when it is neither free nor held by one of this driver's instance units (read
    /// from each holder's control group): a unit started there would only fail to bind, and its probe
    /// could reach the other process.
    func foreignHolder(port: Int, listeners: PortOwnership.Listeners) -> String? {
        guard case .foreign(let holders) = PortOwnership.holders(port: port, listeners: listeners) else { return nil }
        let others = holders.filter { holder in
            let cgroup = PortOwnership.readText("/proc/\(holder.pid)/cgroup", limit: 4096) ?? ""
            return !cgroup.split(whereSeparator: { $0 == "/" || $0 == "\n" }).contains { parseInstance(String($0)) != nil }
        }
        if others.isEmpty && !holders.isEmpty { return nil }
        return others.isEmpty ? "another process" : others.map(\.description).joined(separator: ", ")
    }

    private func removeRevisionFiles(base: String, server: String, listed: inout [ListedInstance], toStop: inout [String], toStart: inout [String],
                                     unitsChanged: inout Bool, removeAfterStop: inout [() throws -> Void]) throws {
        let resource = "server/\(server)"
        let template = base + "@.service"
        if try removeManagedUnitFile(template, resource: resource) { unitsChanged = true }
        let instances = listed.filter { $0.base == base }
        toStop += instances.map(\.unit)
        toStart.removeAll { u in instances.contains { $0.unit == u } }
        listed.removeAll { $0.base == base }
        let envDir = renderer.instanceEnvironmentDirectory(unitBase: base)
        let secrets = renderer.secretEnvironmentFile(unitBase: base)
        let record = renderer.revisionRecordFile(unitBase: base)
        removeAfterStop.append { [self] in
            try AtomicFileSystem.removeTree(hostPath(envDir))
            try AtomicFileSystem.remove(hostPath(secrets))
            try AtomicFileSystem.remove(hostPath(record))
        }
    }

    // MARK: Observe

    public func observe() async throws -> LiveState { try await observe(.all) }

    /// `.all` reads every mcpfleet unit with one `systemctl show` (and the unit directory, each file parsed
    /// again only when it changed): the sync key's read, once per resync. `.server(name)` answers from
    /// that read, re-reading only that server's units (one `systemctl show` of its pattern) when this
    /// driver changed them since or they are in motion (starting, stopping, restarting); a settled server
    /// costs no command at all.
    public func observe(_ scope: ObserveScope) async throws -> LiveState {
        switch scope {
        case .all:
            try await refreshAll()
            return liveState(servers: nil)
        case .server(let name):
            if !listedAll {
                try await refreshAll()
            } else if touched[name] != nil || inMotion(name) {
                try await refresh(server: name)
            }
            return liveState(servers: [name])
        }
    }

    /// Properties `observe` reads of each instance unit.
    static let shownProperties = "Id,ActiveState,SubState,MainPID,NRestarts,Result,ExecMainStatus,ExecMainCode,MemoryCurrent,ActiveEnterTimestampMonotonic,ControlGroup"

    struct ShownInstance: Hashable {
        var listed: ListedInstance
        var properties: [String: String]
    }

    /// One `systemctl show` of the instance units matching a glob (loaded units, as `list-units --all`).
    func show(pattern: String) async throws -> [ShownInstance] {
        let r = try await systemctl(["show", "-p", Self.shownProperties, pattern], resource: "environment/\(environmentName)")
        var out: [ShownInstance] = []
        for block in r.stdout.components(separatedBy: "\n\n") {
            var d: [String: String] = [:]
            for line in block.split(separator: "\n") {
                guard let eq = line.firstIndex(of: "=") else { continue }
                d[String(line[..<eq])] = String(line[line.index(after: eq)...])
            }
            guard let id = d["Id"], let parsed = parseInstance(id) else { continue }
            let listed = ListedInstance(unit: id, base: parsed.base, server: parsed.server, revision: parsed.revision, slot: parsed.slot,
                                        activeState: d["ActiveState"] ?? "inactive", subState: d["SubState"] ?? "dead")
            out.append(ShownInstance(listed: listed, properties: d))
        }
        return out
    }

    private func refreshAll() async throws {
        let began = changes
        let shown = try await show(pattern: renderer.prefix + "-*@*.service")
        units = Dictionary(shown.map { ($0.listed.unit, $0) }, uniquingKeysWith: { a, _ in a })
        rescanUnitDirectory()
        listedAll = true
        // A change made while `show` ran may be missing from what it printed: keep it marked.
        touched = touched.filter { $0.value > began }
    }

    private func touch(_ server: String) {
        changes += 1
        touched[server] = changes
    }

    /// Re-reads one server's units: `<prefix>-<server>-<12 characters>@*.service` names no other server's.
    private func refresh(server name: String) async throws {
        let began = changes
        let shown = try await show(pattern: "\(renderer.prefix)-\(name)-????????????@*.service").filter { $0.listed.server == name }
        units = units.filter { $0.value.listed.server != name }
        for s in shown { units[s.listed.unit] = s }
        if let mark = touched[name], mark <= began { touched[name] = nil }
    }

    /// Instances of a server that are neither settled nor finally failed: worth reading again.
    private func inMotion(_ server: String) -> Bool {
        let now = Self.monotonicMicroseconds()
        return units.values.contains { s in
            guard s.listed.server == server, s.listed.exists else { return false }
            let live = liveInstance(s.listed, details: s.properties, port: nil, now: now)
            return live.state == .starting || live.state == .stopping
        }
    }

    /// Templates and tenant slices from the unit directory; files are parsed again only when they changed.
    private func rescanUnitDirectory() {
        let dir = hostPath(unitDirectory)
        var tenants: [String: LiveTenant] = [:]
        for name in AtomicFileSystem.regularFiles(in: dir) where name.hasPrefix(renderer.prefix + "-") && name.hasSuffix(".slice") {
            guard let keys = files.keys(dir + "/" + name), keys["Managed"] == "yes", let tenant = keys["Tenant"] else { continue }
            let record = files.json(TenantRecordFile.self, hostPath(tenantRecordFile(tenant)))
            tenants[tenant] = LiveTenant(name: tenant, managed: true, fields: record?.fields)
        }
        templates = Dictionary(managedTemplates().map { ($0.base, $0) }, uniquingKeysWith: { a, _ in a })
        tenantsSeen = tenants
    }

    /// What this driver's own batch changed: its servers are read again at their next observe, and the
    /// templates and tenants it wrote or removed are known without a directory scan.
    private func noteOwnChanges(_ batch: [SystemdOperation]) {
        let dir = hostPath(unitDirectory)
        for op in batch {
            switch op {
            case .ensureTenant(let tenant):
                let slice = renderer.sliceName(tenant: tenant.name)
                if files.keys(dir + "/" + slice)?["Managed"] == "yes" {
                    tenantsSeen[tenant.name] = LiveTenant(name: tenant.name, managed: true, fields: tenant.fields)
                }
            case .removeTenant(let name):
                if files.keys(dir + "/" + renderer.sliceName(tenant: name)) == nil { tenantsSeen[name] = nil }
            case .scale(let server, _):
                touch(server.name)
                let base = renderer.unitBase(server: server.name, revision: server.revision)
                if files.keys(dir + "/" + base + "@.service")?["Managed"] == "yes" {
                    templates[base] = ManagedTemplate(base: base, server: server.name, revision: server.revision, tenant: server.tenant)
                }
            case .rescale(let server, _, _):
                touch(server)
            case .removeRevision(let server, let revision):
                touch(server)
                let base = renderer.unitBase(server: server, revision: revision)
                if files.keys(dir + "/" + base + "@.service") == nil { templates[base] = nil }
            case .removeServer(let name):
                touch(name)
                for (base, t) in templates where t.server == name && files.keys(dir + "/" + base + "@.service") == nil { templates[base] = nil }
                for (tenant, _) in tenantsSeen where files.keys(dir + "/" + renderer.sliceName(tenant: tenant)) == nil { tenantsSeen[tenant] = nil }
            }
        }
    }

    /// The live state of the cached units and files, for every server or the named ones.
    private func liveState(servers names: Set<String>?) -> LiveState {
        let now = Self.monotonicMicroseconds()
        var servers: [String: LiveServer] = [:]
        var revisionsByServer: [String: [String: LiveRevision]] = [:]
        for t in templates.values where names?.contains(t.server) ?? true {
            let record = files.json(RevisionRecordFile.self, hostPath(renderer.revisionRecordFile(unitBase: t.base)))
            var s = servers[t.server] ?? LiveServer(name: t.server, tenant: t.tenant, managed: true, revisions: [])
            s.tenant = t.tenant
            servers[t.server] = s
            revisionsByServer[t.server, default: [:]][t.revision] = LiveRevision(revision: t.revision, version: record?.version, replicas: 0, ready: 0, fields: record?.fields, instances: [])
        }
        for shown in units.values where shown.listed.exists && (names?.contains(shown.listed.server) ?? true) {
            let inst = shown.listed
            if servers[inst.server] == nil {
                // A unit named like ours without a managed definition: shown, never pruned.
                servers[inst.server] = LiveServer(name: inst.server, managed: false, revisions: [])
            }
            let record = files.json(RevisionRecordFile.self, hostPath(renderer.revisionRecordFile(unitBase: inst.base)))
            var rev = revisionsByServer[inst.server]?[inst.revision] ?? LiveRevision(revision: inst.revision, version: record?.version, replicas: 0, ready: 0, fields: record?.fields, instances: [])
            let live = liveInstance(inst, details: shown.properties, port: record?.port.map { $0 + inst.slot }, now: now)
            rev.replicas += 1
            if live.healthy { rev.ready += 1 }
            rev.instances = (rev.instances ?? []) + [live]
            revisionsByServer[inst.server, default: [:]][inst.revision] = rev
        }
        let liveServers = servers.values.map { s -> LiveServer in
            var s = s
            s.revisions = (revisionsByServer[s.name] ?? [:]).values.map { r in
                var r = r
                r.instances = r.instances?.sorted { ($0.slot ?? 0) < ($1.slot ?? 0) }
                return r
            }.sorted { $0.revision < $1.revision }
            return s
        }.sorted { $0.name < $1.name }
        return LiveState(environment: environmentName, driver: DriverKind.systemd.rawValue, servers: liveServers,
                         tenants: tenantsSeen.values.sorted { $0.name < $1.name })
    }

    func liveInstance(_ inst: ListedInstance, details d: [String: String], port: Int?, now: UInt64) -> LiveInstance {
        let active = d["ActiveState"] ?? inst.activeState
        let sub = d["SubState"] ?? inst.subState
        let restarts = d["NRestarts"].flatMap { Int($0) } ?? 0
        let pid = d["MainPID"].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil }
        let result = d["Result"] ?? "success"
        let status = d["ExecMainStatus"] ?? "0"
        var state: LiveInstance.State
        var healthy = false
        var reason: String?
        switch (active, sub) {
        case ("active", "running"):
            state = .running
            let since = d["ActiveEnterTimestampMonotonic"].flatMap { UInt64($0) } ?? 0
            let up = now > since ? Double(now - since) / 1_000_000 : 0
            if restarts == 0 || up >= Self.stableAfterSeconds {
                healthy = true
            } else {
                state = .starting
                reason = "crash loop: restarted \(restarts) time(s), up \(Int(up))s (last exit status \(status))"
            }
        case ("activating", "auto-restart"):
            state = .starting
            reason = "crash loop: restarted \(restarts) time(s), waiting to restart (result \(result), exit status \(status))"
        case ("activating", _), ("reloading", _):
            state = .starting
            reason = "starting"
        case ("deactivating", _):
            state = .stopping
            reason = "stopping"
        case ("failed", _):
            state = .failed
            // systemd 252 keeps Result=exit-code when the restart is refused; NRestarts tells it apart.
            reason = result == "start-limit-hit" || restarts >= Self.startLimitBurst
                ? "start-limit-hit: restarted \(restarts) times within \(SystemdRenderer.startLimitIntervalSec)s, systemd gave up (result \(result), exit status \(status))"
                : "failed: result \(result), exit status \(status)"
        default:
            state = .stopped
            reason = "\(active)/\(sub)"
        }
        return LiveInstance(id: inst.unit, revision: inst.revision, slot: inst.slot, port: port, pid: pid, state: state, healthy: healthy, reason: reason, restarts: restarts)
    }

    static var startLimitBurst: Int { SystemdRenderer.startLimitBurst }

    /// From the live-state cache (read first if it has not been, or if this driver changed the server since):
    /// running instances whose port is held by the unit's own processes (its control group), so a probe
    /// never tests another process that took the port (the unit itself then fails to bind and restarts).
    public func endpoints(server: String, revision: String) async throws -> [Endpoint] {
        if !listedAll {
            try await refreshAll()
        } else if touched[server] != nil {
            try await refresh(server: server)
        }
        let base = renderer.unitBase(server: server, revision: revision)
        guard let record = files.json(RevisionRecordFile.self, hostPath(renderer.revisionRecordFile(unitBase: base))), let port = record.port else { return [] }
        let running = units.values.map(\.listed).filter { $0.base == base && $0.activeState == "active" && $0.subState == "running" }.sorted { $0.slot < $1.slot }
        guard !running.isEmpty else { return [] }
        // The control group comes with the cached `show`; a unit read before it had one is asked again.
        var groups: [String: String] = [:]
        for inst in running { if let g = units[inst.unit]?.properties["ControlGroup"], !g.isEmpty { groups[inst.unit] = g } }
        let unknown = running.map(\.unit).filter { groups[$0] == nil }
        if !unknown.isEmpty { groups.merge(try await controlGroups(unknown)) { a, _ in a } }
        let listeners = PortOwnership.Listeners.read()
        return running.filter { inst in
            guard let group = groups[inst.unit], let pids = PortOwnership.controlGroupProcesses(group, root: fileSystemRoot) else { return true }
            let verdict = PortOwnership.verdict(port: port + inst.slot, processes: pids, listeners: listeners)
            return verdict == .owned || verdict == .unknown
        }.map {
            Endpoint(instance: $0.unit, host: "127.0.0.1", port: port + $0.slot, path: record.path)
        }
    }

    /// `ControlGroup` of each unit, in one `systemctl show`.
    func controlGroups(_ units: [String]) async throws -> [String: String] {
        let r = try await systemctl(["show", "-p", "Id", "-p", "ControlGroup"] + units, resource: "environment/\(environmentName)")
        var out: [String: String] = [:]
        for block in r.stdout.components(separatedBy: "\n\n") {
            var id: String?, group: String?
            for line in block.split(separator: "\n") {
                if line.hasPrefix("Id=") { id = String(line.dropFirst(3)) }
                if line.hasPrefix("ControlGroup=") { group = String(line.dropFirst(13)) }
            }
            if let id, let group, !group.isEmpty { out[id] = group }
        }
        return out
    }

    // MARK: Listing

    struct ListedInstance: Hashable {
        var unit: String
        var base: String
        var server: String
        var revision: String
        var slot: Int
        var activeState: String
        var subState: String

        /// Inactive instances are gone as far as replicas are concerned.
        var exists: Bool { activeState != "inactive" }
    }

    struct ManagedTemplate: Hashable {
        var base: String
        var server: String
        var revision: String
        var tenant: String
    }

    /// Instances systemd knows, from `systemctl list-units --all`.
    func listInstances() async throws -> [ListedInstance] {
        let r = try await systemctl(["list-units", "--all", "--plain", "--no-legend", "--full", "--type=service", renderer.prefix + "-*@*.service"], resource: "environment/\(environmentName)")
        var out: [ListedInstance] = []
        for line in r.stdout.split(separator: "\n") {
            let cols = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard cols.count >= 4, let parsed = parseInstance(cols[0]) else { continue }
            out.append(ListedInstance(unit: cols[0], base: parsed.base, server: parsed.server, revision: parsed.revision, slot: parsed.slot, activeState: cols[2], subState: cols[3]))
        }
        return out
    }

    /// `<prefix>-<server>-<12 hex>@<slot>.service`; the revision's fixed length makes this unambiguous.
    func parseInstance(_ unit: String) -> (base: String, server: String, revision: String, slot: Int)? {
        guard unit.hasSuffix(".service"), let at = unit.firstIndex(of: "@") else { return nil }
        let base = String(unit[..<at])
        guard let slot = Int(unit[unit.index(after: at)..<unit.index(unit.endIndex, offsetBy: -".service".count)]), slot >= 0 else { return nil }
        guard let (server, revision) = parseBase(base) else { return nil }
        return (base, server, revision, slot)
    }

    func parseBase(_ base: String) -> (String, String)? {
        let p = renderer.prefix + "-"
        guard base.hasPrefix(p), base.count > p.count + 13 else { return nil }
        let revision = String(base.suffix(12))
        guard revision.allSatisfy({ $0.isHexDigit && !$0.isUppercase }), base.dropLast(12).hasSuffix("-") else { return nil }
        return (String(base.dropFirst(p.count).dropLast(13)), revision)
    }

    /// Template unit files in the unit directory that carry `X-MCPFleet-Managed=yes` (each parsed again
    /// only when it changed).
    func managedTemplates() -> [ManagedTemplate] {
        let dir = hostPath(unitDirectory)
        return AtomicFileSystem.regularFiles(in: dir).compactMap { name in
            guard name.hasPrefix(renderer.prefix + "-"), name.hasSuffix("@.service"), let keys = files.keys(dir + "/" + name),
                  keys["Managed"] == "yes", let server = keys["Server"], let revision = keys["Revision"], let tenant = keys["Tenant"] else { return nil }
            return ManagedTemplate(base: String(name.dropLast("@.service".count)), server: server, revision: revision, tenant: tenant)
        }
    }

    /// Servers with unit templates mcpfleet wrote in the unit directory (read from disk, not from
    /// systemd): what a fresh state database beside running units means was lost.
    public nonisolated func managedServersOnDisk() -> [String] {
        let dir = fileSystemRoot + unitDirectory
        let servers = AtomicFileSystem.regularFiles(in: dir).compactMap { name -> String? in
            guard name.hasPrefix(renderer.prefix + "-"), name.hasSuffix("@.service"), let text = AtomicFileSystem.read(dir + "/" + name) else { return nil }
            let keys = Self.mcpfleetKeys(text)
            return keys["Managed"] == "yes" ? keys["Server"] : nil
        }
        return Array(Set(servers)).sorted()
    }

    static func mcpfleetKeys(_ text: String) -> [String: String] {
        var keys: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("X-MCPFleet-") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            keys[String(line[line.index(line.startIndex, offsetBy: "X-MCPFleet-".count)..<eq])] = String(line[line.index(after: eq)...])
        }
        return keys
    }

    /// Refuses to overwrite a unit file of ours by name that mcpfleet did not write.
    func checkOwnership(_ unitName: String, resource: String) throws {
        let path = hostPath(unitDirectory + "/" + unitName)
        guard let text = AtomicFileSystem.read(path) else { return }
        if Self.mcpfleetKeys(text)["Managed"] != "yes" {
            throw DriverError(resource, "\(unitDirectory)/\(unitName) exists and is not managed by mcpfleet (no X-MCPFleet-Managed=yes); refusing to overwrite it", terminal: true)
        }
    }

    /// Removes a unit file only if it carries `X-MCPFleet-Managed=yes`; returns whether it removed one.
    func removeManagedUnitFile(_ unitName: String, resource: String) throws -> Bool {
        let path = hostPath(unitDirectory + "/" + unitName)
        guard let text = AtomicFileSystem.read(path) else { return false }
        guard Self.mcpfleetKeys(text)["Managed"] == "yes" else { return false }
        return try AtomicFileSystem.remove(path)
    }

    // MARK: Files

    func hostPath(_ path: String) -> String { fileSystemRoot + path }

    func tenantRecordFile(_ tenant: String) -> String { renderer.systemdStateDirectory + "/tenants/" + tenant + ".json" }

    func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let data: Data
        do { data = try encoder.encode(value) } catch { throw DriverError(path, "cannot encode: \(error)") }
        try AtomicFileSystem.write(hostPath(path), String(decoding: data, as: UTF8.self) + "\n")
    }

    /// Secret values go to a 0600 environment file read by PID 1 only; never into the unit text.
    func writeSecrets(_ server: DesiredServer, base: String) throws {
        let refs = server.env.filter { $0.secretRef != nil || $0.isSensitive }
        let path = renderer.secretEnvironmentFile(unitBase: base)
        guard !refs.isEmpty else { return }
        var text = ""
        for e in refs {
            guard let ref = e.secretRef else {
                if let value = e.value { text += try SystemdSyntax.environmentFileLine(name: e.name, value: value, resource: "server/\(server.name)") }
                continue
            }
            guard let dir = secretsDirectory else {
                throw DriverError("server/\(server.name)", "uses secrets but the environment has no spec.secretsDir", terminal: true)
            }
            let file = "\(dir)/\(ref.name)/\(ref.key)"
            guard let data = FileManager.default.contents(atPath: file) else {
                throw DriverError("server/\(server.name)", "secret \(ref.name)/\(ref.key) for \(e.name) not found in the secrets directory")
            }
            // Never repaired silently: a secret that is not text cannot be passed on as it is.
            guard var value = String(validating: data, as: UTF8.self) else {
                throw DriverError("server/\(server.name)", "secret \(ref.name)/\(ref.key) for \(e.name) is not valid UTF-8", terminal: true)
            }
            if value.hasSuffix("\n") { value.removeLast() }
            text += try SystemdSyntax.environmentFileLine(name: e.name, value: value, resource: "server/\(server.name)")
        }
        try AtomicFileSystem.makeDirectory(hostPath((path as NSString).deletingLastPathComponent), mode: 0o700)
        try AtomicFileSystem.write(hostPath(path), text, mode: 0o600)
    }

    // MARK: systemctl

    @discardableResult
    func systemctl(_ args: [String], resource: String, tolerateFailure: Bool = false) async throws -> CommandResult {
        systemctlCount += 1
        let r = try await runner.run(["systemctl"] + args)
        if r.status != 0 && !tolerateFailure {
            let detail = (r.stderr.isEmpty ? r.stdout : r.stderr).trimmingCharacters(in: .whitespacesAndNewlines)
            throw DriverError(resource, "systemctl \(args.first ?? "") failed (exit \(r.status)): \(detail.prefix(600))")
        }
        return r
    }

    static func monotonicMicroseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}

/// Files the driver reads on every observe, parsed again only when their identity (inode, size,
/// modification time) changed: unit files (their `X-MCPFleet-` keys) and JSON records.
final class ParsedFiles: @unchecked Sendable {
    private struct Identity: Hashable {
        var inode: UInt64
        var size: Int64
        var seconds: Int
        var nanoseconds: Int
    }

    private let lock = NSLock()
    private var keyCache: [String: (Identity, [String: String])] = [:]
    private var jsonCache: [String: (Identity, Any)] = [:]

    private func identity(_ path: String) -> Identity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Identity(inode: UInt64(st.st_ino), size: Int64(st.st_size), seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
    }

    /// The `X-MCPFleet-` keys of a unit file (nil when it does not exist).
    func keys(_ path: String) -> [String: String]? {
        guard let id = identity(path) else {
            lock.withLock { _ = keyCache.removeValue(forKey: path) }
            return nil
        }
        if let (known, keys) = lock.withLock({ keyCache[path] }), known == id { return keys }
        guard let text = AtomicFileSystem.read(path) else { return nil }
        let keys = SystemdDriver.mcpfleetKeys(text)
        lock.withLock { keyCache[path] = (id, keys) }
        return keys
    }

    func json<T: Decodable>(_ type: T.Type, _ path: String) -> T? {
        guard let id = identity(path) else {
            lock.withLock { _ = jsonCache.removeValue(forKey: path) }
            return nil
        }
        if let (known, value) = lock.withLock({ jsonCache[path] }), known == id, let typed = value as? T { return typed }
        guard let data = FileManager.default.contents(atPath: path), let value = try? JSONDecoder().decode(type, from: data) else { return nil }
        lock.withLock { jsonCache[path] = (id, value) }
        return value
    }
}
