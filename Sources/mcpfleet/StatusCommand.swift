import ArgumentParser
import FleetCore
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what runs: per server desired/ready replicas, revisions, rollout phase and SLO analysis.",
        discussion: "`-o json` prints a live-state snapshot that `mcpfleet plan --live FILE` accepts."
    )

    @Argument(help: "The manifest directory.")
    var path: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .shortAndLong, help: "Output format: text or json.")
    var output: OutputFormat = .text

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        let (driver, store) = try target.runtime()
        let live = try await target.observe(driver, store)
        switch output {
        case .json: writeStdout(try encodeJSON(live))
        default:
            var text = Self.table(live, desired: target.desired, gateway: GatewayWiring.address(flag: nil, environment: target.environment, once: false))
            let records = try await store.records()
            let notes = records.compactMap { r in r.message.map { "  \(r.server): \($0)" } }
            if !notes.isEmpty { text += "\n" + notes.joined(separator: "\n") + "\n" }
            for r in records where !r.measurements.isEmpty {
                text += "  \(r.server): analysis \(r.measurements.filter { $0 }.count)/\(r.measurements.count) measurements passed\n"
            }
            writeStdout(text)
        }
    }

    /// `gateway`: the gateway's address, for an ENDPOINT column (`http://ADDRESS/{server}/mcp`).
    static func table(_ live: LiveState, desired: DesiredState?, gateway: String? = nil) -> String {
        var rows: [[String]] = [["SERVER", "TENANT", "DESIRED", "READY", "REVISION", "TARGET", "PHASE"] + (gateway == nil ? [] : ["ENDPOINT"]) + ["NOTES"]]
        var names = Set(live.servers.map(\.name))
        for d in desired?.servers ?? [] { names.insert(d.name) }
        for name in names.sorted() {
            let s = live.server(name)
            let d = desired?.server(name)
            var notes: [String] = []
            if let pin = s?.pinnedRevision { notes.append("pinned \(pin)") }
            if s?.paused == true { notes.append("paused") }
            if let f = s?.failedRevisions, !f.isEmpty { notes.append("failed: \(f.joined(separator: ","))") }
            if s == nil { notes.append("not running") }
            if s?.managed == false { notes.append("unmanaged") }
            if let d, let serving = s?.servingRevision?.revision, serving != d.revision, s?.targetRevision != d.revision { notes.append("desired \(d.revision)") }
            var row: [String] = [name, s?.tenant ?? d?.tenant ?? "-", d.map { String($0.replicas) } ?? "-",
                                 s.map { "\($0.readyReplicas)/\($0.totalReplicas)" } ?? "0/0",
                                 s?.servingRevision?.revision ?? "-", s?.targetRevision ?? "-", s?.phase.rawValue ?? "-"]
            if let gateway { row.append(GatewayWiring.endpoint(gateway, server: name)) }
            row.append(notes.joined(separator: "; "))
            rows.append(row)
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }.joined(separator: "\n") + "\n"
    }
}
