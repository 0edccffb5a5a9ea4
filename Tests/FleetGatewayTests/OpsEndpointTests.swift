@testable import FleetGateway
import FleetHTTP
import FleetTesting
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// A plain TCP client socket for tests that hold connections open or write byte by byte.
final class RawClient {
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { close(fd); throw HarnessError(description: "connect to \(port) failed: \(errno)") }
    }

    func send(_ s: String) -> Bool { s.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) } == s.utf8.count }

    /// True once the server has closed the connection (a read returns 0 without blocking long).
    var closedByServer: Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) > 0 else { return false }
        var b = [UInt8](repeating: 0, count: 4096)
        return read(fd, &b, b.count) <= 0
    }

    deinit { close(fd) }
}

@Suite(.serialized) struct OpsEndpointTests {
    func server(_ config: GatewayConfiguration = GatewayConfiguration(), ready: @escaping @Sendable () async -> Bool) async throws -> (GatewayServer, Int) {
        let metrics = GatewayMetrics()
        let s = GatewayServer(state: GatewayState(configuration: config), metrics: metrics, signer: try SessionSigner(key: Array(repeating: 1, count: 32)),
                              ops: OpsEndpoints(ready: ready, metrics: { metrics.exposition() }, servers: {
                                  [ServerHealth(name: "time", tenant: "research", endpoint: "http://g/time/mcp", phase: "stable", desiredReplicas: 2, readyReplicas: 2,
                                                servingRevision: "abc", targetRevision: nil)]
                              }),
                              logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        return (s, try await s.listen("127.0.0.1:0", mcp: false).port)
    }

    @Test func endpointsAnswer() async throws {
        let ready = NIOLockedValueBox(false)
        let (s, port) = try await server(ready: { ready.withLockedValue { $0 } })
        defer { Task { await s.shutdown() } }
        let http = GatewayHarness.http
        func get(_ path: String) async throws -> HTTPResponse { try await http.send(HTTPRequest(url: "http://127.0.0.1:\(port)\(path)")) }
        #expect(try await get("/healthz").status == 200)
        #expect(try await get("/readyz").status == 503)
        ready.withLockedValue { $0 = true }
        #expect(try await get("/readyz").status == 200)
        let m = try await get("/metrics")
        #expect(m.status == 200 && m.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") == true)
        let d = try await get("/health/detailed")
        let json = try JSONSerialization.jsonObject(with: Data(d.body)) as? [String: Any]
        #expect(json?["ready"] as? Bool == true && (json?["servers"] as? [[String: Any]])?.first?["endpoint"] as? String == "http://g/time/mcp")
        #expect(try await get("/nope").status == 404)
        // A metrics-only listener serves no MCP route.
        #expect(try await get("/time/mcp").status == 404)
        let post = try await http.send(HTTPRequest(method: "POST", url: "http://127.0.0.1:\(port)/healthz", body: []))
        #expect(post.status == 405)
    }

    /// Today's probes must not wait behind slow clients: 200 idle connections and a client dribbling a
    /// byte every 2 s, and every endpoint still answers within 1 s.
    @Test func answersWithinOneSecondWhileConnectionsIdleAndAClientDribbles() async throws {
        var config = GatewayConfiguration()
        config.headerTimeout = .seconds(5)
        let (s, port) = try await server(config, ready: { true })
        defer { Task { await s.shutdown() } }
        let idle = try (0..<200).map { _ in try RawClient(port: port) }
        let dribbler = try RawClient(port: port)
        let request = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        var sent = 0
        let start = ContinuousClock.now
        var slowest: Duration = .zero
        while ContinuousClock.now - start < .seconds(7) && !dribbler.closedByServer {
            if ContinuousClock.now - start >= .seconds(2 * sent) && sent < request.count {
                _ = dribbler.send(String(request[sent]))
                sent += 1
            }
            for path in ["/healthz", "/readyz", "/metrics", "/health/detailed"] {
                let t = ContinuousClock.now
                let r = try await GatewayHarness.http.send(HTTPRequest(url: "http://127.0.0.1:\(port)\(path)", timeout: .seconds(1)))
                #expect(r.status == 200)
                slowest = max(slowest, ContinuousClock.now - t)
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(slowest < .seconds(1), "slowest answer \(slowest)")
        #expect(sent >= 3, "the dribbler sent \(sent) bytes")
        // The header timeout (5 s from its first byte) closed the dribbler; the idle ones are still open.
        try await waitUntil("the dribbler to be closed", timeout: .seconds(5), every: .milliseconds(100)) { dribbler.closedByServer }
        #expect(idle.prefix(20).allSatisfy { !$0.closedByServer })
    }

    @Test func idleConnectionsAreClosedAndTheConnectionCapHolds() async throws {
        var config = GatewayConfiguration()
        config.idleTimeout = .milliseconds(500)
        config.maxConnections = 5
        let (s, port) = try await server(config, ready: { true })
        defer { Task { await s.shutdown() } }
        let held = try (0..<5).map { _ in try RawClient(port: port) }
        // The sixth connection is accepted by the kernel and closed at once by the gateway.
        let extra = try RawClient(port: port)
        try await waitUntil("the connection over the cap to be closed", timeout: .seconds(2), every: .milliseconds(20)) { extra.closedByServer }
        try await waitUntil("idle connections to be closed", timeout: .seconds(3), every: .milliseconds(50)) { held.allSatisfy { $0.closedByServer } }
        // Room again: a request goes through.
        #expect(try await GatewayHarness.http.send(HTTPRequest(url: "http://127.0.0.1:\(port)/healthz")).status == 200)
        #expect(s.metrics.exposition().contains(#"mcpfleet_gateway_rejected_total{scope="connection",reason="connection-cap"}"#))
    }
}
