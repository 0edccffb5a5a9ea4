// Transport-neutral HTTP types: requests, responses, headers, errors and the `HTTPTransport` protocol.

/// An ordered list of HTTP header fields with case-insensitive lookup. Duplicate names are kept
/// (multi-value headers such as `Set-Cookie` or `Warning`), in the order they were added/received.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public typealias Element = (name: String, value: String)

    public private(set) var fields: [(name: String, value: String)]

    public init() { fields = [] }

    public init(_ fields: [(String, String)]) {
        self.fields = fields.map { (name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> {
        fields.makeIterator()
    }

    /// Appends a field, keeping existing fields with the same name.
    public mutating func add(name: String, value: String) {
        fields.append((name: name, value: value))
    }

    /// Removes every field named `name` (case-insensitively) and appends `name: value`.
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes every field named `name` (case-insensitively).
    public mutating func remove(name: String) {
        fields.removeAll { Self.equalNames($0.name, name) }
    }

    public func contains(name: String) -> Bool {
        fields.contains { Self.equalNames($0.name, name) }
    }

    /// The first value of the field named `name` (case-insensitively), if any.
    public func first(name: String) -> String? {
        fields.first { Self.equalNames($0.name, name) }?.value
    }

    /// All values of the fields named `name` (case-insensitively), in order.
    public func values(for name: String) -> [String] {
        fields.filter { Self.equalNames($0.name, name) }.map(\.value)
    }

    /// All values of the fields named `name`, in order (same as `values(for:)`).
    public subscript(name: String) -> [String] { values(for: name) }

    public static func == (lhs: HTTPHeaders, rhs: HTTPHeaders) -> Bool {
        lhs.fields.count == rhs.fields.count
            && zip(lhs.fields, rhs.fields).allSatisfy { equalNames($0.name, $1.name) && $0.value == $1.value }
    }

    static func equalNames(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.lowercased() == b.lowercased()
    }

    /// Header names whose values are never printed by `description`.
    static let sensitiveNames: Set<String> = ["authorization", "proxy-authorization", "cookie", "set-cookie"]
}

extension HTTPHeaders: CustomStringConvertible {
    /// One `name: value` per line; credentials (`Authorization`, `Cookie`, ...) are redacted.
    public var description: String {
        fields.map { field in
            HTTPHeaders.sensitiveNames.contains(field.name.lowercased())
                ? "\(field.name): <redacted>" : "\(field.name): \(field.value)"
        }.joined(separator: "\n")
    }
}

public struct HTTPRequest: Sendable {
    /// An HTTP method token such as `GET`, `POST`, `PATCH`.
    public var method: String
    /// An absolute `http://` or `https://` URL (other schemes are rejected).
    public var url: String
    public var headers: HTTPHeaders
    /// Request body. When set and no `Content-Type` header is given, none is sent.
    public var body: [UInt8]?
    /// Limit for the whole request (connect + send + receive, including the full body of a stream).
    /// `nil` uses `CurlTransportConfiguration.requestTimeout` for `send`; streams have no limit by default.
    public var timeout: Duration?

    public init(
        method: String = "GET", url: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8]? = nil,
        timeout: Duration? = nil
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name` (case-insensitive). Use `headers.values(for:)` for all values.
    public func header(_ name: String) -> String? { headers.first(name: name) }
}

/// A response whose status line and headers have arrived; the body is delivered as it arrives.
///
/// `body` ends when the server finishes the response and throws an `HTTPError` if the transfer fails
/// (for example the connection is closed mid-body). Cancelling the Task that iterates `body`, or dropping
/// the stream without consuming it, aborts the transfer and closes the connection; as with any
/// `AsyncThrowingStream`, the cancelled iteration then either throws `HTTPError.cancelled` or simply ends,
/// so a consumer that must tell "server closed" from "I was cancelled" checks `Task.isCancelled`.
/// A slow consumer applies backpressure: the transfer pauses while about 1 MiB is buffered.
/// The body can be iterated once.
public struct HTTPStreamingResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: AsyncThrowingStream<[UInt8], any Error>

    public init(status: Int, headers: HTTPHeaders, body: AsyncThrowingStream<[UInt8], any Error>) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { headers.first(name: name) }
}

public protocol HTTPTransport: Sendable {
    /// Sends `request` and returns the complete response. Non-2xx statuses are returned, not thrown.
    func send(_ request: HTTPRequest) async throws -> HTTPResponse

    /// Sends `request` and returns as soon as the response head (status + headers) has arrived; the body
    /// streams as it arrives (watches, `text/event-stream`). The body stream ends when the server closes
    /// the response, throws on error; cancelling the consuming Task aborts the transfer promptly.
    func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse
}

/// Transport failures. Every case names the URL (with any `user:password@` part removed) and, where
/// available, libcurl's message. Errors never contain request headers, so never a bearer token.
public enum HTTPError: Error, Sendable, Equatable {
    /// The request is malformed (bad method, URL scheme, header with CR/LF, ...). Nothing was sent.
    case invalidRequest(url: String, reason: String)
    /// DNS resolution or TCP connect failed (refused, unreachable, proxy unreachable).
    case connectFailed(url: String, message: String)
    /// The connect timeout or the request timeout elapsed.
    case timedOut(url: String, message: String)
    /// TLS handshake or certificate verification failed, or a client certificate/CA could not be loaded.
    case tls(url: String, message: String)
    /// The transfer was cancelled (Task cancellation or the body stream was dropped).
    case cancelled(url: String)
    /// The response body exceeded `CurlTransportConfiguration.maxResponseBodyBytes`.
    case responseTooLarge(url: String, limit: Int)
    /// The bearer token file could not be read.
    case credentials(path: String, message: String)
    /// Any other libcurl failure (`code` is the `CURLcode`), e.g. 18 when the connection closed mid-body.
    case curl(code: Int, message: String, url: String)
}

extension HTTPError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .invalidRequest(let url, let reason): "invalid HTTP request for \(url): \(reason)"
        case .connectFailed(let url, let message): "could not connect to \(url): \(message)"
        case .timedOut(let url, let message): "request to \(url) timed out: \(message)"
        case .tls(let url, let message): "TLS error for \(url): \(message)"
        case .cancelled(let url): "request to \(url) was cancelled"
        case .responseTooLarge(let url, let limit): "response from \(url) exceeded \(limit) bytes"
        case .credentials(let path, let message): "cannot read bearer token file \(path): \(message)"
        case .curl(let code, let message, let url): "HTTP transfer to \(url) failed (curl error \(code)): \(message)"
        }
    }
}
