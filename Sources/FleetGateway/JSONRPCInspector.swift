import Foundation

/// What the gateway reads from MCP traffic: the tool each `tools/call` names (by request id), and
/// whether each response to one is an error (a JSON-RPC `error`, or a result with `isError: true`).
/// Bodies are scanned in place (`JSONScanner`): only the members telemetry needs are decoded, and no
/// JSON tree is built (this runs for every proxied request and every SSE event of a tool call).
enum JSONRPCInspector {
    struct Call: Hashable {
        /// The request id as canonical JSON text (numbers and strings stay distinct).
        var id: String
        var tool: String
    }

    struct Request {
        var method: String?
        var calls: [Call] = []
        /// The tool every `tools/call` names, notifications (no id) included: what a tool filter checks.
        var calledTools: [String] = []
        /// The body was JSON-RPC as the gateway reads it: valid JSON, and no message naming its method,
        /// params or tool twice (a server could read the other copy). A tool filter refuses anything else.
        var readable = true
    }

    static let methodKey = Array("method".utf8)
    static let idKey = Array("id".utf8)
    static let paramsKey = Array("params".utf8)
    static let nameKey = Array("name".utf8)
    static let errorKey = Array("error".utf8)
    static let resultKey = Array("result".utf8)
    static let isErrorKey = Array("isError".utf8)

    /// Methods and tool calls of a request body (one message or a batch). Not JSON: nothing.
    static func request(_ body: [UInt8]) -> Request {
        body.withUnsafeBytes { request($0) }
    }

    static func request(_ body: UnsafeRawBufferPointer) -> Request {
        var out = Request()
        var s = JSONScanner(body)
        var duplicate = false
        let ok = s.messages { s in
            var method: String?, id: String?, name: String?
            var seenMethod = false, seenParams = false
            let ok = s.object { s, key in
                if s.key(key, is: methodKey) {
                    if seenMethod { duplicate = true }
                    seenMethod = true
                    method = s.stringValue()
                } else if s.key(key, is: idKey) {
                    id = s.idValue()
                } else if s.key(key, is: paramsKey) {
                    if seenParams { duplicate = true }
                    seenParams = true
                    guard s.next == UInt8(ascii: "{") else { return s.skipValue() }
                    name = nil
                    var seenName = false
                    return s.object { s, key in
                        if s.key(key, is: nameKey) {
                            if seenName { duplicate = true }
                            seenName = true
                            name = s.stringValue()
                        } else {
                            return s.skipValue()
                        }
                        return true
                    }
                } else {
                    return s.skipValue()
                }
                return true
            }
            guard ok else { return false }
            if let method {
                if out.method == nil { out.method = method }
                if method == "tools/call" {
                    out.calledTools.append(name ?? "?")
                    if let id { out.calls.append(Call(id: id, tool: name ?? "?")) }
                }
            }
            return true
        }
        guard ok else { return Request(readable: false) }
        out.readable = !duplicate
        return out
    }

    /// Responses in one JSON text (a message or a batch): request id → is an error.
    static func responses(_ data: Data) -> [(id: String, error: Bool)] {
        data.withUnsafeBytes { responses($0) }
    }

    static func responses(_ bytes: UnsafeRawBufferPointer) -> [(id: String, error: Bool)] {
        var out: [(String, Bool)] = []
        var s = JSONScanner(bytes)
        let ok = s.messages { s in
            var isRequest = false, id: String?, isError = false
            let ok = s.object { s, key in
                if s.key(key, is: methodKey) {
                    isRequest = true
                    return s.skipValue()
                } else if s.key(key, is: idKey) {
                    id = s.idValue()
                } else if s.key(key, is: errorKey) {
                    isError = true
                    return s.skipValue()
                } else if s.key(key, is: resultKey), s.next == UInt8(ascii: "{") {
                    return s.object { s, key in
                        if s.key(key, is: isErrorKey) {
                            if s.literal("true") { isError = true } else { return s.skipValue() }
                            return true
                        }
                        return s.skipValue()
                    }
                } else {
                    return s.skipValue()
                }
                return true
            }
            guard ok else { return false }
            if !isRequest, let id { out.append((id, isError)) }
            return true
        }
        return ok ? out : []
    }
}

/// A forward-only reader of one JSON text that finds a few members without building a tree. It
/// checks the syntax as it goes (any error ends the scan with `false`, as a full parse would fail)
/// but decodes only the strings asked for; everything else is skipped in place.
struct JSONScanner {
    let b: UnsafeRawBufferPointer
    private(set) var i = 0
    /// Set by the value readers that return nil for "not this kind of value": a syntax error there.
    private(set) var failed = false
    static let maxDepth = 512

    init(_ bytes: UnsafeRawBufferPointer) { b = bytes }

    /// The next byte after white space (0 at the end).
    var next: UInt8 {
        mutating get {
            skipSpace()
            return i < b.count ? b[i] : 0
        }
    }

    mutating func skipSpace() {
        while i < b.count {
            switch b[i] {
            case 0x20, 0x0a, 0x0d, 0x09: i += 1
            default: return
            }
        }
    }

    mutating func consume(_ c: UInt8) -> Bool {
        skipSpace()
        guard i < b.count, b[i] == c else { return false }
        i += 1
        return true
    }

    /// A message or a batch of them: `message` reads each object (other array elements are skipped);
    /// true when the whole text is one well-formed value.
    mutating func messages(_ message: (inout JSONScanner) -> Bool) -> Bool {
        if next == UInt8(ascii: "[") {
            i += 1
            if !consume(UInt8(ascii: "]")) {
                repeat {
                    let ok = next == UInt8(ascii: "{") ? message(&self) : skipValue(depth: 1)
                    guard ok else { return false }
                } while consume(UInt8(ascii: ","))
                guard consume(UInt8(ascii: "]")) else { return false }
            }
        } else {
            guard next == UInt8(ascii: "{"), message(&self) else { return false }
        }
        skipSpace()
        return !failed && i == b.count
    }

    /// The object at the cursor: `member` gets each key (raw) and must consume its value.
    mutating func object(depth: Int = 1, _ member: (inout JSONScanner, Key) -> Bool) -> Bool {
        guard depth < Self.maxDepth, consume(UInt8(ascii: "{")) else { return false }
        if consume(UInt8(ascii: "}")) { return true }
        repeat {
            guard let key = rawString(), consume(UInt8(ascii: ":")), member(&self, key), !failed else { return false }
        } while consume(UInt8(ascii: ","))
        return consume(UInt8(ascii: "}"))
    }

    /// A string's contents as they stand in the text (between the quotes).
    struct Key {
        var range: Range<Int>
        var escaped: Bool
    }

    mutating func rawString() -> Key? {
        guard next == 0x22 else { return nil }
        let start = i + 1
        var k = start, escaped = false
        while k < b.count {
            let c = b[k]
            if c == 0x22 {
                i = k + 1
                return Key(range: start..<k, escaped: escaped)
            }
            if c == 0x5c {
                escaped = true
                k += 2
                continue
            }
            if c < 0x20 { return nil }
            k += 1
        }
        return nil
    }

    func key(_ key: Key, is name: [UInt8]) -> Bool {
        if key.escaped { return decode(key).map { Array($0.utf8) == name } ?? false }
        guard key.range.count == name.count else { return false }
        var j = 0
        for k in key.range {
            if b[k] != name[j] { return false }
            j += 1
        }
        return true
    }

    /// The string at the cursor, decoded; nil (and the value skipped) for any other value.
    mutating func stringValue() -> String? {
        guard next == 0x22 else {
            if !skipValue() { failed = true }
            return nil
        }
        guard let s = rawString().flatMap(decode) else {
            failed = true
            return nil
        }
        return s
    }

    /// A request id as `s:text` or `n:number` (numbers canonical: 7, 7.0 and 7e0 are one id); nil
    /// for other values.
    mutating func idValue() -> String? {
        let c = next
        if c == 0x22 { return stringValue().map { "s:" + $0 } }
        guard c == UInt8(ascii: "-") || (c >= 0x30 && c <= 0x39), let r = number() else {
            if !skipValue() { failed = true }
            return nil
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self)
        if let n = Int64(text) { return "n:" + String(n) }
        guard let d = Double(text) else {
            failed = true
            return nil
        }
        if d == d.rounded(), abs(d) < 9e15 { return "n:" + String(Int64(d)) }
        return "n:" + String(d)
    }

    mutating func literal(_ word: StaticString) -> Bool {
        skipSpace()
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        let w = word.utf8Start
        for j in 0..<n where b[i + j] != w[j] { return false }
        i += n
        return true
    }

    mutating func number() -> Range<Int>? {
        skipSpace()
        let start = i
        while i < b.count {
            let c = b[i]
            guard (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") || c == UInt8(ascii: ".") || c == UInt8(ascii: "e")
                || c == UInt8(ascii: "E") else { break }
            i += 1
        }
        return i > start ? start..<i : nil
    }

    /// Skips the value at the cursor, checking its syntax.
    mutating func skipValue(depth: Int = 1) -> Bool {
        guard depth < Self.maxDepth else { return false }
        switch next {
        case 0x22: return rawString() != nil
        case UInt8(ascii: "{"): return object(depth: depth + 1) { s, _ in s.skipValue(depth: depth + 1) }
        case UInt8(ascii: "["):
            i += 1
            if consume(UInt8(ascii: "]")) { return true }
            repeat {
                guard skipValue(depth: depth + 1) else { return false }
            } while consume(UInt8(ascii: ","))
            return consume(UInt8(ascii: "]"))
        case UInt8(ascii: "t"): return literal("true")
        case UInt8(ascii: "f"): return literal("false")
        case UInt8(ascii: "n"): return literal("null")
        case UInt8(ascii: "-"), 0x30...0x39: return number() != nil
        default: return false
        }
    }

    /// A string's contents with its escapes resolved (`\uXXXX` with surrogate pairs).
    func decode(_ key: Key) -> String? {
        let r = key.range
        if !key.escaped { return String(decoding: UnsafeRawBufferPointer(rebasing: b[r]), as: UTF8.self) }
        var out: [UInt8] = []
        out.reserveCapacity(r.count)
        var k = r.lowerBound
        while k < r.upperBound {
            let c = b[k]
            guard c == 0x5c else {
                out.append(c)
                k += 1
                continue
            }
            guard k + 1 < r.upperBound else { return nil }
            let e = b[k + 1]
            k += 2
            switch e {
            case 0x22, 0x5c, 0x2f: out.append(e)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0c)
            case UInt8(ascii: "n"): out.append(0x0a)
            case UInt8(ascii: "r"): out.append(0x0d)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "u"):
                guard var v = hex4(k, r.upperBound) else { return nil }
                k += 4
                if (0xd800...0xdbff).contains(v), k + 6 <= r.upperBound, b[k] == 0x5c, b[k + 1] == UInt8(ascii: "u"),
                   let low = hex4(k + 2, r.upperBound), (0xdc00...0xdfff).contains(low) {
                    v = 0x10000 + ((v - 0xd800) << 10) + (low - 0xdc00)
                    k += 6
                }
                out.append(contentsOf: String(Unicode.Scalar(v) ?? "\u{FFFD}").utf8)
            default: return nil
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func hex4(_ at: Int, _ end: Int) -> UInt32? {
        guard at + 4 <= end else { return nil }
        var v: UInt32 = 0
        for k in at..<(at + 4) {
            let c = b[k]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
            default: return nil
            }
            v = v << 4 | UInt32(d)
        }
        return v
    }
}

/// Incremental `text/event-stream` reader: feed bytes as they pass, get each event's `data` when its
/// blank line arrives. Bounded: an event larger than `limit` is skipped (telemetry only, never the
/// stream). Lines are found with `memchr` and copied once, not byte by byte.
struct SSEParser {
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var overflow = false
    let limit: Int

    init(limit: Int = 1 << 20) { self.limit = limit }

    static let dataPrefix = Array("data:".utf8)

    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (UnsafeRawBufferPointer) -> Void) {
        guard let base = bytes.baseAddress else { return }
        var start = 0
        while start < bytes.count {
            guard let nl = memchr(base + start, 0x0a, bytes.count - start) else {
                // A partial line: kept for the next chunk.
                let rest = bytes.count - start
                if line.count + rest <= limit { line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start...])) } else { overflow = true }
                return
            }
            let end = UnsafeRawPointer(nl) - base
            if line.isEmpty {
                endLine(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), emit)
            } else {
                if line.count + (end - start) <= limit { line.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<end])) } else { overflow = true }
                let whole = line
                whole.withUnsafeBytes { endLine($0, emit) }
                line.removeAll(keepingCapacity: true)
            }
            start = end + 1
        }
    }

    private mutating func endLine(_ raw: UnsafeRawBufferPointer, _ emit: (UnsafeRawBufferPointer) -> Void) {
        var l = raw
        if l.last == 0x0d { l = UnsafeRawBufferPointer(rebasing: l.dropLast()) }
        if l.isEmpty {
            if hasData && !overflow { data.withUnsafeBytes(emit) }
            data.removeAll(keepingCapacity: true)
            hasData = false
            overflow = false
            return
        }
        guard l.starts(with: Self.dataPrefix) else { return }
        var value = UnsafeRawBufferPointer(rebasing: l.dropFirst(5))
        if value.first == 0x20 { value = UnsafeRawBufferPointer(rebasing: value.dropFirst()) }
        if hasData { data.append(0x0a) }
        if data.count + value.count > limit {
            overflow = true
            return
        }
        data.append(contentsOf: value)
        hasData = true
    }
}
