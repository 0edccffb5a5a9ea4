import Foundation

/// What the gateway reads from MCP traffic: the tool each `tools/call` names (by request id), and
/// whether each response to one is an error (a JSON-RPC `error`, or a result with `isError: true`).
/// Only `tools/call` bodies are parsed; everything else passes as bytes.
enum JSONRPCInspector {
    struct Call: Hashable {
        /// The request id as canonical JSON text (numbers and strings stay distinct).
        var id: String
        var tool: String
    }

    struct Request {
        var method: String?
        var calls: [Call] = []
    }

    /// Methods and tool calls of a request body (one message or a batch).
    static let toolsCall = Array("tools/call".utf8)
    /// As encoders that escape `/` write it (Foundation's JSONEncoder on Linux, used by the Swift SDK).
    static let toolsCallEscaped = Array("tools\\/call".utf8)
    static let methodKey = Array("\"method\"".utf8)

    static func request(_ body: [UInt8]) -> Request {
        guard let at = find(body, methodKey) else { return Request() }
        // Without a tools/call the method name is all that is needed: read it in place (a name with
        // escapes is left to the full parse).
        if find(body, toolsCall) == nil && find(body, toolsCallEscaped) == nil, let method = stringValue(body, after: at + methodKey.count) {
            return Request(method: method)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) else { return Request() }
        let messages = (object as? [Any]) ?? [object]
        var out = Request()
        for case let m as [String: Any] in messages {
            guard let method = m["method"] as? String else { continue }
            if out.method == nil { out.method = method }
            if method == "tools/call", let id = m["id"], let key = idKey(id) {
                let name = (m["params"] as? [String: Any])?["name"] as? String ?? "?"
                out.calls.append(Call(id: key, tool: name))
            }
        }
        return out
    }

    /// Responses in one JSON text (a message or a batch): request id → is an error.
    static func responses(_ data: Data) -> [(id: String, error: Bool)] {
        guard let object = try? JSONSerialization.jsonObject(with: data) else { return [] }
        let messages = (object as? [Any]) ?? [object]
        var out: [(String, Bool)] = []
        for case let m as [String: Any] in messages where m["method"] == nil {
            guard let id = m["id"], let key = idKey(id) else { continue }
            let isError = m["error"] != nil || ((m["result"] as? [String: Any])?["isError"] as? Bool ?? false)
            out.append((key, isError))
        }
        return out
    }

    static func idKey(_ id: Any) -> String? {
        if let s = id as? String { return "s:" + s }
        if let n = id as? NSNumber { return "n:" + n.stringValue }
        return nil
    }

    static func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard needle.count <= haystack.count, let first = needle.first else { return nil }
        var i = 0
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return i }
            }
            i += 1
        }
        return nil
    }

    /// `: "text"` after a key: the plain string (nil if it has escapes or is not a string).
    static func stringValue(_ b: [UInt8], after i: Int) -> String? {
        var k = i
        while k < b.count, b[k] == 0x20 || b[k] == 0x09 || b[k] == 0x0a || b[k] == 0x0d || b[k] == 0x3a { k += 1 }
        guard k < b.count, b[k] == 0x22 else { return nil }
        var e = k + 1
        while e < b.count, b[e] != 0x22 {
            if b[e] == 0x5c { return nil }
            e += 1
        }
        return e < b.count ? String(decoding: b[(k + 1)..<e], as: UTF8.self) : nil
    }
}

/// Incremental `text/event-stream` reader: feed bytes as they pass, get each event's `data` when its
/// blank line arrives. Bounded: an event larger than `limit` is skipped (telemetry only, never the stream).
struct SSEParser {
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var overflow = false
    let limit: Int

    init(limit: Int = 1 << 20) { self.limit = limit }

    static let dataPrefix = Array("data:".utf8)

    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ emit: (Data) -> Void) {
        for b in bytes {
            if b == 0x0a {
                if line.last == 0x0d { line.removeLast() }
                endLine(emit)
            } else if line.count < limit {
                line.append(b)
            } else {
                overflow = true
            }
        }
    }

    private mutating func endLine(_ emit: (Data) -> Void) {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            if hasData && !overflow { emit(Data(data)) }
            data.removeAll(keepingCapacity: true)
            hasData = false
            overflow = false
            return
        }
        guard line.starts(with: Self.dataPrefix) else { return }
        var value = line.dropFirst(5)
        if value.first == 0x20 { value = value.dropFirst() }
        if hasData { data.append(0x0a) }
        if data.count + value.count > limit { overflow = true; return }
        data.append(contentsOf: value)
        hasData = true
    }
}
