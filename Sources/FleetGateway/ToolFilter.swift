import FleetCore
import Foundation

/// `spec.tools` on the traffic (docs/designs/0010-tool-contracts.md): a `tools/call` naming a tool the
/// lists do not permit is answered by the gateway with a JSON-RPC error (the replica never sees it), and
/// `tools/list` answers are rewritten without such tools, whether they come as JSON or as SSE events.
enum ToolFilter {
    /// JSON-RPC "invalid params", as MCP servers answer a call of an unknown tool.
    static let deniedCode = -32602

    /// The first call in a request that the lists refuse.
    static func denied(_ calls: [JSONRPCInspector.Call], access: ToolAccess) -> JSONRPCInspector.Call? {
        calls.first { !access.permits($0.tool) }
    }

    /// The JSON-RPC error answering `call` (its id as the client sent it).
    static func errorBody(_ call: JSONRPCInspector.Call, server: String) -> String {
        let id: String
        if call.id.hasPrefix("s:") { id = AccessLog.quote(String(call.id.dropFirst(2))) } else { id = String(call.id.dropFirst(2)) }
        let message = "tool `\(call.tool)` is not allowed on server \(server) (spec.tools)"
        return "{\"jsonrpc\":\"2.0\",\"id\":\(id),\"error\":{\"code\":\(deniedCode),\"message\":\(AccessLog.quote(message))}}"
    }

    /// One JSON text (a message or a batch) with denied tools taken out of every `result.tools`; nil
    /// when nothing in it needed to change.
    static func filterList(_ data: Data, access: ToolAccess) -> Data? {
        guard let object = try? JSONSerialization.jsonObject(with: data) else { return nil }
        var changed = false
        func filter(_ message: Any) -> Any {
            guard var m = message as? [String: Any], var result = m["result"] as? [String: Any], let tools = result["tools"] as? [Any] else { return message }
            let kept = tools.filter { (($0 as? [String: Any])?["name"] as? String).map(access.permits) ?? true }
            guard kept.count != tools.count else { return message }
            changed = true
            result["tools"] = kept
            m["result"] = result
            return m
        }
        let filtered: Any = (object as? [Any]).map { $0.map(filter) } ?? filter(object)
        guard changed, let out = try? JSONSerialization.data(withJSONObject: filtered, options: [.withoutEscapingSlashes]) else { return nil }
        return out
    }

    /// Rewrites a `tools/list` answer as it streams: a JSON body is held to its end (bounded), an SSE
    /// stream is passed on event by event with each event's data filtered.
    struct ListRewriter {
        let access: ToolAccess
        let sse: Bool
        static let limit = 16 << 20
        private var pending: [UInt8] = []
        private var overflowed = false

        init(access: ToolAccess, sse: Bool) {
            self.access = access
            self.sse = sse
        }

        /// Bytes to send on now.
        mutating func feed(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
            if overflowed { return Array(bytes) }
            pending.append(contentsOf: bytes)
            if pending.count > Self.limit {
                // Too large to hold: passed on unfiltered rather than cut (the call refusal still holds).
                overflowed = true
                defer { pending = [] }
                return pending
            }
            guard sse else { return [] }
            var out: [UInt8] = []
            while let end = Self.eventEnd(pending) {
                out += rewriteEvent(Array(pending[..<end.start]))
                out += pending[end.start..<end.next]
                pending.removeSubrange(..<end.next)
            }
            return out
        }

        /// What is left at the end of the answer.
        mutating func finish() -> [UInt8] {
            defer { pending = [] }
            if overflowed || pending.isEmpty { return pending }
            if sse { return rewriteEvent(pending) }
            return ToolFilter.filterList(Data(pending), access: access).map(Array.init) ?? pending
        }

        /// Where the first event ends: the blank line's start and the byte after it.
        static func eventEnd(_ b: [UInt8]) -> (start: Int, next: Int)? {
            var i = 0
            while i + 1 < b.count {
                if b[i] == 0x0A && b[i + 1] == 0x0A { return (i + 1, i + 2) }
                if b[i] == 0x0A && b[i + 1] == 0x0D, i + 2 < b.count, b[i + 2] == 0x0A { return (i + 1, i + 3) }
                i += 1
            }
            return nil
        }

        /// One event's lines (without its blank line): its `data` filtered, other fields kept. Split on
        /// bytes: as a Swift string, `\r\n` is one character and would not split on `\n`.
        func rewriteEvent(_ event: [UInt8]) -> [UInt8] {
            var lines = event.split(separator: 0x0A, omittingEmptySubsequences: false).map { line -> [UInt8] in
                line.last == 0x0D ? Array(line.dropLast()) : Array(line)
            }
            let prefix = Array("data:".utf8)
            let dataLines = lines.indices.filter { lines[$0].starts(with: prefix) }
            guard !dataLines.isEmpty else { return event }
            var data: [UInt8] = []
            for (n, i) in dataLines.enumerated() {
                var v = lines[i].dropFirst(prefix.count)
                if v.first == 0x20 { v = v.dropFirst() }
                if n > 0 { data.append(0x0A) }
                data += v
            }
            guard let filtered = ToolFilter.filterList(Data(data), access: access) else { return event }
            lines[dataLines[0]] = Array("data: ".utf8) + Array(filtered)
            for i in dataLines.dropFirst().reversed() { lines.remove(at: i) }
            return Array(lines.joined(separator: [0x0A]))
        }
    }
}
