import FleetCore

/// Probe results per server, revision and instance: health for the rollout machine and a window of
/// successes and latencies for the `probe` SLO provider.
public actor HealthTracker {
    struct InstanceHealth {
        var revision: String
        var consecutiveFailures = 0
        var successes = 0
        var lastProbeMs: Int64 = 0
        var lastMessage: String?
        /// The last failed probe's message (kept while later probes also fail or none passed yet).
        var lastFailure: String?
    }

    struct Window {
        var successes = 0
        var failures = 0
        var histogram = LatencyHistogram()
    }

    private var instances: [String: [String: InstanceHealth]] = [:]
    private var windows: [String: [String: Window]] = [:]
    private var lastResults: [String: [String: ProbeResult]] = [:]

    public init() {}

    /// Records one probe; returns true when the instance's health flipped (the rollout may move).
    @discardableResult
    public func record(server: String, revision: String, instance: String, result: ProbeResult, threshold: Int, now: Int64) -> Bool {
        var h = instances[server]?[instance] ?? InstanceHealth(revision: revision)
        let wasHealthy = healthy(h, threshold: threshold)
        h.lastProbeMs = now
        h.lastMessage = result.message
        if result.success {
            h.consecutiveFailures = 0
            h.successes += 1
        } else {
            h.consecutiveFailures += 1
            h.lastFailure = result.message ?? "probe failed"
        }
        instances[server, default: [:]][instance] = h
        lastResults[server, default: [:]][instance] = result
        var w = windows[server]?[revision] ?? Window()
        if result.success { w.successes += 1 } else { w.failures += 1 }
        w.histogram.observe(result.latencyMs)
        windows[server, default: [:]][revision] = w
        return wasHealthy != healthy(h, threshold: threshold)
    }

    func healthy(_ h: InstanceHealth, threshold: Int) -> Bool {
        h.successes > 0 && h.consecutiveFailures < max(1, threshold)
    }

    /// The instances of `server` this process has probed.
    public func probedInstances(server: String) -> Set<String> { Set((instances[server] ?? [:]).keys) }

    public func lastProbe(server: String, instance: String) -> Int64? { instances[server]?[instance]?.lastProbeMs }

    public func lastResult(server: String, instance: String) -> ProbeResult? { lastResults[server]?[instance] }

    /// Instances probed and not healthy, with why (the last failed probe's message).
    public func failures(server: String, threshold: Int) -> [String: String] {
        (instances[server] ?? [:]).compactMapValues { h in
            healthy(h, threshold: threshold) ? nil : (h.lastFailure ?? "no probe has passed yet")
        }
    }

    /// Every probed instance's verdict, with why for the unhealthy ones.
    public func notes(server: String, threshold: Int) -> [String: ProbeNote] {
        (instances[server] ?? [:]).mapValues { h in
            healthy(h, threshold: threshold) ? ProbeNote(healthy: true) : ProbeNote(healthy: false, reason: h.lastFailure ?? "no probe has passed yet")
        }
    }

    /// Forgets instances that no longer exist.
    public func retain(server: String, instances keep: Set<String>) {
        instances[server] = instances[server]?.filter { keep.contains($0.key) }
        lastResults[server] = lastResults[server]?.filter { keep.contains($0.key) }
    }

    public func forget(server: String) {
        instances[server] = nil
        windows[server] = nil
        lastResults[server] = nil
    }

    /// Health per revision, over the instances probed (plus `known` instances not yet probed, counted unhealthy).
    public func summary(server: String, threshold: Int, known: [String: Set<String>]) -> [String: RevisionHealth] {
        var out: [String: RevisionHealth] = [:]
        for (revision, ids) in known {
            var healthyCount = 0, probed = 0
            for id in ids {
                guard let h = instances[server]?[id] else { continue }
                probed += 1
                if healthy(h, threshold: threshold) { healthyCount += 1 }
            }
            out[revision] = RevisionHealth(healthy: healthyCount, probed: probed)
        }
        return out
    }

    /// Success ratio and p95 latency since the window was last taken, then starts a new window.
    public func takeWindow(server: String, revision: String) -> (successRate: Double?, p95Ms: Double?, samples: Int) {
        let w = windows[server]?[revision] ?? Window()
        windows[server, default: [:]][revision] = Window()
        let n = w.successes + w.failures
        return (n == 0 ? nil : Double(w.successes) / Double(n), w.histogram.quantile(0.95), n)
    }

    public func resetWindow(server: String, revision: String) {
        windows[server, default: [:]][revision] = Window()
    }
}
