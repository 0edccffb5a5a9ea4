import FleetCore
import Foundation

/// What the fleet looks like to a person: the one computation behind `mcpfleet status` (table and
/// notes), `status --watch`, the dashboard at `/ui` and `/api/v1/fleet` (docs/designs/0011-dashboard.md,
/// `Schemas/dashboard-fleet.schema.json`). Built from what the driver runs (with the controller's
/// bookkeeping folded in), the catalog and the rollout records; it never carries a secret value
/// (those never reach live state, records or desired state's display fields).
///
/// To show something new everywhere, add it to the row (and the schema) here, not to a command.
public struct FleetStatusView: Codable, Hashable, Sendable {
    public var environment: String?
    public var driver: String?
    /// Unix epoch ms when this view was computed (the dashboard's countdowns count from it).
    public var generatedAt: Int64
    /// The gateway's address, when one serves the fleet (rows then carry their endpoint).
    public var gateway: String?
    /// The git commit of the manifests the controller last loaded (nil: not in git, or no controller).
    public var syncedCommit: String?
    public var controller: ControllerStatus
    public var servers: [ServerStatusRow]
    /// The lines under the status table: why a server is held, failed or not ready, analysis progress.
    public var notes: [String]
    /// The fleet's last audit entries, newest first (set by the caller that reads the audit log:
    /// `status --watch` and the dashboard; empty for `status`).
    public var events: [AuditEntry] = []

    public init(environment: String?, driver: String?, generatedAt: Int64, gateway: String?, controller: ControllerStatus,
                servers: [ServerStatusRow], notes: [String]) {
        self.environment = environment
        self.driver = driver
        self.generatedAt = generatedAt
        self.gateway = gateway
        self.controller = controller
        self.servers = servers
        self.notes = notes
    }

    /// The view of `live` (as observed, records merged) against `desired`. `records` give each rollout's
    /// step, pause and analysis; servers neither desired nor running are left out.
    public static func make(live: LiveState, desired: DesiredState?, records: [RolloutRecord], controller: ControllerStatus = ControllerStatus(),
                            gateway: String? = nil, now: Int64) -> FleetStatusView {
        var names = Set(live.servers.map(\.name))
        for d in desired?.servers ?? [] { names.insert(d.name) }
        let byName = Dictionary(records.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a })
        let rows = names.sorted().map { name in
            ServerStatusRow(live: live.server(name), desired: desired?.server(name), name: name, record: byName[name], gateway: gateway, now: now)
        }
        return FleetStatusView(environment: live.environment ?? desired?.environment, driver: live.driver ?? desired?.driver.rawValue,
                               generatedAt: now, gateway: gateway, controller: controller, servers: rows,
                               notes: notes(records: records, shown: names, desired: desired))
    }

    /// Each shown server's note (why it is held, failed or not ready) and its analysis progress, in the
    /// store's order.
    static func notes(records: [RolloutRecord], shown: Set<String>, desired: DesiredState?) -> [String] {
        var out: [String] = []
        for r in records where shown.contains(r.server) {
            if let m = r.message { out.append("\(r.server): \(m)") }
            if !r.measurements.isEmpty || r.phase == .analyzing, let slo = desired?.server(r.server)?.slo {
                let passed = r.measurements.filter { $0 }.count
                out.append("\(r.server): analysis: \(r.measurements.count) of \(slo.count) measurements taken, \(passed) passed "
                           + "(more than \(slo.failureLimit) failed fails the rollout), by \(ServerStatusRow.AnalysisCount.provider(slo))")
            }
        }
        return out
    }

    public func server(_ name: String) -> ServerStatusRow? { servers.first { $0.name == name } }

    /// Sets `events` from the audit log's last entries (stores return them oldest first).
    public mutating func setEvents(fromAudit entries: [AuditEntry]) { events = entries.reversed() }

    /// Where the gateway serves a server.
    public static func endpoint(_ gateway: String, server: String) -> String { "http://\(gateway)/\(server)/mcp" }

    // MARK: text

    /// The status table: one row per server, ENDPOINT when a gateway serves the fleet.
    public func table() -> String { Self.columns(tableRows()) }

    /// The table's cells, header first (`status -o markdown` prints the same as a markdown table).
    public func tableRows() -> [[String]] {
        var rows: [[String]] = [["SERVER", "TENANT", "DESIRED", "READY", "REVISION", "TARGET", "PHASE"] + (gateway == nil ? [] : ["ENDPOINT"]) + ["NOTES"]]
        for s in servers {
            var row = [s.name, s.tenant ?? "-", s.desiredReplicas.map(String.init) ?? "-", s.running ? "\(s.readyReplicas)/\(s.totalReplicas)" : "0/0",
                       s.servingRevision ?? "-", s.targetRevision ?? "-", s.phase ?? "-"]
            if gateway != nil { row.append(s.endpoint ?? "-") }
            row.append(s.notes.joined(separator: "; "))
            rows.append(row)
        }
        return rows
    }

    /// The lines under the table (indented, a blank line before them), then the controller note.
    public func notesText() -> String {
        (notes.isEmpty ? "" : "\n" + notes.map { "  " + $0 }.joined(separator: "\n") + "\n") + (controller.note.map { "  \($0)\n" } ?? "")
    }

    /// `status` as text: the table, then the notes.
    public func text() -> String { table() + notesText() }

    /// Rows padded into columns (the last one ragged), two spaces apart.
    public static func columns(_ rows: [[String]]) -> String {
        guard let first = rows.first else { return "" }
        let widths = first.indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }
}

/// Whether a controller runs on this state, as `status` and the dashboard say it.
public struct ControllerStatus: Codable, Hashable, Sendable {
    public var alive: Bool
    /// Unix epoch ms of the last heartbeat, when the store keeps them.
    public var lastHeartbeat: Int64?
    /// Why READY is not the controller's view (no controller reports), or nil.
    public var note: String?

    public init(alive: Bool = true, lastHeartbeat: Int64? = nil, note: String? = nil) {
        self.alive = alive
        self.lastHeartbeat = lastHeartbeat
        self.note = note
    }
}

/// One server's line: the status table's columns and what the dashboard's fleet page shows of it.
public struct ServerStatusRow: Codable, Hashable, Sendable {
    public var name: String
    public var tenant: String?
    /// False for what runs without mcpfleet owning it.
    public var managed: Bool
    /// The runtime runs something of it.
    public var running: Bool
    public var desiredReplicas: Int?
    public var readyReplicas: Int
    public var totalReplicas: Int
    public var servingRevision: String?
    public var targetRevision: String?
    /// The catalog's revision, when there is one.
    public var desiredRevision: String?
    /// What runs, revision by revision, with its share of the replicas.
    public var revisions: [RevisionShare]
    /// The rollout phase shown (an operator's pause shows as `paused`); nil when nothing runs.
    public var phase: String?
    public var endpoint: String?
    /// The NOTES column: pinned, paused, failed revisions, not running, unmanaged, desired revision.
    public var notes: [String]
    /// The controller's note (why held, failed or not ready).
    public var message: String?
    /// The rollout under way: step, pause countdown.
    public var rollout: RolloutProgress?
    /// Analysis measurements taken of the current run (true: passed), and how many the SLO takes.
    public var analysis: AnalysisCount?

    public struct AnalysisCount: Codable, Hashable, Sendable {
        public var taken: Int
        public var passed: Int
        public var count: Int
        public var failureLimit: Int
        /// The analysis provider, `(default here)` when the SLO names none (design 0016).
        public var provider: String?

        static func provider(_ slo: DesiredSLO) -> String { slo.provider.rawValue + (slo.providerDefaulted == true ? " (default here)" : "") }
    }

    init(live s: LiveServer?, desired d: DesiredServer?, name: String, record: RolloutRecord?, gateway: String?, now: Int64) {
        var notes: [String] = []
        if let pin = s?.pinnedRevision { notes.append("pinned \(pin)" + (s?.pinForced == true ? " (forced)" : "")) }
        if s?.paused == true { notes.append("paused") }
        if let f = s?.failedRevisions, !f.isEmpty { notes.append("failed: \(f.joined(separator: ","))") }
        if s == nil { notes.append("not running") }
        if s?.managed == false { notes.append("unmanaged") }
        if let d, let serving = s?.servingRevision?.revision, serving != d.revision, s?.targetRevision != d.revision { notes.append("desired \(d.revision)") }
        self.name = name
        tenant = s?.tenant ?? d?.tenant
        managed = s?.managed ?? true
        running = s != nil
        desiredReplicas = d?.replicas
        readyReplicas = s?.readyReplicas ?? 0
        totalReplicas = s?.totalReplicas ?? 0
        servingRevision = s?.servingRevision?.revision
        targetRevision = s?.targetRevision
        desiredRevision = d?.revision
        let total = s?.totalReplicas ?? 0
        revisions = (s?.revisions ?? []).map { r in
            RevisionShare(revision: r.revision, version: r.version, replicas: r.replicas, ready: r.ready,
                          sharePercent: total == 0 ? 0 : Int((Double(r.replicas) * 100 / Double(total)).rounded()),
                          role: r.revision == s?.targetRevision ? .target : r.revision == s?.servingRevision?.revision ? .serving : .other)
        }
        // `degraded` for a settled server short of ready replicas, `paused` for a hold (FleetSync decides).
        phase = FleetSync.phase(s, desired: d)?.rawValue
        endpoint = gateway.map { FleetStatusView.endpoint($0, server: name) }
        self.notes = notes
        message = s?.message
        rollout = d.flatMap { d in record.flatMap { RolloutProgress.of(d, record: $0, now: now) } }
        if let r = record, let slo = d?.slo, !r.measurements.isEmpty || r.phase == .analyzing {
            analysis = AnalysisCount(taken: r.measurements.count, passed: r.measurements.filter { $0 }.count, count: slo.count, failureLimit: slo.failureLimit,
                                     provider: AnalysisCount.provider(slo))
        }
    }
}

/// A revision that runs, and how much of the server it is: its share of the replicas (the gateway
/// balances requests evenly over ready replicas, so this is its share of the traffic too).
public struct RevisionShare: Codable, Hashable, Sendable {
    public enum Role: String, Codable, Hashable, Sendable {
        /// The revision serving now (the last good one, or the pin).
        case serving
        /// The revision a rollout is heading to (the canary).
        case target
        case other
    }

    public var revision: String
    public var version: String?
    public var replicas: Int
    public var ready: Int
    public var sharePercent: Int
    public var role: Role
}

/// Whether a controller is alive on this state, by the heartbeat it writes to the store every few
/// seconds (and clears when it stops).
public struct ControllerPresence: Sendable {
    /// A heartbeat younger than this means a controller runs (it writes one every 5 s).
    public static let aliveWithinMs: Int64 = 20_000

    /// The store keeps heartbeats (else nobody can tell, and the controller's view is taken as current).
    public var kept: Bool
    public var lastHeartbeat: Int64?
    public var now: Int64

    public init(kept: Bool, lastHeartbeat: Int64?, now: Int64) {
        self.kept = kept
        self.lastHeartbeat = lastHeartbeat
        self.now = now
    }

    public var alive: Bool { !kept || lastHeartbeat.map { now - $0 < Self.aliveWithinMs } ?? false }

    /// A line for status when no controller runs (READY is then the runtime's view alone).
    public var note: String? {
        guard !alive else { return nil }
        guard let beat = lastHeartbeat else { return "no controller is running; READY is the runtime's view, not probed" }
        let ago = Int((now - beat) / 1000)
        return "no controller has reported for \(ago >= 120 ? "\(ago / 60) min" : "\(ago) s") (killed?); READY is the runtime's view, not probed"
    }

    public var status: ControllerStatus { ControllerStatus(alive: alive, lastHeartbeat: lastHeartbeat, note: note) }

    public static func read(_ store: any RolloutStore) async throws -> ControllerPresence {
        ControllerPresence(kept: store.keepsHeartbeat, lastHeartbeat: try await store.lastHeartbeat(), now: Int64(Date().timeIntervalSince1970 * 1000))
    }
}
