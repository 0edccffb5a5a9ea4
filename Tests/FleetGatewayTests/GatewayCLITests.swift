import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import MCP
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: Value
    init(_ value: Value) { v = value }
    var value: Value {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}

/// `mcpfleet run` (the built binary, local driver) serving the gateway: one stable endpoint across a
/// rolling update, driven by the Python SDK's client; tokens from secret files; `status` shows it.
@Suite(.serialized) struct GatewayCLITests {
    struct Catalog: CatalogDirectory {
        let root = NSTemporaryDirectory() + "mcpfleet-gw-\(UUID().uuidString.prefix(8))"
        let basePort = 21_000 + Int.random(in: 0..<300) * 10
        let gatewayPort = 9_500 + Int.random(in: 0..<400)
        var dir: String { root + "/cat" }
        var gateway: String { "127.0.0.1:\(gatewayPort)" }

        init() throws {
            try FileManager.default.createDirectory(atPath: root + "/cat", withIntermediateDirectories: true)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/py_server.py"
            try FileManager.default.copyItem(atPath: script, toPath: root + "/cat/py_server.py")
        }

        func write(version: String, tokens: Bool = false, stdio: Bool = false) throws {
            let yaml = """
            apiVersion: mcpfleet.io/v1alpha1
            kind: Environment
            metadata:
              name: dev
            spec:
              driver: local
              portRange: \(basePort)-\(basePort + 9)
              stateDir: \(root)/state
              secretsDir: \(root)/secrets
              gateway:
                address: \(gateway)
                maxBodyBytes: 65536
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Tenant
            metadata:
              name: research
            spec:
              isolation: shared
            \(tokens ? "  gateway:\n    tokens:\n      - {name: research-gateway, key: token}" : "")
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Server
            metadata:
              name: echo
            spec:
              version: "\(version)"
              tenant: research
              artifact:
                command: ["python3", "${MANIFEST_DIR}/py_server.py", "--port", "${PORT}"]
              transport:
                type: streamable-http
                port: \(basePort)
                path: /mcp
              replicas: 2
              health:
                probe: mcp
                interval: 300ms
                timeout: 2s
                failureThreshold: 2
                requireTools: [echo]
              rollout:
                strategy: rolling
                maxSurge: 1
                maxUnavailable: 0
                progressDeadline: 60s
                # Sessions here outlive the rollout: a short drain, then they are cut and re-initialize.
                drainTimeout: 2s

            """ + (stdio ? """
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Server
            metadata:
              name: stdio-echo
            spec:
              version: "1.0"
              tenant: research
              artifact:
                command: ["python3", "${MANIFEST_DIR}/py_server.py", "--stdio", "--port", "0"]
              transport:
                type: stdio
                port: \(basePort + 5)
                path: /mcp
              replicas: 1
              health:
                probe: mcp
                interval: 300ms
                timeout: 2s
                failureThreshold: 2

            """ : "")
            try yaml.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
        }


    }

    func waitForGateway(_ c: Catalog, token: String? = nil) async throws {
        let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")])
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        try await waitUntil("the gateway to route echo", timeout: .seconds(60), every: .milliseconds(200)) {
            let r = try? await http.send(HTTPRequest(method: "POST", url: "http://\(c.gateway)/echo/mcp", headers: headers,
                                                     body: Array(GatewayHarness.initialize.utf8), timeout: .seconds(5)))
            return r?.status == 200
        }
    }

    @Test func oneStableEndpointAcrossARollingUpdate() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        try c.write(version: "1.0")
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--metrics-address", "", "--poll", "200ms"])
        defer { Task { await controller.stop() } }
        try await waitForGateway(c)
        try await waitUntil("2 ready replicas", timeout: .seconds(60), every: .milliseconds(300)) { try await c.live()?.readyReplicas == 2 }
        let status = try await c.fleet(["status", c.dir])
        #expect(status.out.contains("ENDPOINT") && status.out.contains("http://\(c.gateway)/echo/mcp"), "\(status.out)")
        let oldRevision = try #require(try await c.live()?.servingRevision?.revision)

        // Two long-lived sessions: least-sessions balancing puts one on each old replica. When the first
        // old replica stops, its client re-initializes onto the new revision while the other session
        // goes on on the old one.
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/mcp_client.py"
        var clients: [TestProcess] = []
        for _ in 0..<2 {
            let client = try TestProcess("/usr/bin/env", ["python3", script, "http://\(c.gateway)/echo/mcp", "--loop", #"echo:40:{"text":"t"}"#])
            try await waitUntil("the client's first calls", timeout: .seconds(30), every: .milliseconds(100)) { client.output.contains("\"call\"") }
            clients.append(client)
        }
        // When the gateway first routes a replica of the new revision (its /health/detailed).
        let firstNewRouted = Locked<Date?>(nil)
        let gateway = c.gateway
        let watcher = Task {
            let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
            while !Task.isCancelled && firstNewRouted.value == nil {
                if let r = try? await http.send(HTTPRequest(url: "http://\(gateway)/health/detailed", timeout: .seconds(2))),
                   let json = try? JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any],
                   let replicas = json["replicas"] as? [[String: Any]],
                   replicas.contains(where: { $0["revision"] as? String != oldRevision && $0["healthy"] as? Bool == true }) {
                    firstNewRouted.value = Date()
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        try c.write(version: "1.1")
        try await waitUntil("the rollout to 1.1", timeout: .seconds(90), every: .milliseconds(500)) {
            guard let s = try await c.live() else { return false }
            return s.revisions.filter { $0.replicas > 0 }.map(\.version) == ["1.1"] && s.readyReplicas == 2 && s.phase == .stable
        }
        let newRevision = try #require(try await c.live()?.servingRevision?.revision)
        #expect(newRevision != oldRevision)
        for client in clients {
            _ = try await client.wait(timeout: .seconds(90))
            let events = client.output.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            let calls = events.filter { $0["event"] as? String == "call" }
            #expect(calls.count > 50, "\(client.output)")
            #expect(calls.allSatisfy { $0["isError"] as? Bool == false }, "every call answered")
            // A session ends only when its replica is stopped (after its 2 s drain): answered 404 (gone),
            // or — for a call in flight at that instant — its stream cut. Each client then re-initializes
            // and goes on.
            let errors = events.filter { $0["event"] as? String == "session-error" }
            #expect(errors.count <= 2, "at most one per old replica: \(errors)")
            for e in errors {
                let text = (e["error"] as? String ?? "").lowercased()
                #expect(text.contains("session") || text.contains("stream ended"), "\(e)")
            }
            let lastSession = calls.compactMap { $0["session"] as? Int }.max() ?? 0
            #expect(calls.contains { $0["session"] as? Int == lastSession }, "calls after the last re-initialize")
        }

        // The access log shows sessions opened before the update answered by the old revision while the
        // gateway already routed the new one (until their replica was stopped).
        watcher.cancel()
        let routedAt = try #require(firstNewRouted.value)
        let log = try String(contentsOfFile: c.root + "/state/gateway-access.log", encoding: .utf8)
        let entries = log.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let toolCalls = entries.filter { ($0["tools"] as? [String]) == ["echo"] }
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        // The new revision serves from when the gateway routes it (seen by the watcher, which may see it
        // late on a loaded machine) or answers its first request, whichever is first.
        let firstNewEntry = entries.first { $0["revision"] as? String == newRevision }.flatMap { ($0["time"] as? String).flatMap(parser.date(from:)) }
        let serving = min(routedAt, firstNewEntry ?? routedAt)
        let oldAfterNew = toolCalls.filter {
            $0["revision"] as? String == oldRevision && $0["status"] as? Int == 200 && (($0["time"] as? String).flatMap(parser.date(from:)) ?? .distantPast) > serving
        }
        let lastOld = toolCalls.last { $0["revision"] as? String == oldRevision }?["time"] as? String
        let firstNew = toolCalls.first { $0["revision"] as? String != oldRevision }?["time"] as? String
        #expect(!oldAfterNew.isEmpty, """
            a session opened before the update kept working on its replica after the new revision was routed \
            (routed at \(routedAt), last old call \(lastOld ?? "-"), first new call \(firstNew ?? "-"), \
            replicas of old calls: \(Set(toolCalls.filter { $0["revision"] as? String == oldRevision }.compactMap { $0["replica"] as? String })))
            """)
        #expect(toolCalls.last?["revision"] as? String == newRevision)
    }

    /// A stdio server behind the local driver's bridge, through the gateway, with the Swift SDK's
    /// client (the bridge answers JSON, which that client reads on Linux) and the Python SDK's.
    @Test func stdioServerThroughTheBridgeAndTheGateway() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        try c.write(version: "1.0", stdio: true)
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--metrics-address", "", "--poll", "200ms"])
        defer { Task { await controller.stop() } }
        let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
        try await waitUntil("the gateway to route stdio-echo", timeout: .seconds(60), every: .milliseconds(200)) {
            let r = try? await http.send(HTTPRequest(method: "POST", url: "http://\(c.gateway)/stdio-echo/mcp",
                                                     headers: HTTPHeaders([("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]),
                                                     body: Array(GatewayHarness.initialize.utf8), timeout: .seconds(5)))
            return r?.status == 200
        }
        let client = Client(name: "swift-sdk-test", version: "1.0")
        _ = try await client.connect(transport: HTTPClientTransport(endpoint: URL(string: "http://\(c.gateway)/stdio-echo/mcp")!, streaming: false))
        let (content, isError) = try await client.callTool(name: "echo", arguments: ["text": "via-bridge"])
        #expect(isError != true)
        guard case .text(let text, _, _)? = content.first else { Issue.record("no text content: \(content)"); return }
        #expect(text.hasPrefix("via-bridge@"))
        let (_, failed) = try await client.callTool(name: "fail")
        #expect(failed == true)
        await client.disconnect()
        let py = try await GatewayHarness.pythonClient(["http://\(c.gateway)/stdio-echo/mcp", "--calls", #"echo:2:{"text":"py"}"#])
        #expect(py.filter { $0["event"] as? String == "call" && $0["isError"] as? Bool == false }.count == 2, "\(py)")
        let metrics = String(decoding: try await http.send(HTTPRequest(url: "http://\(c.gateway)/metrics")).body, as: UTF8.self)
        func sample(_ name: String, _ tool: String) -> String? {
            metrics.split(separator: "\n").first { $0.hasPrefix("\(name){server=\"stdio-echo\"") && $0.contains("tool=\"\(tool)\"}") }
                .map { String($0.split(separator: " ").last ?? "") }
        }
        #expect(sample("mcpfleet_gateway_tool_calls_total", "echo") == "3", "\(metrics)")
        #expect(sample("mcpfleet_gateway_tool_calls_total", "fail") == "1")
        #expect(sample("mcpfleet_gateway_tool_errors_total", "fail") == "1")
        #expect(sample("mcpfleet_gateway_tool_errors_total", "echo") == "0")
    }

    /// `mcpfleet gateway` alone: the controller runs without a gateway, the standalone gateway reads the
    /// routes from the state the controller's driver writes.
    @Test func standaloneGatewayRoutesFromTheDriversState() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        try c.write(version: "1.0")
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--metrics-address", "", "--gateway-address", "", "--poll", "200ms"])
        defer { Task { await controller.stop() } }
        try await waitUntil("2 ready replicas", timeout: .seconds(60), every: .milliseconds(300)) { try await c.live()?.readyReplicas == 2 }
        let gateway = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["gateway", c.dir, "--refresh", "300ms", "--access-log", ""])
        defer { Task { await gateway.stop() } }
        try await waitForGateway(c)
        let py = try await GatewayHarness.pythonClient(["http://\(c.gateway)/echo/mcp", "--calls", #"echo:3:{"text":"alone"}"#])
        #expect(py.filter { $0["event"] as? String == "call" && $0["isError"] as? Bool == false }.count == 3, "\(py)")
        let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
        #expect(try await http.send(HTTPRequest(url: "http://\(c.gateway)/readyz")).status == 200)
        let detail = try JSONSerialization.jsonObject(with: Data(try await http.send(HTTPRequest(url: "http://\(c.gateway)/health/detailed")).body)) as? [String: Any]
        #expect((detail?["replicas"] as? [[String: Any]])?.count == 2, "\(String(describing: detail))")
        // SIGTERM ends it cleanly.
        gateway.signal(SIGTERM)
        #expect(try await gateway.wait(timeout: .seconds(10)) == 0, "\(gateway.output)")
    }

    @Test func tenantTokensFromSecretFilesAndLimits() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        try c.write(version: "1.0", tokens: true)
        // The token file is missing: run refuses to start, naming the reference, not a value.
        let missing = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--gateway-address", c.gateway, "--timeout", "30s"])
        #expect(missing.status == 2, "\(missing.out)")
        #expect(missing.out.contains("secret research-gateway/token"), "\(missing.out)")
        let token = "gw-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: c.root + "/secrets/research-gateway", withIntermediateDirectories: true)
        try (token + "\n").write(toFile: c.root + "/secrets/research-gateway/token", atomically: true, encoding: .utf8)
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--metrics-address", "", "--poll", "200ms"])
        defer { Task { await controller.stop() } }
        try await waitForGateway(c, token: token)
        let denied = try await GatewayHarness.pythonClient(["http://\(c.gateway)/echo/mcp", "--token", "wrong", "--calls", "echo:1"])
        #expect(denied.contains { $0["event"] as? String == "failed" }, "\(denied)")
        let allowed = try await GatewayHarness.pythonClient(["http://\(c.gateway)/echo/mcp", "--token", token, "--calls", "echo:3"])
        #expect(allowed.filter { $0["event"] as? String == "call" }.count == 3, "\(allowed)")
        // Per-tenant path works too.
        let tenantPath = try await GatewayHarness.pythonClient(["http://\(c.gateway)/research/echo/mcp", "--token", token, "--calls", "echo:1"])
        #expect(tenantPath.filter { $0["event"] as? String == "call" }.count == 1, "\(tenantPath)")
        // Body limit from the manifest (65536).
        let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
        let big = try await http.send(HTTPRequest(method: "POST", url: "http://\(c.gateway)/echo/mcp",
                                                  headers: HTTPHeaders([("Content-Type", "application/json"), ("Authorization", "Bearer \(token)")]),
                                                  body: Array(repeating: 0x20, count: 70_000)))
        #expect(big.status == 413)
        // One /metrics: the controller's and the gateway's per-tool series together; /readyz after the first sync.
        let metrics = String(decoding: try await http.send(HTTPRequest(url: "http://\(c.gateway)/metrics")).body, as: UTF8.self)
        #expect(metrics.contains("mcpfleet_reconcile_duration_seconds") && metrics.contains(#"mcpfleet_gateway_tool_calls_total{server="echo""#), "\(metrics)")
        #expect(try await http.send(HTTPRequest(url: "http://\(c.gateway)/readyz")).status == 200)
        // The token is in no log, status or health output.
        let detail = try await http.send(HTTPRequest(url: "http://\(c.gateway)/health/detailed"))
        #expect(detail.status == 200 && !String(decoding: detail.body, as: UTF8.self).contains(token))
        #expect(!(try await c.fleet(["status", c.dir])).out.contains(token))
        await controller.stop()
        #expect(!controller.output.contains(token))
        let log = try String(contentsOfFile: c.root + "/state/gateway-access.log", encoding: .utf8)
        #expect(!log.contains(token) && log.contains("\"status\":401"))
    }
}
