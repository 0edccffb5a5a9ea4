public import FleetCore
import Foundation

/// Session draining between the controller and the gateway Deployment's replicas (design 0018) — the
/// Kubernetes twin of the host's `SQLiteDrainBoard` (design 0016), with the same rules:
/// - the controller marks the pods a scale-down will remove in the route object the gateways already
///   watch (`GatewayRouteObject.markDraining`); every change bumps its drain generation;
/// - every gateway, at each route refresh, applies the marks (no new sessions there) and publishes, in a
///   Lease of its own (`mcpfleet-gateway-report-<pod>`, label `mcpfleet.io/gateway-report`), the open
///   sessions it routes per backend pod and the drain generation its installed routes carry — written
///   when the report changes, else every 2 s as a heartbeat; a clean shutdown deletes it;
/// - the controller waits until the marked pods hold no session in any live gateway *and* every live
///   gateway has installed the marks (`openSessions`), or the drain timeout passes.
/// A gateway silent for `freshMs` is gone (or hung) and is not waited for; its Lease is deleted after
/// `pruneMs`. The controller reads the reports from a watch it starts at its first drain.
public final class KubernetesDrainBoard: Sendable {
    public static let reportLabel = "mcpfleet.io/gateway-report"
    public static let reportAnnotation = "mcpfleet.io/report"
    public static let reportPrefix = "mcpfleet-gateway-report-"

    /// One gateway's report, as its Lease carries it.
    public struct Report: Codable, Hashable, Sendable {
        public var gateway: String
        public var seenGeneration: Int64
        /// The gateway's clock, epoch ms, when it wrote the report.
        public var updatedAt: Int64
        /// Open sessions per server, per backend pod (only pods with sessions).
        public var open: [String: [String: Int]]
        /// Cumulative tool calls per server, per revision, since the gateway started (the `gateway`
        /// analysis provider's data; absent from gateways that route no tool calls yet).
        public var tools: [String: [String: Calls]]?
    }

    /// A `ToolCallWindow` as the report carries it.
    public struct Calls: Codable, Hashable, Sendable {
        public var calls: Int
        public var errors: Int
        public var bounds: [Double]
        public var buckets: [Int]
        public init(_ w: ToolCallWindow) { (calls, errors, bounds, buckets) = (w.calls, w.errors, w.bounds, w.latencyBuckets) }
        public var window: ToolCallWindow { ToolCallWindow(calls: calls, errors: errors, bounds: bounds, latencyBuckets: buckets) }
    }

    public let routes: GatewayRouteObject
    public let freshMs: Int64
    public let pruneMs: Int64
    let reports: Informer<Report>
    let totals = ToolCallTotals()

    public init(routes: GatewayRouteObject, freshMs: Int64 = 10_000, pruneMs: Int64 = 60_000, configuration: InformerConfiguration = InformerConfiguration()) {
        self.routes = routes
        self.freshMs = freshMs
        self.pruneMs = pruneMs
        reports = Informer(client: routes.client, type: .lease, namespace: routes.namespace, labelSelector: Self.reportLabel,
                           configuration: configuration, transform: Self.report)
    }

    deinit { reports.stopWithoutWaiting() }

    public var client: KubeClient { routes.client }
    public var namespace: String { routes.namespace }

    public static func leaseName(gateway: String) -> String { reportPrefix + KubernetesRenderer.labelValue(gateway.lowercased()) }

    static func report(_ o: KubeObject) -> Report? {
        o.annotations[reportAnnotation].flatMap { try? JSONDecoder().decode(Report.self, from: Data($0.utf8)) }
    }

    public func stop() async { await reports.stop() }

    // MARK: The controller's side

    /// Marks (or, `false`, unmarks) pods draining; returns the generation that includes the change.
    @discardableResult
    public func mark(server: String, replicas: [String], draining: Bool, now: Int64) async throws -> Int64 {
        try await routes.markDraining(server: server, replicas: replicas, draining: draining, now: now)
    }

    /// Lifts every mark (a controller taking over has no drain under way).
    public func clearMarks(now: Int64) async throws { try await routes.clearDraining(now: now) }

    /// The reports of the gateways heard from in the last `freshMs` (the watch starts on first use);
    /// Leases silent for `pruneMs` are deleted on the way. A watch that cannot list them (RBAC without
    /// `list leases`) fails after a few seconds, so a drain still ends at its timeout.
    public func liveReports(now: Int64) async throws -> [Report] {
        if !reports.isRunning { reports.start() }
        try await reports.waitUntilSynced(timeout: .seconds(5))
        let all = reports.items
        for r in all where now - r.updatedAt > pruneMs {
            let name = Self.leaseName(gateway: r.gateway)
            do { _ = try await client.delete(.lease, namespace: namespace, name: name) } catch let error as KubeError where error.isNotFound {}
            reports.forget(namespace: namespace, name: name)
        }
        return all.filter { now - $0.updatedAt <= freshMs }
    }

    /// Open sessions on `replicas` summed over the live gateways, and whether every live gateway has
    /// installed marks of `generation` or later. The marks gone from the route object (it was deleted or
    /// replaced mid-drain) are written again first: the gateways must learn them to confirm.
    public func openSessions(server: String, replicas: [String], generation: Int64, now: Int64) async throws -> (open: Int, confirmed: Bool, gateways: Int) {
        let marked = routes.drainMarks
        if !Set(replicas).isSubset(of: marked.replicas[server] ?? []) || marked.generation < generation {
            try await mark(server: server, replicas: replicas, draining: true, now: now)
        }
        let live = try await liveReports(now: now)
        let open = live.reduce(0) { sum, r in sum + replicas.reduce(0) { $0 + (r.open[server]?[$1] ?? 0) } }
        return (open, live.allSatisfy { $0.seenGeneration >= generation }, live.count)
    }

    /// Open sessions per pod of a server over the live gateways (which pods a scale-down removes first).
    public func sessions(server: String, now: Int64) async throws -> [String: Int] {
        var out: [String: Int] = [:]
        for r in try await liveReports(now: now) {
            for (pod, n) in r.open[server] ?? [:] { out[pod, default: 0] += n }
        }
        return out
    }

    // MARK: The `gateway` analysis provider

    /// Starts watching the reports now (the controller, so that the provider's first baseline is read
    /// from a synced cache rather than an empty one).
    public func startWatching() { if !reports.isRunning { reports.start() } }

    /// Cumulative tool calls of a server per revision through every gateway replica: what the
    /// `gateway` provider differences per interval. Kept monotonic: the last counts of a gateway that
    /// went away (its Lease withdrawn or pruned), or whose counts went back (its process restarted),
    /// stay in the total.
    public func toolWindows(server: String) -> [String: ToolCallWindow] {
        startWatching()
        return totals.update(reports.items)[server] ?? [:]
    }

    // MARK: The gateway's side

    /// The marks as the gateway's watch of the route object last saw them.
    public func marks() -> (generation: Int64, replicas: [String: Set<String>]) { routes.drainMarks }

    /// Writes this gateway's report (server-side apply of its Lease: one request, created when absent).
    public func publish(gateway: String, seenGeneration: Int64, open: [(server: String, replica: String, sessions: Int)],
                        tools: [String: [String: ToolCallWindow]], now: Int64) async throws {
        var byServer: [String: [String: Int]] = [:]
        for o in open where o.sessions > 0 { byServer[o.server, default: [:]][o.replica, default: 0] += o.sessions }
        let calls = tools.mapValues { $0.mapValues(Calls.init) }.filter { !$0.value.isEmpty }
        let report = Report(gateway: gateway, seenGeneration: seenGeneration, updatedAt: now, open: byServer, tools: calls.isEmpty ? nil : calls)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var metadata = KubernetesRenderer.meta(name: Self.leaseName(gateway: gateway), namespace: namespace, labels: [
            Self.reportLabel: "true", KubernetesRenderer.labelManagedBy: KubernetesRenderer.managedBy, KubernetesRenderer.labelPartOf: "mcpfleet"])
        metadata["annotations"] = .obj([Self.reportAnnotation: .string(String(decoding: try encoder.encode(report), as: UTF8.self))])
        let lease = KubeObject(.obj(["apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata,
                                     "spec": .obj(["holderIdentity": .string(gateway), "leaseDurationSeconds": .int(max(1, freshMs / 1000))])]))
        do { _ = try await client.apply(lease, force: true) } catch let error as KubeError { throw error.driverError }
    }

    /// The gateway's report is gone with it (a clean shutdown).
    public func withdraw(gateway: String) async throws {
        do { _ = try await client.delete(.lease, namespace: namespace, name: Self.leaseName(gateway: gateway)) } catch let error as KubeError where error.isNotFound {
        } catch let error as KubeError { throw error.driverError }
    }
}

/// The sum over gateway replicas of their cumulative tool calls, which must never go backwards: the
/// provider differences it from a baseline.
final class ToolCallTotals: @unchecked Sendable {
    private let lock = NSLock()
    /// Each gateway's counts as last read.
    private var last: [String: [String: [String: ToolCallWindow]]] = [:]
    /// Counts of gateways gone or restarted.
    private var retired: [String: [String: ToolCallWindow]] = [:]

    func update(_ reports: [KubernetesDrainBoard.Report]) -> [String: [String: ToolCallWindow]] {
        lock.withLock {
            var now: [String: [String: [String: ToolCallWindow]]] = [:]
            for r in reports { now[r.gateway] = (r.tools ?? [:]).mapValues { $0.mapValues(\.window) } }
            for (gateway, before) in last {
                let current = now[gateway]
                for (server, revisions) in before {
                    for (revision, w) in revisions {
                        // Gone, or counting from zero again: its last counts are kept.
                        if let c = current?[server]?[revision], c.calls >= w.calls { continue }
                        retired[server, default: [:]][revision] = retired[server]?[revision].map { $0 + w } ?? w
                    }
                }
            }
            last = now
            var total = retired
            for (_, servers) in now {
                for (server, revisions) in servers {
                    for (revision, w) in revisions { total[server, default: [:]][revision] = total[server]?[revision].map { $0 + w } ?? w }
                }
            }
            return total
        }
    }
}
