/// Reads typed values out of positioned nodes, recording every problem as a diagnostic instead of
/// stopping. One reader per document.
///
/// This runs for every field of every document, so the path that finds no problem builds no strings:
/// paths for messages are autoclosures or `FieldPath`s, rendered only when a message is written, and
/// `Fields` finds keys by scanning the mapping's few entries rather than building a dictionary.
/// `locations` holds only the positions cross-document rules point at (`record`), not every field's.
final class FieldReader {
    var diagnostics: Diagnostics
    var locations: FieldLocations
    /// Values met in this document that must never be shown (sensitive env values, credential-shaped
    /// arguments): diagnostics of the file mask them in their excerpts.
    var sensitive: [String] = []

    init(document: SourceLocation) {
        self.diagnostics = Diagnostics()
        self.locations = FieldLocations(document: document)
    }

    func error(_ code: String, _ message: String, at location: SourceLocation, hint: String? = nil) {
        diagnostics.error(code, message, at: location, hint: hint)
    }

    /// Remembers where a field's value is, for rules that run after decoding (`CatalogValidator`).
    func record(_ path: String, _ entry: MappingEntry?) {
        if let entry { locations.record(path, entry.value.location) }
    }

    /// Remembers where each item of a list is, by its index as written (`spec.environments[1]`).
    func recordItems(_ f: Fields, _ key: String) {
        guard let items = f.value(key)?.sequence else { return }
        for (i, item) in items.enumerated() { locations.record(FieldPath(f.path.child(key), index: i).description, item.location) }
    }

    /// A mapping's entries, after checking the node is a mapping, that every key is known and that
    /// required keys are present. Returns nil (with a diagnostic) when the node is not a mapping.
    /// `allowed` and `required` should be static arrays: they are only read.
    func mapping(_ node: Node, path: FieldPath, allowed: [String], required: [String] = []) -> Fields? {
        guard let entries = node.mapping else {
            error("type-mismatch", "expected a mapping for `\(path)`, found \(node.kindDescription)", at: node.location)
            return nil
        }
        entries.forEachInPlace { entry in
            guard case .scalar(let k) = entry.pointee.key.value else { return } // the YAML loader already rejected complex keys
            if !allowed.contains(where: { Fields.same(k.text, $0) }) {
                let key = k.text
                let hint = Syntax.closest(to: key, in: allowed).map { "did you mean `\($0)`?" }
                    ?? "expected one of: \(allowed.joined(separator: ", "))"
                error("unknown-field", "unknown field `\(key)` in `\(path)`", at: entry.pointee.key.location, hint: hint)
            }
        }
        let fields = Fields(path: path, node: node, entries: entries, allowed: allowed)
        for key in required where fields.entry(key).map({ $0.value.isNull }) ?? true {
            error("missing-field", "missing required field `\(fields.child(key))`", at: entries.first?.key.location ?? node.location)
        }
        return fields
    }

    // MARK: scalars

    func string(_ f: Fields, _ key: String) -> String? {
        guard let node = f.value(key) else { return nil }
        return string(node, path: f.child(key))
    }

    func string(_ node: Node, path: @autoclosure () -> String) -> String? {
        guard let s = node.scalar, !s.isNull else {
            error("type-mismatch", "expected a string for `\(path())`, found \(node.kindDescription)", at: node.location)
            return nil
        }
        return s.text
    }

    func int(_ f: Fields, _ key: String, range: ClosedRange<Int>) -> Int? {
        guard let node = f.value(key) else { return nil }
        return int(node, path: f.child(key), range: range)
    }

    func int(_ node: Node, path: @autoclosure () -> String, range: ClosedRange<Int>) -> Int? {
        guard let s = node.scalar, s.style == .plain, !s.isNull, let v = Int(s.text), s.text.first != "+" else {
            let found = node.scalar.map { $0.isNull ? "null" : "`\($0.text)`" } ?? node.kindDescription
            error("type-mismatch", "expected an integer for `\(path())`, found \(found)", at: node.location)
            return nil
        }
        guard range.contains(v) else {
            error("invalid-value", "`\(path())` must be between \(range.lowerBound) and \(range.upperBound), found \(v)", at: node.location)
            return nil
        }
        return v
    }

    func bool(_ f: Fields, _ key: String) -> Bool? {
        guard let node = f.value(key) else { return nil }
        if let s = node.scalar, s.style == .plain {
            switch s.text {
            case "true", "True", "TRUE": return true
            case "false", "False", "FALSE": return false
            default: break
            }
        }
        let found = node.scalar.map { "`\($0.text)`" } ?? node.kindDescription
        error("type-mismatch", "expected true or false for `\(f.child(key))`, found \(found)", at: node.location,
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

    func checkName(_ text: String, path: @autoclosure () -> String, at location: SourceLocation) -> String? {
        guard Syntax.isDNSLabel(text) else {
            let why = text.contains("/") || text.contains("..") ? " (it must not contain `/` or `..`)"
                : Syntax.hasControlCharacter(text) ? " (it contains a control character)"
                : text.count > 63 ? " (longer than 63 characters)" : ""
            error("invalid-name", "`\(path())` must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters; found `\(Self.printable(text))`\(why)", at: location)
            return nil
        }
        return text
    }

    func duration(_ f: Fields, _ key: String, allowZero: Bool = false) -> Duration? {
        guard let node = f.value(key), let text = string(node, path: f.child(key)) else { return nil }
        return checkDuration(text, path: f.child(key), at: node.location, allowZero: allowZero)
    }

    /// A duration within the one bound (`Syntax.maxDuration`), or nil with a diagnostic.
    func checkDuration(_ text: String, path: @autoclosure () -> String, at location: SourceLocation, allowZero: Bool = false) -> Duration? {
        guard let d = Syntax.duration(text), allowZero || d > .zero else {
            error("invalid-duration", "`\(path())` must be a duration such as `400ms`, `30s`, `5m` or `1h30m`, found `\(Self.printable(text))`", at: location,
                  hint: Syntax.duration(text) == nil && text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || [0x68, 0x6d, 0x73].contains($0) }) && !text.isEmpty
                    ? "durations are at most \(Syntax.format(Syntax.maxDuration))" : nil)
            return nil
        }
        guard d <= Syntax.maxDuration else {
            error("invalid-duration", "`\(path())` must be at most \(Syntax.format(Syntax.maxDuration)) (7 days), found `\(Self.printable(text))`", at: location,
                  hint: "every duration in a manifest is more than zero and at most 168h; wait longer with `pause: untilPromoted`")
            return nil
        }
        return d
    }

    /// A name held to one of the shared rules (`Syntax.NameRule`).
    func checkName(_ text: String, rule: Syntax.NameRule, path: @autoclosure () -> String, at location: SourceLocation) -> String? {
        guard rule.accepts(text) else {
            error("invalid-name", "`\(path())` must be \(rule.requirement); found `\(Self.printable(text))`", at: location)
            return nil
        }
        return text
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

/// A field path for messages (`spec.env[3].secretRef`), kept in parts so that nothing is rendered
/// unless a message needs it. The parts are usually literals, which cost no allocation.
struct FieldPath: CustomStringConvertible, ExpressibleByStringLiteral {
    var prefix: String
    var index: Int
    var suffix: String

    init(_ prefix: String, index: Int = -1, suffix: String = "") {
        self.prefix = prefix
        self.index = index
        self.suffix = suffix
    }

    init(stringLiteral value: String) { self.init(value) }

    var description: String {
        var out = prefix
        if index >= 0 { out += "[\(index)]" }
        if !suffix.isEmpty { out += "." + suffix }
        return out
    }

    /// This path with `.key` appended; a path in its own right.
    func child(_ key: String) -> String {
        let p = description
        return p.isEmpty ? key : "\(p).\(key)"
    }

    /// `prefix[index].key`, without rendering anything yet.
    func appending(_ key: String) -> FieldPath {
        suffix.isEmpty ? FieldPath(prefix, index: index, suffix: key) : FieldPath(description + "." + key)
    }
}

/// A checked mapping: its entries (looked up by known keys only) and its path for messages.
/// Lookups scan the entries: manifest mappings have at most a dozen keys, and the YAML loader has
/// already removed duplicate keys, so the first match is the only one. (Measured: cheaper than a
/// dictionary per mapping, and than a slot table filled while checking the keys.)
struct Fields {
    var path: FieldPath
    var node: Node
    var entries: [MappingEntry]
    /// The known keys; lookups of other keys are a programming error (checked in debug builds).
    var allowed: [String]

    func child(_ key: String) -> String { path.child(key) }

    func entry(_ key: String) -> MappingEntry? {
        index(of: key).map { entries[$0] }
    }

    /// Where `key` is among the entries. In place: `for e in entries` copied every entry it passed
    /// (both nodes retained and released).
    private func index(of key: String) -> Int? {
        assert(allowed.contains(key), "`\(key)` is not an allowed key of `\(path)`")
        return entries.withUnsafeBufferPointer { es -> Int? in
            guard let base = es.baseAddress else { return nil }
            for i in 0..<es.count {
                if case .scalar(let k) = (base + i).pointee.key.value, Self.same(k.text, key) { return i }
            }
            return nil
        }
    }

    /// String equality that settles most non-matches on the length: manifest keys are short ASCII, and
    /// `==` on two different small strings takes the general comparison path.
    @inline(__always)
    static func same(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a == b
    }

    /// The value for a key, or nil when absent or explicitly null (null means "unset", as in Kubernetes).
    func value(_ key: String) -> Node? {
        guard let i = index(of: key) else { return nil }
        return entries.withUnsafeBufferPointer { es -> Node? in
            let v = es.baseAddress! + i
            return v.pointee.value.isNull ? nil : v.pointee.value
        }
    }

    func has(_ key: String) -> Bool {
        guard let i = index(of: key) else { return false }
        return entries.withUnsafeBufferPointer { !($0.baseAddress! + i).pointee.value.isNull }
    }
    func keyLocation(_ key: String) -> SourceLocation? {
        index(of: key).map { i in entries.withUnsafeBufferPointer { ($0.baseAddress! + i).pointee.key.location } }
    }
}
