public import FleetCore
import Foundation

/// Routes and weights the controller publishes for the gateways (design 0009): one ConfigMap,
/// `mcpfleet-gateway-routes` in the controller's namespace, `data["routes.json"]` = each server's share
/// of new sessions per revision (`TrafficRules.weights`; a server absent or null goes by replica).
/// The controller writes it (read-modify-write guarded by resourceVersion) as it saves a rollout
/// record; every gateway replica watches it (`start()`), so a weight change reaches them in one watch
/// event, never by polling per request.
public final class GatewayRouteObject: Sendable {
    public static let name = "mcpfleet-gateway-routes"
    static let key = "routes.json"
    static let label = "mcpfleet.io/store"

    public struct Routes: Codable, Hashable, Sendable {
        public var weights: [String: [String: Int]]
        public init(weights: [String: [String: Int]] = [:]) { self.weights = weights }
    }

    public let client: KubeClient
    public let namespace: String
    let cache: Informer<Routes>

    public init(client: KubeClient, namespace: String, configuration: InformerConfiguration = InformerConfiguration()) {
        self.client = client
        self.namespace = namespace
        cache = Informer(client: client, type: .configMap, namespace: namespace, labelSelector: "\(Self.label)=routes", configuration: configuration,
                         transform: { o in
                             guard o.name == GatewayRouteObject.name, let text = o.json[["data", GatewayRouteObject.key]]?.string else { return nil }
                             return try? JSONDecoder().decode(Routes.self, from: Data(text.utf8))
                         })
    }

    deinit { cache.stopWithoutWaiting() }

    /// Begins watching the object (the gateways); `current` then answers from memory.
    public func start() { cache.start() }
    public func stop() async { await cache.stop() }
    public func waitUntilSynced(timeout: Duration) async throws { try await cache.waitUntilSynced(timeout: timeout) }

    /// The routes as last seen by the watch (nil before the first list, or when the object does not exist).
    public var current: Routes? { cache.item(namespace: namespace, name: Self.name) }

    /// Sets one server's weights (nil: by replica) unless they are already so; retries on write conflicts.
    public func publish(server: String, weights: [String: Int]?) async throws {
        for _ in 0..<16 {
            let object = try await client.getIfPresent(.configMap, namespace: namespace, name: Self.name)
            var routes = object?.json[["data", Self.key]]?.string.flatMap { try? JSONDecoder().decode(Routes.self, from: Data($0.utf8)) } ?? Routes()
            guard routes.weights[server] != weights || object == nil else { return }
            routes.weights[server] = weights
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var metadata = KubernetesRenderer.meta(name: Self.name, namespace: namespace, labels: [
                Self.label: "routes", KubernetesRenderer.labelManagedBy: KubernetesRenderer.managedBy, KubernetesRenderer.labelPartOf: "mcpfleet"])
            if let rv = object?.resourceVersion { metadata["resourceVersion"] = .string(rv) }
            let updated = KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                                           "data": .obj([Self.key: .string(String(decoding: try encoder.encode(routes), as: UTF8.self))])]))
            do {
                let written = object == nil ? try await client.create(updated) : try await client.replace(updated)
                cache.ingest(written)
                return
            } catch let error as KubeError where error.status == 409 {
                continue  // written in between (or created first): read again
            } catch let error as KubeError {
                throw error.driverError
            }
        }
        throw DriverError("ConfigMap \(namespace)/\(Self.name)", "gave up after repeated write conflicts")
    }
}
