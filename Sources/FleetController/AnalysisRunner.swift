import FleetCore

/// Runs SLO analyses: `count` measurements `interval` apart through the SLO's provider, folded into a
/// verdict by `SLOMath.verdict` (failing early). One run per server; a run for another revision or
/// step replaces it. The rollout machine reads the status; `onUpdate` wakes the server's reconcile.
public actor AnalysisRunner {
    struct Run {
        var status: AnalysisStatus
        var task: Task<Void, Never>
    }

    private var runs: [String: Run] = [:]
    private let providers: [AnalysisProviderKind: any AnalysisProvider]
    private let clock: any ControllerClock
    private let onUpdate: @Sendable (String, AnalysisStatus) async -> Void

    public init(providers: [AnalysisProviderKind: any AnalysisProvider], clock: any ControllerClock,
                onUpdate: @escaping @Sendable (String, AnalysisStatus) async -> Void) {
        self.providers = providers
        self.clock = clock
        self.onUpdate = onUpdate
    }

    public func status(server: String) -> AnalysisStatus? { runs[server]?.status }

    /// Starts a run unless one for the same revision and step, started at or after `notBefore`, exists.
    public func ensure(server: DesiredServer, revision: String, step: Int, notBefore: Int64) {
        if let r = runs[server.name], r.status.revision == revision, r.status.step == step, r.status.startedAt >= notBefore { return }
        runs[server.name]?.task.cancel()
        guard let slo = server.slo else { return }
        let now = clock.nowMs()
        let status = AnalysisStatus(revision: revision, step: step, startedAt: now, verdict: .running)
        // A `gateway` provider the environment chose (the SLO names none) where the gateway does not serve in
        // this process (`run --once`, `--gateway-address ""`): the controller's probes measure, saying so.
        let fallback = providers[slo.provider] == nil && slo.providerDefaulted == true && slo.provider == .gateway
        let provider = fallback ? providers[.probe] : providers[slo.provider]
        let clock = self.clock
        let task = Task { [weak self] in
            var results: [SLOMeasurement] = []
            await provider?.begin(server: server, revision: revision)
            for _ in 0..<max(1, slo.count) {
                do { try await clock.sleep(milliseconds: slo.intervalMs) } catch { return }
                let m: SLOMeasurement
                if let provider {
                    var measured = await provider.measure(server: server, revision: revision, slo: slo, now: clock.nowMs())
                    if fallback { measured.detail = "probe (the gateway does not serve in the controller's process)" + (measured.detail.map { "; " + $0 } ?? "") }
                    m = measured
                } else {
                    m = SLOMeasurement(result: .inconclusive, detail: "no \(slo.provider.rawValue) analysis provider configured", time: clock.nowMs())
                }
                if Task.isCancelled { return }
                results.append(m)
                let verdict = SLOMath.verdict(results.map(\.result), count: slo.count, failureLimit: slo.failureLimit)
                guard let self else { return }
                let updated = await self.update(server: server.name, startedAt: now, verdict: verdict, measurements: results)
                if let updated { await self.onUpdate(server.name, updated) }
                if verdict != .running { return }
            }
        }
        runs[server.name] = Run(status: status, task: task)
    }

    private func update(server: String, startedAt: Int64, verdict: AnalysisVerdict, measurements: [SLOMeasurement]) -> AnalysisStatus? {
        guard var r = runs[server], r.status.startedAt == startedAt else { return nil }
        r.status.verdict = verdict
        r.status.measurements = measurements
        runs[server] = r
        return r.status
    }

    public func cancel(server: String) {
        runs[server]?.task.cancel()
        runs[server] = nil
    }

    public func cancelAll() {
        for r in runs.values { r.task.cancel() }
        runs = [:]
    }
}
