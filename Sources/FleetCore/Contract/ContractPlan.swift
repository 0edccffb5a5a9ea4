/// A server's contract file as a plan compares it between two refs (or against the contract its serving
/// revision recorded): the surface changes, and the tool lists checked against the new contract.
public struct ContractFileDiff: Codable, Hashable, Sendable {
    public var server: String
    /// `spec.contract`, relative to the manifest root.
    public var file: String
    /// nil: no contract at the baseline (a new file).
    public var oldDigest: String?
    /// nil: the server names no contract any more.
    public var newDigest: String?
    public var changes: [ContractChange]
    /// `spec.tools` patterns that match no tool of the contract (a typo, or a tool that is gone).
    public var unmatchedToolPatterns: [String]
    /// Tools of the contract that `spec.tools` hides from clients (the gateway filters and refuses them).
    public var hiddenTools: [String]

    public init(server: String, file: String, old: ServerContract?, new: ServerContract?, tools: ToolAccess? = nil) {
        self.server = server
        self.file = file
        oldDigest = old?.digest
        newDigest = new?.digest
        switch (old, new) {
        case let (o?, n?): changes = ContractDiff.compare(old: o, new: n)
        case (nil, let n?):
            let empty = ServerContract(server: n.server, protocolVersion: n.protocolVersion, tools: [], prompts: [], resourceTemplates: [])
            changes = ContractDiff.compare(old: empty, new: n)
        default: changes = []
        }
        if let tools, let new, !tools.isEmpty {
            (unmatchedToolPatterns, hiddenTools) = tools.check(new)
        } else {
            unmatchedToolPatterns = []
            hiddenTools = []
        }
    }

    /// Anything to show: the surface or the file changed, or a tool list does not fit the contract.
    public var isNoteworthy: Bool { oldDigest != newDigest || !changes.isEmpty || !unmatchedToolPatterns.isEmpty }

    public func count(_ kind: ContractChange.Kind) -> Int { changes.filter { $0.kind == kind }.count }
}

/// Text and Markdown for contract differences (in plans and `mcpfleet contract diff`).
public struct ContractFormatter: Sendable {
    public var color: Bool

    public init(color: Bool = false) { self.color = color }

    private func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }

    func mark(_ k: ContractChange.Kind) -> String {
        switch k {
        case .added: return paint("+", "32")
        case .removed: return paint("-", "31")
        case .breaking: return paint("!", "1;31")
        case .compatible: return paint("~", "33")
        case .review: return paint("?", "1;35")
        }
    }

    public func summary(_ d: ContractFileDiff) -> String {
        var parts: [String] = []
        for k in ContractChange.Kind.allCases {
            let n = d.count(k)
            if n > 0 { parts.append("\(n) \(k.label)") }
        }
        return parts.isEmpty ? "no surface change" : parts.joined(separator: ", ")
    }

    public func text(_ diffs: [ContractFileDiff]) -> String {
        let shown = diffs.filter(\.isNoteworthy)
        guard !shown.isEmpty else { return "" }
        var out = "Contracts:\n"
        for d in shown {
            let digests: String
            switch (d.oldDigest, d.newDigest) {
            case let (o?, n?) where o != n: digests = "\(o.prefix(19)) → \(n.prefix(19))"
            case let (nil, n?): digests = "new, \(n.prefix(19))"
            case (_?, nil): digests = "no longer named"
            default: digests = "unchanged"
            }
            out += "  \(paint("server", "1")) \(d.server) (\(d.file): \(digests)): \(summary(d))\n"
            for c in d.changes {
                let label = c.kind == .breaking || c.kind == .review ? paint(c.kind.label, c.kind == .breaking ? "1;31" : "1;35") + " " : ""
                out += "    \(mark(c.kind)) \(label)\(c.description)\n"
            }
            for p in d.unmatchedToolPatterns {
                out += "    \(paint("!", "33")) spec.tools pattern `\(p)` matches no tool of the contract\n"
            }
            if !d.hiddenTools.isEmpty {
                out += "    # hidden by spec.tools (the gateway filters tools/list and refuses tools/call): \(d.hiddenTools.map { "`\($0)`" }.joined(separator: ", "))\n"
            }
        }
        return out + "\n"
    }

    /// A table per plan: one row per change. Cells escape pipes and backticks so tables hold.
    public func markdown(_ diffs: [ContractFileDiff]) -> String {
        let shown = diffs.filter(\.isNoteworthy)
        guard !shown.isEmpty else { return "" }
        func cell(_ s: String) -> String { s.replacingAll("|", with: "\\|").replacingAll("`", with: "'").replacingAll("\n", with: " ") }
        var out = "\n**Contracts**\n\n| server | change | subject | detail |\n|---|---|---|---|\n"
        for d in shown {
            for c in d.changes {
                let kind: String
                switch c.kind {
                case .added: kind = "➕ added"
                case .removed: kind = "➖ removed"
                case .breaking: kind = "⛔ **breaking**"
                case .compatible: kind = "compatible"
                case .review: kind = "👀 **needs review**"
                }
                out += "| `\(d.server)` | \(kind) | \(cell(c.subject)) | \(cell(c.detail)) |\n"
            }
            for p in d.unmatchedToolPatterns {
                out += "| `\(d.server)` | ⚠️ tools | spec.tools | pattern \(cell("`\(p)`")) matches no tool |\n"
            }
            if !d.hiddenTools.isEmpty {
                out += "| `\(d.server)` | hidden | spec.tools | \(cell(d.hiddenTools.joined(separator: ", "))) |\n"
            }
            if d.changes.isEmpty && d.unmatchedToolPatterns.isEmpty && d.hiddenTools.isEmpty {
                out += "| `\(d.server)` | file | \(cell(d.file)) | \(d.newDigest == nil ? "no longer named" : "server version or protocol only") |\n"
            }
        }
        return out
    }
}
