import FleetHTTP
import FleetTesting
import Foundation
import Testing

/// Session draining on Kubernetes end to end (design 0018): the built `mcpfleet run` and `mcpfleet
/// gateway` against the project's Kubernetes test API server, whose simulated pods all answer at a real
/// MCP server (pod IP 127.0.0.1), and real MCP sessions through the gateway. A scale-down from 2 to 1
/// waits while the pod it removes holds a session, the session keeps working, and the ReplicaSet
/// removes exactly the drained pod once the sessions end.
@Suite(.serialized) struct KubernetesDrainE2ETests {
    let http = try! CurlTransport(CurlTransportConfiguration(proxy: .none))

    func json(_ url: String) async throws -> [String: Any]? {
        let r = try await http.send(HTTPRequest(url: url, timeout: .seconds(5)))
        guard r.status == 200 else { return nil }
        return try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
    }

    func writeCatalog(_ dir: String, port: Int, replicas: Int) throws {
        try KubeTestFiles.writeCatalog(in: dir, port: port, replicas: replicas, rollout: "{strategy: rolling, drainTimeout: 90s}")
    }

    func pods(_ base: String) async throws -> [String] {
        let list = try await json(base + "/api/v1/namespaces/mcp-team/pods")
        return ((list?["items"] as? [[String: Any]]) ?? []).compactMap { ($0["metadata"] as? [String: Any])?["name"] as? String }.sorted()
    }

    func replicas(_ base: String) async throws -> Int? {
        let list = try await json(base + "/apis/apps/v1/namespaces/mcp-team/deployments")
        return ((list?["items"] as? [[String: Any]])?.first?["spec"] as? [String: Any])?["replicas"] as? Int
    }

    /// Open sessions per pod as the gateway reports them in its Lease.
    func reported(_ base: String) async throws -> [String: Int] {
        let lease = try await json(base + "/apis/coordination.k8s.io/v1/namespaces/mcpfleet-system/leases/mcpfleet-gateway-report-gw-0")
        guard let text = ((lease?["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["mcpfleet.io/report"],
              let report = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return [:] }
        return ((report["open"] as? [String: Any])?["echo"] as? [String: Int]) ?? [:]
    }

    func draining(_ base: String) async throws -> [String] {
        let cm = try await json(base + "/api/v1/namespaces/mcpfleet-system/configmaps/mcpfleet-gateway-routes")
        guard let text = (cm?["data"] as? [String: String])?["routes.json"],
              let routes = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { return [] }
        return ((routes["draining"] as? [String: [String]])?["echo"]) ?? []
    }

    func mcp(_ url: String, _ body: String, session: String? = nil, method: String = "POST") async throws -> HTTPResponse {
        var headers = HTTPHeaders([("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"), ("MCP-Protocol-Version", "2025-06-18")])
        if let session { headers.add(name: "Mcp-Session-Id", value: session) }
        return try await http.send(HTTPRequest(method: method, url: url, headers: headers, body: Array(body.utf8), timeout: .seconds(10)))
    }

    @Test func aScaleDownWaitsForTheSessionsOfThePodItRemovesAndTheyKeepWorking() async throws {
        let dir = NSTemporaryDirectory() + "mcpfleet-k8s-drain-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let serverPort = TestEnvironment.freePort()
        let mcpServer = try await TestEnvironment.startMCPServer("everything", port: serverPort)
        defer { mcpServer.signal(SIGKILL) }
        let apiPort = TestEnvironment.freePort()
        let api = try TestProcess("/usr/bin/env", ["python3", TestEnvironment.repositoryRoot() + "/Tests/KubeAPIServer/fake_apiserver.py", "--port", String(apiPort),
                                                   "--pod-ip", "127.0.0.1", "--ready-delay-ms", "100"])
        defer { api.signal(SIGKILL) }
        try await waitUntil("the API server", timeout: .seconds(30), every: .milliseconds(50)) { TestEnvironment.isListening(apiPort) }
        let base = "http://127.0.0.1:\(apiPort)"
        let ns = try await http.send(HTTPRequest(method: "POST", url: base + "/api/v1/namespaces", headers: HTTPHeaders([("Content-Type", "application/json")]),
                                                 body: Array(#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"mcpfleet-system"}}"#.utf8)))
        #expect(ns.status == 201)
        try KubeTestFiles.writeKubeconfig(in: dir, apiServer: base)
        try writeCatalog(dir, port: serverPort, replicas: 2)
        let env = ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig"]
        let binary = try TestEnvironment.mcpfleetBinary()
        let controller = try TestProcess(binary, ["run", dir + "/catalog", "--env", "k8s", "--poll", "300ms", "--metrics-address", "", "--log-format", "json",
                                                  "--log-level", "info"], environment: env)
        defer { controller.signal(SIGKILL) }
        let gatewayPort = TestEnvironment.freePort()
        let gateway = try TestProcess(binary, ["gateway", dir + "/catalog", "--env", "k8s", "--address", "127.0.0.1:\(gatewayPort)", "--refresh", "200ms",
                                               "--access-log", ""], environment: env.merging(["MCPFLEET_POD_NAME": "gw-0"]) { _, b in b })
        defer { gateway.signal(SIGKILL) }
        try await waitUntil("two pods routed by the gateway", timeout: .seconds(90), every: .milliseconds(200)) {
            guard try await pods(base).count == 2, let health = try? await http.send(HTTPRequest(url: "http://127.0.0.1:\(gatewayPort)/health/detailed", timeout: .seconds(5))) else { return false }
            return String(decoding: health.body, as: UTF8.self).components(separatedBy: "\"replica\"").count - 1 == 2
        }

        // Sessions until both pods hold one (the gateway balances new sessions over the replicas).
        let url = "http://127.0.0.1:\(gatewayPort)/echo/mcp"
        var sessions: [String] = []
        try await waitUntil("a session on each pod", timeout: .seconds(60), every: .milliseconds(300)) {
            if sessions.count < 6 {
                let r = try await mcp(url, #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#)
                if r.status == 200, let id = r.headers.first(name: "Mcp-Session-Id") { sessions.append(id) }
            }
            return try await reported(base).filter { $0.value > 0 }.count == 2
        }
        let before = try await pods(base)

        // Down to one replica: one pod is marked and the scale-down waits for its session.
        try writeCatalog(dir, port: serverPort, replicas: 1)
        var marked: [String] = []
        try await waitUntil("a pod marked draining", timeout: .seconds(60), every: .milliseconds(100)) {
            marked = try await draining(base)
            return marked.count == 1
        }
        try await Task.sleep(for: .seconds(2))
        #expect(try await replicas(base) == 2, "not scaled while the marked pod holds a session")
        // Every session still works, the one on the draining pod too.
        for s in sessions {
            let r = try await mcp(url, #"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}"#, session: s)
            #expect(r.status == 200, "\(String(decoding: r.body, as: UTF8.self))")
        }
        // Tool calls are counted in the gateway's report too: the controller's `gateway` provider sums them.
        let call = try await mcp(url, #"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"t"}}}"#, session: sessions[0])
        #expect(call.status == 200, "\(String(decoding: call.body, as: UTF8.self))")
        try await waitUntil("the call in the gateway's report", timeout: .seconds(30), every: .milliseconds(200)) {
            let lease = try await json(base + "/apis/coordination.k8s.io/v1/namespaces/mcpfleet-system/leases/mcpfleet-gateway-report-gw-0")
            let text = ((lease?["metadata"] as? [String: Any])?["annotations"] as? [String: String])?["mcpfleet.io/report"] ?? ""
            let report = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
            let revisions = ((report?["tools"] as? [String: Any])?["echo"] as? [String: [String: Any]]) ?? [:]
            return revisions.values.contains { ($0["calls"] as? Int ?? 0) >= 1 }
        }
        // The sessions end: the Deployment scales, and the ReplicaSet removes exactly the drained pod.
        for s in sessions { _ = try await mcp(url, "", session: s, method: "DELETE") }
        try await waitUntil("scaled to one", timeout: .seconds(60), every: .milliseconds(200)) {
            let (r, p) = (try await replicas(base), try await pods(base))
            return r == 1 && p.count == 1
        }
        let after = try await pods(base)
        #expect(Set(after) == Set(before).subtracting(marked), "kept \(after), marked \(marked), had \(before)")
        try await waitUntil("the mark lifted", timeout: .seconds(30), every: .milliseconds(200)) { try await draining(base).isEmpty }
        await controller.stop()
        #expect(controller.output.contains("replicas drained") && controller.output.contains("no open sessions"), "\(controller.output.suffix(3000))")
    }
}
