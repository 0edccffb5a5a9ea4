import Foundation
import NIOConcurrencyHelpers

/// JSON access log lines, one per request: request id, route, replica, status, timings, JSON-RPC
/// method and tool. Never a header value, a token or a body.
public final class AccessLog: Sendable {
    public struct Entry: Sendable {
        public var time: Date
        public var requestID: String
        public var method: String
        public var path: String
        public var server: String?
        public var tenant: String?
        public var replica: String?
        public var revision: String?
        public var status: Int
        public var durationMs: Double
        public var bytesIn: Int
        public var bytesOut: Int
        public var rpcMethod: String?
        public var tools: [String]
        public var reason: String?
    }

    private let sink: @Sendable (String) -> Void
    /// False for `off`: callers skip building entries at all.
    public let isEnabled: Bool

    public init(sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
        isEnabled = true
    }

    private init(disabled: ()) {
        sink = { _ in }
        isEnabled = false
    }

    /// Lines appended to a file (or "-" for standard error), written under a lock.
    public static func file(_ path: String) throws -> AccessLog {
        let handle: FileHandle
        if path == "-" {
            handle = FileHandle.standardError
        } else {
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o640]) else {
                    throw GatewayError("cannot create the access log \(path)")
                }
            }
            guard let h = FileHandle(forWritingAtPath: path) else { throw GatewayError("cannot open the access log \(path)") }
            h.seekToEndOfFile()
            handle = h
        }
        let lock = NIOLock()
        return AccessLog { line in lock.withLock { handle.write(Data((line + "\n").utf8)) } }
    }

    public static let off = AccessLog(disabled: ())

    /// RFC 3339 UTC with milliseconds, without a formatter (ICU's costs more than the rest of a request).
    static func timestamp(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var t = time_t(ms / 1000)
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }

    static func milliseconds(_ v: Double) -> String {
        let micros = Int64((v * 1000).rounded())
        let frac = String(micros % 1000)
        return "\(micros / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac)"
    }

    public func write(_ e: Entry) {
        guard isEnabled else { return }
        var fields: [String] = []
        func add(_ k: String, _ v: String?) { if let v { fields.append("\"\(k)\":\(Self.quote(v))") } }
        add("time", Self.timestamp(e.time))
        add("type", "access")
        add("request_id", e.requestID)
        add("method", e.method)
        add("path", e.path)
        add("server", e.server)
        add("tenant", e.tenant)
        add("replica", e.replica)
        add("revision", e.revision)
        fields.append("\"status\":\(e.status)")
        fields.append("\"duration_ms\":\(Self.milliseconds(e.durationMs))")
        fields.append("\"bytes_in\":\(e.bytesIn)")
        fields.append("\"bytes_out\":\(e.bytesOut)")
        add("rpc_method", e.rpcMethod)
        if !e.tools.isEmpty { fields.append("\"tools\":[\(e.tools.map(Self.quote).joined(separator: ","))]") }
        add("reason", e.reason)
        sink("{" + fields.joined(separator: ",") + "}")
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
