/// Human forms of a plan: Terraform-like text and a pull-request comment in Markdown.
public struct PlanFormatter: Sendable {
    public var color: Bool

    public init(color: Bool) { self.color = color }

    private func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }

    private func actionColor(_ a: ChangeAction) -> String {
        switch a {
        case .create: return "32"
        case .rollout, .update: return "33"
        case .scale: return "36"
        case .delete: return "31"
        }
    }

    public func text(_ plan: Plan) -> String {
        var out = "mcpfleet plan: environment \(plan.environment) (driver \(plan.driver.rawValue)), against \(plan.baseline)\n\n"
        if plan.changes.isEmpty {
            let held = plan.summary.held > 0 ? ", \(plan.summary.held) held back" : ""
            out += "No changes. The environment matches the catalog (\(plan.summary.unchanged) server\(plan.summary.unchanged == 1 ? "" : "s") in sync\(held)).\n\n"
        }
        for c in plan.changes {
            let sym = paint(c.action.symbol, "1;" + actionColor(c.action))
            var head = "\(sym) \(c.kind.rawValue.lowercased()) \(paint(c.name, "1"))"
            switch c.action {
            case .create where c.kind == .server:
                head += "  (revision \(c.toRevision ?? "?"), \(c.toReplicas ?? 0) replica\(c.toReplicas == 1 ? "" : "s"))"
            case .rollout:
                head += "  (revision \(c.fromRevision ?? "none") → \(c.toRevision ?? "?"))"
            case .scale:
                head += "  (replicas \(c.fromReplicas ?? 0) → \(c.toReplicas ?? 0))"
            case .delete where c.kind == .server:
                head += "  (\(c.fromReplicas ?? 0) replica\(c.fromReplicas == 1 ? "" : "s") of revision \(c.fromRevision ?? "?"))"
            default: break
            }
            if c.blocked { head += "  " + paint("BLOCKED by policy", "1;31") }
            out += head + "\n"
            out += "    # \(c.reason)\n"
            for f in c.fields where !(c.action == .scale && f.path == "replicas") {
                switch (f.old, f.new) {
                case let (o?, n?): out += "    \(paint("~", "33")) \(f.path): \(o) → \(n)\n"
                case let (nil, n?): out += "    \(paint("+", "32")) \(f.path): \(n)\n"
                case let (o?, nil): out += "    \(paint("-", "31")) \(f.path): \(o)\n"
                default: break
                }
            }
            out += "\n"
        }
        if !plan.holds.isEmpty {
            out += "Held back:\n"
            for h in plan.holds { out += "  ! server \(h.server): \(h.reason)\n" }
            out += "\n"
        }
        let verdicts = relevantVerdicts(plan)
        if !verdicts.isEmpty {
            out += "Supply chain:\n"
            for v in verdicts { out += verdictLine(v) }
            out += "\n"
        }
        out += ContractFormatter(color: color).text(plan.contracts ?? [])
        if !plan.unrecorded.isEmpty {
            out += "Not compared (the baseline does not record them): \(plan.unrecorded.joined(separator: "; ")). `plan --against GIT-REF` compares everything.\n\n"
        }
        out += summaryLine(plan) + "\n"
        return out
    }

    /// Verdicts for the revisions this plan would roll out and for servers whose admission changes; the
    /// JSON form keeps every verdict.
    func relevantVerdicts(_ plan: Plan) -> [PolicyVerdict] {
        let rolling = Set(plan.changes.filter { c in
            c.kind == .server && (c.action == .create || c.action == .rollout || c.fields.contains { $0.path.hasPrefix("supplyChain.") })
        }.map(\.name))
        return plan.verdicts.filter { rolling.contains($0.server) }
    }

    public func verdictLine(_ v: PolicyVerdict) -> String {
        switch v.decision {
        case .admitted:
            var evidence: [String] = []
            if let e = v.evidence {
                if let k = e.signedBy { evidence.append("signed by \(k)") }
                if let f = e.sbomFormat { evidence.append("SBOM \(f)") }
                if let s = e.scan { evidence.append("\(s.scanner) scan: highest \(s.highest)") }
                if e.provenanceVerified { evidence.append("provenance verified") }
            }
            return "  \(paint("✓", "32")) \(v.server) \(v.revision) admitted" + (evidence.isEmpty ? "" : " (\(evidence.joined(separator: ", ")))") + "\n"
        case .warned:
            return "  \(paint("!", "33")) \(v.server) \(v.revision) admitted with warnings:\n" + v.reasons.map { "      - \($0)\n" }.joined()
        case .blocked:
            return "  \(paint("✗", "31")) \(v.server) \(v.revision) blocked:\n" + v.reasons.map { "      - \($0)\n" }.joined()
        }
    }

    public func summaryLine(_ plan: Plan) -> String {
        let s = plan.summary
        guard plan.hasChanges else { return "Plan: no changes." }
        var parts: [String] = []
        if s.create > 0 { parts.append("\(s.create) to create") }
        if s.rollout > 0 { parts.append("\(s.rollout) to roll out") }
        if s.scale > 0 { parts.append("\(s.scale) to scale") }
        if s.update > 0 { parts.append("\(s.update) to update") }
        if s.delete > 0 { parts.append("\(s.delete) to delete") }
        var line = "Plan: " + parts.joined(separator: ", ") + "."
        if s.blocked > 0 { line += " \(s.blocked) blocked by policy (never rolled out; the running revision keeps serving)." }
        return line
    }

    /// A pull-request comment. Field values go in code spans; pipes are escaped so tables hold.
    public func markdown(_ plan: Plan) -> String {
        func cell(_ s: String) -> String { s.replacingAll("|", with: "\\|").replacingAll("`", with: "'") }
        var out = "### mcpfleet plan — `\(plan.environment)` (\(plan.driver.rawValue))\n\n"
        out += "Against `\(cell(plan.baseline))`. **\(summaryLine(plan))**\n\n"
        if plan.hasChanges {
            out += "| | subject | change | why |\n|---|---|---|---|\n"
            for c in plan.changes {
                var change = c.action.verb
                switch c.action {
                case .rollout: change += " `\(c.fromRevision ?? "none")` → `\(c.toRevision ?? "?")`"
                case .scale: change += " \(c.fromReplicas ?? 0) → \(c.toReplicas ?? 0)"
                case .create where c.kind == .server: change += " `\(c.toRevision ?? "?")` ×\(c.toReplicas ?? 0)"
                default: break
                }
                if c.blocked { change += " ⛔ **blocked**" }
                out += "| `\(c.action.symbol)` | `\(c.subject)` | \(change) | \(cell(c.reason)) |\n"
            }
            let detailed = plan.changes.filter { c in c.fields.contains { !(c.action == .scale && $0.path == "replicas") } }
            if !detailed.isEmpty {
                out += "\n<details><summary>Field changes</summary>\n\n```diff\n"
                for c in detailed {
                    out += "# \(c.subject)\n"
                    for f in c.fields where !(c.action == .scale && f.path == "replicas") {
                        // No value can close the code fence and write markdown of its own.
                        if let o = f.old { out += "- \(f.path): \(o.replacingAll("`", with: "'"))\n" }
                        if let n = f.new { out += "+ \(f.path): \(n.replacingAll("`", with: "'"))\n" }
                    }
                }
                out += "```\n\n</details>\n"
            }
        }
        if !plan.unrecorded.isEmpty {
            out += "\n**Not compared** (the baseline does not record them): \(cell(plan.unrecorded.joined(separator: "; "))).\n"
        }
        if !plan.holds.isEmpty {
            out += "\n**Held back**\n\n"
            for h in plan.holds { out += "- `server/\(h.server)`: \(cell(h.reason))\n" }
        }
        let verdicts = relevantVerdicts(plan)
        if !verdicts.isEmpty {
            out += "\n**Supply chain**\n\n| server | revision | verdict | reasons |\n|---|---|---|---|\n"
            for v in verdicts {
                let mark = v.decision == .admitted ? "✅ admitted" : v.decision == .warned ? "⚠️ warned" : "⛔ blocked"
                let reasons = v.reasons.isEmpty ? (v.evidence?.signedBy.map { "signed by \($0)" } ?? "") : v.reasons.map(cell).joined(separator: "<br>")
                out += "| `\(v.server)` | `\(v.revision)` | \(mark) | \(reasons) |\n"
            }
        }
        out += ContractFormatter().markdown(plan.contracts ?? [])
        return out
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
