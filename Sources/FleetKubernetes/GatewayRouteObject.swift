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
        /// Replicas (pod names) marked draining per server: gateways open no new session on them (design 0018).
        public var draining: [String: [String]]?
        /// Bumped with every change of `draining` (never backwards, even across the object's deletion: at
        /// least the writer's clock in epoch ms); gateways report the generation they installed.
        public var drainGeneration: Int64?
        public init(weights: [String: [String: Int]] = [:], draining: [String: [String]]? = nil, drainGeneration: Int64? = nil) {
            self.weights = weights
            self.draining = draining
            self.drainGeneration = drainGeneration
        }
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
        _ = try await update { routes in
            guard routes.weights[server] != weights else { return false }
            routes.weights[server] = weights
            return true
        }
    }

    /// Marks (`draining: true`) or unmarks replicas of a server draining; returns the drain generation
    /// written (or, nothing changing, the one in place). Unmarking never creates an absent object.
    @discardableResult
    public func markDraining(server: String, replicas: [String], draining: Bool, now: Int64) async throws -> Int64 {
        let written = try await update { routes in
            var marks = Set(routes.draining?[server] ?? [])
            let before = marks
            if draining { marks.formUnion(replicas) } else { marks.subtract(replicas) }
            guard marks != before else { return false }
            var all = routes.draining ?? [:]
            all[server] = marks.isEmpty ? nil : marks.sorted()
            routes.draining = all.isEmpty ? nil : all
            routes.drainGeneration = max((routes.drainGeneration ?? 0) + 1, now)
            return true
        }
        return written?.drainGeneration ?? 0
    }

    /// Lifts every draining mark (a controller starting has no drain under way; one that died mid-drain left its marks).
    public func clearDraining(now: Int64) async throws {
        _ = try await update { routes in
            guard routes.draining != nil else { return false }
            routes.draining = nil
            routes.drainGeneration = max((routes.drainGeneration ?? 0) + 1, now)
            return true
        }
    }

    /// The draining marks as last seen by the watch, with their generation (0: no object, or never marked).
    public var drainMarks: (generation: Int64, replicas: [String: Set<String>]) {
        guard let r = current else { return (0, [:]) }
        return (r.drainGeneration ?? 0, (r.draining ?? [:]).mapValues(Set.init))
    }

    /// Read-modify-write of the routes, guarded by resourceVersion and retried on conflicts. `mutate`
    /// returns false when nothing changes (nothing is written). Returns the routes as they are now.
    @discardableResult
    func update(_ mutate: (inout Routes) -> Bool) async throws -> Routes? {
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
            guard mutate(&routes) else { return snapshot?.routes }
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
                return routes
            } catch let error as KubeError where error.status == 409 || (error.isNotFound && snapshot != nil) {
                known = nil  // written in between (or created first, or deleted), or the watched copy was behind: read again
            } catch let error as KubeError {
                throw error.driverError
            }
        }
        throw DriverError("ConfigMap \(namespace)/\(Self.name)", "gave up after repeated write conflicts")
    }
}
