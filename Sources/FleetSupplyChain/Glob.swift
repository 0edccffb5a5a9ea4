/// Path-style glob matching for `allowedRegistries` and `allowedCommands`.
///
/// - `*` matches any run of characters within one `/`-separated segment (not `/`),
/// - `**` matches any run of characters, including `/`,
/// - `?` matches one character other than `/`,
/// - everything else matches itself.
///
/// The whole subject must match (`registry.example.com/mcp/*` does not match
/// `registry.example.com/mcp/team/time`, `registry.example.com/mcp/**` does).
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let tokens: [Token]

    private enum Token: Hashable, Sendable {
        case literal(UInt8), any, star, doubleStar
    }

    public init(_ pattern: String) {
        self.pattern = pattern
        var tokens: [Token] = []
        let bytes = Array(pattern.utf8)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "*") {
                if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "*") {
                    tokens.append(.doubleStar)
                    i += 2
                    while i < bytes.count, bytes[i] == UInt8(ascii: "*") { i += 1 }
                    continue
                }
                tokens.append(.star)
            } else if bytes[i] == UInt8(ascii: "?") {
                tokens.append(.any)
            } else {
                tokens.append(.literal(bytes[i]))
            }
            i += 1
        }
        self.tokens = tokens
    }

    public var description: String { pattern }

    public func matches(_ subject: String) -> Bool {
        let s = Array(subject.utf8)
        // memo[t][i]: tokens[t...] matches s[i...]; iterative DP, linear memory per row.
        var next = [Bool](repeating: false, count: s.count + 1)
        next[s.count] = true  // empty pattern matches empty rest
        for t in stride(from: tokens.count - 1, through: 0, by: -1) {
            var cur = [Bool](repeating: false, count: s.count + 1)
            for i in stride(from: s.count, through: 0, by: -1) {
                switch tokens[t] {
                case .literal(let c):
                    cur[i] = i < s.count && s[i] == c && next[i + 1]
                case .any:
                    cur[i] = i < s.count && s[i] != UInt8(ascii: "/") && next[i + 1]
                case .star:
                    // zero characters, or one non-'/' character and stay on this token
                    cur[i] = next[i] || (i < s.count && s[i] != UInt8(ascii: "/") && cur[i + 1])
                case .doubleStar:
                    cur[i] = next[i] || (i < s.count && cur[i + 1])
                }
            }
            next = cur
        }
        return next[0]
    }

    /// True when any of `patterns` matches `subject`.
    public static func anyMatches(_ patterns: [String], _ subject: String) -> Bool {
        patterns.contains { Glob($0).matches(subject) }
    }
}
