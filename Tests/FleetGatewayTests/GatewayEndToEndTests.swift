import FleetCore
@testable import FleetGateway
import FleetHTTP
import FleetTesting
import Foundation
import MCP
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real MCP clients (the Python SDK's streamable HTTP client, the Swift SDK's) through the gateway
/// to real MCP servers (the Swift SDK's everything server, Python MCPServers).
@Suite(.serialized) struct GatewayEndToEndTests {
    @Test func perToolMetricsCountExactlyTheCallsAndErrorsMade() async throws {
        let h = try await GatewayHarness(servers: ["everything": ["everything"], "py": ["py"]])
        defer { Task { await h.stop() } }
        let a = try await GatewayHarness.pythonClient([h.url("everything"), "--calls", "test_simple_text:3", "--calls", "test_error_handling:2"])
        #expect(a.filter { $0["event"] as? String == "call" }.count == 5, "\(a)")
        let b = try await GatewayHarness.pythonClient([h.url("py"), "--calls", #"echo:4:{"text":"hi"}"#, "--calls", "fail:1"])
        #expect(b.filter { $0["event"] as? String == "call" && $0["isError"] as? Bool == false }.count == 4, "\(b)")
        #expect(b.filter { $0["event"] as? String == "call" && $0["isError"] as? Bool == true }.count == 1)

        let stats = h.server.metrics.toolStats()
        func count(_ server: String, _ tool: String) -> (Int, Int)? {
            stats.first { $0.key.server == server && $0.key.tool == tool && $0.key.revision == "r1" }.map { ($0.value.calls, $0.value.errors) }
        }
        #expect(count("everything", "test_simple_text")! == (3, 0))
        #expect(count("everything", "test_error_handling")! == (2, 2))
        #expect(count("py", "echo")! == (4, 0))
        #expect(count("py", "fail")! == (1, 1))
        #expect(stats.count == 4, "no other tool was called: \(stats.keys)")
        #expect(stats.values.allSatisfy { $0.latencyBuckets.reduce(0, +) == $0.calls })
        let text = h.server.metrics.exposition()
        #expect(text.contains(#"mcpfleet_gateway_tool_calls_total{server="py",revision="r1",tool="echo"} 4"#), "\(text)")
        #expect(text.contains(#"mcpfleet_gateway_tool_errors_total{server="everything",revision="r1",tool="test_error_handling"} 2"#))
        #expect(text.contains(#"mcpfleet_gateway_tool_call_duration_seconds_count{server="py",revision="r1",tool="fail"} 1"#))
        // Access log: one JSON line per request, each with a request id; tool calls name their tool.
        let lines = h.log.all.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(lines.count == h.log.all.count && lines.allSatisfy { ($0["request_id"] as? String)?.isEmpty == false })
        #expect(lines.filter { ($0["tools"] as? [String]) == ["echo"] }.count == 4)
    }

    @Test func swiftSDKClientCallsToolsThroughTheGateway() async throws {
        // On Linux the Swift SDK's HTTP client reads JSON responses (not SSE): the Python server answers JSON here.
        let h = try await GatewayHarness(servers: ["py": ["py-json", "py-json"]])
        defer { Task { await h.stop() } }
        let client = Client(name: "swift-sdk-test", version: "1.0")
        let transport = HTTPClientTransport(endpoint: URL(string: h.url("py"))!, streaming: false)
        let result = try await client.connect(transport: transport)
        #expect(result.serverInfo.name == "gateway-test")
        let tools = try await client.listTools()
        #expect(Set(tools.tools.map(\.name)) == ["echo", "fail"])
        let (content, isError) = try await client.callTool(name: "echo", arguments: ["text": "swift"])
        #expect(isError != true)
        guard case .text(let text, _, _)? = content.first else { Issue.record("no text content: \(content)"); return }
        // The session stays on one replica: every call answers from the same port.
        let port = text.split(separator: "@").last.map(String.init)
        for _ in 0..<5 {
            let (again, _) = try await client.callTool(name: "echo", arguments: ["text": "swift"])
            guard case .text(let t, _, _)? = again.first else { Issue.record("no text content"); return }
            #expect(t == "swift@\(port ?? "?")")
        }
        let (_, failed) = try await client.callTool(name: "fail")
        #expect(failed == true)
        await client.disconnect()
        let stats = h.server.metrics.toolStats()
        #expect(stats.first { $0.key.tool == "echo" }?.value.calls == 6)
        #expect(stats.first { $0.key.tool == "fail" }?.value.errors == 1)
    }

    @Test func wrongOrMissingTokenIs401AndNeverReachesTheServer() async throws {
        let token = "tok-\(UUID().uuidString)"
        let h = try await GatewayHarness(servers: ["py": ["py"]], policies: ["py": RoutePolicy(tokens: BearerTokens(tokens: [token]))])
        defer { Task { await h.stop() } }
        for bad in [nil, "wrong", token + "x", String(token.dropLast())] {
            let r = try await h.post("py", GatewayHarness.initialize, token: bad)
            #expect(r.status == 401, "token \(bad ?? "none")")
            #expect(r.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            #expect(r.header("Mcp-Session-Id") == nil)
        }
        // The Python SDK client fails on 401 too; with the token it works.
        let denied = try await GatewayHarness.pythonClient([h.url("py"), "--calls", "echo:1"])
        #expect(denied.contains { $0["event"] as? String == "failed" && ($0["error"] as? String ?? "").contains("bearer token") }, "\(denied)")
        let allowed = try await GatewayHarness.pythonClient([h.url("py"), "--token", token, "--calls", "echo:2"])
        #expect(allowed.filter { $0["event"] as? String == "call" }.count == 2, "\(allowed)")
        // Refused requests never reached the server: no tool call but the allowed client's two.
        #expect(h.server.metrics.toolStats().values.map(\.calls).reduce(0, +) == 2)
        // The token appears in no log line, metric or health document.
        #expect(!h.log.all.joined().contains(token))
        #expect(!h.server.metrics.exposition().contains(token))
        let detail = try await GatewayHarness.http.send(HTTPRequest(url: "http://127.0.0.1:\(h.port)/health/detailed"))
        #expect(!detail.text.contains(token))
    }

    @Test func overTheRateIs429WithRetryAfter() async throws {
        let h = try await GatewayHarness(servers: ["py": ["py"]],
                                         policies: ["py": RoutePolicy(tenantRate: RateLimit(requestsPerSecond: 1000, burst: 1000), serverRate: RateLimit(requestsPerSecond: 1, burst: 3))])
        defer { Task { await h.stop() } }
        var statuses: [Int] = []
        var retryAfter: [String] = []
        for _ in 0..<6 {
            let r = try await h.post("py", GatewayHarness.initialize)
            statuses.append(r.status)
            if r.status == 429 { retryAfter.append(r.header("Retry-After") ?? "") }
        }
        #expect(statuses.prefix(3).allSatisfy { $0 == 200 }, "\(statuses)")
        #expect(statuses.filter { $0 == 429 }.count >= 2, "\(statuses)")
        #expect(retryAfter.allSatisfy { Int($0).map { $0 >= 1 } ?? false }, "\(retryAfter)")
        #expect(h.server.metrics.exposition().contains(#"mcpfleet_gateway_rejected_total{scope="server",reason="rate-limited"}"#))
        // The bucket refills: after the wait it names, requests pass again.
        try await waitUntil("the bucket to refill", timeout: .seconds(5), every: .milliseconds(250)) {
            try await h.post("py", GatewayHarness.initialize).status == 200
        }
    }

    @Test func oversizedBodyIs413() async throws {
        var config = GatewayConfiguration()
        config.maxBodyBytes = 64 * 1024
        let h = try await GatewayHarness(servers: ["py": ["py"]], configuration: config)
        defer { Task { await h.stop() } }
        let big = #"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":""# + String(repeating: "x", count: 70 * 1024) + #""}}}"#
        let r = try await h.post("py", big)
        #expect(r.status == 413, "\(r.status) \(r.text)")
        #expect(h.server.metrics.toolStats().isEmpty, "the call never reached the server")
        // Just under the limit passes the gateway (the server then answers as it does without a session).
        let ok = try await h.post("py", GatewayHarness.initialize)
        #expect(ok.status == 200)
    }

    @Test func killedReplicasSessionsGet404AndNewSessionsAvoidItWithinOneSecond() async throws {
        let h = try await GatewayHarness(servers: ["everything": ["everything", "everything"]])
        defer { Task { await h.stop() } }
        // Sessions on both replicas.
        var sessions: [(token: String, replica: String)] = []
        for _ in 0..<8 {
            let r = try await h.post("everything", GatewayHarness.initialize)
            #expect(r.status == 200)
            let token = try #require(r.header("Mcp-Session-Id"))
            sessions.append((token, try #require(h.signer.verify(token)).replica))
        }
        #expect(Set(sessions.map(\.replica)).count == 2, "new sessions are spread over both replicas: \(sessions.map(\.replica))")
        let victim = h.replicas("everything")[0]
        victim.process.signal(SIGKILL)
        let killedAt = ContinuousClock.now
        // New sessions: every one succeeds, on the surviving replica, from the first second on.
        var placed: [String] = []
        while ContinuousClock.now - killedAt < .seconds(1) {
            let r = try await h.post("everything", GatewayHarness.initialize)
            #expect(r.status == 200, "a new session failed after the kill: \(r.status) \(r.text)")
            if let t = r.header("Mcp-Session-Id"), let c = h.signer.verify(t) { placed.append(c.replica) }
        }
        #expect(!placed.isEmpty && placed.allSatisfy { $0 != victim.id }, "\(placed)")
        // Sessions on the killed replica: 404 (the spec's "session gone"), so clients re-initialize.
        for s in sessions where s.replica == victim.id {
            let r = try await h.post("everything", #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, session: s.token)
            #expect(r.status == 404, "\(r.status) \(r.text)")
        }
        for s in sessions where s.replica != victim.id {
            let r = try await h.post("everything", #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, session: s.token)
            #expect(r.status == 200)
        }
        // A forged or foreign session id is unknown too.
        #expect(try await h.post("everything", #"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, session: "mf1.AAAA.BBBB").status == 404)
    }

    @Test func pythonClientReinitializesElsewhereWhenItsReplicaIsKilled() async throws {
        let h = try await GatewayHarness(servers: ["py": ["py", "py"]])
        defer { Task { await h.stop() } }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/mcp_client.py"
        let client = try TestProcess("/usr/bin/env", ["python3", script, h.url("py"), "--loop", #"echo:12:{"text":"x"}"#])
        // Which replica serves the client's session: the port in the echo.
        var servedBy = ""
        try await waitUntil("the client's first calls", timeout: .seconds(30), every: .milliseconds(100)) {
            guard let line = client.output.split(separator: "\n").first(where: { $0.contains("\"call\"") }) else { return false }
            servedBy = String(line.split(separator: "@").last?.prefix { $0.isNumber } ?? "")
            return !servedBy.isEmpty
        }
        let victim = try #require(h.replicas("py").first { String($0.port) == servedBy })
        victim.process.signal(SIGKILL)
        _ = try await client.wait(timeout: .seconds(60))
        let events = client.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let errors = events.filter { $0["event"] as? String == "session-error" }
        #expect(errors.count >= 1, "the session on the killed replica ended: \(client.output)")
        let later = events.filter { $0["event"] as? String == "call" && ($0["session"] as? Int ?? 0) > 1 }
        #expect(!later.isEmpty && later.allSatisfy { ($0["text"] as? String)?.hasSuffix("@\(h.replicas("py")[1].port == victim.port ? h.replicas("py")[0].port : h.replicas("py")[1].port)") == true },
                "after re-initializing, calls go to the other replica: \(later.prefix(3))")
        #expect(events.filter { $0["event"] as? String == "call" }.allSatisfy { $0["isError"] as? Bool == false })
        #expect(h.log.all.contains { $0.contains("\"status\":404") }, "the old session was answered 404")
    }
}
