import Foundation
import Testing

@testable import FleetHTTP

#if canImport(Glibc)
    import Glibc
#endif

struct FixtureError: Error, CustomStringConvertible {
    var description: String
}

/// A Python test server child process. It exits when our end of its stdin closes (i.e. with us).
final class TestServer: @unchecked Sendable {
    let port: Int
    private let process: Process
    private let stdin: Pipe

    init(script: String, arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script] + arguments
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // The server prints its port after it is listening; EOF means it died.
        var output = Data()
        while !output.contains(UInt8(ascii: "\n")) {
            let data = stdout.fileHandleForReading.availableData
            if data.isEmpty {
                let errors = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                throw FixtureError(description: "test server exited: \(errors)")
            }
            output.append(data)
        }
        let line = String(decoding: output, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let port = Int(line) else { throw FixtureError(description: "bad port line \(line)") }
        self.port = port
        self.process = process
        self.stdin = stdin
    }

    deinit {
        process.terminate()
    }
}

/// Servers and certificates shared by all tests (started once, lazily).
final class Fixtures: Sendable {
    let directory: String
    let plain: TestServer
    let tls: TestServer
    let mtls: TestServer

    var caFile: String { directory + "/ca.pem" }
    var clientCertFile: String { directory + "/client.pem" }
    var clientKeyFile: String { directory + "/client.key" }
    var plainBase: String { "http://127.0.0.1:\(plain.port)" }
    /// The server certificate names `localhost` and `kubernetes.test` only (no IP address).
    var tlsBase: String { "https://localhost:\(tls.port)" }
    var mtlsBase: String { "https://localhost:\(mtls.port)" }

    static let shared: Result<Fixtures, any Error> = Result { try Fixtures() }

    static func get() throws -> Fixtures { try shared.get() }

    private init() throws {
        directory = NSTemporaryDirectory() + "fleethttp-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = directory + "/server.py"
        try testServerScript.write(toFile: script, atomically: true, encoding: .utf8)
        try Self.makeCertificates(in: directory)
        plain = try TestServer(script: script, arguments: [])
        tls = try TestServer(
            script: script, arguments: ["--tls", directory + "/server.pem", directory + "/server.key"])
        mtls = try TestServer(
            script: script,
            arguments: [
                "--tls", directory + "/server.pem", directory + "/server.key", "--client-ca", directory + "/ca.pem",
            ])
    }

    private static func makeCertificates(in dir: String) throws {
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        try "subjectAltName=DNS:localhost,DNS:kubernetes.test\nextendedKeyUsage=serverAuth\n"
            .write(toFile: dir + "/server.ext", atomically: true, encoding: .utf8)
        try "extendedKeyUsage=clientAuth\n".write(toFile: dir + "/client.ext", atomically: true, encoding: .utf8)
        try openssl(
            ["req", "-x509"] + ec + [
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mcpfleet-test-ca",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            ], in: dir)
        for (name, cn) in [("server", "localhost"), ("client", "fleet-client")] {
            try openssl(["req"] + ec + ["-keyout", "\(name).key", "-out", "\(name).csr", "-subj", "/CN=\(cn)"], in: dir)
            try openssl(
                [
                    "x509", "-req", "-in", "\(name).csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                    "-out", "\(name).pem", "-days", "2", "-extfile", "\(name).ext",
                ], in: dir)
        }
    }

    private static func openssl(_ arguments: [String], in dir: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: dir)
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw FixtureError(description: "openssl \(arguments) failed: \(String(decoding: message, as: UTF8.self))")
        }
    }

    func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    /// Counters kept by the plain server (connections it saw the client abandon).
    func stats(_ transport: CurlTransport, base: String? = nil) async throws -> [String: Int] {
        let response = try await transport.send(HTTPRequest(url: (base ?? plainBase) + "/stats"))
        return try JSONDecoder().decode([String: Int].self, from: Data(response.body))
    }
}

/// A TCP socket bound to a free loopback port but not listening: connecting to it is refused,
/// and nobody else can take the port while it is open.
final class ClosedPort: @unchecked Sendable {
    let port: Int
    private let fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw FixtureError(description: "socket failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else {
            close(fd)
            throw FixtureError(description: "bind failed")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        self.fd = fd
    }

    deinit { close(fd) }
}

struct EchoReply: Decodable {
    var method: String
    var path: String
    var headers: [[String]]
    var body: String
    var peer: String?

    func values(_ name: String) -> [String] {
        headers.filter { $0[0].lowercased() == name.lowercased() }.map { $0[1] }
    }
}

func decodeEcho(_ response: HTTPResponse) throws -> EchoReply {
    try JSONDecoder().decode(EchoReply.self, from: Data(response.body))
}

/// Runs `body` and returns the error it threw (nil if it succeeded).
func caught<T>(_ body: () async throws -> T) async -> (any Error)? {
    do {
        _ = try await body()
        return nil
    } catch {
        return error
    }
}

/// A short name for the `HTTPError` case (or "other"/"none").
func kind(_ error: (any Error)?) -> String {
    guard let error else { return "none" }
    guard let http = error as? HTTPError else { return "other: \(error)" }
    switch http {
    case .invalidRequest: return "invalidRequest"
    case .connectFailed: return "connectFailed"
    case .timedOut: return "timedOut"
    case .tls: return "tls"
    case .cancelled: return "cancelled"
    case .responseTooLarge: return "responseTooLarge"
    case .credentials: return "credentials"
    case .curl(let code, _, _): return "curl(\(code))"
    }
}

/// Polls `condition` until it holds or `timeout` elapses.
func eventually(
    timeout: Duration = .seconds(10), _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return try await condition()
}

func makeTransport(
    _ configuration: CurlTransportConfiguration = CurlTransportConfiguration(),
    tokenCheckInterval: Duration = .seconds(1), streamBufferLimit: Int = 1 << 20
) throws -> CurlTransport {
    try CurlTransport(configuration, tokenCheckInterval: tokenCheckInterval, streamBufferLimit: streamBufferLimit)
}
