import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Testing

/// Probes on the MCP Swift SDK's client (issue 17): the surface of real servers as a contract, protocol
/// version negotiation, and paging of every list.
@Suite(.serialized) struct ProbeContractTests {
    let http: CurlTransport

    init() throws {
        http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
    }

    /// A JSON-RPC peer whose answers the test controls: it answers `initialize` with `--version`, serves
    /// tools in pages of two (five tools), prompts in pages of one, and refuses any later request whose
    /// `MCP-Protocol-Version` header is not the version it answered. `--loop` repeats its first cursor.
    static let pagingServer = #"""
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port, version, loop = int(sys.argv[1]), sys.argv[2], len(sys.argv) > 3
    TOOLS = [{"name": f"t{i}", "description": f"tool {i}", "inputSchema": {"type": "object", "properties": {"x": {"type": "string"}}}} for i in range(5)]
    PROMPTS = [{"name": "p0"}, {"name": "p1", "arguments": [{"name": "who", "required": True}]}]
    def page(items, cursor, size, key):
        start = int(cursor or 0)
        out = {key: items[start:start + size]}
        if loop: out["nextCursor"] = "0"
        elif start + size < len(items): out["nextCursor"] = str(start + size)
        return out
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            m = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if m.get("method") != "initialize" and self.headers.get("MCP-Protocol-Version") != version:
                self.send_response(400); self.end_headers(); self.wfile.write(b"bad protocol version header"); return
            if "id" not in m:
                self.send_response(202); self.end_headers(); return
            p = m.get("params") or {}
            if m["method"] == "initialize":
                r = {"protocolVersion": version, "capabilities": {"tools": {}, "prompts": {}}, "serverInfo": {"name": "pager", "version": "3.1"}}
            elif m["method"] == "tools/list":
                r = page(TOOLS, p.get("cursor"), 2, "tools")
            elif m["method"] == "prompts/list":
                r = page(PROMPTS, p.get("cursor"), 1, "prompts")
            else:
                r = None
            body = {"jsonrpc": "2.0", "id": m["id"]}
            if r is None: body["error"] = {"code": -32601, "message": "no"}
            else: body["result"] = r
            data = json.dumps(body).encode()
            self.send_response(200); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(data)))
            self.end_headers(); self.wfile.write(data)
        def log_message(self, *a): pass
    HTTPServer(("127.0.0.1", port), H).serve_forever()
    """#

    func startPager(_ version: String, loop: Bool = false) async throws -> (TestProcess, String) {
        let port = TestEnvironment.freePort()
        let p = try TestProcess("/usr/bin/env", ["python3", "-c", Self.pagingServer, String(port), version] + (loop ? ["loop"] : []))
        try await waitUntil("paging server", timeout: .seconds(10)) { TestEnvironment.isListening(port) }
        return (p, "http://127.0.0.1:\(port)/mcp")
    }

    @Test func everyPageOfEveryListAndTheNegotiatedVersion() async throws {
        // An older protocol version the SDK speaks: accepted, and sent on every later request.
        let (server, url) = try await startPager("2025-03-26")
        defer { server.signal(SIGKILL) }
        let c = try await ProbeSurface.read(url: url, http: http, timeoutMs: 5_000)
        #expect(c.toolNames == ["t0", "t1", "t2", "t3", "t4"])
        #expect(c.prompts.map(\.name) == ["p0", "p1"] && c.prompts[1].arguments == [.init(name: "who", required: true)])
        #expect(c.protocolVersion == "2025-03-26" && c.server == ContractServerInfo(name: "pager", version: "3.1"))
        #expect(c.resourceTemplates.isEmpty)
    }

    @Test func versionsTheSDKDoesNotSpeakAndEndlessPagingFail() async throws {
        let (old, oldURL) = try await startPager("1999-01-01")
        defer { old.signal(SIGKILL) }
        do {
            _ = try await ProbeSurface.read(url: oldURL, http: http, timeoutMs: 5_000)
            Issue.record("read a server that speaks protocol version 1999-01-01")
        } catch {
            #expect("\(error)".contains("1999-01-01") && "\(error)".contains("does not speak"), "\(error)")
        }
        let prober = Prober(transport: http)
        let url = URL(string: oldURL)!
        let result = await prober.probe(Endpoint(instance: "i", host: "127.0.0.1", port: url.port!, path: "/mcp"), health: DesiredHealth(probe: .mcp, timeoutMs: 5_000), path: "/mcp")
        #expect(!result.success && result.message?.contains("1999-01-01") == true, "\(result.message ?? "")")

        let (looping, loopURL) = try await startPager("2025-06-18", loop: true)
        defer { looping.signal(SIGKILL) }
        do {
            _ = try await ProbeSurface.read(url: loopURL, http: http, timeoutMs: 5_000)
            Issue.record("read a server whose cursor never ends")
        } catch {
            #expect("\(error)".contains("repeated the cursor"), "\(error)")
        }
    }

    @Test func theEverythingServersSurfaceIsStable() async throws {
        let port = TestEnvironment.freePort()
        let server = try await TestEnvironment.startMCPServer("everything", port: port)
        defer { server.signal(SIGKILL) }
        let url = "http://127.0.0.1:\(port)/mcp"
        let a = try await ProbeSurface.read(url: url, http: http, timeoutMs: 5_000)
        let b = try await ProbeSurface.read(url: url, http: http, timeoutMs: 5_000)
        #expect(!a.tools.isEmpty && a.tools.allSatisfy { $0.inputSchema.object != nil })
        #expect(a.canonicalJSON == b.canonicalJSON && a.digest == b.digest)
        // The probe carries it, for the controller.
        let probed = await Prober(transport: http).probe(Endpoint(instance: "i", host: "127.0.0.1", port: port, path: "/mcp"),
                                                          health: DesiredHealth(probe: .mcp, timeoutMs: 5_000), path: "/mcp")
        #expect(probed.success && probed.contract?.digest == a.digest)
    }

    @Test func thePythonServersSurfaceWithSchemas() async throws {
        let port = TestEnvironment.freePort()
        let server = try await TestEnvironment.startMCPServer("time", port: port)
        defer { server.signal(SIGKILL) }
        let c = try await ProbeSurface.read(url: "http://127.0.0.1:\(port)/mcp", http: http, timeoutMs: 5_000)
        #expect(c.toolNames == ["convert", "now"])
        let convert = try #require(c.tools.first { $0.name == "convert" })
        let required = Set((convert.inputSchema["required"]?.array ?? []).compactMap(\.string))
        #expect(required == ["time", "source_timezone", "target_timezone"], "\(convert.inputSchema.compact)")
    }
}
