import Foundation

/// A server's state for `/health/detailed` (what the controller knows; the gateway adds its replicas).
public struct ServerHealth: Sendable, Hashable, Codable {
    public var name: String
    public var tenant: String
    public var endpoint: String?
    public var phase: String
    public var desiredReplicas: Int?
    public var readyReplicas: Int
    public var servingRevision: String?
    public var targetRevision: String?

    public init(name: String, tenant: String, endpoint: String? = nil, phase: String, desiredReplicas: Int?, readyReplicas: Int,
                servingRevision: String?, targetRevision: String?) {
        self.name = name
        self.tenant = tenant
        self.endpoint = endpoint
        self.phase = phase
        self.desiredReplicas = desiredReplicas
        self.readyReplicas = readyReplicas
        self.servingRevision = servingRevision
        self.targetRevision = targetRevision
    }
}

/// The process's operational endpoints: `/healthz` (alive), `/readyz` (first sync done, or standby),
/// `/metrics` (Prometheus text), `/health/detailed` (JSON: readiness, servers, replicas with their
/// circuit state and sessions). Served by the same HTTP stack as the gateway's MCP routes.
public struct OpsEndpoints: Sendable {
    public var ready: @Sendable () async -> Bool
    /// Why not ready, for `/readyz`'s body (the controller's `readiness()`); nil: the first sync.
    public var notReady: @Sendable () async -> String?
    public var metrics: @Sendable () -> String
    public var servers: @Sendable () async -> [ServerHealth]
    /// Further read-only routes served beside these (the dashboard), or nil.
    public var routes: OpsRoutes?

    public init(ready: @escaping @Sendable () async -> Bool, notReady: @escaping @Sendable () async -> String? = { nil },
                metrics: @escaping @Sendable () -> String, servers: @escaping @Sendable () async -> [ServerHealth] = { [] }) {
        self.ready = ready
        self.notReady = notReady
        self.metrics = metrics
        self.servers = servers
    }

    public static let paths: Set<String> = ["/healthz", "/readyz", "/metrics", "/health/detailed"]

    struct Response: Sendable {
        var status: Int
        var contentType: String
        var body: String
    }

    func respond(path: String, replicas: @Sendable () -> [ReplicaStatus]) async -> Response {
        switch path {
        case "/healthz":
            return Response(status: 200, contentType: "text/plain; charset=utf-8", body: "ok\n")
        case "/readyz":
            let ok = await ready()
            let why = ok ? nil : await notReady()
            return Response(status: ok ? 200 : 503, contentType: "text/plain; charset=utf-8", body: ok ? "ready\n" : "not ready: \(why ?? "first sync not done")\n")
        case "/metrics":
            return Response(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics())
        case "/health/detailed":
            struct Detail: Encodable {
                var status: String
                var ready: Bool
                var servers: [ServerHealth]
                var replicas: [ReplicaStatus]
            }
            let ok = await ready()
            let detail = Detail(status: ok ? "ok" : "starting", ready: ok, servers: await servers(), replicas: replicas())
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let body = (try? encoder.encode(detail)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return Response(status: ok ? 200 : 503, contentType: "application/json", body: body + "\n")
        default:
            return Response(status: 404, contentType: "text/plain; charset=utf-8", body: "not found\n")
        }
    }
}
