public import FleetHTTP
import Foundation

/// A list response: the items and the collection's resourceVersion (where a watch starts).
public struct KubeList: Sendable {
    public var items: [KubeObject]
    public var resourceVersion: String
}

/// Propagation of a delete to dependents (ReplicaSets and Pods of a Deployment).
public enum PropagationPolicy: String, Sendable {
    case background = "Background", foreground = "Foreground", orphan = "Orphan"
}

/// Counters for benchmarks and tests: how often the API server throttled us and how often we retried.
public struct KubeClientStatistics: Sendable, Equatable {
    public var requests = 0
    public var retries = 0
    public var throttled = 0
    public var serverErrors = 0
}

/// A Kubernetes API client over `HTTPTransport` (libcurl): typed paths for a fixed set of resource
/// types, server-side apply, dry runs, list and watch, a client-side token-bucket rate limiter and
/// retries with backoff. Every error is a `KubeError` naming the object.
public final class KubeClient: Sendable {
    public let config: ClusterConfig
    public let fieldManager: String
    public let limiter: RateLimiter
    public let retry: RetryPolicy
    let transport: any HTTPTransport
    private let counters = Counters()

    /// - Parameters:
    ///   - transport: defaults to a `CurlTransport` built from `config` (TLS, client certificate, token).
    ///   - qps, burst: the client-side rate limit (client-go's defaults for controllers are far lower;
    ///     50/100 suits one controller that applies in bulk).
    public init(config: ClusterConfig, transport: (any HTTPTransport)? = nil, fieldManager: String = "mcpfleet",
                qps: Double = 50, burst: Int = 100, retry: RetryPolicy = .default) throws {
        self.config = config
        self.transport = try transport ?? CurlTransport(config.transportConfiguration())
        self.fieldManager = fieldManager
        limiter = RateLimiter(qps: qps, burst: burst)
        self.retry = retry
    }

    public var statistics: KubeClientStatistics { counters.value }

    // MARK: Verbs

    public func get(_ type: ResourceType, namespace: String?, name: String) async throws -> KubeObject {
        let ref = ObjectReference(kind: type.kind, namespace: namespace, name: name)
        let response = try await perform("GET", type.path(namespace: namespace, name: name), object: ref, verb: "get")
        return try decodeObject(response, ref, "get")
    }

    /// The object, or nil when it does not exist.
    public func getIfPresent(_ type: ResourceType, namespace: String?, name: String) async throws -> KubeObject? {
        do {
            return try await get(type, namespace: namespace, name: name)
        } catch let error as KubeError where error.isNotFound {
            return nil
        }
    }

    /// Lists objects (all namespaces when `namespace` is nil), following `continue` tokens.
    public func list(_ type: ResourceType, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil, pageSize: Int = 500) async throws -> KubeList {
        var items: [KubeObject] = []
        let resourceVersion = try await list(type, namespace: namespace, labelSelector: labelSelector, fieldSelector: fieldSelector,
                                             pageSize: pageSize) { items += $0 }
        return KubeList(items: items, resourceVersion: resourceVersion)
    }

    /// Lists objects page by page, handing each page to `page` before the next is fetched (so a caller
    /// that keeps less than whole objects never holds the whole list); returns the list's resourceVersion.
    public func list(_ type: ResourceType, namespace: String? = nil, labelSelector: String? = nil, fieldSelector: String? = nil, pageSize: Int = 500,
                     page: ([KubeObject]) throws -> Void) async throws -> String {
        let ref = ObjectReference(kind: type.kind, namespace: namespace)
        var continueToken: String?
        var resourceVersion = ""
        repeat {
            var query: [(String, String)] = [("limit", String(pageSize))]
            if let labelSelector { query.append(("labelSelector", labelSelector)) }
            if let fieldSelector { query.append(("fieldSelector", fieldSelector)) }
            if let continueToken { query.append(("continue", continueToken)) }
            let response = try await perform("GET", type.path(namespace: namespace), query: query, object: ref, verb: "list")
            let list = try decodeJSON(response, ref, "list")
            var items: [KubeObject] = []
            for item in list["items"]?.array ?? [] {
                var obj = item
                // List items omit apiVersion/kind; restore them so every object is self-describing.
                if obj["apiVersion"] == nil { obj["apiVersion"] = .string(type.apiVersion) }
                if obj["kind"] == nil { obj["kind"] = .string(type.kind) }
                items.append(KubeObject(obj))
            }
            try page(items)
            resourceVersion = list[["metadata", "resourceVersion"]]?.string ?? resourceVersion
            continueToken = list[["metadata", "continue"]]?.string.flatMap { $0.isEmpty ? nil : $0 }
        } while continueToken != nil
        return resourceVersion
    }

    public func create(_ object: KubeObject, dryRun: Bool = false) async throws -> KubeObject {
        let type = try resourceType(of: object, verb: "create")
        let ref = object.reference
        let response = try await perform("POST", type.path(namespace: object.namespace), query: dryRunQuery(dryRun), body: object.json.serialized(),
                                         contentType: "application/json", object: ref, verb: "create")
        return try decodeObject(response, ref, "create")
    }

    /// `PUT`: replaces the object; with `metadata.resourceVersion` set this is a guarded update that
    /// fails with 409 Conflict when someone else wrote in between.
    public func replace(_ object: KubeObject, dryRun: Bool = false) async throws -> KubeObject {
        let type = try resourceType(of: object, verb: "replace")
        let ref = object.reference
        let response = try await perform("PUT", type.path(namespace: object.namespace, name: object.name), query: dryRunQuery(dryRun),
                                         body: object.json.serialized(), contentType: "application/json", object: ref, verb: "replace")
        return try decodeObject(response, ref, "replace")
    }

    /// Server-side apply: `PATCH` with `application/apply-patch+yaml` (the JSON body is valid YAML) as
    /// field manager `fieldManager`. Without `force` a field owned by another manager is a 409 whose
    /// `KubeError.conflicts` names each field and its owner.
    public func apply(_ object: KubeObject, force: Bool = false, dryRun: Bool = false) async throws -> KubeObject {
        let type = try resourceType(of: object, verb: "apply")
        let ref = object.reference
        var query: [(String, String)] = [("fieldManager", fieldManager)]
        if force { query.append(("force", "true")) }
        query += dryRunQuery(dryRun)
        let response = try await perform("PATCH", type.path(namespace: object.namespace, name: object.name), query: query,
                                         body: object.json.serialized(), contentType: "application/apply-patch+yaml", object: ref, verb: "apply")
        return try decodeObject(response, ref, "apply")
    }

    /// JSON merge patch (RFC 7386, `application/merge-patch+json`) as field manager `fieldManager`: changes
    /// only the fields `patch` names, leaving every other field (and its owner) as it is — unlike an
    /// apply of a partial object, which drops the fields the manager stops sending.
    public func mergePatch(_ type: ResourceType, namespace: String?, name: String, patch: JSONValue, dryRun: Bool = false) async throws -> KubeObject {
        let ref = ObjectReference(kind: type.kind, namespace: namespace, name: name)
        let response = try await perform("PATCH", type.path(namespace: namespace, name: name), query: [("fieldManager", fieldManager)] + dryRunQuery(dryRun),
                                         body: patch.serialized(), contentType: "application/merge-patch+json", object: ref, verb: "patch")
        return try decodeObject(response, ref, "patch")
    }

    /// Deletes an object; returns false when it did not exist.
    @discardableResult
    public func delete(_ type: ResourceType, namespace: String?, name: String, propagation: PropagationPolicy = .background, dryRun: Bool = false) async throws -> Bool {
        let ref = ObjectReference(kind: type.kind, namespace: namespace, name: name)
        do {
            // DeleteOptions as query parameters (the API server accepts both), so DELETE carries no body.
            _ = try await perform("DELETE", type.path(namespace: namespace, name: name), query: [("propagationPolicy", propagation.rawValue)] + dryRunQuery(dryRun),
                                  object: ref, verb: "delete")
            return true
        } catch let error as KubeError where error.isNotFound {
            return false
        }
    }

    /// Applies many objects with at most `concurrency` requests in flight (the rate limiter still
    /// applies). Results are in input order.
    public func applyAll(_ objects: [KubeObject], concurrency: Int = 16, force: Bool = false, dryRun: Bool = false) async -> [Result<KubeObject, KubeError>] {
        var results = [Result<KubeObject, KubeError>?](repeating: nil, count: objects.count)
        await withTaskGroup(of: (Int, Result<KubeObject, KubeError>).self) { group in
            var next = 0
            func submit() {
                let i = next
                next += 1
                let object = objects[i]
                group.addTask {
                    do {
                        return (i, .success(try await self.apply(object, force: force, dryRun: dryRun)))
                    } catch let error as KubeError {
                        return (i, .failure(error))
                    } catch {
                        return (i, .failure(KubeError(object: object.reference, verb: "apply", status: 0, message: String(describing: error))))
                    }
                }
            }
            while next < min(max(1, concurrency), objects.count) { submit() }
            for await (i, result) in group {
                results[i] = result
                if next < objects.count { submit() }
            }
        }
        return results.map { $0! }
    }

    // MARK: Plumbing

    func dryRunQuery(_ dryRun: Bool) -> [(String, String)] { dryRun ? [("dryRun", "All")] : [] }

    func resourceType(of object: KubeObject, verb: String) throws -> ResourceType {
        guard let type = object.type else {
            throw KubeError(object: object.reference, verb: verb, status: 0, message: "unsupported apiVersion/kind \(object.apiVersion)/\(object.kind)")
        }
        guard !object.name.isEmpty else { throw KubeError(object: object.reference, verb: verb, status: 0, message: "metadata.name is empty") }
        if type.namespaced, object.namespace == nil {
            throw KubeError(object: object.reference, verb: verb, status: 0, message: "metadata.namespace is required for a \(type.kind)")
        }
        return type
    }

    func decodeJSON(_ response: HTTPResponse, _ ref: ObjectReference, _ verb: String) throws -> JSONValue {
        do {
            return try JSONValue.parse(response.body)
        } catch {
            throw KubeError(object: ref, verb: verb, status: response.status, message: "unreadable response: \(error)")
        }
    }

    func decodeObject(_ response: HTTPResponse, _ ref: ObjectReference, _ verb: String) throws -> KubeObject {
        KubeObject(try decodeJSON(response, ref, verb))
    }

    func url(_ path: String, _ query: [(String, String)]) -> String {
        var url = config.server + path
        if !query.isEmpty {
            url += "?" + query.map { "\(Self.escapeQuery($0.0))=\(Self.escapeQuery($0.1))" }.joined(separator: "&")
        }
        return url
    }

    /// Sends one request through the rate limiter, retrying throttling, server errors and connection
    /// failures. Returns only 2xx responses; anything else becomes a `KubeError`.
    func perform(_ method: String, _ path: String, query: [(String, String)] = [], body: [UInt8]? = nil, contentType: String? = nil,
                 object: ObjectReference, verb: String) async throws -> HTTPResponse {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        let request = HTTPRequest(method: method, url: url(path, query), headers: headers, body: body)
        var attempt = 0
        while true {
            try await limiter.acquireUnlessPrepaid()
            counters.update { $0.requests += 1 }
            let response: HTTPResponse
            do {
                response = try await transport.send(request)
            } catch let error as HTTPError {
                if case .cancelled = error { throw CancellationError() }
                guard Self.isRetryable(error), attempt + 1 < retry.maxAttempts else {
                    throw KubeError(object: object, verb: verb, status: 0, message: error.description, transportError: error)
                }
                try await Task.sleep(for: retry.backoff(afterAttempt: attempt))
                attempt += 1
                counters.update { $0.retries += 1 }
                continue
            }
            if (200..<300).contains(response.status) { return response }
            if response.status == 429 { counters.update { $0.throttled += 1 } }
            if response.status >= 500 { counters.update { $0.serverErrors += 1 } }
            if RetryPolicy.isRetryable(status: response.status), attempt + 1 < retry.maxAttempts {
                var delay = retry.backoff(afterAttempt: attempt)
                if let after = response.header("Retry-After").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
                    let asked = Duration.seconds(after)
                    if asked > retry.maxRetryAfter { throw KubeError.from(response: response, object: object, verb: verb) }
                    delay = max(delay, asked)
                }
                try await Task.sleep(for: delay)
                attempt += 1
                counters.update { $0.retries += 1 }
                continue
            }
            throw KubeError.from(response: response, object: object, verb: verb)
        }
    }

    /// Failures where no response was processed: safe to retry for the idempotent calls this client
    /// makes (apply, get, list, guarded replace, delete; a retried create reports AlreadyExists).
    static func isRetryable(_ error: HTTPError) -> Bool {
        switch error {
        case .connectFailed, .timedOut: return true
        // 7 couldn't connect, 52 empty reply, 55 send error, 56 receive error, 18 partial body.
        case .curl(let code, _, _): return [7, 18, 52, 55, 56].contains(code)
        default: return false
        }
    }

    static func escapeQuery(_ s: String) -> String {
        var out = ""
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    static func escapePath(_ s: String) -> String {
        // Kubernetes names are DNS labels/subdomains; escape anything else rather than build a bad path.
        s.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D || $0 == 0x2E } ? s : escapeQuery(s)
    }
}

/// Lock-protected statistics (updated from concurrent requests).
final class Counters: @unchecked Sendable {
    private let lock = NSLock()
    private var stats = KubeClientStatistics()

    var value: KubeClientStatistics { lock.withLock { stats } }
    func update(_ body: (inout KubeClientStatistics) -> Void) { lock.withLock { body(&stats) } }
}
