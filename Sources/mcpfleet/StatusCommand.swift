import ArgumentParser
import FleetCore
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what runs: per server desired/ready replicas, revisions, rollout phase and SLO analysis.",
        discussion: """
        READY counts instances the runtime runs *and* the controller's probes pass (while a controller \
        runs). NOTES say why a server is held, failed or not ready. `-o json` prints a live-state snapshot \
        that `mcpfleet plan --live FILE` accepts, with each instance's reason and last log lines.
        """
    )

    @Argument(help: "The manifest directory.")
    var path: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .shortAndLong, help: "Output format: text, json or markdown (a table for a PR comment or a chat message).")
    var output: OutputFormat = .text

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        let (driver, store) = try target.runtime()
        let live = try await target.observe(driver, store)
        switch output {
        case .json: writeStdout(try encodeJSON(live))
        case .text, .markdown:
            let desired = target.desired
            let sync = FleetSync.summary(live, desired: desired, catalogCommit: GitSource.manifestCommit(path))
            let gateway = GatewayWiring.address(flag: nil, environment: target.environment, once: false)
            let records = try await store.records()
            let presence = try await ControllerPresence.read(store).note
            if output == .markdown {
                writeStdout(Self.markdown(live, desired: desired, sync: sync, gateway: gateway, records: records, presence: presence))
                return
            }
            var text = "\(sync.line)\n\n"
            text += Self.table(live, desired: desired, gateway: gateway)
            text += Self.notes(live, desired: desired, records: records)
            if let presence { text += "  \(presence)\n" }
            writeStdout(text)
        }
    }

    /// `-o markdown`: the sync line, the same table as a markdown table, the notes as a list.
    static func markdown(_ live: LiveState, desired: DesiredState, sync: FleetSync.Summary, gateway: String?, records: [RolloutRecord], presence: String?) -> String {
        var notes = Self.notes(live, desired: desired, records: records).split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let presence { notes.append("⚠️ \(presence)") }
        return FleetSync.markdown(title: "mcpfleet" + (live.environment.map { ": \($0)" } ?? ""), sync: sync, rows: Self.rows(live, desired: desired, gateway: gateway), notes: notes)
    }

    /// The lines under the table: each shown server's note (why it is held, failed or not ready) and
    /// its analysis progress. Records of servers neither desired nor running are not shown.
    static func notes(_ live: LiveState, desired: DesiredState, records: [RolloutRecord]) -> String {
        let shown = Set(live.servers.map(\.name)).union(desired.servers.map(\.name))
        var out: [String] = []
        for r in records where shown.contains(r.server) {
            if let m = r.message { out.append("  \(r.server): \(m)") }
            if !r.measurements.isEmpty || r.phase == .analyzing, let slo = desired.server(r.server)?.slo {
                let passed = r.measurements.filter { $0 }.count
                out.append("  \(r.server): analysis: \(r.measurements.count) of \(slo.count) measurements taken, \(passed) passed "
                           + "(more than \(slo.failureLimit) failed fails the rollout)")
            }
        }
        return out.isEmpty ? "" : "\n" + out.joined(separator: "\n") + "\n"
    }

    /// `gateway`: the gateway's address, for an ENDPOINT column (`http://ADDRESS/{server}/mcp`).
    static func table(_ live: LiveState, desired: DesiredState?, gateway: String? = nil) -> String {
        let rows = Self.rows(live, desired: desired, gateway: gateway)
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }

    /// The header row and one row per server shown.
    static func rows(_ live: LiveState, desired: DesiredState?, gateway: String?) -> [[String]] {
        var rows: [[String]] = [["SERVER", "TENANT", "DESIRED", "READY", "REVISION", "TARGET", "PHASE"] + (gateway == nil ? [] : ["ENDPOINT"]) + ["NOTES"]]
        var names = Set(live.servers.map(\.name))
        for d in desired?.servers ?? [] { names.insert(d.name) }
        for name in names.sorted() {
            let s = live.server(name)
            let d = desired?.server(name)
            var notes: [String] = []
            if let pin = s?.pinnedRevision { notes.append("pinned \(pin)" + (s?.pinForced == true ? " (forced)" : "")) }
            if s?.paused == true { notes.append("paused") }
            if let f = s?.failedRevisions, !f.isEmpty { notes.append("failed: \(f.joined(separator: ","))") }
            if s == nil { notes.append("not running") }
            if s?.managed == false { notes.append("unmanaged") }
            if let d, let serving = s?.servingRevision?.revision, serving != d.revision, s?.targetRevision != d.revision { notes.append("desired \(d.revision)") }
            var row: [String] = [name, s?.tenant ?? d?.tenant ?? "-", d.map { String($0.replicas) } ?? "-",
                                 s.map { "\($0.readyReplicas)/\($0.totalReplicas)" } ?? "0/0",
                                 s?.servingRevision?.revision ?? "-", s?.targetRevision ?? "-", FleetSync.phase(s, desired: d)?.rawValue ?? "-"]
            if let gateway { row.append(GatewayWiring.endpoint(gateway, server: name)) }
            row.append(notes.joined(separator: "; "))
            rows.append(row)
        }
        return rows
    }
}

/// Whether a controller is alive on this state, by the heartbeat it writes to the store every few
/// seconds (and clears when it stops).
struct ControllerPresence {
    /// A heartbeat younger than this means a controller runs (it writes one every 5 s).
    static let aliveWithinMs: Int64 = 20_000

    /// The store keeps heartbeats (else nobody can tell, and the controller's view is taken as current).
    var kept: Bool
    var lastHeartbeat: Int64?
    var now: Int64

    var alive: Bool { !kept || lastHeartbeat.map { now - $0 < Self.aliveWithinMs } ?? false }

    /// A line for status when no controller runs (READY is then the runtime's view alone).
    var note: String? {
        guard !alive else { return nil }
        guard let beat = lastHeartbeat else { return "no controller is running; READY is the runtime's view, not probed" }
        let ago = Int((now - beat) / 1000)
        return "no controller has reported for \(ago >= 120 ? "\(ago / 60) min" : "\(ago) s") (killed?); READY is the runtime's view, not probed"
    }

    static func read(_ store: any RolloutStore) async throws -> ControllerPresence {
        ControllerPresence(kept: store.keepsHeartbeat, lastHeartbeat: try await store.lastHeartbeat(), now: Int64(Date().timeIntervalSince1970 * 1000))
    }
}
