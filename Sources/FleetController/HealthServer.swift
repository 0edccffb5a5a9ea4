import Foundation
import Logging
import ServiceLifecycle

/// A tiny HTTP/1.1 server for `/metrics`, `/healthz` and `/readyz`: blocking POSIX sockets on its own
/// thread (a few requests per scrape interval need nothing more), one request per connection.
public final class HealthServer: Service, @unchecked Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var contentType: String
        public var body: String

        public init(status: Int, contentType: String = "text/plain; charset=utf-8", body: String) {
            self.status = status
            self.contentType = contentType
            self.body = body
        }
    }

    let host: String
    let requestedPort: Int
    let handler: @Sendable (String) -> Response
    let logger: Logger
    private let lock = NSLock()
    private var fd: Int32 = -1
    private var boundPort = 0

    /// `address` is `HOST:PORT`; port 0 picks a free one (see `port` once started).
    public init(address: String, logger: Logger, handler: @escaping @Sendable (String) -> Response) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
            throw HealthServerError(description: "metrics address \(address) is not HOST:PORT")
        }
        host = String(address[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        requestedPort = port
        self.handler = handler
        self.logger = logger
    }

    public struct HealthServerError: Error, CustomStringConvertible {
        public var description: String
    }

    public var port: Int { lock.withLock { boundPort } }

    /// Binds and starts serving; returns the bound port.
    @discardableResult
    public func start() throws -> Int {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var res: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(requestedPort), &hints, &res) == 0, let ai = res else {
            throw HealthServerError(description: "cannot resolve metrics address \(host)")
        }
        defer { freeaddrinfo(res) }
        let s = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard s >= 0, bind(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0, listen(s, 64) == 0 else {
            let message = String(cString: strerror(errno))
            if s >= 0 { close(s) }
            throw HealthServerError(description: "cannot listen on \(host):\(requestedPort): \(message)")
        }
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &len) } }
        let port: Int = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) }
        }
        lock.withLock { fd = s; boundPort = port }
        let thread = Thread { [self] in self.serve(s) }
        thread.name = "mcpfleet-metrics"
        thread.start()
        return port
    }

    public func stop() {
        let s: Int32 = lock.withLock { let s = fd; fd = -1; return s }
        if s >= 0 {
            shutdown(s, Int32(SHUT_RDWR))
            close(s)
        }
    }

    public func run() async throws {
        if port == 0 { try start() }
        logger.info("serving /metrics, /healthz and /readyz", metadata: ["address": "\(host):\(port)"])
        try? await gracefulShutdown()
        stop()
    }

    private func serve(_ listener: Int32) {
        while true {
            let c = accept(listener, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            var tv = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            handle(c)
            close(c)
        }
    }

    private func handle(_ c: Int32) {
        var request: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while request.count < 16384 {
            let n = read(c, &buf, buf.count)
            if n <= 0 { break }
            request += buf[0..<n]
            if String(decoding: request, as: UTF8.self).contains("\r\n\r\n") { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let response: Response
        if parts.count >= 2, parts[0] == "GET" || parts[0] == "HEAD" {
            let target = String(parts[1])
            response = handler(String(target.split(separator: "?", maxSplits: 1).first ?? Substring(target)))
        } else {
            response = Response(status: 405, body: "method not allowed\n")
        }
        let reason = [200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][response.status] ?? "Status"
        let body = Array(response.body.utf8)
        let head = "HTTP/1.1 \(response.status) \(reason)\r\nContent-Type: \(response.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        var out = Array(head.utf8)
        if parts.first != "HEAD" { out += body }
        var offset = 0
        while offset < out.count {
            let n = out[offset...].withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            offset += n
        }
    }
}
