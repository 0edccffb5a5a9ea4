import FleetCore

/// One unit file as mcpfleet writes it.
public struct RenderedUnit: Hashable, Sendable {
    public var name: String
    public var text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

/// Renders desired state into systemd unit files. Pure: no I/O, the same input gives the same bytes.
///
/// Layout (docs/designs/0002-systemd-units.md): one template unit per server revision,
/// `<prefix>-<server>-<revision>@.service`, whose instance name is the replica *slot*; a slot is unique
/// across all revisions of a server, so the old and the new revision run side by side during a rollout
/// on different ports (`transport.port + slot`). The port reaches the process through a one-line
/// environment file per instance under the state directory (systemd cannot do arithmetic on `%i`),
/// so adding an instance needs no `daemon-reload`. One slice per tenant carries the tenant's quota.
public struct SystemdRenderer: Sendable {
    /// Hardening directives every service unit gets, in order; `spec.systemd.relax` leaves some out.
    public static let hardening: [(name: String, value: String)] = [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("ProtectClock", "yes"),
        ("ProtectHostname", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("RestrictRealtime", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("SystemCallFilter", "@system-service"),
        ("CapabilityBoundingSet", ""),
        ("UMask", "0077"),
    ]

    public static var relaxableDirectives: [String] { hardening.map(\.name) }

    /// Crash-loop policy: restart after a second, give up after 5 starts in 60 s (`start-limit-hit`).
    public static let restartSec = 1
    public static let startLimitBurst = 5
    public static let startLimitIntervalSec = 60

    public let environmentName: String
    public let prefix: String
    public let stateDirectory: String
    public let manifestRoot: String
    public let relaxed: Set<String>

    public init(environment: Environment, manifestRoot: String, stateDirectory: String? = nil) throws {
        let settings = environment.systemd ?? SystemdSettings()
        let resource = "environment/\(environment.name)"
        let unknown = settings.relax.filter { !Self.relaxableDirectives.contains($0) }
        if !unknown.isEmpty {
            throw DriverError(resource, "spec.systemd.relax names unknown hardening directive(s) \(unknown.joined(separator: ", ")); known: \(Self.relaxableDirectives.joined(separator: ", "))", terminal: true)
        }
        var state = stateDirectory ?? environment.effectiveStateDir
        if !state.hasPrefix("/") { state = (manifestRoot.hasSuffix("/") ? manifestRoot : manifestRoot + "/") + state }
        _ = try SystemdSyntax.path(state, resource: resource, what: "state directory", allowSpaces: false)
        self.environmentName = environment.name
        self.prefix = settings.unitPrefix
        self.stateDirectory = state
        self.manifestRoot = manifestRoot
        self.relaxed = Set(settings.relax)
    }

    /// Every unit of an environment: one slice per tenant, one template per server revision.
    public static func render(desired: DesiredState, environment: Environment, manifestRoot: String) throws -> [RenderedUnit] {
        let r = try SystemdRenderer(environment: environment, manifestRoot: manifestRoot)
        return try desired.tenants.map(r.sliceUnit) + desired.servers.map(r.serviceUnit)
    }

    // MARK: Names

    /// `<prefix>-<server>-<revision>`: the template's name without `@.service`.
    public func unitBase(server: String, revision: String) -> String { "\(prefix)-\(server)-\(revision)" }
    public func templateName(server: String, revision: String) -> String { unitBase(server: server, revision: revision) + "@.service" }
    public func instanceName(server: String, revision: String, slot: Int) -> String { unitBase(server: server, revision: revision) + "@\(slot).service" }
    public func sliceName(tenant: String) -> String { "\(prefix)-\(SystemdSyntax.escapeUnitNameComponent(tenant)).slice" }

    public var systemdStateDirectory: String { stateDirectory + "/systemd" }
    public func instanceEnvironmentDirectory(unitBase: String) -> String { systemdStateDirectory + "/instances/" + unitBase }
    public func instanceEnvironmentFile(unitBase: String, slot: Int) -> String { instanceEnvironmentDirectory(unitBase: unitBase) + "/\(slot).env" }
    public func secretEnvironmentFile(unitBase: String) -> String { systemdStateDirectory + "/secrets/" + unitBase + ".env" }
    public func revisionRecordFile(unitBase: String) -> String { systemdStateDirectory + "/revisions/" + unitBase + ".json" }

    /// The absolute directory `${MANIFEST_DIR}` stands for.
    public func manifestDirectory(of server: DesiredServer) -> String {
        var root = manifestRoot
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        let rel = server.manifestDirectory
        if rel.isEmpty || rel == "." { return root }
        return root + "/" + rel
    }

    // MARK: Units

    public func sliceUnit(_ tenant: DesiredTenant) throws -> RenderedUnit {
        let resource = "tenant/\(tenant.name)"
        var lines = [
            "# Managed by mcpfleet (environment \(SystemdSyntax.specifiers(environmentName))); rewritten on every apply.",
            "[Unit]",
            "Description=" + (try SystemdSyntax.text("mcpfleet tenant \(tenant.name)", resource: resource, what: "description")),
            "X-MCPFleet-Managed=yes",
            "X-MCPFleet-Tenant=\(tenant.name)",
            "",
            "[Slice]",
        ]
        let canonical = Dictionary(tenant.fields.map { ($0.path, $0.canonical) }, uniquingKeysWith: { a, _ in a })
        if let cpu = canonical["quota.cpu"], let millis = Int(cpu.dropLast()), cpu.hasSuffix("m") { lines.append("CPUQuota=" + Self.cpuQuota(millis: millis)) }
        if let mem = canonical["quota.memory"], let bytes = Int64(mem) { lines.append("MemoryMax=\(bytes)") }
        if let tasks = canonical["quota.tasks"], let n = Int(tasks) { lines.append("TasksMax=\(n)") }
        return RenderedUnit(name: sliceName(tenant: tenant.name), text: lines.joined(separator: "\n") + "\n")
    }

    /// `CPUQuota=` is a percentage of one CPU: 1000m = 100%, 250m = 25%, 1500m = 150%.
    static func cpuQuota(millis: Int) -> String {
        millis % 10 == 0 ? "\(millis / 10)%" : "\(millis / 10).\(millis % 10)%"
    }

    public func serviceUnit(_ server: DesiredServer) throws -> RenderedUnit {
        let resource = "server/\(server.name)"
        guard let command = server.command, !command.isEmpty else {
            throw DriverError(resource, "artifact.command is required by the systemd driver (images run only on Kubernetes)", terminal: true)
        }
        if server.transport != .stdio && server.port == nil {
            throw DriverError(resource, "transport.port is required by the systemd driver", terminal: true)
        }
        let base = unitBase(server: server.name, revision: server.revision)
        let manifestDir = manifestDirectory(of: server)
        let exec = try command.map { try SystemdSyntax.execArgument(parts: substitute($0, manifestDir: manifestDir), resource: resource) }.joined(separator: " ")

        var unit = [
            "# Managed by mcpfleet (environment \(SystemdSyntax.specifiers(environmentName))); rewritten on every apply.",
            "[Unit]",
            "Description=" + (try SystemdSyntax.text("MCP server \(server.name) \(server.version) (revision \(server.revision))", resource: resource, what: "version")) + ", replica %i",
            "X-MCPFleet-Managed=yes",
            "X-MCPFleet-Server=\(server.name)",
            "X-MCPFleet-Revision=\(server.revision)",
            "X-MCPFleet-Tenant=\(server.tenant)",
            "StartLimitIntervalSec=\(Self.startLimitIntervalSec)",
            "StartLimitBurst=\(Self.startLimitBurst)",
            "",
            "[Service]",
            "Type=exec",
            "Slice=\(sliceName(tenant: server.tenant))",
            "ExecStart=\(exec)",
        ]
        if let wd = server.workingDirectory {
            let dir = wd.hasPrefix("${MANIFEST_DIR}") ? manifestDir + wd.dropFirst("${MANIFEST_DIR}".count) : wd
            unit.append("WorkingDirectory=" + (try SystemdSyntax.path(dir, resource: resource, what: "artifact.workingDirectory")))
        }
        unit.append("EnvironmentFile=" + (try SystemdSyntax.path(instanceEnvironmentDirectory(unitBase: base), resource: resource, what: "state directory", allowSpaces: false)) + "/%i.env")
        // Secrets, and plain values that look like secrets, go to the 0600 file: never into unit text.
        if server.env.contains(where: { $0.secretRef != nil || $0.isSensitive }) {
            unit.append("EnvironmentFile=" + (try SystemdSyntax.path(secretEnvironmentFile(unitBase: base), resource: resource, what: "state directory", allowSpaces: false)))
        }
        for e in server.env {
            guard let value = e.value, e.secretRef == nil, !e.isSensitive else { continue }
            unit.append("Environment=" + (try SystemdSyntax.environmentAssignment(name: e.name, value: value, resource: resource)))
        }
        unit += [
            "Restart=on-failure",
            "RestartSec=\(Self.restartSec)s",
            "TimeoutStopSec=10s",
        ]
        if let millis = server.cpuMillis { unit.append("CPUQuota=" + Self.cpuQuota(millis: millis)) }
        if let bytes = server.memoryBytes { unit.append("MemoryMax=\(bytes)") }
        unit.append("# Hardening; leave a directive out with spec.systemd.relax in the Environment.")
        for h in Self.hardening where !relaxed.contains(h.name) {
            unit.append("\(h.name)=\(h.value)")
        }
        if !relaxed.isEmpty { unit.append("# Relaxed: " + relaxed.sorted().joined(separator: ", ")) }
        return RenderedUnit(name: templateName(server: server.name, revision: server.revision), text: unit.joined(separator: "\n") + "\n")
    }

    /// `${PORT}` → the instance's port variable, `${REPLICA}` → the slot (`%i`), `${MANIFEST_DIR}` → the
    /// manifest's directory (escaped like any text); everything else literal.
    func substitute(_ arg: String, manifestDir: String) -> [SystemdSyntax.ArgumentPart] {
        var parts: [SystemdSyntax.ArgumentPart] = []
        var rest = Substring(arg)
        var literal = ""
        while !rest.isEmpty {
            if rest.hasPrefix("${PORT}") {
                parts.append(.literal(literal)); literal = ""
                parts.append(.raw("${MCPFLEET_PORT}"))
                rest = rest.dropFirst("${PORT}".count)
            } else if rest.hasPrefix("${REPLICA}") {
                parts.append(.literal(literal)); literal = ""
                parts.append(.raw("%i"))
                rest = rest.dropFirst("${REPLICA}".count)
            } else if rest.hasPrefix("${MANIFEST_DIR}") {
                literal += manifestDir
                rest = rest.dropFirst("${MANIFEST_DIR}".count)
            } else {
                literal.append(rest.removeFirst())
            }
        }
        parts.append(.literal(literal))
        return parts.filter { $0 != .literal("") }
    }

    /// The per-instance environment file: the slot and the port, which the template cannot compute.
    public func instanceEnvironment(server: DesiredServer, slot: Int) -> String { instanceEnvironment(port: server.port, slot: slot) }

    public func instanceEnvironment(port: Int?, slot: Int) -> String {
        var text = "MCPFLEET_REPLICA=\(slot)\n"
        if let port { text += "MCPFLEET_PORT=\(port + slot)\n" }
        return text
    }
}
