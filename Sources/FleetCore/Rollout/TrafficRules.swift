/// What the gateway does with a server's traffic during a rollout (docs/designs/0009-traffic.md):
/// the share of new sessions each revision gets, and when a replica about to stop has drained. Pure:
/// the gateway asks it for weights (from the same rollout record the controller writes), the
/// draining driver asks it whether a stop may go ahead.
public enum TrafficRules {
    /// `rollout.drainTimeout` when the manifest does not set it.
    public static let defaultDrainTimeoutMs: Int64 = 30_000

    public static func drainTimeoutMs(_ d: DesiredServer) -> Int64 { d.rollout.drainTimeoutMs ?? defaultDrainTimeoutMs }

    /// The analysis provider of an SLO that names none (design 0016): `gateway` where the controller
    /// serves the gateway in its own process by default — and so counts the tool calls clients make —
    /// else `probe`. That is `driver: local` (`mcpfleet run` serves it at `127.0.0.1:9470` unless told
    /// otherwise) and a systemd host with `spec.gateway.address` (`run` serves it there). On Kubernetes
    /// with `spec.gateway` the gateway Deployment's replicas publish their counts in their report Leases,
    /// which the controller sums (design 0018); without it, `probe`. Where the gateway turns out not to serve in the controller's process after all
    /// (`run --once`, `--gateway-address ""`), a defaulted `gateway` is measured by `probe`, saying so.
    public static func defaultProvider(_ environment: Environment) -> AnalysisProviderKind {
        switch environment.driver {
        case .local: .gateway
        case .systemd: environment.gateway?.address != nil ? .gateway : .probe
        case .kubernetes: environment.gateway != nil ? .gateway : .probe
        }
    }

    /// Share of new sessions (and of session-less requests) per revision, in percent; nil means by
    /// replica, all alike. During a canary step `weight: N` the canary gets N and the stable revision
    /// the rest; a `replicas:` step, the final step and rolling updates go by replica. Outside a
    /// rollout (after a rollback too) every new session goes to the serving revision: a failed
    /// revision gets none from the moment the record says it failed, while its open sessions drain.
    public static func weights(desired: DesiredServer, record: RolloutRecord?) -> [String: Int]? {
        guard let r = record else { return nil }
        guard let target = r.targetRevision else {
            return (r.pinnedRevision ?? r.stableRevision).map { [$0: 100] }
        }
        guard desired.rollout.strategy == .canary, target == desired.revision, r.step >= 0, r.step < desired.rollout.steps.count else { return nil }
        let step = desired.rollout.steps[r.step]
        guard step.replicas == nil, let w = step.weight else { return nil }
        let weight = min(100, max(0, w))
        guard let stable = r.stableRevision, stable != target else { return [target: 100] }
        return [target: weight, stable: 100 - weight]
    }

    /// Whether a replica about to stop has drained: no open sessions, or `timeoutMs` since draining began.
    public enum Drain: Hashable, Sendable {
        case done(reason: String)
        /// Check again (sessions may end sooner); the timeout ends the wait at `deadline` (epoch ms).
        case wait(deadline: Int64)
    }

    /// `confirmed`: every gateway routing the server has applied the draining marks (a gateway in another
    /// process applies them at its next route refresh; until then a new session may still arrive).
    public static func drain(openSessions: Int, since: Int64, now: Int64, timeoutMs: Int64, confirmed: Bool = true) -> Drain {
        if openSessions <= 0, confirmed { return .done(reason: "no open sessions") }
        if now >= since + timeoutMs {
            return .done(reason: "drain timeout \(timeoutMs)ms reached with \(openSessions) open session\(openSessions == 1 ? "" : "s")"
                         + (confirmed ? "" : " (not every gateway had applied the draining marks)"))
        }
        return .wait(deadline: since + timeoutMs)
    }
}

/// Tool-call outcomes of one revision over an interval, as the gateway counts them (the difference of
/// two cumulative snapshots). `latencyBuckets` counts per `bounds` upper bound, plus one overflow.
public struct ToolCallWindow: Hashable, Sendable {
    public var calls: Int
    public var errors: Int
    public var bounds: [Double]
    public var latencyBuckets: [Int]

    public init(calls: Int = 0, errors: Int = 0, bounds: [Double], latencyBuckets: [Int]? = nil) {
        self.calls = calls
        self.errors = errors
        self.bounds = bounds
        self.latencyBuckets = latencyBuckets ?? Array(repeating: 0, count: bounds.count + 1)
    }

    public var successRate: Double? { calls > 0 ? Double(calls - errors) / Double(calls) : nil }

    /// As Prometheus' `histogram_quantile` (linear inside the bucket); nil without calls.
    public func quantile(_ q: Double) -> Double? { LatencyHistogram(bounds: bounds, counts: latencyBuckets)?.quantile(q) }

    /// `self − earlier`, per field (a counter that went backwards — the gateway restarted — counts from zero).
    public func subtracting(_ earlier: ToolCallWindow) -> ToolCallWindow {
        guard earlier.bounds == bounds, earlier.calls <= calls, earlier.latencyBuckets.count == latencyBuckets.count else { return self }
        return ToolCallWindow(calls: calls - earlier.calls, errors: max(0, errors - earlier.errors), bounds: bounds,
                              latencyBuckets: zip(latencyBuckets, earlier.latencyBuckets).map { max(0, $0 - $1) })
    }

    public static func + (a: ToolCallWindow, b: ToolCallWindow) -> ToolCallWindow {
        guard a.bounds == b.bounds else { return a.calls >= b.calls ? a : b }
        return ToolCallWindow(calls: a.calls + b.calls, errors: a.errors + b.errors, bounds: a.bounds,
                              latencyBuckets: zip(a.latencyBuckets, b.latencyBuckets).map { $0 + $1 })
    }
}

extension SLOMath {
    /// Fewer tool calls than this in an interval make a gateway measurement inconclusive.
    public static let defaultMinimumCalls = 20
    /// `analysis.stableTolerance` when not set: one percentage point of success rate.
    public static let defaultStableTolerance = 0.01

    /// Judges a revision's tool calls over one interval against the SLO, and (when given) against the
    /// stable revision over the same interval: the canary fails when its error rate is worse than the
    /// stable one's by more than `tolerance` (absolute) even if it meets the objective. Too few calls is
    /// inconclusive, never a pass.
    public static func judge(canary: ToolCallWindow, stable: ToolCallWindow?, slo: DesiredSLO, minimumCalls: Int = defaultMinimumCalls,
                             tolerance: Double = defaultStableTolerance, time: Int64) -> SLOMeasurement {
        let p95 = canary.quantile(0.95), p99 = canary.quantile(0.99)
        let stats = "\(canary.calls) call\(canary.calls == 1 ? "" : "s"), \(canary.errors) error\(canary.errors == 1 ? "" : "s")"
            + (p95.map { ", p95 \(format($0))ms" } ?? "") + (p99.map { ", p99 \(format($0))ms" } ?? "")
        guard canary.calls >= max(1, minimumCalls) else {
            return SLOMeasurement(result: .inconclusive, successRate: canary.successRate, latencyP95Ms: p95,
                                  detail: "too few tool calls through the gateway: \(stats) (at least \(max(1, minimumCalls)) needed)", time: time)
        }
        var m = judge(successRate: canary.successRate, latencyP95Ms: p95, slo: slo, time: time)
        if m.result != .fail, let stable, stable.calls >= max(1, minimumCalls), let c = canary.successRate, let s = stable.successRate, c < s - tolerance {
            m.result = .fail
            m.detail = "success rate \(format(c)) is below the stable revision's \(format(s)) over the same interval by more than the tolerance \(format(tolerance))"
        }
        m.detail = (m.detail.map { $0 + "; " } ?? "") + stats
        return m
    }
}
