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

    public func begin(server: DesiredServer, revision: String) async {
        _ = await baselines.swap(Self.key(server.name, revision), read(server.name)[revision])
    }

    public func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement {
        let current = read(server.name)[revision]
        let previous = await baselines.swap(Self.key(server.name, revision), current)
        let empty = ToolCallWindow(bounds: GatewayAnalysisProvider.bounds(current, previous))
        let window = (current ?? empty).subtracting(previous ?? empty)
        return SLOMath.judge(canary: window, stable: nil, slo: slo, minimumCalls: slo.minimumCalls ?? minimumCalls, time: now)
    }

    static func bounds(_ a: ToolCallWindow?, _ b: ToolCallWindow?) -> [Double] { a?.bounds ?? b?.bounds ?? LatencyHistogram.defaultBounds }
}
