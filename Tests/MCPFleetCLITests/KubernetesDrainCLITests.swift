import FleetTesting
import Foundation
import Testing

/// Session draining on Kubernetes through the built binaries (design 0018), against the project's test
/// API server: `mcpfleet gateway` (as a gateway pod) publishes its report Lease, applies the draining
/// marks of the route object and withdraws the Lease when it stops; `mcpfleet run` lifts marks a previous
/// controller left as it starts acting.
@Suite(.serialized) struct KubernetesDrainCLITests {
    typealias Child = LeaderElectionCLITests.Child

    func get(_ base: String, _ path: String) throws -> (status: Int, body: [String: Any]?) {
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", "-w", "\n%{http_code}", base + path])
        let parts = r.stdout.split(separator: "\n")
        let code = Int(parts.last ?? "") ?? 0
        let body = try? JSONSerialization.jsonObject(with: Data(parts.dropLast().joined(separator: "\n").utf8)) as? [String: Any]
        return (code, body)
    }

    func post(_ base: String, _ path: String, _ json: String) throws {
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", "-f", "-X", "POST", "-H", "Content-Type: application/json", base + path, "-d", json])
        #expect(r.status == 0, "\(r.all)")
    }

    /// The report a gateway's Lease carries (nil while there is none).
    func report(_ base: String, pod: String) throws -> [String: Any]? {
        let (status, lease) = try get(base, "/apis/coordination.k8s.io/v1/namespaces/mcpfleet-system/leases/mcpfleet-gateway-report-\(pod)")
        guard status == 200, let annotations = (lease?["metadata"] as? [String: Any])?["annotations"] as? [String: String],
              let text = annotations["mcpfleet.io/report"] else { return nil }
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    func routes(_ base: String) throws -> [String: Any]? {
        let (_, cm) = try get(base, "/api/v1/namespaces/mcpfleet-system/configmaps/mcpfleet-gateway-routes")
        guard let text = (cm?["data"] as? [String: String])?["routes.json"] else { return nil }
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
    }

    @Test func aGatewayPodReportsAppliesTheMarksAndWithdrawsAndAControllerStartingLiftsStaleMarks() async throws {
        let dir = try makeTempDirectory("kube-drain")
        let (server, port) = try await KubeTestCatalog.apiServer(arguments: ["--pod-ip", "127.0.0.1"], log: dir + "/apiserver.log")
        defer { server.stop(SIGKILL) }
        let base = "http://127.0.0.1:\(port)"
        try post(base, "/api/v1/namespaces", #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"mcpfleet-system"}}"#)
        try KubeTestCatalog.write(in: dir, apiServer: base, serverPort: port)
        // A controller that died mid-drain left a mark (generation 1000) beside the weights.
        let routesJSON = #"{\"draining\":{\"echo\":[\"echo-pod-gone\"]},\"drainGeneration\":1000,\"weights\":{\"echo\":{\"r1\":100}}}"#
        try post(base, "/api/v1/namespaces/mcpfleet-system/configmaps", """
            {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"mcpfleet-gateway-routes","labels":{"mcpfleet.io/store":"routes"}},
             "data":{"routes.json":"\(routesJSON)"}}
            """)

        let env = ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig", "MCPFLEET_POD_NAME": "mcpfleet-gateway-7d9f-abcde"]
        let gateway = try Child(mcpfleetBinary, ["gateway", dir + "/catalog", "--env", "k8s", "--address", "127.0.0.1:19481", "--refresh", "200ms",
                                                 "--access-log", ""], env: env, log: dir + "/gateway.log")
        defer { gateway.stop(SIGKILL) }
        // The pod's report: named after the pod, carrying the marks' generation it applied.
        try await waitUntil("the gateway's report with the marks applied", timeout: .seconds(60), every: .milliseconds(100)) {
            let r = try report(base, pod: "mcpfleet-gateway-7d9f-abcde")
            return r?["gateway"] as? String == "mcpfleet-gateway-7d9f-abcde" && (r?["seenGeneration"] as? Int) == 1000
        }
        // Heartbeats: the report is rewritten while nothing changes.
        let first = try #require(try report(base, pod: "mcpfleet-gateway-7d9f-abcde")?["updatedAt"] as? Int)
        try await waitUntil("a heartbeat", timeout: .seconds(30), every: .milliseconds(200)) {
            (try report(base, pod: "mcpfleet-gateway-7d9f-abcde")?["updatedAt"] as? Int ?? 0) > first
        }

        // A controller starting lifts the stale mark (the weights stay); the gateway applies the lift.
        let controller = try Child(mcpfleetBinary, ["run", dir + "/catalog", "--env", "k8s", "--poll", "500ms", "--log-format", "json",
                                                    "--log-level", "info", "--metrics-address", ""],
                                   env: ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig"], log: dir + "/controller.log")
        defer { controller.stop(SIGKILL) }
        var lifted = 0
        try await waitUntil("the stale mark lifted", timeout: .seconds(60), every: .milliseconds(200)) {
            guard let r = try routes(base), r["draining"] == nil, let g = r["drainGeneration"] as? Int, g > 1000 else { return false }
            lifted = g
            return r["weights"] != nil
        }
        try await waitUntil("the gateway reports the lift", timeout: .seconds(30), every: .milliseconds(100)) {
            (try report(base, pod: "mcpfleet-gateway-7d9f-abcde")?["seenGeneration"] as? Int ?? 0) >= lifted
        }
        controller.stop(SIGTERM)

        // A clean shutdown withdraws the report.
        gateway.stop(SIGTERM)
        #expect(gateway.process.terminationStatus == 0, "\(gateway.output.suffix(2000))")
        #expect(try get(base, "/apis/coordination.k8s.io/v1/namespaces/mcpfleet-system/leases/mcpfleet-gateway-report-mcpfleet-gateway-7d9f-abcde").status == 404)
    }
}
