import Crypto
import Foundation

/// What counts as a secret in plain text, and how it is shown instead: every plan format, saved plan,
/// diagnostic excerpt and persisted spec shows a sensitive value as `(sensitive, sha256:0123456789ab)`,
/// so two plans can still be compared for equality without either carrying the bytes.
///
/// A value is sensitive when
/// - its name says so (`TOKEN`, `SECRET`, `PASSWORD`, `API_KEY`, `PRIVATE`, `CREDENTIAL`, `AUTH`, …), or
/// - it has the shape of a credential wherever it stands: GitHub, GitLab, Slack, AWS, Google, Stripe
///   and similar tokens, JWTs, PEM private-key blocks, URLs carrying a password or a secret-named query
///   parameter, Slack webhooks, or
/// - its name is weaker evidence (`KEY`, `PASS`, `PWD`, `SESSION`, `COOKIE`, `SALT`, `SIGNING`, `DSN`, …)
///   and the value is a high-entropy string (≥ 16 characters, no spaces, several character classes).
///
/// The scans read bytes once and only look closely at word starts: they run for every env value and
/// command argument of every server at render time.
public enum PlanSafety {
    // Name markers (see `nameClass`): strong `TOKEN`, `SECRET`, `PASSWORD`, `PASSWD`, `API_KEY`,
    // `APIKEY`, `PRIVATE`, `CREDENTIAL`, `AUTH`; weak (a random-looking value only: `KEY` alone also
    // names `SORT_KEY`) `KEY`, `PASS`, `PWD`, `SESSION`, `COOKIE`, `SALT`, `SIG`, `DSN`, `CERT`.


    /// The placeholder shown for a sensitive value: its SHA-256, cut to 12 hex digits for people.
    public static func masked(_ value: String) -> String {
        "(sensitive, sha256:" + Renderer.hexPrefix(SHA256.hash(data: Array(value.utf8)), 12) + ")"
    }

    /// `sha256:<64 hex>` of a value: what revisions hash and sealed specs record instead of it.
    public static func digest(_ value: String) -> String {
        "sha256:" + Renderer.hexPrefix(SHA256.hash(data: Array(value.utf8)), 64)
    }

    /// A sensitive value in a persisted spec (a saved plan, a driver's state): its full digest, so the
    /// value can be supplied again later and checked (`DesiredServer.unseal`).
    public static func sealed(_ value: String) -> String { "(sensitive, " + digest(value) + ")" }

    /// The digest inside a sealed token, or nil when `s` is not one.
    public static func sealedDigest(_ s: String) -> String? {
        let prefix = "(sensitive, sha256:", u = s.utf8
        guard u.count == prefix.utf8.count + 65, s.hasPrefix(prefix), s.hasSuffix(")") else { return nil }
        let hex = u.dropFirst(prefix.utf8.count).dropLast()
        guard hex.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }) else { return nil }
        return "sha256:" + String(decoding: hex, as: UTF8.self)
    }

    /// A value as people may see it: itself, or masked when `isSensitive`.
    public static func display(name: String?, _ value: String, quoted: Bool = true) -> String {
        isSensitive(name: name, value: value) ? masked(value) : (quoted ? Renderer.quote(value) : value)
    }

    /// Whether a plain value must never be shown or stored as written.
    public static func isSensitive(name: String?, value: String) -> Bool {
        switch name.map({ nameClass($0.utf8) }) ?? .none {
        case .strong: return true
        case .weak: if isHighEntropy(value) { return true }
        case .none: break
        }
        return looksLikeSecret(value)
    }

    /// Which elements of an argv are sensitive: credential-shaped arguments, `--token=…` with a
    /// secret-looking option name, and the argument after such an option (`--api-key VALUE`).
    public static func sensitiveArguments(_ argv: [String]) -> [Bool] {
        anySensitiveArgument(argv) ? argv.indices.map { sensitiveArgument(argv, $0) } : [Bool](repeating: false, count: argv.count)
    }

    /// Whether any argument is sensitive: what render asks of every server, so it reads bytes only.
    public static func anySensitiveArgument(_ argv: [String]) -> Bool {
        argv.indices.contains { sensitiveArgument(argv, $0) }
    }

    static func sensitiveArgument(_ argv: [String], _ i: Int) -> Bool {
        let arg = argv[i]
        let u = arg.utf8
        if u.first == 0x2d { // an option: `--name=value` is judged by its name and value
            guard let eq = u.firstIndex(of: 0x3d) else { return false }
            let value = String(Substring(arg)[u.index(after: eq)...])
            switch nameClass(u[..<eq]) {
            case .strong: return true
            case .weak: if isHighEntropy(value) { return true }
            case .none: break
            }
            return looksLikeSecret(value)
        }
        if i > 0 {
            let option = argv[i - 1].utf8
            if option.first == 0x2d, !option.contains(0x3d) {
                switch nameClass(option) {
                case .strong: return true
                case .weak: if isHighEntropy(arg) { return true }
                case .none: break
                }
            }
        }
        return looksLikeSecret(arg)
    }

    // MARK: names

    public static func looksSensitive(_ name: String) -> Bool { nameClass(name.utf8) == .strong }

    static func hasWeakMarker(_ name: String) -> Bool { nameClass(name.utf8) != .none }

    enum NameClass { case none, weak, strong }

    /// Whether a name carries a strong marker (`TOKEN`, `SECRET`, …), only a weak one (`KEY`, `PASS`,
    /// …) or none: one pass over the bytes, case-insensitive, `-` read as `_` (`api-key` is `API_KEY`).
    /// Non-ASCII bytes never match a marker.
    static func nameClass<C: Collection>(_ name: C) -> NameClass where C.Element == UInt8 {
        if let r = name.withContiguousStorageIfAvailable({ nameClass(buffer: $0) }) { return r }
        return Array(name).withUnsafeBufferPointer { nameClass(buffer: $0) }
    }

    private static func nameClass(buffer u: UnsafeBufferPointer<UInt8>) -> NameClass {
        @inline(__always) func up(_ c: UInt8) -> UInt8 { c >= 0x61 && c <= 0x7a ? c - 0x20 : (c == 0x2d ? 0x5f : c) }
        @inline(__always) func at(_ i: Int, _ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard i + n <= u.count else { return false }
            let w = word.utf8Start
            for k in 1..<n where up(u[i + k]) != w[k] { return false }
            return true
        }
        var weak = false
        var i = 0
        while i < u.count {
            switch up(u[i]) {
            case 0x54: if at(i, "TOKEN") { return .strong }                                          // T
            case 0x53:                                                                              // S
                if at(i, "SECRET") { return .strong }
                if at(i, "SESSION") || at(i, "SALT") || at(i, "SIG") { weak = true }
            case 0x50:                                                                              // P
                if at(i, "PASSWORD") || at(i, "PASSWD") || at(i, "PRIVATE") { return .strong }
                if at(i, "PASS") || at(i, "PWD") { weak = true }
            case 0x41: if at(i, "API_KEY") || at(i, "APIKEY") || at(i, "AUTH") { return .strong }     // A
            case 0x43:                                                                              // C
                if at(i, "CREDENTIAL") { return .strong }
                if at(i, "COOKIE") || at(i, "CERT") { weak = true }
            case 0x4b: if at(i, "KEY") { weak = true }                                              // K
            case 0x44: if at(i, "DSN") { weak = true }                                              // D
            default: break
            }
            i += 1
        }
        return weak ? .weak : .none
    }

    // MARK: values

    /// Whether the value contains something shaped like a credential.
    public static func looksLikeSecret(_ value: String) -> Bool {
        if let r = value.utf8.withContiguousStorageIfAvailable({ mayHoldSecret($0) && firstSecret(in: $0) != nil }) { return r }
        return Array(value.utf8).withUnsafeBufferPointer { mayHoldSecret($0) && firstSecret(in: $0) != nil }
    }

    /// A cheap first look: every shape recognised holds a run of at least 15 token bytes
    /// (`[A-Za-z0-9_.-]`), or a URL (`://`). Most values have neither.
    @inline(__always)
    static func mayHoldSecret(_ u: UnsafeBufferPointer<UInt8>) -> Bool {
        var run = 0
        for i in 0..<u.count {
            let c = u[i]
            if isAlnum(c) || c == 0x5f || c == 0x2d || c == 0x2e {
                run += 1
                if run >= 15 { return true }
            } else {
                if c == 0x3a, i + 2 < u.count, u[i + 1] == 0x2f, u[i + 2] == 0x2f { return true }
                run = 0
            }
        }
        return false
    }

    /// Byte ranges of credential-shaped substrings of `text` (for redacting a line of a file).
    public static func secretRanges(in text: String) -> [Range<Int>] {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBufferPointer { u in
            var out: [Range<Int>] = []
            var from = 0
            while from < u.count, let r = firstSecret(in: u, from: from) {
                out.append(r)
                from = max(r.upperBound, from + 1)
            }
            return out
        }
    }

    /// `text` with every credential-shaped substring replaced by its masked form.
    public static func redact(_ text: String) -> String {
        let ranges = secretRanges(in: text)
        guard !ranges.isEmpty else { return text }
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var at = 0
        for r in ranges {
            out.append(contentsOf: bytes[at..<r.lowerBound])
            out.append(contentsOf: masked(String(decoding: bytes[r], as: UTF8.self)).utf8)
            at = r.upperBound
        }
        out.append(contentsOf: bytes[at...])
        return String(decoding: out, as: UTF8.self)
    }

    @inline(__always) static func isAlnum(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x7a) }
    @inline(__always) static func isUpperOrDigit(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) }
    @inline(__always) static func isTokenByte(_ c: UInt8) -> Bool { isAlnum(c) || c == 0x5f || c == 0x2d }

    /// The first credential-shaped range at or after `from`, or nil.
    static func firstSecret(in u: UnsafeBufferPointer<UInt8>, from: Int = 0) -> Range<Int>? {
        var i = from
        let n = u.count
        while i < n {
            let c = u[i]
            // Only word starts can begin a token; `://` anywhere can begin a URL's credentials.
            if c == 0x3a, i + 2 < n, u[i + 1] == 0x2f, u[i + 2] == 0x2f, let r = urlSecret(u, schemeEnd: i) { return r }
            if i == 0 || !isAlnum(u[i - 1]) {
                if let r = tokenAt(u, i) { return r }
            }
            i += 1
        }
        return nil
    }

    /// Length of the run of bytes from `i` satisfying `ok`.
    @inline(__always) static func run(_ u: UnsafeBufferPointer<UInt8>, _ i: Int, _ ok: (UInt8) -> Bool) -> Int {
        var j = i
        while j < u.count, ok(u[j]) { j += 1 }
        return j - i
    }

    @inline(__always) static func has(_ u: UnsafeBufferPointer<UInt8>, _ i: Int, _ prefix: StaticString) -> Bool {
        let p = UnsafeBufferPointer(start: prefix.utf8Start, count: prefix.utf8CodeUnitCount)
        guard i + p.count <= u.count else { return false }
        for k in 0..<p.count where u[i + k] != p[k] { return false }
        return true
    }

    /// A prefixed token (`prefix` then at least `min` bytes of `body`) at `i`.
    @inline(__always) static func prefixed(_ u: UnsafeBufferPointer<UInt8>, _ i: Int, _ prefix: StaticString, min: Int,
                                           _ body: (UInt8) -> Bool = isAlnum) -> Range<Int>? {
        guard has(u, i, prefix) else { return nil }
        let start = i + prefix.utf8CodeUnitCount
        let len = run(u, start, body)
        return len >= min ? i..<(start + len) : nil
    }

    static func tokenAt(_ u: UnsafeBufferPointer<UInt8>, _ i: Int) -> Range<Int>? {
        switch u[i] {
        case 0x67: // g
            for p: StaticString in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
                if let r = prefixed(u, i, p, min: 30) { return r }
            }
            if let r = prefixed(u, i, "github_pat_", min: 22, { isAlnum($0) || $0 == 0x5f }) { return r }
            for p: StaticString in ["glpat-", "gldt-", "glrt-", "glptt-", "gloas-", "glsoat-", "glcbt-"] {
                if let r = prefixed(u, i, p, min: 20, isTokenByte) { return r }
            }
        case 0x78: // x
            for p: StaticString in ["xoxb-", "xoxp-", "xoxa-", "xoxo-", "xoxs-", "xoxr-", "xoxe-", "xapp-"] {
                if let r = prefixed(u, i, p, min: 10, { isAlnum($0) || $0 == 0x2d }) { return r }
            }
        case 0x41: // A
            for p: StaticString in ["AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA"] where has(u, i, p) {
                let len = run(u, i + 4, isUpperOrDigit)
                if len == 16, i + 20 == u.count || !isAlnum(u[i + 20]) { return i..<(i + 20) }
            }
            if let r = prefixed(u, i, "AIza", min: 35, isTokenByte) { return r }
        case 0x79: // y
            if let r = prefixed(u, i, "ya29.", min: 20, isTokenByte) { return r }
        case 0x47: // G
            if let r = prefixed(u, i, "GOCSPX-", min: 20, isTokenByte) { return r }
            if let r = prefixed(u, i, "GR1348941", min: 20, isTokenByte) { return r }
        case 0x73: // s
            for p: StaticString in ["sk_live_", "sk_test_"] {
                if let r = prefixed(u, i, p, min: 16) { return r }
            }
            if let r = prefixed(u, i, "sk-", min: 32, isTokenByte) { return r } // OpenAI, Anthropic (sk-ant-…)
        case 0x72: // r
            for p: StaticString in ["rk_live_", "rk_test_"] {
                if let r = prefixed(u, i, p, min: 16) { return r }
            }
        case 0x77: // w
            if let r = prefixed(u, i, "whsec_", min: 16) { return r }
        case 0x6e: // n
            if let r = prefixed(u, i, "npm_", min: 30) { return r }
        case 0x68: // h
            if let r = prefixed(u, i, "hf_", min: 30) { return r }
            if let r = prefixed(u, i, "hooks.slack.com/", min: 20, { isTokenByte($0) || $0 == 0x2f }) { return r }
        case 0x70: // p
            if let r = prefixed(u, i, "pypi-", min: 50, isTokenByte) { return r }
        case 0x65: // e: a JWT, `eyJ…` header, payload and signature in base64url
            guard has(u, i, "eyJ") else { return nil }
            let header = run(u, i, isTokenByte)
            guard header >= 10, i + header < u.count, u[i + header] == 0x2e else { return nil }
            let p = i + header + 1
            let payload = run(u, p, isTokenByte)
            guard payload >= 5, p + payload < u.count, u[p + payload] == 0x2e else { return nil }
            let s = p + payload + 1
            return i..<(s + run(u, s, isTokenByte))
        case 0x2d: // -----BEGIN … PRIVATE KEY----- up to its END line (or the end of the text)
            guard has(u, i, "-----BEGIN ") else { return nil }
            var j = i + 11
            while j < u.count, u[j] != 0x0a {
                if has(u, j, "PRIVATE KEY-----") {
                    var k = j + 16
                    while k < u.count {
                        if has(u, k, "-----END ") {
                            var e = k + 9
                            while e < u.count, u[e] != 0x0a { if has(u, e, "-----") && e > k + 9 { return i..<(e + 5) }; e += 1 }
                            return i..<e
                        }
                        k += 1
                    }
                    return i..<u.count
                }
                j += 1
            }
        default:
            break
        }
        return nil
    }

    /// In a URL whose `://` is at `schemeEnd`: the credentials of `user:password@host`, or a query
    /// parameter with a secret-looking name (`?access_token=…`, `&sig=…`).
    static func urlSecret(_ u: UnsafeBufferPointer<UInt8>, schemeEnd: Int) -> Range<Int>? {
        // The scheme must be letters (and + - .) right before `://`.
        guard schemeEnd > 0, isAlnum(u[schemeEnd - 1]) else { return nil }
        let start = schemeEnd + 3
        var j = start, colon: Int?
        func ends(_ c: UInt8) -> Bool { c == 0x2f || c == 0x3f || c == 0x23 || c <= 0x20 || c == 0x22 || c == 0x27 }
        while j < u.count, !ends(u[j]) {
            if u[j] == 0x3a, colon == nil { colon = j }
            if u[j] == 0x40 { // `@`: userinfo ends here
                if let colon, colon + 1 < j { return (colon + 1)..<j } // the password
                let userinfo = UnsafeBufferPointer(rebasing: u[start..<j])
                if firstSecret(in: userinfo) != nil || isHighEntropy(userinfo) { return start..<j } // a token as user name
                break
            }
            j += 1
        }
        // Query parameters: `name=value` after `?` or `&`, up to whitespace or a quote.
        while j < u.count, u[j] > 0x20, u[j] != 0x22, u[j] != 0x27 {
            if u[j] == 0x3f || u[j] == 0x26 {
                let nameStart = j + 1
                var k = nameStart
                while k < u.count, u[k] != 0x3d, u[k] != 0x26, u[k] > 0x20 { k += 1 }
                if k < u.count, u[k] == 0x3d {
                    let name = String(decoding: UnsafeBufferPointer(rebasing: u[nameStart..<k]), as: UTF8.self)
                    let valueStart = k + 1
                    var e = valueStart
                    while e < u.count, u[e] != 0x26, u[e] != 0x23, u[e] > 0x20, u[e] != 0x22, u[e] != 0x27 { e += 1 }
                    let lower = name.lowercased()
                    if e > valueStart, looksSensitive(name) || ["key", "sig", "signature", "code", "pass", "pwd"].contains(lower) {
                        return valueStart..<e
                    }
                }
                j = k
                continue
            }
            j += 1
        }
        return nil
    }

    // MARK: entropy

    static func isHighEntropy(_ value: String) -> Bool {
        if let r = value.utf8.withContiguousStorageIfAvailable({ isHighEntropy($0) }) { return r }
        return Array(value.utf8).withUnsafeBufferPointer { isHighEntropy($0) }
    }

    /// At least 16 bytes without whitespace, letters and digits (or symbols) mixed, and at least 3.5
    /// bits of Shannon entropy per byte: what generated keys look like and words do not.
    static func isHighEntropy(_ u: UnsafeBufferPointer<UInt8>) -> Bool {
        guard u.count >= 16, u.count <= 8192 else { return false }
        var counts = [Int](repeating: 0, count: 256)
        var lower = false, upper = false, digit = false, other = false
        for c in u {
            if c <= 0x20 { return false }
            counts[Int(c)] += 1
            if c >= 0x61 && c <= 0x7a { lower = true } else if c >= 0x41 && c <= 0x5a { upper = true }
            else if c >= 0x30 && c <= 0x39 { digit = true } else { other = true }
        }
        let classes = (lower ? 1 : 0) + (upper ? 1 : 0) + (digit ? 1 : 0) + (other ? 1 : 0)
        guard classes >= 2 else { return false }
        var entropy = 0.0
        let total = Double(u.count)
        for k in counts where k > 0 {
            let p = Double(k) / total
            entropy -= p * log2(p)
        }
        return entropy >= 3.5
    }
}
