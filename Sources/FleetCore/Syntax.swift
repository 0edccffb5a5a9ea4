/// Strict parsers for the scalar syntaxes manifests use. Each returns nil on anything it does not accept.
public enum Syntax {
    /// DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric, 1–63 characters.
    public static func isDNSLabel(_ s: String) -> Bool {
        // Byte views, never `Array(s.utf8)`: these checks run for every name of every document.
        let u = s.utf8
        guard (1...63).contains(u.count), let first = u.first, let last = u.last else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        guard alnum(first), alnum(last) else { return false }
        return u.allSatisfy { alnum($0) || $0 == 0x2d }
    }

    /// The one bound every manifest duration is held to: more than zero, at most 168h (7 days). Longer
    /// waits are `untilPromoted` pauses, not durations; the bound keeps every rendered form (Kubernetes
    /// `periodSeconds`, systemd timers) well inside its integer range.
    public static let maxDuration: Duration = .seconds(168 * 3600)

    /// The rules every name that reaches a runtime is held to, in one place: `mcpfleet validate` checks
    /// them (FieldReader, ManifestDecoder) and the Kubernetes renderer refuses anything else.
    public enum NameRule: String, Sendable, CaseIterable {
        /// Servers, tenants, namespaces, secrets, SLOs, environments, unit prefixes (RFC 1123 label).
        case dnsLabel
        /// `spec.kubernetes.namespacePrefix`: the start of a DNS label (it may end in `-`).
        case namespacePrefix
        /// Label and annotation keys: `[prefix/]name`, prefix a DNS subdomain.
        case labelKey
        case labelValue
        /// Environment variable names.
        case envName
        /// `spec.kubernetes.fieldManager`.
        case fieldManager

        public func accepts(_ s: String) -> Bool {
            switch self {
            case .dnsLabel: return Syntax.isDNSLabel(s)
            case .namespacePrefix: return Syntax.isNamespacePrefix(s)
            case .labelKey: return Syntax.isLabelKey(s)
            case .labelValue: return Syntax.isLabelValue(s)
            case .envName: return Syntax.isEnvName(s)
            case .fieldManager: return Syntax.isFieldManager(s)
            }
        }

        /// What the rule asks, for messages.
        public var requirement: String {
            switch self {
            case .dnsLabel: return "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
            case .namespacePrefix: return "lowercase letters, digits and '-', starting with a letter or digit, at most 62 characters"
            case .labelKey: return "a label key: an optional DNS subdomain and '/', then at most 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric"
            case .labelValue: return "empty, or at most 63 of A-Z a-z 0-9 - _ ., starting and ending alphanumeric"
            case .envName: return "[A-Za-z_][A-Za-z0-9_]*"
            case .fieldManager: return "1 to 128 of A-Z a-z 0-9 . _ -, starting alphanumeric"
            }
        }
    }

    /// A value as messages show it: control characters escaped (a hostile value cannot forge lines), cut at 200.
    public static func printable(_ s: String) -> String { FieldReader.printable(s) }

    /// The start of a DNS label: `[a-z0-9][a-z0-9-]*`, at most 62 characters (one is left for a name).
    public static func isNamespacePrefix(_ s: String) -> Bool {
        let u = s.utf8
        guard (1...62).contains(u.count), let first = u.first else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        return alnum(first) && u.allSatisfy { alnum($0) || $0 == 0x2d }
    }

    public static func isFieldManager(_ s: String) -> Bool {
        let u = s.utf8
        guard (1...128).contains(u.count), let first = u.first else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) }
        return alnum(first) && u.allSatisfy { alnum($0) || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f }
    }

    /// A DNS-1123 subdomain: dot-separated labels, at most 253 characters.
    public static func isDNSSubdomain<C: Collection>(_ u: C) -> Bool where C.Element == UInt8 {
        guard (1...253).contains(u.count) else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) }
        var previous: UInt8 = 0x2e
        for c in u {
            if c == 0x2e { guard alnum(previous) else { return false } }
            else if c == 0x2d { guard previous != 0x2e else { return false } }
            else if !alnum(c) { return false }
            previous = c
        }
        return alnum(previous)
    }

    /// `400ms`, `5m`, `1h30m`, `10s`. Units ms, s, m, h; at least one component; no sign, no fraction.
    public static func duration(_ s: String) -> Duration? {
        var s = s
        return s.withUTF8 { duration(bytes: $0) }
    }

    private static func duration(bytes u: UnsafeBufferPointer<UInt8>) -> Duration? {
        var total: Int64 = 0 // milliseconds
        var digits: Int64 = 0
        var haveDigits = false
        var components = 0
        var i = 0
        while i < u.count {
            let c = u[i]
            if c >= 0x30 && c <= 0x39 {
                digits = digits &* 10 &+ Int64(c - 0x30)
                if digits > 1_000_000_000 { return nil }
                haveDigits = true
                i += 1
                continue
            }
            guard haveDigits else { return nil }
            let factor: Int64
            if c == 0x6d, i + 1 < u.count, u[i + 1] == 0x73 { factor = 1; i += 2 }              // ms
            else if c == 0x73 { factor = 1000; i += 1 }                                         // s
            else if c == 0x6d { factor = 60_000; i += 1 }                                       // m
            else if c == 0x68 { factor = 3_600_000; i += 1 }                                    // h
            else { return nil }
            // Checked: a long run of `999999999h` components must not overflow (it is refused instead).
            let (product, o1) = digits.multipliedReportingOverflow(by: factor)
            let (sum, o2) = total.addingReportingOverflow(product)
            guard !o1, !o2 else { return nil }
            total = sum
            digits = 0
            haveDigits = false
            components += 1
        }
        guard components > 0, !haveDigits else { return nil }
        return .milliseconds(total)
    }

    /// CPU quantity in millicores: `500m`, `2`, `0.5`, `1.25`.
    public static func cpuMillis(_ s: String) -> Int? {
        guard !s.isEmpty else { return nil }
        if s.hasSuffix("m") {
            let n = s.dropLast()
            guard !n.isEmpty, n.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), n.count <= 9 else { return nil }
            return Int(n)
        }
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty, whole.count <= 6,
              whole.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        var millis = (Int(whole) ?? 0) * 1000
        if parts.count == 2 {
            let frac = parts[1]
            guard !frac.isEmpty, frac.count <= 3, frac.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            let padded = frac + String(repeating: "0", count: 3 - frac.count)
            millis += Int(padded) ?? 0
        }
        return millis
    }

    /// Memory quantity in bytes: `256Mi`, `1Gi`, `500M`, `1024`.
    private static let memorySuffixes: [(String, Int64)] = [
        ("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30), ("Ti", 1 << 40),
        ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000), ("T", 1_000_000_000_000),
    ]

    public static func memoryBytes(_ s: String) -> Int64? {
        let suffixes = memorySuffixes
        var number = Substring(s)
        var factor: Int64 = 1
        for (suffix, f) in suffixes where s.hasSuffix(suffix) {
            number = s.dropLast(suffix.count)
            factor = f
            break
        }
        guard !number.isEmpty, number.count <= 12, number.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let n = Int64(number) else { return nil }
        let (product, overflow) = n.multipliedReportingOverflow(by: factor)
        return overflow ? nil : product
    }

    /// `25%` → 25 (0–100).
    public static func percent(_ s: String) -> Int? {
        guard s.hasSuffix("%") else { return nil }
        let n = s.dropLast()
        guard !n.isEmpty, n.count <= 3, n.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = Int(n), v <= 100 else { return nil }
        return v
    }

    /// `99.5%` → 0.995.
    public static func percentFraction(_ s: String) -> Double? {
        guard s.hasSuffix("%") else { return nil }
        let n = s.dropLast()
        let parts = n.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }),
              let v = Double(n), v <= 100 else { return nil }
        return v / 100
    }

    public enum VersionProblem: Equatable { case latest, range, malformed }

    /// A version is a concrete string: not `latest`, not a range, `^[A-Za-z0-9][A-Za-z0-9._+-]*$`.
    public static func versionProblem(_ s: String) -> VersionProblem? {
        if let problem = asciiVersionProblem(s) { return problem }
        let lower = s.lowercased()
        if lower == "latest" || lower == "stable" || lower == "head" { return .latest }
        if s.contains(where: { "^~<>*|= ".contains($0) }) || lower == "x" || lower.hasSuffix(".x") || lower.contains(".x.") { return .range }
        let u = Array(s.utf8)
        guard let first = u.first, u.count <= 128 else { return .malformed }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) }
        guard alnum(first), u.allSatisfy({ alnum($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2b || $0 == 0x2d }) else { return .malformed }
        return nil
    }

    /// The common case of `versionProblem` without allocating: a name made only of
    /// `[A-Za-z0-9._+-]`, at most 128 bytes. `.some(nil)` is "no problem"; nil means "not that case".
    private static func asciiVersionProblem(_ s: String) -> VersionProblem?? {
        let u = s.utf8
        guard let first = u.first, u.count <= 128 else { return nil }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) }
        guard u.allSatisfy({ alnum($0) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2b || $0 == 0x2d }) else { return nil }
        func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5a ? c + 0x20 : c }
        func lowerEquals(_ word: String) -> Bool { u.count == word.utf8.count && zip(u, word.utf8).allSatisfy { lower($0) == $1 } }
        if lowerEquals("latest") || lowerEquals("stable") || lowerEquals("head") { return .some(.latest) }
        // No character of `^~<>*|= ` can occur here; the other range forms are `x`, `*.x` and `*.x.*`.
        if lowerEquals("x") { return .some(.range) }
        var previous2: UInt8 = 0, previous: UInt8 = 0
        for c in u {
            let l = lower(c)
            if previous2 == 0x2e, previous == 0x78, l == 0x2e { return .some(.range) } // ".x."
            previous2 = previous
            previous = l
        }
        if u.count >= 2, previous2 == 0x2e, previous == 0x78 { return .some(.range) } // ends in ".x"
        return .some(alnum(first) ? nil : .malformed)
    }

    /// Environment variable names: `^[A-Za-z_][A-Za-z0-9_]*$`.
    public static func isEnvName(_ s: String) -> Bool {
        let u = s.utf8
        guard let f = u.first, f == 0x5f || (f >= 0x41 && f <= 0x5a) || (f >= 0x61 && f <= 0x7a) else { return false }
        return u.allSatisfy { $0 == 0x5f || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) }
    }

    /// Label keys as Kubernetes: optional DNS-subdomain prefix and '/', then a name of ≤ 63 characters.
    public static func isLabelKey(_ s: String) -> Bool {
        // ASCII keys (the usual case): bytes are characters, so the prefix and name can be split and
        // checked on the UTF-8 view without walking grapheme clusters.
        let u = s.utf8
        if u.allSatisfy({ $0 < 0x80 }) {
            guard let slash = u.firstIndex(of: 0x2f) else { return isLabelValue(u) && !u.isEmpty }
            let prefix = u[..<slash], name = u[u.index(after: slash)...]
            guard isDNSSubdomain(prefix) else { return false }
            return isLabelValue(name) && !name.isEmpty
        }
        // Not ASCII: never a valid key (prefix and name are ASCII-only).
        return false
    }

    /// Label values: empty, or ≤ 63 of `[A-Za-z0-9_.-]` starting and ending alphanumeric.
    public static func isLabelValue(_ s: String) -> Bool { isLabelValue(s.utf8) }

    private static func isLabelValue<C: BidirectionalCollection>(_ u: C) -> Bool where C.Element == UInt8 {
        guard let first = u.first, let last = u.last else { return true }
        guard u.count <= 63 else { return false }
        func alnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) }
        guard alnum(first), alnum(last) else { return false }
        return u.allSatisfy { alnum($0) || $0 == 0x2d || $0 == 0x5f || $0 == 0x2e }
    }

    public static func isSHA256Digest(_ s: String) -> Bool {
        guard s.hasPrefix("sha256:") else { return false }
        let hex = s.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// True when the string contains a control character (newline, NUL, DEL, …) that must never reach a
    /// command line, unit file or environment file.
    public static func hasControlCharacter(_ s: String) -> Bool {
        // ASCII text (the usual case) only needs a byte scan; anything else is checked by scalar.
        // The string's own bytes when it has them in one piece (native strings do).
        func scan(_ u: some Sequence<UInt8>) -> Bool? {
            for c in u {
                if c < 0x20 || c == 0x7f { return true }
                if c >= 0x80 { return nil }
            }
            return false
        }
        let ascii = s.utf8.withContiguousStorageIfAvailable { scan($0) } ?? scan(s.utf8)
        if let ascii { return ascii }
        return s.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f || (0x80...0x9f).contains($0.value) || $0 == "\u{2028}" || $0 == "\u{2029}" }
    }

    /// `${NAME}` references in a string, or nil when a `${` is unterminated.
    public static func substitutions(in s: String) -> [String]? {
        guard s.utf8.contains(0x24) else { return [] } // no `$`, nothing to substitute
        var text = s
        // The string's own UTF-8 storage (no copy into an array).
        return text.withUTF8 { u -> [String]? in
            var names: [String] = []
            var i = 0
            while i + 1 < u.count {
                if u[i] == 0x24, u[i + 1] == 0x7b { // "${"
                    guard let close = u[(i + 2)...].firstIndex(of: 0x7d) else { return nil }
                    names.append(String(decoding: UnsafeBufferPointer(rebasing: u[(i + 2)..<close]), as: UTF8.self))
                    i = close + 1
                } else {
                    i += 1
                }
            }
            return names
        }
    }

    /// Levenshtein distance, for "did you mean" hints.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a.lowercased().utf8), y = Array(b.lowercased().utf8)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var prev = Array(0...y.count)
        var cur = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            cur[0] = i
            for j in 1...y.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[y.count]
    }

    /// The closest candidate within a distance proportional to the word, if any.
    public static func closest(to word: String, in candidates: [String]) -> String? {
        let limit = max(2, word.count / 3)
        var best: (String, Int)?
        for c in candidates {
            let d = editDistance(word, c)
            if d <= limit, best.map({ d < $0.1 }) ?? true { best = (c, d) }
        }
        return best?.0
    }

    /// Formats a duration as manifests write it: `400ms`, `30s`, `5m`, `1h30m`.
    public static func format(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        // Concatenation rather than interpolation: this runs twice per rendered server.
        if ms % 1000 != 0 { return String(ms) + "ms" }
        var s = ms / 1000
        var out = ""
        if s >= 3600 { out += String(s / 3600) + "h"; s %= 3600 }
        if s >= 60 { out += String(s / 60) + "m"; s %= 60 }
        if s > 0 || out.isEmpty { out += String(s) + "s" }
        return out
    }
}
