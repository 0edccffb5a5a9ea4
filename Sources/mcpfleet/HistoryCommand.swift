import FleetApp
import ArgumentParser
import FleetCore
import Foundation

struct HistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history",
        abstract: "Show a server's revisions (how each ended, from which commit, with which evidence) and its audit log."
    )

    @Argument(help: "The server.")
    var server: String

    @Option(name: [.customShort("C"), .customLong("dir")], help: "The manifest directory.")
    var dir: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "Audit entries to show.")
    var limit: Int = 20

    @Option(name: .shortAndLong, help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(name: .long, help: "Also print each revision's recorded MCP surface (tools, prompts, resource templates).")
    var contract = false

    struct Report: Codable {
        var server: String
        var revisions: [RevisionRecord]
        var audit: [AuditEntry]
        /// Older entries compacted away (counts per action, revision and outcome).
        var compacted: [AuditSummary]
    }

    func run() async throws {
        let target = try FleetTarget.load(path: dir, env: env)
        let (_, store) = try target.runtime()
        let revisions = try await store.revisions(server: server).sorted { $0.createdAt > $1.createdAt }
        let audit = try await store.audit(server: server, limit: limit)
        let compacted = try await store.compactedAudit(server: server)
        if revisions.isEmpty && audit.isEmpty {
            throw CommandFailure(message: "no history for server `\(server)` in environment \(target.environment.name)")
        }
        if output == .json {
            writeStdout(try encodeJSON(Report(server: server, revisions: revisions, audit: audit, compacted: compacted)))
            return
        }
        var out = "Revisions of \(server) (newest first):\n"
        for r in revisions {
            out += "  \(r.revision)  \(r.version)  \(Self.time(r.createdAt))  \(r.outcome.rawValue)"
            if let c = r.manifestCommit { out += "  \(GitSource.describeCommit(c))" }
            out += "\n"
            if let reason = r.reason { out += "      \(reason)\n" }
            if let e = r.evidence {
                var parts: [String] = []
                if let d = e.artifactDigest { parts.append("digest \(d)") }
                if let s = e.signedBy { parts.append("signed by \(s)") }
                if let s = e.sbomFormat { parts.append("SBOM \(s)") }
                if let s = e.scan { parts.append("scan \(s.scanner): highest \(s.highest)") }
                if e.provenanceVerified { parts.append("provenance verified") }
                if !parts.isEmpty { out += "      evidence: \(parts.joined(separator: ", "))\n" }
            }
            if let c = r.contract { out += ContractWiring.historyLines(c, surface: contract) }
        }
        out += "\nAudit log (last \(audit.count)):\n"
        for a in audit {
            out += "  \(Self.time(a.time))  \(a.action)  \(a.revision ?? "-")  \(a.outcome)  \(a.reason)"
            if let actor = a.actor { out += "  (by \(actor))" }
            if let n = a.repeats, n > 0 { out += "  (×\(n + 1), last at \(Self.time(a.lastTime ?? a.time)))" }
            out += "\n"
        }
        if !compacted.isEmpty {
            out += "\nCompacted (older entries, counted):\n"
            for c in compacted {
                out += "  \(Self.time(c.firstTime)) … \(Self.time(c.lastTime))  \(c.count) × \(c.action)  \(c.revision ?? "-")  \(c.outcome)\n"
            }
        }
        writeStdout(out)
    }

    static func time(_ ms: Int64) -> String {
        let f = ISO8601DateFormatter()
        return f.string(from: Date(timeIntervalSince1970: Double(ms) / 1000))
    }
}
