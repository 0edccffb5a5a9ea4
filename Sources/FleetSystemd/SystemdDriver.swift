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
    public func removeRevision(server: String, revision: String) async throws { try await apply(batch: [.removeRevision(server: server, revision: revision)]) }
    public func removeServer(named name: String) async throws { try await apply(batch: [.removeServer(name)]) }

    /// Restarts every instance of a revision, clearing a `start-limit-hit` (after fixing what crashed).
    public func restart(server: String, revision: String) async throws {
        let base = renderer.unitBase(server: server, revision: revision)
        let units = try await listInstances().filter { $0.base == base }.map(\.unit)
        guard !units.isEmpty else { return }
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
                if mine.count < replicas {
                    // Slots are unique across the server's revisions, so old and new never share a port.
                    var used = Set(listed.filter { $0.server == server.name && $0.exists }.map(\.slot))
                    var slot = 0
                    for _ in mine.count..<replicas {
                        while used.contains(slot) { slot += 1 }
                        used.insert(slot)
                        try AtomicFileSystem.write(hostPath(renderer.instanceEnvironmentFile(unitBase: base, slot: slot)), renderer.instanceEnvironment(server: server, slot: slot))
                        let name = renderer.instanceName(server: server.name, revision: server.revision, slot: slot)
                        toStart.append(name)
                        toResetFailed.append(name)
                        listed.append(ListedInstance(unit: name, base: base, server: server.name, revision: server.revision, slot: slot, activeState: "activating", subState: "start"))
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

    public func observe() async throws -> LiveState {
        let listed = try await listInstances()
        let existing = listed.filter(\.exists)
        var details: [String: [String: String]] = [:]
        if !existing.isEmpty {
            let props = "Id,ActiveState,SubState,MainPID,NRestarts,Result,ExecMainStatus,ExecMainCode,MemoryCurrent,ActiveEnterTimestampMonotonic"
            let r = try await systemctl(["show", "-p", props] + existing.map(\.unit), resource: "environment/\(environmentName)")
            for block in r.stdout.components(separatedBy: "\n\n") {
                var d: [String: String] = [:]
                for line in block.split(separator: "\n") {
                    guard let eq = line.firstIndex(of: "=") else { continue }
                    d[String(line[..<eq])] = String(line[line.index(after: eq)...])
                }
                if let id = d["Id"] { details[id] = d }
            }
        }
        let now = Self.monotonicMicroseconds()
        let templates = managedTemplates()
        var servers: [String: LiveServer] = [:]
        var revisionsByServer: [String: [String: LiveRevision]] = [:]

        for t in templates {
            let record = readJSON(RevisionRecordFile.self, renderer.revisionRecordFile(unitBase: t.base))
            var s = servers[t.server] ?? LiveServer(name: t.server, tenant: t.tenant, managed: true, revisions: [])
            s.tenant = t.tenant
            servers[t.server] = s
            revisionsByServer[t.server, default: [:]][t.revision] = LiveRevision(revision: t.revision, version: record?.version, replicas: 0, ready: 0, fields: record?.fields, instances: [])
        }
        for inst in existing {
            if servers[inst.server] == nil {
                // A unit named like ours without a managed definition: shown, never pruned.
                servers[inst.server] = LiveServer(name: inst.server, managed: false, revisions: [])
            }
            let record = readJSON(RevisionRecordFile.self, renderer.revisionRecordFile(unitBase: inst.base))
            var rev = revisionsByServer[inst.server]?[inst.revision] ?? LiveRevision(revision: inst.revision, version: record?.version, replicas: 0, ready: 0, fields: record?.fields, instances: [])
            let live = liveInstance(inst, details: details[inst.unit] ?? [:], port: record?.port.map { $0 + inst.slot }, now: now)
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

        var tenants: [LiveTenant] = []
        let dir = hostPath(unitDirectory)
        for name in AtomicFileSystem.regularFiles(in: dir) where name.hasPrefix(renderer.prefix + "-") && name.hasSuffix(".slice") {
            guard let text = AtomicFileSystem.read(dir + "/" + name), let keys = Optional(Self.mcpfleetKeys(text)), keys["Managed"] == "yes", let tenant = keys["Tenant"] else { continue }
            let record = readJSON(TenantRecordFile.self, tenantRecordFile(tenant))
            tenants.append(LiveTenant(name: tenant, managed: true, fields: record?.fields))
        }
        return LiveState(environment: environmentName, driver: DriverKind.systemd.rawValue, servers: liveServers, tenants: tenants.sorted { $0.name < $1.name })
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

    /// Running instances whose port is held by the unit's own processes (its control group): a probe
    /// never tests another process that took the port (the unit itself then fails to bind and restarts).
    public func endpoints(server: String, revision: String) async throws -> [Endpoint] {
        let base = renderer.unitBase(server: server, revision: revision)
        guard let record = readJSON(RevisionRecordFile.self, renderer.revisionRecordFile(unitBase: base)), let port = record.port else { return [] }
        let running = try await listInstances().filter { $0.base == base && $0.activeState == "active" && $0.subState == "running" }.sorted { $0.slot < $1.slot }
        guard !running.isEmpty else { return [] }
        let groups = try await controlGroups(running.map(\.unit))
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

    /// Template unit files in the unit directory that carry `X-MCPFleet-Managed=yes`.
    func managedTemplates() -> [ManagedTemplate] {
        let dir = hostPath(unitDirectory)
        return AtomicFileSystem.regularFiles(in: dir).compactMap { name in
            guard name.hasPrefix(renderer.prefix + "-"), name.hasSuffix("@.service"), let text = AtomicFileSystem.read(dir + "/" + name) else { return nil }
            let keys = Self.mcpfleetKeys(text)
            guard keys["Managed"] == "yes", let server = keys["Server"], let revision = keys["Revision"], let tenant = keys["Tenant"] else { return nil }
            return ManagedTemplate(base: String(name.dropLast("@.service".count)), server: server, revision: revision, tenant: tenant)
        }
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

    func readJSON<T: Decodable>(_ type: T.Type, _ path: String) -> T? {
        guard let data = FileManager.default.contents(atPath: hostPath(path)) else { return nil }
        return try? JSONDecoder().decode(type, from: data)
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
