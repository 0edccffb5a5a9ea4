public import FleetCore
import Foundation

/// Routes and weights the controller publishes for the gateways (design 0009): one ConfigMap,
/// `mcpfleet-gateway-routes` in the controller's namespace, `data["routes.json"]` = each server's share
/// of new sessions per revision (`TrafficRules.weights`; a server absent or null goes by replica).
/// The controller writes it (read-modify-write guarded by resourceVersion) as it saves a rollout
/// record; every gateway replica watches it (`start()`), so a weight change reaches them in one watch
/// event, never by polling per request.
///
/// A publisher that watches it too (`start()`, as `mcpfleet run` does) writes only when a server's
/// weights change and reads nothing: the watched copy and its resourceVersion are the starting point of
/// the write (a stale copy costs a 409 and one read). Without `start()` every publish reads the object.
/// Design: docs/designs/0013-kubernetes-request-budget.md.
public final class GatewayRouteObject: Sendable {
    public static let name = "mcpfleet-gateway-routes"
    static let key = "routes.json"
    static let label = "mcpfleet.io/store"

    public struct Routes: Codable, Hashable, Sendable {
        public var weights: [String: [String: Int]]
        public init(weights: [String: [String: Int]] = [:]) { self.weights = weights }
    }

    /// The object as the watch last delivered it (or this publisher last wrote it).
    struct Snapshot: Sendable {
        var resourceVersion: String?
        var routes: Routes
    }

    public let client: KubeClient
    public let namespace: String
    let cache: Informer<Snapshot>

    public init(client: KubeClient, namespace: String, configuration: InformerConfiguration = InformerConfiguration()) {
        self.client = client
        self.namespace = namespace
        cache = Informer(client: client, type: .configMap, namespace: namespace, labelSelector: "\(Self.label)=routes", configuration: configuration,
                         transform: { o in
                             guard o.name == GatewayRouteObject.name else { return nil }
                             return Snapshot(resourceVersion: o.resourceVersion, routes: Self.routes(o))
                         })
    }

    deinit { cache.stopWithoutWaiting() }

    /// Begins watching the object (gateways, and the controller that publishes); `current` then answers from memory.
    public func start() { cache.start() }
    public func stop() async { await cache.stop() }
    public func waitUntilSynced(timeout: Duration) async throws { try await cache.waitUntilSynced(timeout: timeout) }

    /// The watch's counters (requests it made, events it saw).
    public var cacheStatistics: InformerStatistics { cache.statistics }

    /// The routes as last seen by the watch (nil before the first list, or when the object does not exist).
    public var current: Routes? { cache.item(namespace: namespace, name: Self.name)?.routes }

    static func routes(_ o: KubeObject) -> Routes {
        o.json[["data", key]]?.string.flatMap { try? JSONDecoder().decode(Routes.self, from: Data($0.utf8)) } ?? Routes()
    }

    /// Sets one server's weights (nil: by replica) unless they are already so; retries on write conflicts.
    /// Nothing is written while the weights stay as they are (nor is an absent object created for nil).
    public func publish(server: String, weights: [String: Int]?) async throws {
        var known: Snapshot?? = nil  // .some(nil): the object does not exist
        if cache.isRunning {
            do { try await cache.waitUntilSynced(timeout: .seconds(60)) } catch let error as DriverError {
                throw DriverError("gateway routes (namespace \(namespace))", error.message)
            }
            known = .some(cache.item(namespace: namespace, name: Self.name))
        }
        for _ in 0..<16 {
            let snapshot: Snapshot?
            if let k = known {
                snapshot = k
            } else {
                let object: KubeObject?
                do { object = try await client.getIfPresent(.configMap, namespace: namespace, name: Self.name) } catch let error as KubeError {
                    throw error.driverError
                }
                snapshot = object.map { Snapshot(resourceVersion: $0.resourceVersion, routes: Self.routes($0)) }
            }
            var routes = snapshot?.routes ?? Routes()
            guard routes.weights[server] != weights else { return }
            routes.weights[server] = weights
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var metadata = KubernetesRenderer.meta(name: Self.name, namespace: namespace, labels: [
                Self.label: "routes", KubernetesRenderer.labelManagedBy: KubernetesRenderer.managedBy, KubernetesRenderer.labelPartOf: "mcpfleet"])
            if let rv = snapshot?.resourceVersion { metadata["resourceVersion"] = .string(rv) }
            let updated = KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
                                           "data": .obj([Self.key: .string(String(decoding: try encoder.encode(routes), as: UTF8.self))])]))
            do {
                let written = snapshot == nil ? try await client.create(updated) : try await client.replace(updated)
                cache.ingest(written)
                return
            } catch let error as KubeError where error.status == 409 {
                known = nil  // written in between (or created first), or the watched copy was behind: read again
            } catch let error as KubeError {
                throw error.driverError
            }
        }
        throw DriverError("ConfigMap \(namespace)/\(Self.name)", "gave up after repeated write conflicts")
    }
}
