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

/// A rollout store that tells the gateway in the same process about every record the controller
/// saves, so new weights apply the moment the record changes (a rollback takes new sessions off the
/// failed revision at once), not at the next route refresh. Everything else is passed through.
public final class WeightPublishingStore: RolloutStoreDecorator {
    public let inner: any RolloutStore
    let saved: @Sendable (RolloutRecord) async -> Void

    public init(_ inner: any RolloutStore, saved: @escaping @Sendable (RolloutRecord) async -> Void) {
        self.inner = inner
        self.saved = saved
    }

    public func save(_ record: RolloutRecord) async throws {
        try await inner.save(record)
        await saved(record)
    }

    public func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord? {
        let written = try await inner.saveIfUnchanged(record)
        if let written { await saved(written) }
        return written
    }

    public func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        let written = try await inner.saveIfUnchanged(record, then: then)
        if let written { await saved(written) }
        return written
    }

}
