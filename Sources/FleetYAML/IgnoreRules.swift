/// `.mcpfleetignore` rules, gitignore-style: `#` comments, blank lines, `!` negation (last match
/// wins), a trailing `/` matches directories only, `*`, `?`, `[...]` and `**` globs, and a pattern
/// without an inner `/` matches a name at any depth.
struct IgnoreRules: Sendable {
    private struct Rule: Sendable {
        var segments: [[UInt8]]
        var negated: Bool
        var directoryOnly: Bool
        /// Matched against the entry's name only, at any depth.
        var nameOnly: Bool
    }

    private var rules: [Rule] = []

    init(_ text: String = "") {
        for raw in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            var line = Substring(raw)
            while let last = line.last, last == " " || last == "\t" { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            var negated = false
            if line.hasPrefix("!") {
                negated = true
                line.removeFirst()
            } else if line.hasPrefix("\\") {
                line.removeFirst()
            }
            var directoryOnly = false
            while line.hasSuffix("/") {
                directoryOnly = true
                line.removeLast()
            }
            var anchored = line.contains("/")
            while line.hasPrefix("/") {
                anchored = true
                line.removeFirst()
            }
            if line.isEmpty { continue }
            let segments = line.split(separator: "/", omittingEmptySubsequences: true).map { Array($0.utf8) }
            rules.append(Rule(segments: segments, negated: negated, directoryOnly: directoryOnly, nameOnly: !anchored))
        }
    }

    var isEmpty: Bool { rules.isEmpty }

    /// Whether the entry at `relativePath` (components joined by "/") is ignored.
    func ignores(_ relativePath: String, isDirectory: Bool) -> Bool {
        guard !rules.isEmpty else { return false }
        let components = relativePath.split(separator: "/").map { Array($0.utf8) }
        guard let name = components.last else { return false }
        var ignored = false
        for rule in rules where !(rule.directoryOnly && !isDirectory) {
            let hit = rule.nameOnly
                ? Self.matchSegment(rule.segments[0], name)
                : Self.matchPath(rule.segments[...], components[...])
            if hit { ignored = !rule.negated }
        }
        return ignored
    }

    private static func matchPath(_ pattern: ArraySlice<[UInt8]>, _ path: ArraySlice<[UInt8]>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == Array("**".utf8) {
            let rest = pattern.dropFirst()
            if rest.isEmpty { return !path.isEmpty }
            var p = path
            while true {
                if matchPath(rest, p) { return true }
                if p.isEmpty { return false }
                p = p.dropFirst()
            }
        }
        guard let head = path.first, matchSegment(first, head) else { return false }
        return matchPath(pattern.dropFirst(), path.dropFirst())
    }

    /// fnmatch on one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, `\x`.
    static func matchSegment(_ p: [UInt8], _ s: [UInt8]) -> Bool {
        var pi = 0, si = 0
        var starP = -1, starS = 0
        while si < s.count {
            if pi < p.count {
                let c = p[pi]
                if c == UInt8(ascii: "*") {
                    while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
                    starP = pi
                    starS = si
                    continue
                }
                if let next = matchOne(p, pi, s[si]) {
                    pi = next
                    si += 1
                    continue
                }
            }
            guard starP >= 0 else { return false }
            starS += 1
            si = starS
            pi = starP
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }

    /// Matches one byte against the pattern element at `pi`; returns the index after the element.
    private static func matchOne(_ p: [UInt8], _ pi: Int, _ c: UInt8) -> Int? {
        switch p[pi] {
        case UInt8(ascii: "?"):
            return pi + 1
        case UInt8(ascii: "\\") where pi + 1 < p.count:
            return p[pi + 1] == c ? pi + 2 : nil
        case UInt8(ascii: "["):
            var i = pi + 1
            var negate = false
            if i < p.count, p[i] == UInt8(ascii: "!") || p[i] == UInt8(ascii: "^") {
                negate = true
                i += 1
            }
            var matched = false
            var firstInClass = true
            while i < p.count, p[i] != UInt8(ascii: "]") || firstInClass {
                firstInClass = false
                let lo = p[i]
                if i + 2 < p.count, p[i + 1] == UInt8(ascii: "-"), p[i + 2] != UInt8(ascii: "]") {
                    if lo <= c && c <= p[i + 2] { matched = true }
                    i += 3
                } else {
                    if lo == c { matched = true }
                    i += 1
                }
            }
            // An unterminated class is a literal "[".
            guard i < p.count else { return c == UInt8(ascii: "[") ? pi + 1 : nil }
            return matched != negate ? i + 1 : nil
        default:
            return p[pi] == c ? pi + 1 : nil
        }
    }
}
