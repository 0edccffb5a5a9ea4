import FleetCore

extension RouteTable {
    /// The same routes with each server's share of new sessions per revision (`TrafficRules.weights`
    /// of its desired spec and rollout record; nil leaves a route balanced by replica).
    public func weighted(by weights: (String) -> [String: Int]?) -> RouteTable {
        var out = self
        for name in routes.keys { out.routes[name]!.revisionWeights = weights(name) }
        return out
    }
}

extension GatewayMetrics {
    /// Cumulative tool-call outcomes of one server per revision (every tool summed), for the
    /// `gateway` analysis provider to difference over its intervals.
    public func toolWindows(server: String) -> [String: ToolCallWindow] {
        var out: [String: ToolCallWindow] = [:]
        for (key, stats) in toolStats() where key.server == server {
            let w = ToolCallWindow(calls: stats.calls, errors: stats.errors, bounds: Self.latencyBucketsMs, latencyBuckets: stats.latencyBuckets)
            out[key.revision] = out[key.revision].map { $0 + w } ?? w
        }
        return out
    }
}
