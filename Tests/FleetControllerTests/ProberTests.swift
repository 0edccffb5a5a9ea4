import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Testing

// Probes against real MCP servers: the Swift SDK's everything server (SSE answers, session header)
// and the repository's Python time server (official Python SDK).

@Suite(.serialized) struct ProberTests {
    let prober: Prober

    init() throws {
        prober = Prober(transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
    }

    func endpoint(_ port: Int) -> Endpoint { Endpoint(instance: "test", host: "127.0.0.1", port: port, path: "/mcp") }

    @Test func mcpProbeOfTheEverythingServer() async throws {
        let port = TestEnvironment.freePort()
        let server = try await TestEnvironment.startMCPServer("everything", port: port)
        defer { server.signal(SIGKILL) }
        let ok = await prober.probe(endpoint(port), health: DesiredHealth(probe: .mcp, timeoutMs: 5_000), path: "/mcp")
        #expect(ok.success, "\(ok.message ?? "")")
        #expect((ok.tools ?? []).isEmpty == false)
        #expect(ok.latencyMs > 0)
        let missing = await prober.probe(endpoint(port), health: DesiredHealth(probe: .mcp, timeoutMs: 5_000, requireTools: ["no-such-tool"]), path: "/mcp")
        #expect(!missing.success)
        #expect(missing.message?.contains("no-such-tool") == true)
    }

    @Test func mcpProbeOfThePythonTimeServer() async throws {
        let port = TestEnvironment.freePort()
        let server = try await TestEnvironment.startMCPServer("time", port: port)
        defer { server.signal(SIGKILL) }
        let ok = await prober.probe(endpoint(port), health: DesiredHealth(probe: .mcp, timeoutMs: 5_000, requireTools: ["now", "convert"]), path: "/mcp")
        #expect(ok.success, "\(ok.message ?? "")")
        #expect(Set(ok.tools ?? []) == ["now", "convert"])
        let missing = await prober.probe(endpoint(port), health: DesiredHealth(probe: .mcp, timeoutMs: 5_000, requireTools: ["now", "weather"]), path: "/mcp")
        #expect(!missing.success)
        #expect(missing.message?.contains("weather") == true)
        let tcp = await prober.probe(endpoint(port), health: DesiredHealth(probe: .tcp, timeoutMs: 2_000), path: "/mcp")
        #expect(tcp.success)
    }

    @Test func failuresAreFailures() async throws {
        let closed = TestEnvironment.freePort()
        let tcp = await prober.probe(endpoint(closed), health: DesiredHealth(probe: .tcp, timeoutMs: 1_000), path: "/mcp")
        #expect(!tcp.success)
        let mcp = await prober.probe(endpoint(closed), health: DesiredHealth(probe: .mcp, timeoutMs: 1_000), path: "/mcp")
        #expect(!mcp.success)
        // A server that accepts and never answers: a timeout is a failure.
        let port = TestEnvironment.freePort()
        let silent = try TestProcess("/usr/bin/env", ["python3", "-c", """
        import socket, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", \(port))); s.listen(8)
        conns = []
        while True:
            c, _ = s.accept(); conns.append(c)
        """])
        defer { silent.signal(SIGKILL) }
        try await waitUntil("silent server", timeout: .seconds(10)) { TestEnvironment.isListening(port) }
        let slow = await prober.probe(endpoint(port), health: DesiredHealth(probe: .mcp, timeoutMs: 500), path: "/mcp")
        #expect(!slow.success)
        #expect(slow.latencyMs < 5_000)
        // HTTP probes: 2xx passes, anything else fails.
        let http = TestEnvironment.freePort()
        let web = try TestProcess("/usr/bin/env", ["python3", "-c", """
        from http.server import BaseHTTPRequestHandler, HTTPServer
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200 if self.path == "/healthz" else 500); self.end_headers(); self.wfile.write(b"x")
            def do_POST(self):
                self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
                self.wfile.write(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"nope"}}')
            def log_message(self, *a): pass
        HTTPServer(("127.0.0.1", \(http)), H).serve_forever()
        """])
        defer { web.signal(SIGKILL) }
        try await waitUntil("http server", timeout: .seconds(10)) { TestEnvironment.isListening(http) }
        #expect(await prober.probe(endpoint(http), health: DesiredHealth(probe: .http, path: "/healthz", timeoutMs: 2_000), path: "/mcp").success)
        #expect(!(await prober.probe(endpoint(http), health: DesiredHealth(probe: .http, path: "/broken", timeoutMs: 2_000), path: "/mcp").success))
        let rpcError = await prober.probe(endpoint(http), health: DesiredHealth(probe: .mcp, timeoutMs: 2_000), path: "/mcp")
        #expect(!rpcError.success)
        #expect(rpcError.message?.contains("-32600") == true)
    }
}
