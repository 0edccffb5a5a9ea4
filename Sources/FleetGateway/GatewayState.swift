import Foundation
import NIOConcurrencyHelpers

/// One replica as the gateway sees it, for `/health/detailed`, metrics and (issue 16) draining.
public struct ReplicaStatus: Sendable, Hashable, Codable {
    public var server: String
    public var revision: String
    public var replica: String
    public var address: String
    public var healthy: Bool
    public var draining: Bool
    public var circuit: CircuitBreaker.State
    public var consecutiveFailures: Int
    public var outstanding: Int
    public var sessions: Int
}

/// The gateway's shared mutable state: routes, per-replica counters and breakers, rate buckets. One
/// lock, held for a few hundred nanoseconds per request.
public final class GatewayState: Sendable {
    struct ReplicaKey: Hashable, Sendable {
        var server: String
        var replica: String
    }

    struct ReplicaRuntime: Sendable {
        var outstanding = 0
        var sessions = 0
        var breaker: CircuitBreaker
    }

    struct Inner: Sendable {
        var table = RouteTable()
        var replicas: [ReplicaKey: ReplicaRuntime] = [:]
        var buckets: [String: TokenBucket] = [:]
        var random = SystemRandomNumberGenerator()
        /// Replicas the draining driver is about to stop (design 0009): kept across route refreshes.
        var draining: Set<ReplicaKey> = []
        /// Weights pushed by the controller in this process as it saves a record; they win over a
        /// table computed from records read before that save.
        var pushedWeights: [String: [String: Int]?] = [:]
    }

    let configuration: GatewayConfiguration
    private let inner = NIOLockedValueBox(Inner())
    let now: @Sendable () -> Int64

    public init(configuration: GatewayConfiguration, now: @escaping @Sendable () -> Int64 = { Int64(DispatchTime.now().uptimeNanoseconds) }) {
        self.configuration = configuration
        self.now = now
    }

    public var routes: RouteTable { inner.withLockedValue { $0.table } }

    /// Publishes a new route table. Counters and breakers of replicas that stay are kept; those of
    /// replicas gone are dropped (their sessions then get 404 and re-initialize).
    public func publish(_ table: RouteTable) {
        inner.withLockedValue { s in
            var table = table
            for (name, w) in s.pushedWeights where table.routes[name] != nil { table.routes[name]!.revisionWeights = w }
            for (name, r) in table.routes where r.backends.contains(where: { s.draining.contains(ReplicaKey(server: name, replica: $0.id)) }) {
                table.routes[name]!.backends = r.backends.map { b in
                    var b = b
                    if s.draining.contains(ReplicaKey(server: name, replica: b.id)) { b.draining = true }
                    return b
                }
            }
            s.table = table
            var keep: [ReplicaKey: ReplicaRuntime] = [:]
            for r in table.routes.values {
                for b in r.backends {
                    let k = ReplicaKey(server: r.server, replica: b.id)
                    keep[k] = s.replicas[k] ?? ReplicaRuntime(breaker: CircuitBreaker(threshold: configuration.breakerFailures, ejection: configuration.breakerEjection))
                }
            }
            s.replicas = keep
            // Buckets of routes and tenants that no longer exist go; the rest keep their level.
            let names = Set(table.routes.values.flatMap { ["s:" + $0.server, "t:" + $0.tenant] })
            s.buckets = s.buckets.filter { names.contains($0.key) }
        }
    }

    /// Marks replicas draining (no new sessions; their sessions still route) or, `false`, routable again.
    /// Applies at once to the current table and to every table published after.
    public func setDraining(server: String, replicas: [String], _ draining: Bool) {
        inner.withLockedValue { s in
            for id in replicas {
                let k = ReplicaKey(server: server, replica: id)
                if draining { s.draining.insert(k) } else { s.draining.remove(k) }
            }
            guard var r = s.table.routes[server] else { return }
            r.backends = r.backends.map { b in
                var b = b
                if replicas.contains(b.id) { b.draining = draining }
                return b
            }
            s.table.routes[server] = r
        }
    }

    /// The share of new sessions per revision of one server, from now on (`TrafficRules.weights` of the
    /// record just saved); kept over later published tables.
    public func pushWeights(server: String, _ weights: [String: Int]?) {
        inner.withLockedValue { s in
            s.pushedWeights[server] = .some(weights)
            s.table.routes[server]?.revisionWeights = weights
        }
    }

    /// Sessions the gateway routes to a replica now (0 for a replica it does not know).
    public func openSessions(server: String, replica: String) -> Int {
        inner.withLockedValue { $0.replicas[ReplicaKey(server: server, replica: replica)]?.sessions ?? 0 }
    }

    public func route(forPath path: Substring) -> Route? {
        inner.withLockedValue { $0.table.route(forPath: path) }
    }

    /// Takes a token from the tenant's bucket, then the server's: nil, or (scope, seconds to wait).
    func rateLimit(_ route: Route) -> (scope: String, retryAfter: Double)? {
        guard route.policy.tenantRate != nil || route.policy.serverRate != nil else { return nil }
        let t = now()
        return inner.withLockedValue { s in
            if let limit = route.policy.tenantRate {
                let key = "t:" + route.tenant
                if s.buckets[key]?.limit != limit { s.buckets[key] = TokenBucket(limit, nowNanos: t) }
                if let wait = s.buckets[key]!.take(nowNanos: t) { return ("tenant", wait) }
            }
            if let limit = route.policy.serverRate {
                let key = "s:" + route.server
                if s.buckets[key]?.limit != limit { s.buckets[key] = TokenBucket(limit, nowNanos: t) }
                if let wait = s.buckets[key]!.take(nowNanos: t) { return ("server", wait) }
            }
            return nil
        }
    }

    /// Picks the replica for a new session (or a session-less request) and counts the request on it:
    /// healthy, not draining, breaker closed (or its half-open trial); by revision weight when the
    /// route has weights, then the fewer outstanding requests of two random candidates.
    func pick(_ route: Route, excluding: Set<String> = []) -> Backend? {
        let t = now()
        return inner.withLockedValue { s -> Backend? in
            var candidates = route.backends.filter { b in
                b.healthy && !b.draining && !excluding.contains(b.id)
                    && s.replicas[ReplicaKey(server: route.server, replica: b.id)]?.breaker.available(nowNanos: t) == true
            }
            if let weights = route.revisionWeights, !candidates.isEmpty {
                let present = Set(candidates.map(\.revision))
                let choices = weights.filter { present.contains($0.key) && $0.value > 0 }.sorted { $0.key < $1.key }
                let total = choices.reduce(0) { $0 + $1.value }
                if total > 0 {
                    var x = Int.random(in: 0..<total, using: &s.random)
                    for c in choices {
                        if x < c.value {
                            candidates = candidates.filter { $0.revision == c.key }
                            break
                        }
                        x -= c.value
                    }
                }
            }
            guard !candidates.isEmpty else { return nil }
            var chosen = candidates[Int.random(in: 0..<candidates.count, using: &s.random)]
            if candidates.count > 1 {
                var other = candidates[Int.random(in: 0..<(candidates.count - 1), using: &s.random)]
                if other.id == chosen.id { other = candidates[candidates.count - 1] }
                let a = s.replicas[ReplicaKey(server: route.server, replica: chosen.id)]!
                let b = s.replicas[ReplicaKey(server: route.server, replica: other.id)]!
                if (b.outstanding, b.sessions) < (a.outstanding, a.sessions) { chosen = other }
            }
            let key = ReplicaKey(server: route.server, replica: chosen.id)
            guard s.replicas[key]!.breaker.admit(nowNanos: t) else { return nil }
            s.replicas[key]!.outstanding += 1
            return chosen
        }
    }

    /// The replica a session names, if it is still routed; counts the request on it.
    func session(_ route: Route, replica: String, countRequest: Bool) -> Backend? {
        inner.withLockedValue { s in
            guard let b = route.backends.first(where: { $0.id == replica }), s.replicas[ReplicaKey(server: route.server, replica: replica)] != nil else { return nil }
            if countRequest { s.replicas[ReplicaKey(server: route.server, replica: replica)]!.outstanding += 1 }
            return b
        }
    }

    /// An exchange with a replica ended. `failed`: connect error, timeout or 5xx (counts toward ejection).
    func finished(server: String, replica: String, counted: Bool, failed: Bool?) {
        let t = now()
        inner.withLockedValue { s in
            let k = ReplicaKey(server: server, replica: replica)
            guard s.replicas[k] != nil else { return }
            if counted { s.replicas[k]!.outstanding -= 1 }
            switch failed {
            case true?: s.replicas[k]!.breaker.failure(nowNanos: t)
            case false?: s.replicas[k]!.breaker.success()
            case nil: s.replicas[k]!.breaker.release()
            }
        }
    }

    func sessionOpened(server: String, replica: String) {
        inner.withLockedValue { s in s.replicas[ReplicaKey(server: server, replica: replica)]?.sessions += 1 }
    }

    func sessionClosed(server: String, replica: String) {
        inner.withLockedValue { s in
            let k = ReplicaKey(server: server, replica: replica)
            if let n = s.replicas[k]?.sessions, n > 0 { s.replicas[k]!.sessions = n - 1 }
        }
    }

    /// Every replica with its counters and breaker state.
    public func replicaStatus() -> [ReplicaStatus] {
        let t = now()
        return inner.withLockedValue { s in
            s.table.routes.values.sorted { $0.server < $1.server }.flatMap { r in
                r.backends.map { b in
                    let rt = s.replicas[ReplicaKey(server: r.server, replica: b.id)]
                    return ReplicaStatus(server: r.server, revision: b.revision, replica: b.id, address: "\(b.host):\(b.port)", healthy: b.healthy,
                                         draining: b.draining, circuit: rt?.breaker.state(nowNanos: t) ?? .closed,
                                         consecutiveFailures: rt?.breaker.consecutiveFailures ?? 0, outstanding: rt?.outstanding ?? 0, sessions: rt?.sessions ?? 0)
                }
            }
        }
    }
}
