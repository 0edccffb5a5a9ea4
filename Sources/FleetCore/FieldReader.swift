/// Reads typed values out of positioned nodes, recording every problem as a diagnostic instead of
/// stopping. One reader per document; `locations` collects where each field came from.
final class FieldReader {
    var diagnostics: Diagnostics
    var locations: FieldLocations

    init(document: SourceLocation) {
        self.diagnostics = Diagnostics()
        self.locations = FieldLocations(document: document)
    }

    func error(_ code: String, _ message: String, at location: SourceLocation, hint: String? = nil) {
        diagnostics.error(code, message, at: location, hint: hint)
    }

    /// A mapping's entries by key, after checking the node is a mapping, that every key is known and that
    /// required keys are present. Returns nil (with a diagnostic) when the node is not a mapping.
    func mapping(_ node: Node, path: String, allowed: [String], required: [String] = []) -> Fields? {
        guard let entries = node.mapping else {
            error("type-mismatch", "expected a mapping for `\(path)`, found \(node.kindDescription)", at: node.location)
            return nil
        }
        var fields = Fields(path: path, node: node)
        for entry in entries {
            guard let key = entry.keyText else { continue } // the YAML loader already rejected complex keys
            if allowed.contains(key) {
                fields.entries[key] = entry
                locations.fields[fields.child(key)] = entry.value.location
            } else {
                let hint = Syntax.closest(to: key, in: allowed).map { "did you mean `\($0)`?" }
                    ?? "expected one of: \(allowed.joined(separator: ", "))"
                error("unknown-field", "unknown field `\(key)` in `\(path)`", at: entry.key.location, hint: hint)
            }
        }
        for key in required where fields.entries[key].map({ $0.value.isNull }) ?? true {
            error("missing-field", "missing required field `\(fields.child(key))`", at: entries.first?.key.location ?? node.location)
        }
        return fields
    }

    // MARK: scalars

    func string(_ f: Fields, _ key: String) -> String? {
        guard let node = f.value(key) else { return nil }
        return string(node, path: f.child(key))
    }

    func string(_ node: Node, path: String) -> String? {
        guard let s = node.scalar, !s.isNull else {
            error("type-mismatch", "expected a string for `\(path)`, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return s.text
    }

    func int(_ f: Fields, _ key: String, range: ClosedRange<Int>) -> Int? {
        guard let node = f.value(key) else { return nil }
        return int(node, path: f.child(key), range: range)
    }

    func int(_ node: Node, path: String, range: ClosedRange<Int>) -> Int? {
        guard let s = node.scalar, s.style == .plain, !s.isNull, let v = Int(s.text), s.text.first != "+" else {
            let found = node.scalar.map { $0.isNull ? "null" : "`\($0.text)`" } ?? node.kindDescription
            error("type-mismatch", "expected an integer for `\(path)`, found \(found)", at: node.location)
            return nil
        }
        guard range.contains(v) else {
            error("invalid-value", "`\(path)` must be between \(range.lowerBound) and \(range.upperBound), found \(v)", at: node.location)
            return nil
        }
        return v
    }

    func bool(_ f: Fields, _ key: String) -> Bool? {
        guard let node = f.value(key) else { return nil }
        let path = f.child(key)
        if let s = node.scalar, s.style == .plain {
            switch s.text {
            case "true", "True", "TRUE": return true
            case "false", "False", "FALSE": return false
            default: break
            }
        }
        let found = node.scalar.map { "`\($0.text)`" } ?? node.kindDescription
        error("type-mismatch", "expected true or false for `\(path)`, found \(found)", at: node.location,
              hint: node.scalar.map { ["yes", "no", "on", "off", "y", "n"].contains($0.text.lowercased()) } == true
                ? "YAML 1.1 booleans such as yes/no/on/off are not booleans here; write true or false" : nil)
        return nil
    }

    func enumValue<E: RawRepresentable & CaseIterable>(_ f: Fields, _ key: String, _ type: E.Type) -> E? where E.RawValue == String {
        guard let node = f.value(key), let text = string(node, path: f.child(key)) else { return nil }
        if let v = E(rawValue: text) { return v }
        let allowed = E.allCases.map(\.rawValue)
        error("invalid-value", "`\(f.child(key))` must be one of \(allowed.joined(separator: ", ")), found `\(text)`", at: node.location,
              hint: Syntax.closest(to: text, in: allowed).map { "did you mean `\($0)`?" })
        return nil
    }

    func name(_ f: Fields, _ key: String) -> String? {
        guard let node = f.value(key), let text = string(node, path: f.child(key)) else { return nil }
        return checkName(text, path: f.child(key), at: node.location)
    }

    func checkName(_ text: String, path: String, at location: SourceLocation) -> String? {
        guard Syntax.isDNSLabel(text) else {
            let why = text.contains("/") || text.contains("..") ? " (it must not contain `/` or `..`)"
                : Syntax.hasControlCharacter(text) ? " (it contains a control character)"
                : text.count > 63 ? " (longer than 63 characters)" : ""
            error("invalid-name", "`\(path)` must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters; found `\(Self.printable(text))`\(why)", at: location)
            return nil
        }
        return text
    }

    func duration(_ f: Fields, _ key: String, allowZero: Bool = false) -> Duration? {
        guard let node = f.value(key), let text = string(node, path: f.child(key)) else { return nil }
        guard let d = Syntax.duration(text), allowZero || d > .zero else {
            error("invalid-duration", "`\(f.child(key))` must be a duration such as `400ms`, `30s`, `5m` or `1h30m`, found `\(Self.printable(text))`", at: node.location)
            return nil
        }
        return d
    }

    func port(_ f: Fields, _ key: String) -> Int? {
        guard let node = f.value(key) else { return nil }
        guard let s = node.scalar, s.style == .plain, let v = Int(s.text), (1...65535).contains(v) else {
            let found = node.scalar.map { "`\($0.text)`" } ?? node.kindDescription
            error("invalid-port", "`\(f.child(key))` must be a port number between 1 and 65535, found \(found)", at: node.location)
            return nil
        }
        return v
    }

    func intOrPercent(_ f: Fields, _ key: String) -> IntOrPercent? {
        guard let node = f.value(key), let s = node.scalar, !s.isNull else {
            if let node = f.value(key) {
                error("type-mismatch", "expected an integer or a percentage for `\(f.child(key))`, found \(node.kindDescription)", at: node.location)
            }
            return nil
        }
        if s.style == .plain, let v = Int(s.text), v >= 0 { return .count(v) }
        if let p = Syntax.percent(s.text) { return .percent(p) }
        error("invalid-value", "`\(f.child(key))` must be a non-negative integer or a percentage such as `25%`, found `\(s.text)`", at: node.location)
        return nil
    }

    func list(_ f: Fields, _ key: String) -> [Node]? {
        guard let node = f.value(key) else { return nil }
        guard let items = node.sequence else {
            error("type-mismatch", "expected a list for `\(f.child(key))`, found \(node.kindDescription)", at: node.location)
            return nil
        }
        for (i, item) in items.enumerated() { locations.fields["\(f.child(key))[\(i)]"] = item.location }
        return items
    }

    func stringList(_ f: Fields, _ key: String) -> [String]? {
        guard let items = list(f, key) else { return nil }
        return items.enumerated().compactMap { i, n in string(n, path: "\(f.child(key))[\(i)]") }
    }

    func nameList(_ f: Fields, _ key: String) -> [String]? {
        guard let items = list(f, key) else { return nil }
        return items.enumerated().compactMap { i, n in
            string(n, path: "\(f.child(key))[\(i)]").flatMap { checkName($0, path: "\(f.child(key))[\(i)]", at: n.location) }
        }
    }

    func stringMap(_ f: Fields, _ key: String) -> [(key: String, keyLocation: SourceLocation, value: String, valueLocation: SourceLocation)]? {
        guard let node = f.value(key) else { return nil }
        guard let entries = node.mapping else {
            error("type-mismatch", "expected a mapping for `\(f.child(key))`, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return entries.compactMap { e in
            guard let k = e.keyText, let v = string(e.value, path: "\(f.child(key)).\(k)") else { return nil }
            return (k, e.key.location, v, e.value.location)
        }
    }

    /// Values shown in messages: control characters escaped so a hostile value cannot forge output lines.
    static func printable(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars.prefix(200) {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out += u.value < 0x20 || u.value == 0x7f ? "\\u{\(String(u.value, radix: 16))}" : String(u)
            }
        }
        return s.unicodeScalars.count > 200 ? out + "…" : out
    }
}

/// A checked mapping: its known entries by key, and its path for messages.
struct Fields {
    var path: String
    var node: Node
    var entries: [String: MappingEntry] = [:]

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The value for a key, or nil when absent or explicitly null (null means "unset", as in Kubernetes).
    func value(_ key: String) -> Node? {
        guard let v = entries[key]?.value, !v.isNull else { return nil }
        return v
    }

    func has(_ key: String) -> Bool { value(key) != nil }
    func keyLocation(_ key: String) -> SourceLocation? { entries[key]?.key.location }
}
