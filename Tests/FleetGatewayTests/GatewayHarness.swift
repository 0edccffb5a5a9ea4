import FleetCore
import FleetGateway
import FleetHTTP
import FleetTesting
import Foundation
import Logging
import NIOConcurrencyHelpers

/// A gateway served in process in front of real MCP server processes. Its routes are refreshed from
/// the processes as a driver would report them (a killed process leaves the table at the next refresh).
final class GatewayHarness: @unchecked Sendable {
    struct Replica {
        var id: String
        var port: Int
        var process: TestProcess
    }

    let server: GatewayServer
    let service: GatewayService
    let port: Int
    let signer: SessionSigner
    let log = LineSink()
    private let replicas = NIOLockedValueBox<[String: [Replica]]>([:])
    private let policies: [String: RoutePolicy]
    private var refresher: Task<Void, Never>?

    /// `servers`: route name → replica kinds (`everything`, `time`, `py`, `py-json`).
    init(servers: [String: [String]], policies: [String: RoutePolicy] = [:], configuration: GatewayConfiguration = GatewayConfiguration(),
         ready: @escaping @Sendable () async -> Bool = { true }) async throws {
        self.policies = policies
        var started: [String: [Replica]] = [:]
        for (name, kinds) in servers {
            for (i, kind) in kinds.enumerated() {
                let port = TestEnvironment.freePort()
                started[name, default: []].append(Replica(id: "\(name)-\(i)", port: port, process: try await Self.start(kind, port: port)))
            }
        }
        replicas.withLockedValue { $0 = started }
        signer = try SessionSigner(key: Array("test-signing-key-0123456789abcdef".utf8))
        let state = GatewayState(configuration: configuration)
        let log = self.log
        server = GatewayServer(state: state, metrics: GatewayMetrics(), signer: signer,
                               ops: OpsEndpoints(ready: ready, metrics: { "" }), accessLog: AccessLog { log.append($0) },
                               logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let box = replicas, policies = self.policies
        service = GatewayService(server: server, refresh: .milliseconds(200), logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }) {
            RouteTable(box.withLockedValue { all in
                all.map { name, rs in
                    Route(server: name, tenant: "t", backends: rs.filter { $0.process.isRunning }.map {
                        Backend(id: $0.id, revision: "r1", host: "127.0.0.1", port: $0.port, path: "/mcp")
                    }, policy: policies[name] ?? RoutePolicy())
                }
            })
        }
        await service.refreshOnce()
        port = try await server.listen("127.0.0.1:0", mcp: true).port
        // The metrics the gateway shares with the controller go to its own registry here.
        let s = service
        refresher = Task { try? await s.run() }
    }

    static func start(_ kind: String, port: Int) async throws -> TestProcess {
        switch kind {
        case "py", "py-json":
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/py_server.py"
            let p = try TestProcess("/usr/bin/env", ["python3", script, "--port", String(port)] + (kind == "py-json" ? ["--json"] : []))
            try await waitUntil("py server on \(port)", timeout: .seconds(30), every: .milliseconds(50)) {
                if !p.isRunning { throw HarnessError(description: "py_server exited: \(p.output)") }
                return TestEnvironment.isListening(port)
            }
            return p
        default:
            return try await TestEnvironment.startMCPServer(kind, port: port)
        }
    }

    func replicas(_ server: String) -> [Replica] { replicas.withLockedValue { $0[server] ?? [] } }

    func url(_ server: String) -> String { "http://127.0.0.1:\(port)/\(server)/mcp" }

    func stop() async {
        refresher?.cancel()
        await server.shutdown()
        for rs in replicas.withLockedValue({ $0.values }) { for r in rs { await r.process.stop() } }
    }

    // MARK: Clients

    static let http: CurlTransport = { try! CurlTransport(CurlTransportConfiguration(proxy: .none)) }()

    static let initialize = #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#

    /// One raw MCP POST (the tests that need exact statuses and headers).
    func post(_ server: String, _ body: String, session: String? = nil, token: String? = nil, timeout: Duration = .seconds(10)) async throws -> HTTPResponse {
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"), ("MCP-Protocol-Version", "2025-06-18")])
        if let session { headers.add(name: "Mcp-Session-Id", value: session) }
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        return try await Self.http.send(HTTPRequest(method: "POST", url: url(server), headers: headers, body: Array(body.utf8), timeout: timeout))
    }

    /// Runs the Python SDK client (`mcp_client.py`) and returns its JSON events.
    static func pythonClient(_ args: [String], timeout: Duration = .seconds(90)) async throws -> [[String: Any]] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/mcp_client.py"
        let p = try TestProcess("/usr/bin/env", ["python3", script] + args)
        _ = try await p.wait(timeout: timeout)
        return p.output.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    var description: String
}

final class LineSink: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}

extension HTTPResponse {
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A temporary catalog the built `mcpfleet` runs (the gateway's end-to-end tests): the CLI, the `echo`
/// server's live state, and the cleanup that kills whatever was started from it.
protocol CatalogDirectory {
    var root: String { get }
    var dir: String { get }
}

extension CatalogDirectory {
    func fleet(_ args: [String]) async throws -> (status: Int32, out: String) {
        let p = try TestProcess(try TestEnvironment.mcpfleetBinary(), args)
        let status = try await p.wait(timeout: .seconds(60))
        return (status, p.output)
    }

    func live() async throws -> LiveServer? {
        let r = try await fleet(["status", dir, "-o", "json"])
        guard let start = r.out.firstIndex(of: "{") else { return nil }
        return try JSONDecoder().decode(LiveState.self, from: Data(r.out[start...].utf8)).server("echo")
    }

    func cleanUp() {
        let proc = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in proc {
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            if String(decoding: data, as: UTF8.self).contains(root) { kill(pid, SIGKILL) }
        }
        try? FileManager.default.removeItem(atPath: root)
    }
}
