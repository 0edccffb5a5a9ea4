import FleetCore

/// Escaping of values written into unit files and environment files, per systemd.syntax(7),
/// systemd.service(5) ("Command lines") and systemd.exec(5) (`Environment=`, `EnvironmentFile=`).
/// Manifest validation already rejects control characters; this is the second line of defence, so a
/// value that cannot be written safely is refused here too, never truncated or passed through.
public enum SystemdSyntax {
    /// Any C0 control character or DEL: a newline would start a new directive, NUL ends the string.
    static func hasControlCharacter(_ s: String) -> Bool {
        s.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }
    }

    static func refuse(_ resource: String, _ what: String) -> DriverError {
        DriverError(resource, "\(what) contains a control character (newline, NUL, tab, …) and cannot be written into a systemd unit safely", terminal: true)
    }

    /// `%` starts a specifier in almost every unit setting.
    public static func specifiers(_ s: String) -> String { s.replacingOccurrences(of: "%", with: "%%") }

    /// A free-text value (`Description=`): specifiers escaped, control characters refused.
    public static func text(_ s: String, resource: String, what: String) throws -> String {
        if hasControlCharacter(s) { throw refuse(resource, what) }
        return specifiers(s)
    }

    /// An absolute path setting (`WorkingDirectory=`, `EnvironmentFile=`): the whole rest of the line,
    /// specifiers expanded, no quoting; so leading/trailing blanks (trimmed by systemd) and, where the
    /// setting splits on them, blanks anywhere are refused.
    public static func path(_ s: String, resource: String, what: String, allowSpaces: Bool = true) throws -> String {
        if hasControlCharacter(s) { throw refuse(resource, what) }
        guard s.hasPrefix("/") else { throw DriverError(resource, "\(what) must be an absolute path", terminal: true) }
        if s.hasSuffix(" ") || (!allowSpaces && s.contains(" ")) {
            throw DriverError(resource, "\(what) must not contain spaces here", terminal: true)
        }
        return specifiers(s)
    }

    /// One argv element of `ExecStart=`: always double-quoted; `\` and `"` backslash-escaped, `%` → `%%`
    /// (specifiers), `$` → `$$` (environment variable substitution), so it arrives verbatim.
    public static func execArgument(_ s: String, resource: String) throws -> String {
        try execArgument(parts: [.literal(s)], resource: resource)
    }

    /// A piece of an argv element: literal text, or raw unit syntax the renderer itself produced
    /// (`${MCPFLEET_PORT}`, `%i`) that must reach systemd unescaped.
    enum ArgumentPart: Equatable {
        case literal(String)
        case raw(String)
    }

    static func execArgument(parts: [ArgumentPart], resource: String) throws -> String {
        var out = "\""
        for part in parts {
            switch part {
            case .raw(let r): out += r
            case .literal(let s):
                if hasControlCharacter(s) { throw refuse(resource, "command argument") }
                for c in s.unicodeScalars {
                    switch c {
                    case "\\": out += "\\\\"
                    case "\"": out += "\\\""
                    case "%": out += "%%"
                    case "$": out += "$$"
                    default: out.unicodeScalars.append(c)
                    }
                }
            }
        }
        return out + "\""
    }

    /// `Environment="NAME=value"`: C-style unquoting applies, specifiers expand, `$` has no meaning there.
    public static func environmentAssignment(name: String, value: String, resource: String) throws -> String {
        guard isEnvironmentName(name) else { throw DriverError(resource, "environment variable name `\(name)` is not valid for systemd", terminal: true) }
        if hasControlCharacter(value) { throw refuse(resource, "value of environment variable \(name)") }
        var out = "\"" + name + "="
        for c in value.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "%": out += "%%"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }

    /// One line of an `EnvironmentFile=` (read by PID 1, never by the unit's user): double-quoted, with
    /// the four characters that file format escapes inside double quotes. Newlines are kept inside the
    /// quotes (multi-line secrets such as PEM keys); only NUL cannot be represented.
    public static func environmentFileLine(name: String, value: String, resource: String) throws -> String {
        guard isEnvironmentName(name) else { throw DriverError(resource, "environment variable name `\(name)` is not valid for systemd", terminal: true) }
        if value.unicodeScalars.contains(where: { $0.value == 0 }) {
            throw DriverError(resource, "value of environment variable \(name) contains NUL", terminal: true)
        }
        var out = name + "=\""
        for c in value.unicodeScalars {
            switch c {
            case "\\", "\"", "$", "`": out += "\\"; out.unicodeScalars.append(c)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\"\n"
    }

    static func isEnvironmentName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, first == "_" || isASCIILetter(first) else { return false }
        return s.unicodeScalars.allSatisfy { $0 == "_" || isASCIILetter($0) || ("0"..."9").contains($0) }
    }

    static func isASCIILetter(_ c: Unicode.Scalar) -> Bool { ("a"..."z").contains(c) || ("A"..."Z").contains(c) }

    /// `systemd-escape` for one unit-name component: `-` would make a slice a child of another
    /// tenant's slice (`mcp-a-b.slice` lives under `mcp-a.slice`), so it becomes `\x2d`.
    public static func escapeUnitNameComponent(_ s: String) -> String {
        var out = ""
        for (i, b) in s.utf8.enumerated() {
            let c = Unicode.Scalar(b)
            let plain = isASCIILetter(c) || ("0"..."9").contains(c) || c == "_" || c == ":" || (c == "." && i > 0)
            out += plain ? String(c) : "\\x" + hex2(b)
        }
        return out
    }

    static func hex2(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(b >> 4)], digits[Int(b & 0xf)]])
    }
}
