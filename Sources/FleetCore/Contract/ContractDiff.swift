/// One difference between two contracts of a server, classified for a reviewer.
public struct ContractChange: Codable, Hashable, Sendable, CustomStringConvertible {
    public enum Kind: String, Codable, Hashable, Sendable, CaseIterable {
        /// A tool, prompt or resource template that was not there.
        case added
        /// One that is gone: clients calling it break.
        case removed
        /// A change that breaks existing callers: a parameter removed, a new required parameter, a type
        /// changed, an enum narrowed, an output field removed.
        case breaking
        /// A change existing callers keep working across: a new optional parameter, an enum widened.
        case compatible
        /// Text a model reads (descriptions, titles) or hints it trusts (annotations) changed, or a schema
        /// constraint this classification does not judge: a person must read it (the "rug pull").
        case review

        public var label: String {
            switch self {
            case .added: return "added"
            case .removed: return "removed"
            case .breaking: return "BREAKING"
            case .compatible: return "compatible"
            case .review: return "needs review"
            }
        }
    }

    public var kind: Kind
    /// `tool \`convert\``, `prompt \`greet\``, `resource template \`files\``.
    public var subject: String
    public var detail: String

    public init(kind: Kind, subject: String, detail: String) {
        self.kind = kind
        self.subject = subject
        self.detail = detail
    }

    /// `tool \`convert\`: new required parameter \`tz\``.
    public var description: String { "\(subject): \(detail)" }
}

/// The differences between two contracts, in a fixed order (tools, prompts, resource templates; by
/// name; within one, in schema order). Pure.
public enum ContractDiff {
    public static func compare(old: ServerContract, new: ServerContract) -> [ContractChange] {
        var out: [ContractChange] = []
        let oldTools = Dictionary(old.tools.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newTools = Dictionary(new.tools.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in Set(oldTools.keys).union(newTools.keys).sorted() {
            let subject = "tool `\(name)`"
            switch (oldTools[name], newTools[name]) {
            case (nil, let n?):
                out.append(ContractChange(kind: .added, subject: subject, detail: "added" + (n.description.map { " — \(oneLine($0))" } ?? "")))
            case (_?, nil):
                out.append(ContractChange(kind: .removed, subject: subject, detail: "removed"))
            case let (o?, n?):
                out += tool(o, n, subject: subject)
            default: break
            }
        }
        let oldPrompts = Dictionary(old.prompts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newPrompts = Dictionary(new.prompts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in Set(oldPrompts.keys).union(newPrompts.keys).sorted() {
            let subject = "prompt `\(name)`"
            switch (oldPrompts[name], newPrompts[name]) {
            case (nil, _?): out.append(ContractChange(kind: .added, subject: subject, detail: "added"))
            case (_?, nil): out.append(ContractChange(kind: .removed, subject: subject, detail: "removed"))
            case let (o?, n?): out += prompt(o, n, subject: subject)
            default: break
            }
        }
        let oldTemplates = Dictionary(old.resourceTemplates.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newTemplates = Dictionary(new.resourceTemplates.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in Set(oldTemplates.keys).union(newTemplates.keys).sorted() {
            let subject = "resource template `\(name)`"
            switch (oldTemplates[name], newTemplates[name]) {
            case (nil, _?): out.append(ContractChange(kind: .added, subject: subject, detail: "added"))
            case (_?, nil): out.append(ContractChange(kind: .removed, subject: subject, detail: "removed"))
            case let (o?, n?):
                if o.uriTemplate != n.uriTemplate {
                    out.append(ContractChange(kind: .breaking, subject: subject, detail: "URI template changed from `\(o.uriTemplate)` to `\(n.uriTemplate)`"))
                }
                if o.mimeType != n.mimeType {
                    out.append(ContractChange(kind: .breaking, subject: subject, detail: "MIME type changed from \(show(o.mimeType)) to \(show(n.mimeType))"))
                }
                out += text(o.title, n.title, what: "title", subject: subject)
                out += text(o.description, n.description, what: "description", subject: subject)
            default: break
            }
        }
        return out
    }

    /// True when the two surfaces differ (server name, version and protocol version aside).
    public static func surfaceDiffers(_ a: ServerContract, _ b: ServerContract) -> Bool {
        a.tools != b.tools || a.prompts != b.prompts || a.resourceTemplates != b.resourceTemplates
    }

    // MARK: - tools

    static func tool(_ o: ContractTool, _ n: ContractTool, subject: String) -> [ContractChange] {
        var out: [ContractChange] = []
        out += schema(o.inputSchema, n.inputSchema, at: "", input: true, subject: subject)
        switch (o.outputSchema, n.outputSchema) {
        case (nil, _?): out.append(ContractChange(kind: .compatible, subject: subject, detail: "output schema added"))
        case (_?, nil): out.append(ContractChange(kind: .breaking, subject: subject, detail: "output schema removed"))
        case let (os?, ns?): out += schema(os, ns, at: "", input: false, subject: subject)
        default: break
        }
        out += text(o.title, n.title, what: "title", subject: subject)
        out += text(o.description, n.description, what: "description", subject: subject)
        let oa = o.annotations ?? [:], na = n.annotations ?? [:]
        for key in Set(oa.keys).union(na.keys).sorted() where oa[key] != na[key] {
            out.append(ContractChange(kind: .review, subject: subject, detail: "annotation `\(key)` changed from \(oa[key]?.compact ?? "unset") to \(na[key]?.compact ?? "unset")"))
        }
        return out
    }

    // MARK: - prompts

    static func prompt(_ o: ContractPrompt, _ n: ContractPrompt, subject: String) -> [ContractChange] {
        var out: [ContractChange] = []
        let oa = Dictionary(o.arguments.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let na = Dictionary(n.arguments.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in Set(oa.keys).union(na.keys).sorted() {
            switch (oa[name], na[name]) {
            case (_?, nil): out.append(ContractChange(kind: .breaking, subject: subject, detail: "argument `\(name)` removed"))
            case (nil, let a?):
                out.append(ContractChange(kind: a.required ? .breaking : .compatible, subject: subject,
                                          detail: a.required ? "new required argument `\(name)`" : "new optional argument `\(name)`"))
            case let (a?, b?):
                if !a.required && b.required { out.append(ContractChange(kind: .breaking, subject: subject, detail: "argument `\(name)` is now required")) }
                if a.required && !b.required { out.append(ContractChange(kind: .compatible, subject: subject, detail: "argument `\(name)` is now optional")) }
                out += text(a.description, b.description, what: "description of argument `\(name)`", subject: subject)
            default: break
            }
        }
        out += text(o.title, n.title, what: "title", subject: subject)
        out += text(o.description, n.description, what: "description", subject: subject)
        return out
    }

    // MARK: - JSON Schemas

    /// Keywords judged below; a change to any other keyword is for a person to review.
    static let judgedKeywords: Set<String> = ["type", "properties", "required", "enum", "items", "description", "title", "const"]

    /// `at` is the dotted path of the parameter (empty for the schema's root).
    static func schema(_ o: ContractValue, _ n: ContractValue, at path: String, input: Bool, subject: String) -> [ContractChange] {
        guard o != n else { return [] }
        var out: [ContractChange] = []
        let noun = input ? "parameter" : "output field"
        let label = path.isEmpty ? (input ? "input schema" : "output schema") : "\(noun) `\(path)`"
        let os = o.object ?? [:], ns = n.object ?? [:]

        let ot = types(o), nt = types(n)
        if ot != nt {
            let widened = !ot.isEmpty && ot.isSubset(of: nt)
            // An input that accepts more types breaks no caller; an output that may return more does.
            let kind: ContractChange.Kind = nt.isEmpty ? (input ? .compatible : .breaking) : (widened && input ? .compatible : .breaking)
            out.append(ContractChange(kind: kind, subject: subject, detail: "\(label): type changed from \(typeText(ot)) to \(typeText(nt))"))
        }

        let oe = enumValues(os), ne = enumValues(ns)
        if oe != ne {
            switch (oe, ne) {
            case (nil, let n?):
                out.append(ContractChange(kind: input ? .breaking : .compatible, subject: subject, detail: "\(label): restricted to \(list(n))"))
            case (_?, nil):
                out.append(ContractChange(kind: input ? .compatible : .breaking, subject: subject, detail: "\(label): no longer restricted to a list of values"))
            case let (o?, n?):
                let removed = o.filter { !n.contains($0) }, added = n.filter { !o.contains($0) }
                if !removed.isEmpty {
                    out.append(ContractChange(kind: input ? .breaking : .compatible, subject: subject, detail: "\(label): enum narrowed (\(list(removed)) no longer allowed)"))
                }
                if !added.isEmpty {
                    out.append(ContractChange(kind: input ? .compatible : .breaking, subject: subject, detail: "\(label): enum widened (\(list(added)) now allowed)"))
                }
            default: break
            }
        }
        if os["const"] != ns["const"] {
            out.append(ContractChange(kind: .breaking, subject: subject, detail: "\(label): constant changed from \(os["const"]?.compact ?? "unset") to \(ns["const"]?.compact ?? "unset")"))
        }

        let op = os["properties"]?.object ?? [:], np = ns["properties"]?.object ?? [:]
        let oreq = Set((os["required"]?.array ?? []).compactMap(\.string)), nreq = Set((ns["required"]?.array ?? []).compactMap(\.string))
        for name in Set(op.keys).union(np.keys).sorted() {
            let child = path.isEmpty ? name : "\(path).\(name)"
            switch (op[name], np[name]) {
            case (_?, nil):
                out.append(ContractChange(kind: .breaking, subject: subject, detail: "\(noun) `\(child)` removed"))
            case (nil, _?):
                if input {
                    let required = nreq.contains(name)
                    out.append(ContractChange(kind: required ? .breaking : .compatible, subject: subject,
                                              detail: required ? "new required \(noun) `\(child)`" : "new optional \(noun) `\(child)`"))
                } else {
                    out.append(ContractChange(kind: .compatible, subject: subject, detail: "new \(noun) `\(child)`"))
                }
            case let (a?, b?):
                if input && !oreq.contains(name) && nreq.contains(name) {
                    out.append(ContractChange(kind: .breaking, subject: subject, detail: "\(noun) `\(child)` is now required"))
                }
                if input && oreq.contains(name) && !nreq.contains(name) {
                    out.append(ContractChange(kind: .compatible, subject: subject, detail: "\(noun) `\(child)` is now optional"))
                }
                if !input && oreq.contains(name) && !nreq.contains(name) {
                    out.append(ContractChange(kind: .breaking, subject: subject, detail: "\(noun) `\(child)` may now be absent"))
                }
                out += schema(a, b, at: child, input: input, subject: subject)
            default: break
            }
        }
        // `required` naming a key no property describes still binds callers.
        for name in nreq.subtracting(oreq).subtracting(np.keys).sorted() where input {
            out.append(ContractChange(kind: .breaking, subject: subject, detail: "\(noun) `\(path.isEmpty ? name : "\(path).\(name)")` is now required"))
        }

        if let oi = os["items"], let ni = ns["items"] {
            out += schema(oi, ni, at: path.isEmpty ? "[]" : "\(path)[]", input: input, subject: subject)
        } else if os["items"] != ns["items"] {
            out.append(ContractChange(kind: .review, subject: subject, detail: "\(label): `items` changed"))
        }

        let what = path.isEmpty ? (input ? " of the input schema" : " of the output schema") : " of \(noun) `\(path)`"
        out += text(os["description"]?.string, ns["description"]?.string, what: "description" + what, subject: subject)
        out += text(os["title"]?.string, ns["title"]?.string, what: "title" + what, subject: subject)

        for key in Set(os.keys).union(ns.keys).subtracting(judgedKeywords).sorted() where os[key] != ns[key] {
            out.append(ContractChange(kind: .review, subject: subject,
                                      detail: "\(label): `\(key)` changed from \(os[key].map { clip($0.compact) } ?? "unset") to \(ns[key].map { clip($0.compact) } ?? "unset")"))
        }
        return out
    }

    static func types(_ v: ContractValue) -> Set<String> {
        switch v["type"] {
        case .string(let s)?: return [s]
        case .array(let a)?: return Set(a.compactMap(\.string))
        default: return []
        }
    }

    static func typeText(_ t: Set<String>) -> String { t.isEmpty ? "any" : t.sorted().joined(separator: " or ") }

    static func enumValues(_ o: [String: ContractValue]) -> [ContractValue]? { o["enum"]?.array }

    static func list(_ values: [ContractValue]) -> String { values.map { "`\(clip($0.compact))`" }.joined(separator: ", ") }

    static func text(_ o: String?, _ n: String?, what: String, subject: String) -> [ContractChange] {
        guard o != n else { return [] }
        return [ContractChange(kind: .review, subject: subject, detail: "\(what) changed from \(show(o)) to \(show(n))")]
    }

    static func show(_ s: String?) -> String { s.map { "\"\(clip(oneLine($0)))\"" } ?? "unset" }

    /// `s` on one line (line breaks become spaces), at most 160 characters.
    public static func oneLinePublic(_ s: String) -> String { clip(oneLine(s)) }

    static func oneLine(_ s: String) -> String {
        s.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).joined(separator: " ")
    }

    static func clip(_ s: String) -> String { s.count > 160 ? String(s.prefix(157)) + "…" : s }
}
