/// Block-style YAML for Kubernetes objects, as people write them (`kubectl apply -f` reads it; every
/// value reads back as exactly the JSON value it came from: strings that YAML would take for another
/// type, or that need escapes, are double-quoted).
extension JSONValue {
    public func yaml() -> String {
        var out = ""
        switch self {
        case .object(let members) where !members.isEmpty: Self.writeMembers(members, indent: 0, into: &out)
        case .array(let items) where !items.isEmpty: Self.writeItems(items, indent: 0, into: &out)
        default: out = Self.scalar(self) + "\n"
        }
        return out
    }

    static func writeMembers(_ members: [JSONMember], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for m in members {
            out += pad + yamlString(m.key) + ":"
            writeValue(m.value, indent: indent, into: &out)
        }
    }

    static func writeItems(_ items: [JSONValue], indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        for item in items {
            switch item {
            case .object(let members) where !members.isEmpty:
                // `- first: …` then the other members aligned under it.
                var nested = ""
                writeMembers(members, indent: indent + 2, into: &nested)
                out += pad + "- " + nested.dropFirst(indent + 2)
            case .array(let inner) where !inner.isEmpty:
                out += pad + "-\n"
                writeItems(inner, indent: indent + 2, into: &out)
            default:
                out += pad + "- " + scalar(item) + "\n"
            }
        }
    }

    /// After `key:`: a scalar on the same line, a collection on the next lines.
    static func writeValue(_ value: JSONValue, indent: Int, into out: inout String) {
        switch value {
        case .object(let members) where !members.isEmpty:
            out += "\n"
            writeMembers(members, indent: indent + 2, into: &out)
        case .array(let items) where !items.isEmpty:
            out += "\n"
            writeItems(items, indent: indent + 2, into: &out)
        default:
            out += " " + scalar(value) + "\n"
        }
    }

    static func scalar(_ value: JSONValue) -> String {
        switch value {
        case .string(let s): return yamlString(s)
        case .object: return "{}"
        case .array: return "[]"
        default: return value.jsonText
        }
    }

    /// Words YAML 1.1 or 1.2 reads as booleans or null.
    static let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"]

    /// A string plain when it cannot be read as anything else, else double-quoted (JSON escapes are
    /// YAML escapes; DEL and the C1 controls are escaped too).
    static func yamlString(_ s: String) -> String {
        if isPlainSafe(s) { return s }
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0xFEFF || (0x2028...0x2029).contains(scalar.value) {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func isPlainSafe(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, let last = s.unicodeScalars.last else { return false }
        if reserved.contains(s.lowercased()) { return false }
        // Anything that may start a number, a timestamp or an indicator is quoted (versions "1.0", "0123").
        if "-?:,[]{}#&*!|>'\"%@`+.0123456789 <=".unicodeScalars.contains(first) || last == " " || last == ":" { return false }
        if s.contains(": ") || s.contains(" #") { return false }
        return s.unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value < 0x7F }
    }
}
