import FleetCore

/// The `gateway` analysis provider (design 0009): a revision's real tool calls through the gateway —
/// success rate and p95/p99 latency over each interval — judged against the SLO. Reads the gateway's
/// cumulative per-revision counts (`GatewayMetrics.toolWindows`) and differences them from the
/// interval's start; fewer than `minimumCalls` calls is inconclusive, never a pass.
public final class GatewayAnalysisProvider: AnalysisProvider {
    public typealias Read = @Sendable (_ server: String) -> [String: ToolCallWindow]
    let read: Read
    let minimumCalls: Int
    private let baselines = Baselines()

    actor Baselines {
        var last: [String: ToolCallWindow] = [:]
        /// Returns the previous snapshot of `key` and keeps `now` in its place.
        func swap(_ key: String, _ now: ToolCallWindow?) -> ToolCallWindow? {
            defer { last[key] = now }
            return last[key]
        }
    }

    public init(minimumCalls: Int = SLOMath.defaultMinimumCalls, read: @escaping Read) {
        self.read = read
        self.minimumCalls = minimumCalls
    }

    static func key(_ server: String, _ revision: String) -> String { server + "\u{0}" + revision }
    /// The baseline of every other revision's calls, taken with the canary's (`compareWithStable`).
    static func othersKey(_ server: String, _ revision: String) -> String { server + "\u{0}others\u{0}" + revision }

    /// The calls of every revision but `revision`: the stable one during a canary step (and any older
    /// one still draining), added up.
    static func others(_ windows: [String: ToolCallWindow], except revision: String) -> ToolCallWindow? {
        windows.filter { $0.key != revision }.values.reduce(nil) { sum, w in sum.map { $0 + w } ?? w }
    }

    public func begin(server: DesiredServer, revision: String) async {
        let all = read(server.name)
        _ = await baselines.swap(Self.key(server.name, revision), all[revision])
        _ = await baselines.swap(Self.othersKey(server.name, revision), Self.others(all, except: revision))
    }

    public func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement {
        let all = read(server.name)
        let window = await difference(all[revision], key: Self.key(server.name, revision))
        // Compared with the stable revision over the same interval when the SLO asks (design 0016).
        var stable: ToolCallWindow?
        let others = await difference(Self.others(all, except: revision), key: Self.othersKey(server.name, revision))
        if slo.compareWithStable == true { stable = others }
        return SLOMath.judge(canary: window, stable: stable, slo: slo, minimumCalls: slo.minimumCalls ?? minimumCalls,
                             tolerance: slo.stableTolerance ?? SLOMath.defaultStableTolerance, time: now)
    }

    /// `current` less the snapshot kept under `key` (which `current` replaces).
    private func difference(_ current: ToolCallWindow?, key: String) async -> ToolCallWindow {
        let previous = await baselines.swap(key, current)
        let empty = ToolCallWindow(bounds: GatewayAnalysisProvider.bounds(current, previous))
        return (current ?? empty).subtracting(previous ?? empty)
    }

    static func bounds(_ a: ToolCallWindow?, _ b: ToolCallWindow?) -> [Double] { a?.bounds ?? b?.bounds ?? LatencyHistogram.defaultBounds }
}
