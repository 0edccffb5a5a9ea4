import FleetHTTP
@testable import FleetKubernetes
import Foundation

/// The project's Kubernetes test API server (Tests/KubeAPIServer/fake_apiserver.py) as a subprocess on
/// 127.0.0.1, with its fault-injection and request-log control endpoints.
final class KubeAPIServerProcess: @unchecked Sendable {
    static let script = packageRoot + "/Tests/KubeAPIServer/fake_apiserver.py"

    let process: Process
    let port: Int
    let token: String
    let control: CurlTransport
    /// With TLS: the directory holding `ca.pem` (the self-signed server certificate) and its key.
    let tlsDirectory: String?

    var url: String { "\(tlsDirectory == nil ? "http" : "https")://127.0.0.1:\(port)" }
    var caFile: String? { tlsDirectory.map { $0 + "/cert.pem" } }

    /// - Parameter tls: serve HTTPS with a certificate made by openssl now (kubectl sends bearer
    ///   tokens only over TLS).
    init(token: String = "test-token-\(UUID().uuidString.prefix(8))", tls: Bool = false, arguments extra: [String] = []) throws {
        guard FileManager.default.fileExists(atPath: Self.script) else {
            throw TestFailure("the Kubernetes test API server \(Self.script) is missing")
        }
        self.token = token
        var arguments = ["python3", Self.script, "--port", "0", "--token", token] + extra
        if tls {
            let dir = try makeTempDir("apiserver-tls")
            let (status, _, err) = try run("/usr/bin/openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                                               "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "1",
                                                               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
            guard status == 0 else { throw TestFailure("openssl could not make a certificate: \(err)") }
            arguments += ["--tls-cert", dir + "/cert.pem", "--tls-key", dir + "/key.pem"]
            tlsDirectory = dir
        } else {
            tlsDirectory = nil
        }
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.standardError
        try process.run()
        // The first stdout line is `PORT <n>`.
        var line: [UInt8] = []
        let handle = out.fileHandleForReading
        while true {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty || byte.first == 0x0A { break }
            line.append(byte[0])
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let port = Int(text.dropFirst(5).trimmingCharacters(in: .whitespaces)) else {
            process.terminate()
            throw TestFailure("test API server did not print its port (got \"\(text)\")")
        }
        self.port = port
        control = try CurlTransport(CurlTransportConfiguration(tls: TLSConfiguration(caFile: tlsDirectory.map { $0 + "/cert.pem" }), bearerToken: .value(token),
                                                               requestTimeout: .seconds(10), proxy: .none))
        // Keep draining stdout so the server never blocks on a full pipe.
        DispatchQueue.global().async { _ = handle.readDataToEndOfFile() }
    }

    deinit { stop() }

    /// Ends the server. Tests call it in a `defer`, which also keeps the server alive until then
    /// (ARC may otherwise release it after its last use).
    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        // Its HTTP threads may keep it up after SIGTERM; give it a moment, then SIGKILL.
        let deadline = Date().addingTimeInterval(2)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        if let tlsDirectory { try? FileManager.default.removeItem(atPath: tlsDirectory) }
    }

    var config: ClusterConfig { ClusterConfig(server: url, tls: TLSConfiguration(caFile: caFile), token: .value(token), namespace: "default", origin: "test") }

    func transport() throws -> CurlTransport {
        try CurlTransport(CurlTransportConfiguration(tls: TLSConfiguration(caFile: caFile), bearerToken: .value(token), connectTimeout: .seconds(2),
                                                     requestTimeout: .seconds(15), proxy: .none, maxConnections: 32))
    }

    func client(qps: Double = 500, burst: Int = 1000, retry: RetryPolicy = RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(500))) throws -> KubeClient {
        try KubeClient(config: config, transport: try transport(), qps: qps, burst: burst, retry: retry)
    }

    @discardableResult
    func post(_ path: String, _ body: String) async throws -> JSONValue {
        let r = try await control.send(HTTPRequest(method: "POST", url: url + path, headers: ["Content-Type": "application/json"], body: Array(body.utf8)))
        guard (200..<300).contains(r.status) else { throw TestFailure("POST \(path): HTTP \(r.status) \(String(decoding: r.body, as: UTF8.self))") }
        return r.body.isEmpty ? .null : try JSONValue.parse(r.body)
    }

    func injectFaults(_ json: String) async throws { try await post("/__control/faults", json) }
    func reset() async throws { try await post("/__control/reset", "{}") }

    /// The injected faults, each with `remaining` (how many more requests it applies to).
    func faults() async throws -> [JSONValue] {
        let r = try await control.send(HTTPRequest(url: url + "/__control/faults"))
        guard r.status == 200 else { throw TestFailure("GET /__control/faults: HTTP \(r.status)") }
        return try JSONValue.parse(r.body).array ?? []
    }

    /// The server's request log (each entry has at least method, path and status).
    func requests() async throws -> [JSONValue] {
        let r = try await control.send(HTTPRequest(url: url + "/__control/requests"))
        guard r.status == 200 else { throw TestFailure("GET /__control/requests: HTTP \(r.status)") }
        let json = try JSONValue.parse(r.body)
        return json.array ?? json["requests"]?.array ?? json["items"]?.array ?? []
    }

    /// Requests counted by the server since the last reset: `total`, `byVerb`, `byResource`.
    func counters() async throws -> JSONValue {
        let r = try await control.send(HTTPRequest(url: url + "/__control/counters"))
        guard r.status == 200 else { throw TestFailure("GET /__control/counters: HTTP \(r.status)") }
        return try JSONValue.parse(r.body)
    }

    func resetCounters() async throws {
        let r = try await control.send(HTTPRequest(method: "DELETE", url: url + "/__control/counters"))
        guard r.status == 200 else { throw TestFailure("DELETE /__control/counters: HTTP \(r.status)") }
    }

    /// Requests of every verb except `watch` since the last reset (a watch renewal is not a read).
    func nonWatchRequests() async throws -> Int {
        let c = try await counters()
        return (c["byVerb"]?.members ?? []).filter { $0.key != "watch" }.reduce(0) { $0 + ($1.value.int ?? 0) }
    }

    /// A kubeconfig pointing at this server, for the real kubectl.
    func writeKubeconfig(in dir: String) throws -> String {
        let path = dir + "/kubeconfig"
        try write("""
            apiVersion: v1
            kind: Config
            current-context: test
            clusters:
            - name: test
              cluster:
                server: \(url)
            \(caFile.map { "    certificate-authority: \($0)" } ?? "")
            users:
            - name: test
              user:
                token: \(token)
            contexts:
            - name: test
              context:
                cluster: test
                user: test
            """, to: path)
        return path
    }
}
