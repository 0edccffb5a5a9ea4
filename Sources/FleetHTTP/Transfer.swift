import CCurl
import Foundation

/// A validated request, ready to be applied to an easy handle.
struct PreparedRequest: Sendable {
    var method: String
    /// The URL given to libcurl (host replaced by `TLSConfiguration.serverName` if set).
    var url: String
    /// The URL for error messages: the caller's URL without `user:password@`.
    var displayURL: String
    var headerLines: [String]
    var body: [UInt8]?
    var timeoutMilliseconds: Int?
    var connectTo: String?
}

/// One HTTP exchange, driven by a `CurlEventLoop`.
///
/// Fields below "loop thread only" are touched only by the event loop's thread (and the libcurl
/// callbacks it triggers); the cancellation state is guarded by `lock`.
final class Transfer: @unchecked Sendable {
    enum Mode {
        case buffered(maxBytes: Int?)
        case streaming(BodyChannel)
    }

    let request: PreparedRequest
    let configuration: CurlTransportConfiguration
    let loop: CurlEventLoop

    private let lock = NSLock()
    private var cancelled = false  // guarded by `lock`

    // Loop thread only:
    private var mode: Mode
    private(set) var status = 0
    private(set) var headers = HTTPHeaders()
    private var headComplete = false
    private(set) var body: [UInt8] = []
    private var tooLarge = false
    private var paused = false
    private var handle: CurlHandle?
    private var slists: [UnsafeMutablePointer<curl_slist>] = []
    private var completed = false
    /// Streaming only: called once with the response head (or the failure that happened before it).
    var headHandler: (@Sendable (Result<(Int, HTTPHeaders), HTTPError>) -> Void)?
    /// Called once, on the loop thread, when the exchange is over (nil: it completed).
    var onComplete: (@Sendable (HTTPError?) -> Void)?

    init(request: PreparedRequest, configuration: CurlTransportConfiguration, mode: Mode, loop: CurlEventLoop) {
        self.request = request
        self.configuration = configuration
        self.mode = mode
        self.loop = loop
    }

    // MARK: Cross-thread control

    var isCancelled: Bool { lock.withLock { cancelled } }

    /// Aborts the transfer promptly: the loop removes it from its multi handle at its next turn (it is
    /// woken at once), and the write and progress callbacks refuse to continue meanwhile.
    func cancel() {
        let first: Bool = lock.withLock {
            defer { cancelled = true }
            return !cancelled
        }
        if first { loop.cancel(self) }
    }

    /// A paused stream's consumer has drained its buffer: let the loop resume the transfer.
    func wake() { loop.resume(self) }

    // MARK: Loop thread

    /// The easy handle while the transfer is active.
    var easy: UnsafeMutableRawPointer? { handle?.easy }

    /// Configures `handle` for this request and adds it to `multi`; an error means nothing was sent.
    func attach(_ handle: CurlHandle, share: CurlShare, multi: UnsafeMutableRawPointer) -> HTTPError? {
        do {
            try configure(handle, share: share)
        } catch {
            freeLists()
            return error
        }
        guard curl_multi_add_handle(multi, handle.easy) == CURLM_OK else {
            freeLists()
            return .curl(code: -1, message: "curl_multi_add_handle failed", url: request.displayURL)
        }
        self.handle = handle
        return nil
    }

    /// Takes the easy handle out of `multi` (closing its connection if the exchange was not over) and
    /// returns it for reuse.
    @discardableResult
    func detach(from multi: UnsafeMutableRawPointer) -> CurlHandle? {
        guard let handle else { return nil }
        curl_multi_remove_handle(multi, handle.easy)
        self.handle = nil
        freeLists()
        return handle
    }

    private func freeLists() {
        slists.forEach { curl_slist_free_all($0) }
        slists = []
    }

    func resumeIfPaused() {
        guard paused, let easy, case .streaming(let channel) = mode, channel.hasRoom else { return }
        paused = false
        curl_easy_pause(easy, mcpf_pause_cont)  // may deliver buffered data through the write callback now
    }

    /// The error for a finished exchange (nil when it completed), read while the handle is still attached.
    func outcome(_ code: CURLcode) -> HTTPError? {
        guard let handle else { return .curl(code: -1, message: "transfer ended without a handle", url: request.displayURL) }
        if code == CURLE_OK {
            if status == 0 {
                var responseCode = 0
                mcpf_easy_getinfo_long(handle.easy, CURLINFO_RESPONSE_CODE, &responseCode)
                status = responseCode
            }
            if !headComplete { deliverHead() }
            return nil
        }
        if isCancelled { return .cancelled(url: request.displayURL) }
        if tooLarge, case .buffered(let max?) = mode { return .responseTooLarge(url: request.displayURL, limit: max) }
        var message = handle.errorMessage
        if message.isEmpty { message = String(cString: curl_easy_strerror(code)) }
        return Self.classify(code: code, message: message, url: request.displayURL)
    }

    /// Reports the end of the exchange once: ends a stream's body (or fails its head) and calls `onComplete`.
    func complete(_ error: HTTPError?) {
        guard !completed else { return }
        completed = true
        if case .streaming(let channel) = mode {
            if let handler = headHandler {
                headHandler = nil
                handler(error.map { .failure($0) } ?? .success((status, headers)))
            }
            channel.finish(error)
        }
        let done = onComplete
        onComplete = nil
        done?(error)
    }

    static func classify(code: CURLcode, message: String, url: String) -> HTTPError {
        switch Int(code.rawValue) {
        case 5, 6, 7:  // COULDNT_RESOLVE_PROXY, COULDNT_RESOLVE_HOST, COULDNT_CONNECT
            return .connectFailed(url: url, message: message)
        case 28:  // OPERATION_TIMEDOUT
            return .timedOut(url: url, message: message)
        case 42:  // ABORTED_BY_CALLBACK
            return .cancelled(url: url)
        case 35, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98:  // SSL_* / PEER_FAILED_VERIFICATION
            return .tls(url: url, message: message)
        case 55 where isTLSMessage(message), 56 where isTLSMessage(message):
            // e.g. TLS 1.3 servers reject a missing client certificate after the handshake.
            return .tls(url: url, message: message)
        default:
            return .curl(code: Int(code.rawValue), message: message, url: url)
        }
    }

    private static func isTLSMessage(_ message: String) -> Bool {
        message.contains("SSL") || message.contains("TLS") || message.contains("alert")
    }

    // MARK: Configuration

    private struct SetOptionError: Error {}

    private func configure(_ handle: CurlHandle, share: CurlShare) throws(HTTPError) {
        let easy = handle.easy
        let url = request.displayURL
        curl_easy_reset(easy)
        handle.errorBuffer[0] = 0

        func check(_ code: CURLcode, _ what: String, tls: Bool = false) throws(HTTPError) {
            guard code == CURLE_OK else {
                let message = "\(what): \(String(cString: curl_easy_strerror(code)))"
                throw tls ? .tls(url: url, message: message) : .invalidRequest(url: url, reason: message)
            }
        }
        func long(_ option: CURLoption, _ value: Int, _ what: String) throws(HTTPError) {
            try check(mcpf_easy_setopt_long(easy, option, value), what)
        }
        func string(_ option: CURLoption, _ value: String, _ what: String, tls: Bool = false) throws(HTTPError) {
            try check(mcpf_easy_setopt_string(easy, option, value), what, tls: tls)
        }
        func blob(_ option: CURLoption, _ bytes: [UInt8], _ what: String) throws(HTTPError) {
            var copy = bytes
            let code = copy.withUnsafeMutableBytes { raw -> CURLcode in
                var blob = curl_blob(data: raw.baseAddress, len: raw.count, flags: mcpf_blob_copy)
                return mcpf_easy_setopt_blob(easy, option, &blob)  // libcurl copies (CURL_BLOB_COPY)
            }
            try check(code, what, tls: true)
        }
        func slist(_ lines: [String]) -> UnsafeMutablePointer<curl_slist>? {
            var list: UnsafeMutablePointer<curl_slist>?
            for line in lines {
                guard let appended = curl_slist_append(list, line) else { continue }
                list = appended
            }
            if let list { slists.append(list) }
            return list
        }

        try check(mcpf_easy_setopt_share(easy, share.raw), "CURLOPT_SHARE")
        try check(mcpf_easy_setopt_pointer(easy, CURLOPT_ERRORBUFFER, handle.errorBuffer), "CURLOPT_ERRORBUFFER")
        try string(CURLOPT_URL, request.url, "URL")
        try string(CURLOPT_PROTOCOLS_STR, "http,https", "CURLOPT_PROTOCOLS_STR")
        try string(CURLOPT_REDIR_PROTOCOLS_STR, "http,https", "CURLOPT_REDIR_PROTOCOLS_STR")
        try long(CURLOPT_FOLLOWLOCATION, 0, "CURLOPT_FOLLOWLOCATION")
        try long(CURLOPT_NOSIGNAL, 1, "CURLOPT_NOSIGNAL")
        try long(CURLOPT_CONNECTTIMEOUT_MS, Self.milliseconds(configuration.connectTimeout), "connect timeout")
        if let timeout = request.timeoutMilliseconds { try long(CURLOPT_TIMEOUT_MS, timeout, "request timeout") }
        try string(CURLOPT_USERAGENT, configuration.userAgent, "user agent")
        try long(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1, "CURLOPT_SUPPRESS_CONNECT_HEADERS")
        try long(CURLOPT_TCP_KEEPALIVE, 1, "CURLOPT_TCP_KEEPALIVE")
        try long(CURLOPT_TCP_KEEPIDLE, 30, "CURLOPT_TCP_KEEPIDLE")
        try long(CURLOPT_TCP_KEEPINTVL, 15, "CURLOPT_TCP_KEEPINTVL")
        if let headerList = slist(request.headerLines) {
            try check(mcpf_easy_setopt_slist(easy, CURLOPT_HTTPHEADER, headerList), "headers")
        }

        switch request.method {
        case "GET" where request.body == nil:
            try long(CURLOPT_HTTPGET, 1, "GET")
        case "HEAD":
            try long(CURLOPT_NOBODY, 1, "HEAD")
        default:
            try string(CURLOPT_CUSTOMREQUEST, request.method, "method")
        }
        if let body = request.body, request.method != "HEAD" {
            try check(mcpf_easy_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)), "body size")
            var copy = body
            copy.append(0)  // never hand libcurl a NULL pointer for an empty body
            let code = copy.withUnsafeMutableBytes { raw in
                mcpf_easy_setopt_pointer(easy, CURLOPT_COPYPOSTFIELDS, raw.baseAddress)
            }
            try check(code, "body")
        }

        // Proxy: by default nothing is set, so libcurl applies the environment (including NO_PROXY).
        switch configuration.proxy {
        case .environment:
            break
        case .none:
            try string(CURLOPT_PROXY, "", "proxy")
        case .explicit(let proxyURL, let noProxy):
            try string(CURLOPT_PROXY, proxyURL, "proxy")
            if let noProxy { try string(CURLOPT_NOPROXY, noProxy, "no-proxy list") }
        }

        // TLS.
        let tls = configuration.tls
        if let caData = tls.caData {
            try blob(CURLOPT_CAINFO_BLOB, caData, "CA data")
        } else if let caFile = tls.caFile {
            try string(CURLOPT_CAINFO, caFile, "CA file", tls: true)
        }
        if let certData = tls.clientCertData {
            try string(CURLOPT_SSLCERTTYPE, "PEM", "client certificate type", tls: true)
            try blob(CURLOPT_SSLCERT_BLOB, certData, "client certificate data")
        } else if let certFile = tls.clientCertFile {
            try string(CURLOPT_SSLCERTTYPE, "PEM", "client certificate type", tls: true)
            try string(CURLOPT_SSLCERT, certFile, "client certificate file", tls: true)
        }
        if let keyData = tls.clientKeyData {
            try string(CURLOPT_SSLKEYTYPE, "PEM", "client key type", tls: true)
            try blob(CURLOPT_SSLKEY_BLOB, keyData, "client key data")
        } else if let keyFile = tls.clientKeyFile {
            try string(CURLOPT_SSLKEYTYPE, "PEM", "client key type", tls: true)
            try string(CURLOPT_SSLKEY, keyFile, "client key file", tls: true)
        }
        if tls.insecureSkipVerify {
            try long(CURLOPT_SSL_VERIFYPEER, 0, "CURLOPT_SSL_VERIFYPEER")
            try long(CURLOPT_SSL_VERIFYHOST, 0, "CURLOPT_SSL_VERIFYHOST")
        }
        if let connectTo = request.connectTo, let list = slist([connectTo]) {
            try check(mcpf_easy_setopt_slist(easy, CURLOPT_CONNECT_TO, list), "server name")
        }

        // Callbacks; `self` outlives the transfer (the loop holds it while the handle is attached).
        let userdata = Unmanaged.passUnretained(self).toOpaque()
        try check(mcpf_easy_setopt_data_callback(easy, CURLOPT_WRITEFUNCTION, transferWriteCallback), "write callback")
        try check(mcpf_easy_setopt_pointer(easy, CURLOPT_WRITEDATA, userdata), "write data")
        try check(
            mcpf_easy_setopt_data_callback(easy, CURLOPT_HEADERFUNCTION, transferHeaderCallback), "header callback")
        try check(mcpf_easy_setopt_pointer(easy, CURLOPT_HEADERDATA, userdata), "header data")
        try long(CURLOPT_NOPROGRESS, 0, "CURLOPT_NOPROGRESS")
        try check(mcpf_easy_setopt_xferinfo_callback(easy, transferProgressCallback), "progress callback")
        try check(mcpf_easy_setopt_pointer(easy, CURLOPT_XFERINFODATA, userdata), "progress data")
    }

    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        let ms = seconds.multipliedReportingOverflow(by: 1000)
        guard !ms.overflow else { return Int.max }
        // libcurl treats 0 as "no timeout": never round a tiny positive duration down to it.
        return max(1, Int(ms.partialValue) + Int(attoseconds / 1_000_000_000_000_000))
    }

    // MARK: Callbacks (loop thread)

    fileprivate func receiveHeader(_ bytes: UnsafeRawBufferPointer) -> Int {
        if headComplete { return bytes.count }  // trailers are ignored
        var end = bytes.count
        while end > 0, bytes[end - 1] == 0x0A || bytes[end - 1] == 0x0D { end -= 1 }
        // (Trimmed as bytes: Swift treats "\r\n" as one Character.)
        let line = Substring(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[..<end]), as: UTF8.self))
        if line.isEmpty {
            // End of a header block. 1xx blocks (100 Continue, 103 Early Hints) are followed by the real one.
            if status >= 200 || status == 0 {
                headComplete = true
                deliverHead()
            } else {
                status = 0
                headers = HTTPHeaders()
            }
            return bytes.count
        }
        if line.hasPrefix("HTTP/") {
            let parts = line.split(separator: " ", maxSplits: 2)
            status = parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
            headers = HTTPHeaders()
            return bytes.count
        }
        if let first = line.first, first == " " || first == "\t", headers.count > 0 {
            // Obsolete line folding: continue the previous value.
            var fields = headers.fields
            fields[fields.count - 1].value += " " + line.trimmingCharacters(in: .whitespaces)
            headers = HTTPHeaders(fields.map { ($0.name, $0.value) })
            return bytes.count
        }
        if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if !name.isEmpty { headers.add(name: name, value: value) }
        }
        return bytes.count
    }

    fileprivate func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        if isCancelled { return 0 }  // aborts with CURLE_WRITE_ERROR; reported as cancelled
        switch mode {
        case .buffered(let maxBytes):
            if let maxBytes, body.count + bytes.count > maxBytes {
                tooLarge = true
                return 0
            }
            body.append(contentsOf: bytes)
            return bytes.count
        case .streaming(let channel):
            if !headComplete {
                headComplete = true
                deliverHead()
            }
            switch channel.offer(bytes) {
            case .accepted:
                return bytes.count
            case .full:
                paused = true
                return mcpf_writefunc_pause
            case .closed:
                return 0
            }
        }
    }

    fileprivate func progress() -> Int32 { isCancelled ? 1 : 0 }

    private func deliverHead() {
        guard case .streaming = mode, let handler = headHandler else { return }
        headHandler = nil
        handler(.success((status, headers)))
    }
}

private let transferWriteCallback: mcpf_data_callback = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.receiveBody(UnsafeRawBufferPointer(start: pointer, count: size * count))
}

private let transferHeaderCallback: mcpf_data_callback = { pointer, size, count, userdata in
    guard let userdata else { return 0 }
    let transfer = Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue()
    return transfer.receiveHeader(UnsafeRawBufferPointer(start: pointer, count: size * count))
}

private let transferProgressCallback: mcpf_xferinfo_callback = { userdata, _, _, _, _ in
    guard let userdata else { return 0 }
    return Unmanaged<Transfer>.fromOpaque(userdata).takeUnretainedValue().progress()
}
