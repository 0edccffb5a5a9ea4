import Foundation
import NIOConcurrencyHelpers
import Prometheus

/// What the gateway measures, on the same Prometheus registry as the controller's metrics (one
/// `/metrics`). Per-tool counters and histograms are also kept in process (`toolStats()`), so an
/// analysis provider can read a revision's tool-call outcomes without scraping.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public struct ToolKey: Hashable, Sendable, Codable {
        public var server: String
        public var revision: String
        public var tool: String
    }

    /// Cumulative outcomes of one tool on one revision (diff two snapshots for an interval).
    public struct ToolStats: Sendable, Hashable, Codable {
        public var calls = 0
        public var errors = 0
        /// Counts per `latencyBucketsMs` upper bound (last: +Inf).
        public var latencyBuckets: [Int]
        public var latencySumMs = 0.0
    }

    public static let latencyBucketsMs: [Double] = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]
    static let buckets: [Duration] = latencyBucketsMs.map { .microseconds(Int64($0 * 1000)) }

    private struct Instruments {
        var calls: Counter
        var errors: Counter
        var latency: DurationHistogram
    }

    private let tools = NIOLockedValueBox<[ToolKey: (Instruments, ToolStats)]>([:])
    private struct RequestKey: Hashable {
        var server: String
        var code: Int
    }

    private let requests = NIOLockedValueBox<[RequestKey: Counter]>([:])

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    public func toolCall(server: String, revision: String, tool: String, error: Bool, duration: Duration) {
        let key = ToolKey(server: server, revision: revision, tool: tool)
        let ms = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        let instruments: Instruments = tools.withLockedValue { all in
            if all[key] == nil {
                let labels = [("server", server), ("revision", revision), ("tool", tool)]
                let i = Instruments(
                    calls: registry.makeCounter(descriptor: Self.name("gateway_tool_calls", "total", "MCP tools/call requests seen by the gateway."), labels: labels),
                    errors: registry.makeCounter(descriptor: Self.name("gateway_tool_errors", "total", "tools/call answered with a JSON-RPC error or isError: true."),
                                                 labels: labels),
                    latency: registry.makeDurationHistogram(descriptor: Self.name("gateway_tool_call_duration", "seconds", "Time from a tools/call request to its response."),
                                                            labels: labels, buckets: Self.buckets))
                all[key] = (i, ToolStats(latencyBuckets: Array(repeating: 0, count: Self.latencyBucketsMs.count + 1)))
            }
            all[key]!.1.calls += 1
            if error { all[key]!.1.errors += 1 }
            all[key]!.1.latencySumMs += ms
            let b = Self.latencyBucketsMs.firstIndex { ms <= $0 } ?? Self.latencyBucketsMs.count
            all[key]!.1.latencyBuckets[b] += 1
            return all[key]!.0
        }
        instruments.calls.increment()
        if error { instruments.errors.increment() }
        instruments.latency.record(duration)
    }

    public func toolStats() -> [ToolKey: ToolStats] {
        tools.withLockedValue { $0.mapValues { $0.1 } }
    }

    public func request(server: String, code: Int) {
        let key = RequestKey(server: server, code: code)
        let counter = requests.withLockedValue { all in
            if let c = all[key] { return c }
            let c = registry.makeCounter(descriptor: Self.name("gateway_requests", "total", "HTTP requests the gateway answered, by route and status code."),
                                         labels: [("server", server), ("code", String(code))])
            all[key] = c
            return c
        }
        counter.increment()
    }

    public func rejected(scope: String, reason: String) {
        registry.makeCounter(descriptor: Self.name("gateway_rejected", "total", "Requests refused before reaching a server (auth, rate limit, size, no replica)."),
                             labels: [("scope", scope), ("reason", reason)]).increment()
    }

    public func upstreamFailure(server: String, replica: String) {
        registry.makeCounter(descriptor: Self.name("gateway_upstream_failures", "total", "Failed exchanges with a replica (connect errors, 5xx, timeouts)."),
                             labels: [("server", server), ("replica", replica)]).increment()
    }

    public func connections(_ n: Int) {
        registry.makeGauge(descriptor: Self.name("gateway_connections", "", "Client connections open.")).set(to: Double(n))
    }

    private struct ReplicaKey: Hashable {
        var server: String
        var revision: String
        var replica: String
    }

    private struct ReplicaGauges {
        var sessions: Gauge
        var outstanding: Gauge
        var circuit: Gauge
    }

    /// The replica gauges by replica, made once: the registry's `makeGauge` copies the family's label
    /// table on every call, so making them at every route refresh (twice a second) cost O(replicas²).
    private let replicaGauges = NIOLockedValueBox<[ReplicaKey: ReplicaGauges]>([:])

    /// Gauges of every replica: sessions, outstanding requests and circuit state (0 closed, 1 open, 2 half-open).
    public func replicas(_ rows: [ReplicaStatus]) {
        for r in rows {
            let key = ReplicaKey(server: r.server, revision: r.revision, replica: r.replica)
            let gauges = replicaGauges.withLockedValue { all in
                if let g = all[key] { return g }
                let labels = [("server", r.server), ("revision", r.revision), ("replica", r.replica)]
                let g = ReplicaGauges(
                    sessions: registry.makeGauge(descriptor: Self.name("gateway_sessions", "", "Sessions the gateway routes to each replica."), labels: labels),
                    outstanding: registry.makeGauge(descriptor: Self.name("gateway_outstanding_requests", "", "Requests in flight to each replica."), labels: labels),
                    circuit: registry.makeGauge(descriptor: Self.name("gateway_circuit_state", "", "Circuit breaker per replica: 0 closed, 1 open (ejected), 2 half-open."),
                                                labels: labels))
                all[key] = g
                return g
            }
            gauges.sessions.set(to: Double(r.sessions))
            gauges.outstanding.set(to: Double(r.outstanding))
            gauges.circuit.set(to: r.circuit == .closed ? 0 : r.circuit == .open ? 1 : 2)
        }
    }

    static func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "mcpfleet", metricName: metric, unitName: unit, helpText: help)
    }

    public func exposition() -> String { registry.emitToString() }
}
