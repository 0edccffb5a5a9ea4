/// `spec.contract` and `spec.tools` of a Server (docs/designs/0010-tool-contracts.md).
extension ManifestDecoder {
    enum ContractKeys {
        static let tools = ["allow", "deny"]
    }

    static func serverContract(_ f: Fields, into s: inout Server, source: DocumentSource, _ r: FieldReader) {
        r.record("spec.contract", f.entry("contract"))
        if let n = f.value("contract"), let text = r.string(n, path: "spec.contract"), checkSafe(text, path: "spec.contract", at: n.location, r) {
            if text.contains("${") {
                r.error("invalid-path", "`spec.contract` is a file path; it takes no `${…}` substitutions, found `\(FieldReader.printable(text))`", at: n.location)
            } else if let resolved = rootRelative(text, from: source.relativeDirectory) {
                s.contract = resolved
            } else {
                r.error("invalid-path", "`spec.contract` must be a path relative to the manifest file that stays inside the manifest directory, found `\(FieldReader.printable(text))`",
                        at: n.location, hint: "`mcpfleet contract pull \(s.name)` writes contracts/\(s.name).json under the manifest root")
            }
        }
        guard let node = f.value("tools"), let t = r.mapping(node, path: "spec.tools", allowed: ContractKeys.tools) else { return }
        var access = ToolAccess()
        for key in ContractKeys.tools {
            guard let list = r.stringList(t, key) else { continue }
            for (i, pattern) in list.enumerated() {
                let at = t.value(key)?.sequence?[i].location ?? node.location
                if pattern.isEmpty || pattern.unicodeScalars.contains(where: { $0.value < 0x20 || $0 == " " }) {
                    r.error("invalid-value", "`spec.tools.\(key)[\(i)]` must be a tool name or a glob (`*`, `?`) without spaces or control characters, found `\(FieldReader.printable(pattern))`", at: at)
                    continue
                }
                if key == "allow" { access.allow.append(pattern) } else { access.deny.append(pattern) }
            }
        }
        s.tools = access
    }
}
