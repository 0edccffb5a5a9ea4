import FleetCore
import Foundation
import Prometheus

/// The controller's Prometheus metrics (text exposition served at `/metrics`).
public final class ControllerMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    private func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "mcpfleet", metricName: metric, unitName: unit, helpText: help)
    }

    static let durationBuckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                              .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5),
                                              .seconds(5), .seconds(10), .seconds(30)]

    public func reconcileDuration(_ d: Duration, result: String) {
        registry.makeDurationHistogram(descriptor: name("reconcile_duration", "seconds", "Time spent in one reconcile of one key."),
                                       labels: [("result", result)], buckets: Self.durationBuckets).record(d)
    }

    /// One sync pass (the sync key and every server it queued, each reconciled once): wall and process CPU.
    public func resyncPass(servers: Int, wallSeconds: Double, cpuSeconds: Double) {
        registry.makeCounter(descriptor: name("resync_passes", "total", "Sync passes over every server completed.")).increment()
        registry.makeGauge(descriptor: name("resync_pass_servers", "", "Servers in the last sync pass.")).set(to: Double(servers))
        registry.makeGauge(descriptor: name("resync_pass", "seconds", "Wall time of the last sync pass, from the sync to its last server's reconcile."))
            .set(to: wallSeconds)
        registry.makeGauge(descriptor: name("resync_pass_cpu", "seconds", "Process CPU time (user+system, probes included) during the last sync pass."))
            .set(to: cpuSeconds)
    }

    public func queueDepth(_ n: Int) {
        registry.makeGauge(descriptor: name("workqueue_depth", "", "Keys waiting in the work queue.")).set(to: Double(n))
    }

    public func change(action: String) {
        registry.makeCounter(descriptor: name("changes", "total", "Changes made to the runtime, by action."), labels: [("action", action)]).increment()
    }

    public func phase(server: String, phase: RolloutPhase) {
        for p in RolloutPhase.allCases {
            registry.makeGauge(descriptor: name("rollout_phase", "", "1 for the rollout phase each server is in."),
                               labels: [("server", server), ("phase", p.rawValue)]).set(to: p == phase ? 1.0 : 0.0)
        }
    }

    public func replicas(server: String, desired: Int, ready: Int) {
        registry.makeGauge(descriptor: name("server_replicas_desired", "", "Replicas the catalog asks for."), labels: [("server", server)]).set(to: Double(desired))
        registry.makeGauge(descriptor: name("server_replicas_ready", "", "Replicas running and healthy."), labels: [("server", server)]).set(to: Double(ready))
    }

    public func slo(server: String, revision: String, measurement: SLOMeasurement) {
        if let v = measurement.successRate {
            registry.makeGauge(descriptor: name("slo_success_rate", "", "Last measured success ratio."), labels: [("server", server), ("revision", revision)]).set(to: v)
        }
        if let v = measurement.latencyP95Ms {
            registry.makeGauge(descriptor: name("slo_latency_p95", "seconds", "Last measured p95 latency."), labels: [("server", server), ("revision", revision)]).set(to: v / 1000)
        }
        registry.makeCounter(descriptor: name("analysis_measurements", "total", "SLO measurements taken, by result."),
                             labels: [("server", server), ("result", measurement.result.rawValue)]).increment()
    }

    public func probe(server: String, revision: String, result: ProbeResult) {
        registry.makeDurationHistogram(descriptor: name("probe_duration", "seconds", "Health probe latency."),
                                       labels: [("server", server), ("revision", revision), ("result", result.success ? "success" : "failure")],
                                       buckets: Self.durationBuckets).record(.milliseconds(Int64(result.latencyMs.rounded())))
    }

    public func policyDenial(server: String) {
        registry.makeCounter(descriptor: name("policy_denials", "total", "Reconciles that held a revision blocked by policy."), labels: [("server", server)]).increment()
    }

    public func reconcileError(server: String) {
        registry.makeCounter(descriptor: name("reconcile_errors", "total", "Reconciles that failed and were retried."), labels: [("server", server)]).increment()
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
