/// What `status` says about a server's phase and about the fleet's sync with its catalog
/// (docs/designs/0012-telling-people-what-happened.md). Pure: the CLI and the dashboard ask it.
public enum FleetSync {
    /// The phase to show: `paused` for an operator's (or an analysis') hold whatever step it is at, and
    /// `degraded` for a settled server that has fewer ready replicas than the catalog asks for — also
    /// when no controller runs to have recorded it (a record says `stable` until a controller looks).
    public static func phase(_ live: LiveServer?, desired: DesiredServer?) -> RolloutPhase? {
        guard let live else { return nil }
        if live.paused { return .paused }
        if live.phase == .stable, let d = desired, d.replicas > 0, live.targetRevision == nil,
           live.servingRevision?.revision == d.revision, live.readyReplicas < d.replicas {
            return .degraded
        }
        return live.phase
    }

    /// Whether what runs is what the catalog asks for.
    public struct Summary: Hashable, Sendable {
        /// The catalog's commit (`-dirty`: with uncommitted changes), nil outside git.
        public var catalogCommit: String?
        /// Desired servers whose serving revision is not the desired one, or that are mid-rollout.
        public var outOfSync: [String]
        public var desiredCount: Int
        public var synced: Bool { outOfSync.isEmpty }

        /// `Synced to commit 0123456789ab` / `OutOfSync with commit …: 2 of 5 servers changing (a, b)`.
        public var line: String {
            let commit = catalogCommit.map { c in
                c.hasSuffix("-dirty") ? "commit \(c.dropLast(6).prefix(12)) + uncommitted changes" : "commit \(c.prefix(12))"
            } ?? "the catalog (not in git)"
            if synced { return "Synced to \(commit)" }
            let names = outOfSync.prefix(5).joined(separator: ", ") + (outOfSync.count > 5 ? ", …" : "")
            return "OutOfSync with \(commit): \(outOfSync.count) of \(desiredCount) servers not at their desired revision (\(names))"
        }
    }

    public static func summary(_ live: LiveState, desired: DesiredState, catalogCommit: String?) -> Summary {
        var out: [String] = []
        for d in desired.servers {
            guard let s = live.server(d.name) else {
                if d.replicas > 0 { out.append(d.name) }
                continue
            }
            if s.servingRevision?.revision != d.revision || s.targetRevision != nil { out.append(d.name) }
        }
        return Summary(catalogCommit: catalogCommit, outOfSync: out.sorted(), desiredCount: desired.servers.count)
    }

    /// `status -o markdown`: a heading, the sync line, the table (first row the header) as a
    /// GitHub-flavoured markdown table, and the notes as a list. Cells are escaped (`|`, `\`, newlines).
    public static func markdown(title: String, sync: Summary, rows: [[String]], notes: [String]) -> String {
        func cell(_ s: String) -> String {
            s.isEmpty ? " " : s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
        }
        var out = "### \(title)\n\n" + (sync.synced ? "✅ " : "🔄 ") + sync.line + "\n\n"
        guard let header = rows.first else { return out }
        out += "| " + header.map(cell).joined(separator: " | ") + " |\n"
        out += "|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
        for row in rows.dropFirst() { out += "| " + row.map(cell).joined(separator: " | ") + " |\n" }
        if !notes.isEmpty { out += "\n" + notes.map { "- \($0)\n" }.joined() }
        return out
    }
}
