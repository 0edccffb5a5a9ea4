import CCurl
import Foundation

/// `HTTPTransport` on libcurl.
///
/// Every transfer of a transport is driven by one event loop on one dedicated thread (never Swift's
/// cooperative pool): a libcurl multi handle waited on with `curl_multi_poll`, so many concurrent
/// requests and long-lived watches share that thread instead of pinning one each. Cancellation wakes the
/// loop (`curl_multi_wakeup`) and ends the transfer at once. Connections are kept in the multi handle's
/// cache and reused by any later request; DNS results and TLS sessions are shared by all handles of a
/// transport. Redirects are not followed.
///
/// Proxies: see `ProxyConfiguration`; by default libcurl's environment handling applies, including
/// `NO_PROXY`.
public final class CurlTransport: HTTPTransport {
    public let configuration: CurlTransportConfiguration
    private let share: CurlShare
    private let loop: CurlEventLoop
    private let token: TokenProvider?
    /// Bytes a stream buffers for a slow consumer before the transfer is paused.
    private let streamBufferLimit: Int

    public convenience init(_ configuration: CurlTransportConfiguration = CurlTransportConfiguration()) throws {
        try self.init(configuration, tokenCheckInterval: .seconds(1), streamBufferLimit: 1 << 20)
    }

    init(_ configuration: CurlTransportConfiguration, tokenCheckInterval: Duration, streamBufferLimit: Int) throws {
        guard curlGlobalInitResult == CURLE_OK else {
            throw HTTPError.curl(
                code: Int(curlGlobalInitResult.rawValue), message: "curl_global_init failed", url: "")
        }
        guard configuration.maxConnections >= 0 else {
            throw HTTPError.invalidRequest(url: "", reason: "maxConnections must not be negative")
        }
        if case .value(let token) = configuration.bearerToken,
            token.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\0" })
        {
            throw HTTPError.invalidRequest(url: "", reason: "bearer token contains a control character")
        }
        guard let share = CurlShare() else {
            throw HTTPError.curl(code: -1, message: "could not create a libcurl share handle", url: "")
        }
        guard let loop = CurlEventLoop(share: share, maxConnections: configuration.maxConnections) else {
            throw HTTPError.curl(code: -1, message: "could not create a libcurl multi handle", url: "")
        }
        self.configuration = configuration
        self.share = share
        self.loop = loop
        token = configuration.bearerToken.map { TokenProvider($0, checkInterval: tokenCheckInterval) }
        self.streamBufferLimit = max(1, streamBufferLimit)
    }

    deinit { loop.close() }

    /// Idle pooled handles (for tests and diagnostics).
    var idleHandleCount: Int { loop.idleHandleCount }

    /// Transfers in flight on the event loop (for tests and diagnostics).
    var activeTransferCount: Int { loop.activeCount }

    public func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        let prepared = try prepare(request, defaultTimeout: configuration.requestTimeout)
        let transfer = Transfer(
            request: prepared, configuration: configuration,
            mode: .buffered(maxBytes: configuration.maxResponseBodyBytes), loop: loop)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<HTTPResponse, any Error>) in
                transfer.onComplete = { [transfer] error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else {
                        continuation.resume(
                            returning: HTTPResponse(status: transfer.status, headers: transfer.headers, body: transfer.body))
                    }
                }
                loop.start(transfer)
            }
        } onCancel: {
            transfer.cancel()
        }
    }

    public func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse {
        let prepared = try prepare(request, defaultTimeout: nil)
        let channel = BodyChannel(
            displayURL: prepared.displayURL, highWater: streamBufferLimit, lowWater: streamBufferLimit / 4)
        let transfer = Transfer(request: prepared, configuration: configuration, mode: .streaming(channel), loop: loop)
        channel.attach(transfer)
        let (status, headers) = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation {
                (continuation: CheckedContinuation<(Int, HTTPHeaders), any Error>) in
                transfer.headHandler = { result in continuation.resume(with: result.mapError { $0 as any Error }) }
                loop.start(transfer)
            }
        } onCancel: {
            transfer.cancel()
        }
        let lifetime = StreamLifetime(channel)
        let body = AsyncThrowingStream<[UInt8], any Error>(unfolding: { try await lifetime.next() })
        return HTTPStreamingResponse(status: status, headers: headers, body: body)
    }

    // MARK: Request validation

    func prepare(_ request: HTTPRequest, defaultTimeout: Duration?) throws(HTTPError) -> PreparedRequest {
        let parsed = try ParsedURL(request.url)
        let displayURL = parsed.redacted
        func invalid(_ reason: String) -> HTTPError { .invalidRequest(url: displayURL, reason: reason) }

        let method = request.method
        guard !method.isEmpty, method.utf8.allSatisfy(Self.isTokenByte) else {
            throw invalid("invalid method \"\(method)\"")
        }
        var lines: [String] = []
        var names = Set<String>()
        for (name, value) in request.headers {
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenByte) else {
                throw invalid("invalid header name \"\(name)\"")
            }
            guard !value.utf8.contains(where: { $0 == 0x0D || $0 == 0x0A || $0 == 0 }) else {
                throw invalid("header \(name) contains a line break")  // the value is not echoed: may be a secret
            }
            names.insert(name.lowercased())
            // "Name;" is libcurl's syntax for a header with an empty value ("Name:" would remove it).
            lines.append(value.isEmpty ? "\(name);" : "\(name): \(value)")
        }
        if let token, !names.contains("authorization") {
            lines.append("Authorization: Bearer \(try token.current())")
        }
        var body = request.body
        if body == nil, ["POST", "PUT", "PATCH"].contains(method) { body = [] }
        if body != nil {
            if !names.contains("content-type") { lines.append("Content-Type:") }  // no form-urlencoded default
            if !names.contains("expect") { lines.append("Expect:") }  // no 100-continue round trip
        }
        var url = request.url
        var connectTo: String?
        if let serverName = configuration.tls.serverName, parsed.scheme == "https" {
            guard serverName.utf8.allSatisfy({ Self.isTokenByte($0) && $0 != UInt8(ascii: ":") }) else {
                throw invalid("invalid TLS server name")
            }
            url = try parsed.replacingHost(with: serverName)
            connectTo = "\(serverName):\(parsed.port):\(parsed.host):\(parsed.port)"
            if !names.contains("host") {
                lines.append(parsed.port == 443 ? "Host: \(parsed.host)" : "Host: \(parsed.host):\(parsed.port)")
            }
        }
        let timeout = request.timeout ?? defaultTimeout
        return PreparedRequest(
            method: method, url: url, displayURL: displayURL, headerLines: lines, body: body,
            timeoutMilliseconds: timeout.map { Transfer.milliseconds($0) }, connectTo: connectTo)
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

/// A URL parsed by libcurl's URL API.
struct ParsedURL {
    let scheme: String
    let host: String
    let port: Int
    let redacted: String
    private let original: String

    init(_ url: String) throws(HTTPError) {
        original = url
        let fallback = Self.stripUserInfo(url)
        guard let handle = curl_url() else {
            throw .invalidRequest(url: fallback, reason: "out of memory")
        }
        defer { curl_url_cleanup(handle) }
        guard !url.utf8.contains(where: { $0 <= 0x20 || $0 == 0x7F }),
            curl_url_set(handle, CURLUPART_URL, url, 0) == CURLUE_OK
        else {
            throw .invalidRequest(url: fallback, reason: "malformed URL")
        }
        func get(_ part: CURLUPart, _ flags: UInt32 = 0) -> String? {
            var pointer: UnsafeMutablePointer<CChar>?
            guard curl_url_get(handle, part, &pointer, flags) == CURLUE_OK, let pointer else { return nil }
            defer { curl_free(pointer) }
            return String(cString: pointer)
        }
        let scheme = get(CURLUPART_SCHEME)?.lowercased() ?? ""
        guard scheme == "http" || scheme == "https" else {
            throw .invalidRequest(url: fallback, reason: "only http and https URLs are supported")
        }
        guard let host = get(CURLUPART_HOST), !host.isEmpty else {
            throw .invalidRequest(url: fallback, reason: "URL has no host")
        }
        self.scheme = scheme
        self.host = host
        port = get(CURLUPART_PORT, mcpf_url_default_port).flatMap { Int($0) } ?? (scheme == "https" ? 443 : 80)
        curl_url_set(handle, CURLUPART_USER, nil, 0)
        curl_url_set(handle, CURLUPART_PASSWORD, nil, 0)
        redacted = get(CURLUPART_URL) ?? fallback
    }

    func replacingHost(with newHost: String) throws(HTTPError) -> String {
        guard let handle = curl_url() else { throw .invalidRequest(url: redacted, reason: "out of memory") }
        defer { curl_url_cleanup(handle) }
        guard curl_url_set(handle, CURLUPART_URL, original, 0) == CURLUE_OK,
            curl_url_set(handle, CURLUPART_HOST, newHost, 0) == CURLUE_OK
        else {
            throw .invalidRequest(url: redacted, reason: "cannot apply TLS server name")
        }
        var pointer: UnsafeMutablePointer<CChar>?
        guard curl_url_get(handle, CURLUPART_URL, &pointer, 0) == CURLUE_OK, let pointer else {
            throw .invalidRequest(url: redacted, reason: "cannot apply TLS server name")
        }
        defer { curl_free(pointer) }
        return String(cString: pointer)
    }

    /// Best effort for unparseable URLs: drop anything between "://" and "@" before the first "/".
    static func stripUserInfo(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<schemeEnd.upperBound]) + String(rest[rest.index(after: at)...])
    }
}
