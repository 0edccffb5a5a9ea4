import FleetCore

/// One replica the gateway can send traffic to.
public struct Backend: Sendable, Hashable, Codable {
    /// The runtime's instance id (unit, pod, local instance): names the replica in session tokens.
    public var id: String
    public var revision: String
    public var host: String
    public var port: Int
    public var path: String
    /// Running and passing probes. Unhealthy replicas get no new sessions; their sessions still route.
    public var healthy: Bool
    /// Draining replicas get no new sessions (set by the rollout when it is about to stop them).
    public var draining: Bool

    /// `host:port`, as the replica expects it in `Host`.
    var hostHeader: String { "\(host):\(port)" }

    public init(id: String, revision: String, host: String, port: Int, path: String, healthy: Bool = true, draining: Bool = false) {
        self.id = id
        self.revision = revision
        self.host = host
        self.port = port
        self.path = path
        self.healthy = healthy
        self.draining = draining
    }
}

/// Per-route policy read from the catalog (never carries token text: only digests).
public struct RoutePolicy: Sendable, Hashable {
    /// Empty: the route needs no token.
    public var tokens: BearerTokens
    public var tenantRate: RateLimit?
    public var serverRate: RateLimit?
    /// `spec.tools`: tools clients may see and call (nil or empty: all).
    public var tools: ToolAccess?

    public init(tokens: BearerTokens = BearerTokens(tokens: []), tenantRate: RateLimit? = nil, serverRate: RateLimit? = nil, tools: ToolAccess? = nil) {
        self.tokens = tokens
        self.tenantRate = tenantRate
        self.serverRate = serverRate
        self.tools = tools?.isEmpty == true ? nil : tools
    }
}

/// Where `/{server}/mcp` (and `/{tenant}/{server}/mcp`) lead.
public struct Route: Sendable, Hashable {
    public var server: String
    public var tenant: String
    public var backends: [Backend]
    /// Share of new sessions per revision (issue 16: canary weights); nil = by replica, all alike.
    public var revisionWeights: [String: Int]?
    public var policy: RoutePolicy

    public init(server: String, tenant: String, backends: [Backend], revisionWeights: [String: Int]? = nil, policy: RoutePolicy = RoutePolicy()) {
        self.server = server
        self.tenant = tenant
        self.backends = backends
        self.revisionWeights = revisionWeights
        self.policy = policy
    }
}

/// Every route, by server name. Built from what the driver reports (live state and endpoints), so the
/// gateway follows rollouts: replicas of every running revision are backends.
public struct RouteTable: Sendable, Hashable {
    public var routes: [String: Route]

    public init(_ routes: [Route] = []) {
        self.routes = Dictionary(routes.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// `/{server}/mcp` or `/{tenant}/{server}/mcp`; the tenant must be the server's.
    public func route(forPath path: Substring) -> Route? {
        // Up to three non-empty segments, read in place (this runs for every request).
        var parts: (Substring, Substring, Substring) = ("", "", "")
        var count = 0
        var rest = path
        while let first = rest.utf8.firstIndex(where: { $0 != UInt8(ascii: "/") }) {
            let end = rest.utf8[first...].firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
            switch count {
            case 0: parts.0 = rest[first..<end]
            case 1: parts.1 = rest[first..<end]
            case 2: parts.2 = rest[first..<end]
            default: return nil
            }
            count += 1
            rest = rest[end...]
        }
        switch count {
        case 2 where parts.1 == "mcp": return routes[String(parts.0)]
        case 3 where parts.2 == "mcp":
            guard let r = routes[String(parts.1)], r.tenant == parts.0 else { return nil }
            return r
        default: return nil
        }
    }

    /// The routes for a live state: `endpoints` gives the reachable instances of one revision (the
    /// driver's `endpoints(server:revision:)`), health comes from the live instances, policy from the catalog.
    public static func build(live: LiveState, endpoints: (String, String) async throws -> [Endpoint],
                             policy: (String, String) -> RoutePolicy) async -> RouteTable {
        var out: [Route] = []
        for s in live.servers {
            var backends: [Backend] = []
            for r in s.revisions where r.replicas > 0 {
                let health = Dictionary((r.instances ?? []).map { ($0.id, $0.healthy && $0.state == .running) }, uniquingKeysWith: { a, _ in a })
                // An endpoint the driver cannot list now is skipped this round; the next refresh retries.
                guard let eps = try? await endpoints(s.name, r.revision) else { continue }
                for e in eps {
                    backends.append(Backend(id: e.instance, revision: r.revision, host: e.host, port: e.port, path: e.path,
                                            healthy: health[e.instance] ?? (r.instances == nil)))
                }
            }
            let tenant = s.tenant ?? "default"
            out.append(Route(server: s.name, tenant: tenant, backends: backends, policy: policy(s.name, tenant)))
        }
        return RouteTable(out)
    }
}
