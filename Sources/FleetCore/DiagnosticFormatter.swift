/// Renders diagnostics as a compiler does: `file:line:col: error: message`, the source line, a caret,
/// and the hint. Pure: the caller supplies the source text of each file.
public struct DiagnosticFormatter: Sendable {
    public var color: Bool
    /// Values never to print (`Catalog.sensitiveValues`); credential-shaped text is masked as well.
    public var sensitive: Set<String>

    public init(color: Bool, sensitive: Set<String> = []) {
        self.color = color
        self.sensitive = sensitive
    }

    /// `text` with every sensitive value and credential-shaped substring masked.
    public static func redact(_ text: String, _ sensitive: Set<String>) -> String {
        var out = PlanSafety.redact(text)
        // Longest first, so a value containing another is masked whole; a multi-line value line by line.
        // Pieces under 3 characters are left: masking every `x` of a line hides nothing and garbles it.
        for v in sensitive.flatMap({ $0.split(separator: "\n").map(String.init) }).sorted(by: { $0.utf8.count > $1.utf8.count }) where v.utf8.count >= 3 {
            if out.contains(v) { out = out.replacingOccurrences(of: v, with: PlanSafety.masked(v)) }
        }
        return out
    }

    private func paint(_ s: String, _ code: String) -> String { color ? "\u{1B}[\(code)m\(s)\u{1B}[0m" : s }

    public func format(_ d: Diagnostic, source: (String) -> String?) -> String {
        let label: String
        switch d.severity {
        case .error: label = paint("error:", "1;31")
        case .warning: label = paint("warning:", "1;33")
        case .note: label = paint("note:", "1;36")
        }
        var out = ""
        if let loc = d.location { out += paint("\(loc):", "1") + " " }
        out += "\(label) \(paint(Self.redact(d.message, sensitive), "1")) [\(d.code)]\n"
        if let loc = d.location, let text = source(loc.file), let line = Self.line(loc.line, of: text) {
            let number = String(loc.line)
            let gutter = String(repeating: " ", count: number.count)
            let shown = Self.visible(Substring(Self.redact(String(line), sensitive)))
            out += " \(number) | \(shown)\n"
            // The caret sits under the column, counting Unicode scalars; tabs keep their width.
            let prefix = line.unicodeScalars.prefix(max(0, loc.column - 1)).map { $0 == "\t" ? "\t" : " " }.joined()
            out += " \(gutter) | \(prefix)\(paint("^", "1;32"))\n"
        }
        if let hint = d.hint { out += "  \(paint("hint:", "1;36")) \(Self.redact(hint, sensitive))\n" }
        return out
    }

    public func format(_ ds: Diagnostics, source: (String) -> String?) -> String {
        var out = ds.sorted.map { format($0, source: source) }.joined()
        let e = ds.errorCount, w = ds.warningCount
        if e > 0 || w > 0 {
            out += "\(e) error\(e == 1 ? "" : "s"), \(w) warning\(w == 1 ? "" : "s")\n"
        }
        return out
    }

    static func line(_ n: Int, of text: String) -> Substring? {
        guard n >= 1 else { return nil }
        var current = 1
        var start = text.startIndex
        var i = text.startIndex
        while i < text.endIndex {
            if text[i] == "\n" || text[i] == "\r\n" {
                if current == n { return text[start..<i] }
                current += 1
                start = text.index(after: i)
            }
            i = text.index(after: i)
        }
        return current == n ? text[start...] : nil
    }

    /// The source line with control characters made visible, cut to a sane width.
    static func visible(_ line: Substring) -> String {
        var out = ""
        for u in line.unicodeScalars.prefix(300) {
            out += (u.value < 0x20 && u != "\t") || u.value == 0x7f ? "\u{FFFD}" : String(u)
        }
        return out
    }
}

/// The JSON form of a validation run, for editors and CI annotations.
public struct DiagnosticReport: Codable, Sendable {
    public struct Item: Codable, Sendable {
        public var severity: Severity
        public var code: String
        public var message: String
        public var file: String?
        public var line: Int?
        public var column: Int?
        public var hint: String?
    }

    public var diagnostics: [Item]
    public var errorCount: Int
    public var warningCount: Int

    /// `sensitive`: values never to print (`Catalog.sensitiveValues`); credential-shaped text is masked too.
    public init(_ ds: Diagnostics, sensitive: Set<String> = []) {
        diagnostics = ds.sorted.map {
            Item(severity: $0.severity, code: $0.code, message: DiagnosticFormatter.redact($0.message, sensitive), file: $0.location?.file, line: $0.location?.line,
                 column: $0.location?.column, hint: $0.hint.map { DiagnosticFormatter.redact($0, sensitive) })
        }
        errorCount = ds.errorCount
        warningCount = ds.warningCount
    }
}
