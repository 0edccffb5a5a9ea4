import FleetCore
import Foundation

/// One server in full, for the dashboard's server page and `/api/v1/servers/{name}`
/// (`Schemas/dashboard-server.schema.json`): its status row, every instance, the analysis run's
/// measurements against the SLO, the revision history with outcomes and evidence, the audit trail,
/// and the exact commands that promote, pause, resume or roll it back. Secret-safe: built from live
/// state, records, history and audit (which never hold secret values); instance log tails are left out.
public struct ServerStatusDetail: Codable, Hashable, Sendable {
    public var environment: String?
    public var generatedAt: Int64
    public var server: ServerStatusRow
    public var instances: [InstanceView]
    public var analysis: AnalysisView?
    public var history: [HistoryEntry]
    /// The server's audit trail, newest first.
    public var audit: [AuditEntry]
    public var commands: [OperatorCommand]
    /// The tool contract of the serving revision (its recorded surface); nil: none recorded yet.
    public var contract: ToolContractView?

    public struct InstanceView: Codable, Hashable, Sendable {
        public var id: String
        public var revision: String
        public var state: String
        public var healthy: Bool
        public var port: Int?
        public var restarts: Int?
        public var reason: String?
    }

    /// One revision of the history: what it was, when, how it ended and with which evidence.
    public struct HistoryEntry: Codable, Hashable, Sendable {
        public var revision: String
        public var version: String
        public var createdAt: Int64
        public var outcome: String
        public var reason: String?
        public var manifestCommit: String?
        public var evidence: EvidenceSummary?
    }

    /// The analysis of the rollout under way: the SLO's objectives and each measurement so far.
    public struct AnalysisView: Codable, Hashable, Sendable {
        public var slo: String
        public var provider: String
        public var count: Int
        public var failureLimit: Int
        public var intervalMs: Int64
        /// The objective as a fraction (0.995), when the SLO sets one.
        public var successRateObjective: Double?
        public var latencyP95MsObjective: Int64?
        /// `running`, `pass`, `fail` or `inconclusive`; nil when only the record's results are known.
        public var verdict: String?
        public var measurements: [Measurement]

        public struct Measurement: Codable, Hashable, Sendable {
            public var result: String
            public var successRate: Double?
            public var latencyP95Ms: Double?
            public var detail: String?
            public var time: Int64?
        }
    }

    /// The tool contract slot: the tools a server must offer and the digest of their schemas.
    public struct ToolContractView: Codable, Hashable, Sendable {
        public var digest: String?
        public var tools: [String]

        public init(digest: String?, tools: [String]) {
            self.digest = digest
            self.tools = tools
        }
    }

    /// Builds the page of `name`, or nil when the server is neither desired nor running. `analysis`: the
    /// controller's current run (values of each measurement), when this process runs the controller;
    /// else the record's pass/fail results are shown.
    public static func make(name: String, live: LiveState, desired: DesiredState?, record: RolloutRecord?, analysis: AnalysisStatus?,
                            history: [RevisionRecord], audit: [AuditEntry], commands: OperatorCommand.Context,
                            controller: ControllerStatus = ControllerStatus(), gateway: String? = nil, now: Int64,
                            contract: ToolContractView? = nil) -> ServerStatusDetail? {
        let l = live.server(name), d = desired?.server(name)
        guard l != nil || d != nil else { return nil }
        let row = ServerStatusRow(live: l, desired: d, name: name, record: record, gateway: gateway, now: now)
        let instances = (l?.revisions ?? []).flatMap { r in
            (r.instances ?? []).map { i in
                InstanceView(id: i.id, revision: r.revision, state: i.state.rawValue, healthy: i.healthy, port: i.port, restarts: i.restarts, reason: i.reason)
            }
        }
        var view: AnalysisView?
        if let slo = d?.slo, let record, !record.measurements.isEmpty || record.phase == .analyzing || analysis != nil {
            let current = analysis.flatMap { $0.revision == record.targetRevision ? $0 : nil }
            let measurements = current.map { $0.measurements.map { m in
                AnalysisView.Measurement(result: m.result.rawValue, successRate: m.successRate, latencyP95Ms: m.latencyP95Ms, detail: m.detail, time: m.time)
            } } ?? record.measurements.map { AnalysisView.Measurement(result: $0 ? "pass" : "fail") }
            view = AnalysisView(slo: slo.name, provider: ServerStatusRow.AnalysisCount.provider(slo), count: slo.count, failureLimit: slo.failureLimit, intervalMs: slo.intervalMs,
                                successRateObjective: slo.successRate, latencyP95MsObjective: slo.latencyP95Ms, verdict: current?.verdict.rawValue,
                                measurements: measurements)
        }
        return ServerStatusDetail(
            environment: live.environment ?? desired?.environment, generatedAt: now, server: row, instances: instances, analysis: view,
            history: history.sorted { $0.createdAt > $1.createdAt }.map {
                HistoryEntry(revision: $0.revision, version: $0.version, createdAt: $0.createdAt, outcome: $0.outcome.rawValue, reason: $0.reason,
                             manifestCommit: $0.manifestCommit, evidence: $0.evidence)
            },
            audit: audit.reversed(), commands: OperatorCommand.all(server: name, row: row, context: commands),
            contract: contract ?? recordedContract(history, serving: l?.servingRevision?.revision))
    }

    /// The surface the serving revision recorded when it first became healthy (docs/designs/0010).
    static func recordedContract(_ history: [RevisionRecord], serving: String?) -> ToolContractView? {
        guard let serving, let c = history.first(where: { $0.revision == serving })?.contract else { return nil }
        return ToolContractView(digest: c.digest, tools: c.tools.map(\.name))
    }
}

extension ServerStatusDetail.AnalysisView.Measurement {
    init(result: String) {
        self.init(result: result, successRate: nil, latencyP95Ms: nil, detail: nil, time: nil)
    }
}

/// A command an operator runs to change a rollout: the dashboard shows these instead of buttons, so
/// every change goes through the CLI (and its audit trail).
public struct OperatorCommand: Codable, Hashable, Sendable {
    public var action: String
    public var command: String
    /// What it does, given the server's state now.
    public var effect: String
    /// It applies to the server's state now (e.g. promote while a canary waits).
    public var applies: Bool

    /// How the CLI reaches the same catalog and environment as the controller.
    public struct Context: Sendable, Hashable {
        public var directory: String
        public var environment: String?

        public init(directory: String, environment: String?) {
            self.directory = directory
            self.environment = environment
        }
    }

    public static func all(server: String, row: ServerStatusRow, context: Context) -> [OperatorCommand] {
        let tail = " -C " + shellQuoted(context.directory) + (context.environment.map { " --env " + shellQuoted($0) } ?? "")
        func cmd(_ verb: String) -> String { "mcpfleet \(verb) \(shellQuoted(server))\(tail)" }
        let inRollout = row.rollout != nil
        let held = row.notes.contains("paused")
        return [
            OperatorCommand(action: "promote", command: cmd("promote"), effect: "ends the current canary pause (or accepts an inconclusive analysis) and continues",
                            applies: inRollout && (row.rollout?.phase == "paused" || held)),
            OperatorCommand(action: "pause", command: cmd("pause"), effect: "holds the rollout where it is", applies: !held),
            OperatorCommand(action: "resume", command: cmd("resume"), effect: "continues a paused rollout and releases a rollback pin",
                            applies: held || row.notes.contains { $0.hasPrefix("pinned") }),
            OperatorCommand(action: "rollback", command: cmd("rollback"), effect: "goes back to the last good revision and pins it", applies: inRollout || row.servingRevision != nil),
        ]
    }

    /// A word as a POSIX shell reads it back: bare when safe, else single-quoted.
    public static func shellQuoted(_ s: String) -> String {
        let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@%+,")
        if !s.isEmpty && s.allSatisfy(safe.contains) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
