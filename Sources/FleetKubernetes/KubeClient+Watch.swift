import FleetHTTP

/// One event of a watch stream.
public struct WatchEvent: Sendable {
    public enum Kind: String, Sendable {
        case added = "ADDED", modified = "MODIFIED", deleted = "DELETED", bookmark = "BOOKMARK"
    }

    public var kind: Kind
    public var object: KubeObject
}

/// What a continuous watch delivers: the full state after every (re)list, then changes.
public enum WatchUpdate: Sendable {
    /// The complete current set, after the initial list and after every relist (a `410 Gone`).
    case relisted([KubeObject])
    case event(WatchEvent)
}

extension KubeClient {
    /// One watch request from `resourceVersion` (`GET ...?watch=1`). The stream ends when the server
    /// closes the connection (a timeout or a dropped connection) and throws a `KubeError` with
    /// status 410 when the resourceVersion is too old (`Expired`/`Gone`), as an HTTP status or as an
    /// `ERROR` event. Bookmarks are requested and delivered so the caller can keep its resourceVersion fresh.
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

    /// A watch that keeps going, as client-go's reflector: list, then watch from the list's
    /// resourceVersion; when the connection drops, watch again from the last resourceVersion seen
    /// (events or bookmarks); when that is too old (410 Gone), list again and deliver `.relisted`.
    /// Transient failures back off (`retry`); the stream ends only when the consuming task is cancelled.
    public func watchContinuously(_ type: ResourceType, namespace: String? = nil, labelSelector: String? = nil,
                                  timeoutSeconds: Int = 300) -> AsyncThrowingStream<WatchUpdate, any Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                var resourceVersion: String?
                var failures = 0
                while !Task.isCancelled {
                    do {
                        if resourceVersion == nil {
                            let list = try await self.list(type, namespace: namespace, labelSelector: labelSelector)
                            resourceVersion = list.resourceVersion
                            continuation.yield(.relisted(list.items))
                        }
                        let events = try await self.watch(type, namespace: namespace, labelSelector: labelSelector,
                                                          resourceVersion: resourceVersion, timeoutSeconds: timeoutSeconds)
                        var received = false
                        for try await event in events {
                            failures = 0
                            received = true
                            if let rv = event.object.resourceVersion { resourceVersion = rv }
                            if event.kind != .bookmark { continuation.yield(.event(event)) }
                        }
                        // Server closed the watch (timeout or dropped connection): resume from where we
                        // are; back off if it closed without delivering anything, so we never spin.
                        if !received {
                            failures += 1
                            try await Task.sleep(for: self.retry.backoff(afterAttempt: min(failures, 8)))
                        }
                    } catch let error as KubeError where error.isGone {
                        resourceVersion = nil
                    } catch is CancellationError {
                        break
                    } catch {
                        if Task.isCancelled { break }
                        failures += 1
                        do {
                            try await Task.sleep(for: self.retry.backoff(afterAttempt: min(failures, 8)))
                        } catch { break }
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
