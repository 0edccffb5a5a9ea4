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

    public init(sink: @escaping @Sendable (String) -> Void) {
        self.sink = sink
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

    public static let off = AccessLog { _ in }

    nonisolated(unsafe) private static let formatter: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    private static let formatterLock = NIOLock()

    public func write(_ e: Entry) {
        var fields: [String] = []
        func add(_ k: String, _ v: String?) { if let v { fields.append("\"\(k)\":\(Self.quote(v))") } }
        add("time", Self.formatterLock.withLock { Self.formatter.string(from: e.time) })
        add("type", "access")
        add("request_id", e.requestID)
        add("method", e.method)
        add("path", e.path)
        add("server", e.server)
        add("tenant", e.tenant)
        add("replica", e.replica)
        add("revision", e.revision)
        fields.append("\"status\":\(e.status)")
        fields.append("\"duration_ms\":\(String(format: "%.3f", e.durationMs))")
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
