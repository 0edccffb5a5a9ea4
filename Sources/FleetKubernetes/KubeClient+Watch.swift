import FleetHTTP

/// One event of a watch stream.
public struct WatchEvent: Sendable {
    public enum Kind: String, Sendable {
        case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK"
    }

    public var kind: Kind
    public var object: KubeObject
}

extension KubeClient {
    /// One watch request from `resourceVersion` (`GET ...?watch=1`). The stream ends when the server
    /// closes the connection (a timeout or a dropped connection) and throws a `KubeError` with
    /// status 410 when the resourceVersion is too old (`Expired`/`Gone`), as an HTTP status or as an
    /// `ERROR` event. Bookmarks are requested and delivered so the caller can keep its resourceVersion fresh.
    /// `Informer` keeps a watch going (resume, relist, stall detection, backoff) on top of this.
    public func watch(_ type: ResourceType, namespace: String? = nil, labelSelector: String? = nil, resourceVersion: String?,
                      timeoutSeconds: Int = 300) async throws -> AsyncThrowingStream<WatchEvent, any Error> {
        let ref = ObjectReference(kind: type.kind, namespace: namespace)
        var query: [(String, String)] = [("watch", "1"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", String(timeoutSeconds))]
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        if let labelSelector { query.append(("labelSelector", labelSelector)) }
        let request = HTTPRequest(method: "GET", url: url(type.path(namespace: namespace), query), headers: ["Accept": "application/json"])
        try await limiter.acquire()
        let response: HTTPStreamingResponse
        do {
            response = try await transport.stream(request)
        } catch let error as HTTPError {
            throw KubeError(object: ref, verb: "watch", status: 0, message: error.description, transportError: error)
        }
        guard (200..<300).contains(response.status) else {
            var body: [UInt8] = []
            for try await chunk in response.body {
                body += chunk
                if body.count > 64 << 10 { break }
            }
            throw KubeError.from(response: HTTPResponse(status: response.status, headers: response.headers, body: body), object: ref, verb: "watch")
        }
        let chunks = response.body
        return AsyncThrowingStream { continuation in
            let task = Task {
                var buffer: [UInt8] = []
                do {
                    for try await chunk in chunks {
                        buffer += chunk
                        while let newline = buffer.firstIndex(of: 0x0A) {
                            let line = Array(buffer[..<newline])
                            buffer.removeSubrange(...newline)
                            if let event = try Self.decodeWatchLine(line, type: type, ref: ref) { continuation.yield(event) }
                        }
                    }
                    if let event = try Self.decodeWatchLine(buffer, type: type, ref: ref) { continuation.yield(event) }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    static func decodeWatchLine(_ line: [UInt8], type: ResourceType, ref: ObjectReference) throws -> WatchEvent? {
        guard line.contains(where: { $0 != 0x20 && $0 != 0x0D && $0 != 0x09 }) else { return nil }
        let json: JSONValue
        do { json = try JSONValue.parse(line) } catch {
            throw KubeError(object: ref, verb: "watch", status: 0, message: "unreadable watch event: \(error)")
        }
        let typeName = json["type"]?.string ?? ""
        var object = json["object"] ?? .null
        if typeName == "ERROR" {
            let code = object["code"]?.int ?? 500
            throw KubeError(object: ref, verb: "watch", status: code, reason: object["reason"]?.string, message: object["message"]?.string ?? "watch error")
        }
        guard let kind = WatchEvent.Kind(rawValue: typeName) else {
            throw KubeError(object: ref, verb: "watch", status: 0, message: "unknown watch event type \"\(typeName)\"")
        }
        if object["apiVersion"] == nil { object["apiVersion"] = .string(type.apiVersion) }
        if object["kind"] == nil { object["kind"] = .string(type.kind) }
        return WatchEvent(kind: kind, object: KubeObject(object))
    }
}
