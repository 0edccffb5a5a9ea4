// Public convenience initialisers for the rendered desired-state types, so controllers, drivers and tests
// outside FleetCore can build them directly (the renderer builds them from manifests; its memberwise
// initialiser stays synthesised because these live in an extension).

extension DesiredServer {
    public init(name: String, tenant: String = "default", version: String, revision: String? = nil, replicas: Int = 1,
                image: String? = nil, command: [String]? = nil, transport: TransportType = .streamableHTTP, port: Int? = nil,
                path: String = "/mcp", env: [DesiredEnvVar] = [], health: DesiredHealth = DesiredHealth(),
                rollout: DesiredRollout = DesiredRollout(), slo: DesiredSLO? = nil, labels: [String: String] = [:],
                manifestDirectory: String = ".") {
        var fields = [SpecField(path: "version", display: "\"\(version)\""), SpecField(path: "tenant", display: tenant)]
        if let command { fields.append(SpecField(path: "artifact.command", display: command.joined(separator: " "))) }
        if let image { fields.append(SpecField(path: "artifact.image", display: image)) }
        self.name = name
        self.tenant = tenant
        self.version = version
        self.revision = revision ?? Renderer.revision(of: fields)
        self.replicas = replicas
        self.image = image
        self.command = command
        self.workingDirectory = nil
        self.digest = nil
        self.transport = transport
        self.port = port
        self.path = path
        self.env = env
        self.cpu = nil
        self.memory = nil
        self.cpuMillis = nil
        self.memoryBytes = nil
        self.health = health
        self.rollout = rollout
        self.slo = slo
        self.labels = labels
        self.manifestDirectory = manifestDirectory
        self.fields = fields
    }
}

extension DesiredTenant {
    public init(name: String, isolation: Isolation = .shared, namespace: String? = nil, fields: [SpecField] = [], allowFrom: [NetworkPeer]? = nil) {
        self.name = name
        self.isolation = isolation
        self.namespace = namespace ?? name
        self.fields = fields
        self.allowFrom = allowFrom
    }
}

extension DesiredState {
    public init(environment: String, driver: DriverKind, servers: [DesiredServer], tenants: [DesiredTenant] = []) {
        self.environment = environment
        self.driver = driver
        self.tenants = tenants
        self.servers = servers
    }
}
