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
    static func request(_ body: [UInt8]) -> Request {
        guard contains(body, Array("\"method\"".utf8)) else { return Request() }
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

    static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count, let first = needle.first else { return false }
        var i = 0
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first {
                var j = 1
                while j < needle.count && haystack[i + j] == needle[j] { j += 1 }
                if j == needle.count { return true }
            }
            i += 1
        }
        return false
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
        guard line.starts(with: Array("data:".utf8)) else { return }
        var value = line.dropFirst(5)
        if value.first == 0x20 { value = value.dropFirst() }
        if hasData { data.append(0x0a) }
        if data.count + value.count > limit { overflow = true; return }
        data.append(contentsOf: value)
        hasData = true
    }
}
