import FleetCore
import Foundation
import Prometheus
import Synchronization

/// The controller's Prometheus metrics (text exposition served at `/metrics`).
public final class ControllerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// Whether the per-server series (phase, replicas, probe latency) are kept. The registry adds a label
    /// set in O(series of the family), so a fleet's first pass builds them in O(N²): worth it where
    /// `/metrics` is served (`run`), not for a one-shot `apply` that serves none.
    public let perServerSeries: Bool

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        perServerSeries = true
    }

    public init(perServerSeries: Bool) {
        registry = PrometheusCollectorRegistry()
        self.perServerSeries = perServerSeries
    }

    /// Metric handles by name and labels. The registry's `make…` copies a metric family's whole label
    /// table on every call (O(servers)): at 1,000 servers the per-reconcile phase gauges alone took a
    /// fifth of a no-op apply's CPU. Each handle is made once here, then only set.
    private let handles = Mutex<[String: any AnyObject & Sendable]>([:])
    /// The last phase set per server: the seven gauges are touched only when it changes.
    private let phases = Mutex<[String: RolloutPhase]>([:])

    private func handle<M: AnyObject & Sendable>(_ metric: String, _ labels: [(String, String)], make: () -> M) -> M {
        var key = metric
        for (k, v) in labels { key += "\u{1}" + k + "\u{2}" + v }
        if let m = handles.withLock({ $0[key] }) as? M { return m }
        let m = make()
        handles.withLock { $0[key] = m }
        return m
    }

    private func gauge(_ metric: String, _ unit: String, _ help: String, labels: [(String, String)] = []) -> Gauge {
        handle(metric, labels) { registry.makeGauge(descriptor: name(metric, unit, help), labels: labels) }
    }

    private func counter(_ metric: String, _ unit: String, _ help: String, labels: [(String, String)] = []) -> Counter {
        handle(metric, labels) { registry.makeCounter(descriptor: name(metric, unit, help), labels: labels) }
    }

    private func histogram(_ metric: String, _ unit: String, _ help: String, labels: [(String, String)]) -> DurationHistogram {
        handle(metric, labels) { registry.makeDurationHistogram(descriptor: name(metric, unit, help), labels: labels, buckets: Self.durationBuckets) }
    }

    private func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "mcpfleet", metricName: metric, unitName: unit, helpText: help)
    }

    static let durationBuckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                              .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
                                              .seconds(5), .seconds(10), .seconds(30)]

    public func reconcileDuration(_ d: Duration, result: String) {
        histogram("reconcile_duration", "seconds", "Time spent in one reconcile of one key.", labels: [("result", result)]).record(d)
    }

    /// One sync pass (the sync key and every server it queued, each reconciled once): wall and process CPU.
    public func resyncPass(servers: Int, wallSeconds: Double, cpuSeconds: Double) {
        counter("resync_passes", "total", "Sync passes over every server completed.").increment()
        gauge("resync_pass_servers", "", "Servers in the last sync pass.").set(to: Double(servers))
        gauge("resync_pass", "seconds", "Wall time of the last sync pass, from the sync to its last server's reconcile.").set(to: wallSeconds)
        gauge("resync_pass_cpu", "seconds", "Process CPU time (user+system, probes included) during the last sync pass.").set(to: cpuSeconds)
    }

    public func queueDepth(_ n: Int) {
        gauge("workqueue_depth", "", "Keys waiting in the work queue.").set(to: Double(n))
    }

    public func change(action: String) {
        counter("changes", "total", "Changes made to the runtime, by action.", labels: [("action", action)]).increment()
    }

    /// 1 for the phase a server is in, 0 for phases it was in before. A series is made when the server
    /// first enters its phase, not for all seven phases of every server: at 1,000 servers the seven
    /// gauges each were 3.5 MiB of the controller's heap (issue 14), and alerts and dashboards ask for
    /// `== 1`, which an absent series answers the same as a 0.
    public func phase(server: String, phase: RolloutPhase) {
        guard perServerSeries else { return }
        let previous = phases.withLock { $0.updateValue(phase, forKey: server) }
        guard previous != phase else { return }
        func series(_ p: RolloutPhase) -> Gauge {
            gauge("rollout_phase", "", "1 for the rollout phase each server is in.", labels: [("server", server), ("phase", p.rawValue)])
        }
        if let previous { series(previous).set(to: 0) }
        series(phase).set(to: 1)
    }

    public func replicas(server: String, desired: Int, ready: Int) {
        guard perServerSeries else { return }
        gauge("server_replicas_desired", "", "Replicas the catalog asks for.", labels: [("server", server)]).set(to: Double(desired))
        gauge("server_replicas_ready", "", "Replicas running and healthy.", labels: [("server", server)]).set(to: Double(ready))
    }

    public func slo(server: String, revision: String, measurement: SLOMeasurement) {
        if let v = measurement.successRate {
            gauge("slo_success_rate", "", "Last measured success ratio.", labels: [("server", server), ("revision", revision)]).set(to: v)
        }
        if let v = measurement.latencyP95Ms {
            gauge("slo_latency_p95", "seconds", "Last measured p95 latency.", labels: [("server", server), ("revision", revision)]).set(to: v / 1000)
        }
        counter("analysis_measurements", "total", "SLO measurements taken, by result.",
                labels: [("server", server), ("result", measurement.result.rawValue)]).increment()
    }

    public func probe(server: String, revision: String, result: ProbeResult) {
        guard perServerSeries else { return }
        histogram("probe_duration", "seconds", "Health probe latency.",
                  labels: [("server", server), ("revision", revision), ("result", result.success ? "success" : "failure")])
            .record(.milliseconds(Int64(result.latencyMs.rounded())))
    }

    public func policyDenial(server: String) {
        counter("policy_denials", "total", "Reconciles that held a revision blocked by policy.", labels: [("server", server)]).increment()
    }

    public func reconcileError(server: String) {
        counter("reconcile_errors", "total", "Reconciles that failed and were retried.", labels: [("server", server)]).increment()
    }

    public func exposition() -> String { registry.emitToString() }
}

/// The process's CPU time so far (user + system), for the sync pass's cost.
enum ProcessCPU {
    static func seconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
