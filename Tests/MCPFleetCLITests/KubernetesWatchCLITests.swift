import FleetTesting
import Foundation
import Testing

/// `mcpfleet run` on Kubernetes reacts to what its watches see, against the project's test API server
/// and the real kubectl: a Deployment someone deletes is put back at once, not at the next resync.
@Suite(.serialized) struct KubernetesWatchCLITests {
    typealias Child = LeaderElectionCLITests.Child

    func deployments(_ base: String) throws -> [[String: Any]] {
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", base + "/apis/apps/v1/namespaces/mcp-team/deployments"])
        let list = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return list?["items"] as? [[String: Any]] ?? []
    }

    func uid(_ deployment: [String: Any]) -> String? { (deployment["metadata"] as? [String: Any])?["uid"] as? String }

    /// A `phase: stable` anywhere in a server's status entry.
    func isStable(_ value: Any) -> Bool {
        if let d = value as? [String: Any] { return d["phase"] as? String == "stable" || d.values.contains { isStable($0) } }
        if let a = value as? [Any] { return a.contains { isStable($0) } }
        return false
    }

    @Test func aDeploymentDeletedWithKubectlIsRestoredWellBeforeTheResync() async throws {
        guard let kubectl = ["/usr/local/bin/kubectl", "/usr/bin/kubectl"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw CLIError("kubectl is not installed")
        }
        let dir = try makeTempDirectory("kube-watch")
        // Every simulated pod has IP 127.0.0.1 and the server's port is the API server's own: its TCP probe passes.
        let (server, port) = try await KubeTestCatalog.apiServer(arguments: ["--pod-ip", "127.0.0.1", "--ready-delay-ms", "100"], log: dir + "/apiserver.log")
        defer { server.stop(SIGKILL) }
        let base = "http://127.0.0.1:\(port)"
        let ns = try run("/usr/bin/curl", ["-s", "-m", "5", "-X", "POST", "-H", "Content-Type: application/json", base + "/api/v1/namespaces",
                                            "-d", #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"mcpfleet-system"}}"#])
        #expect(ns.status == 0, "\(ns.all)")
        try KubeTestCatalog.write(in: dir, apiServer: base, serverPort: port)

        // A resync far beyond the test: only the watch can bring the deletion to the controller in time.
        let controller = try Child(mcpfleetBinary, ["run", dir + "/catalog", "--env", "k8s", "--resync", "10m", "--poll", "500ms",
                                                    "--log-format", "json", "--log-level", "info", "--metrics-address", ""],
                                   env: ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig"], log: dir + "/controller.log")
        defer { controller.stop(SIGKILL) }
        try await waitUntil("the server rolled out and stable", timeout: .seconds(60), every: .milliseconds(200)) {
            let status = try run(mcpfleetBinary, ["status", dir + "/catalog", "--env", "k8s", "-o", "json"], environment: ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig"])
            let live = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
            let echo = (live?["servers"] as? [[String: Any]])?.first { $0["name"] as? String == "echo" }
            return try deployments(base).count == 1 && echo.map { isStable($0) } == true
        }
        let first = try #require(try deployments(base).first.flatMap(uid))

        let deleted = try run(kubectl, ["--kubeconfig", dir + "/kubeconfig", "-n", "mcp-team", "delete", "deployment",
                                        "-l", "app.kubernetes.io/instance=echo", "--wait=false"])
        #expect(deleted.status == 0, "\(deleted.all)")
        #expect(deleted.stdout.contains("deleted"), "\(deleted.all)")
        let start = ContinuousClock.now
        try await waitUntil("the controller to put the Deployment back", timeout: .seconds(30), every: .milliseconds(100)) {
            let items = try deployments(base)
            return items.count == 1 && uid(items[0]) != first
        }
        #expect(ContinuousClock.now - start < .seconds(30), "restored by the watch, not by the 10-minute resync")
        let restored = try run(kubectl, ["--kubeconfig", dir + "/kubeconfig", "-n", "mcp-team", "get", "deployments", "-l", "app.kubernetes.io/instance=echo", "-o", "name"])
        #expect(restored.status == 0 && restored.stdout.hasPrefix("deployment.apps/echo"), "\(restored.all)")
        controller.stop(SIGTERM)
        #expect(controller.process.terminationStatus == 0, "\(controller.output.suffix(2000))")
    }

    @Test func aClientRateLimitThatIsNotAPositiveNumberIsRefusedNamingTheVariable() async throws {
        let dir = try makeTempDirectory("kube-qps")
        try KubeTestCatalog.write(in: dir, apiServer: "http://127.0.0.1:9")
        for (name, value) in [("MCPFLEET_KUBE_QPS", "fast"), ("MCPFLEET_KUBE_BURST", "0")] {
            let r = try run(mcpfleetBinary, ["status", dir + "/catalog", "--env", "k8s"], environment: ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig", name: value])
            #expect(r.status != 0, "\(r.all)")
            #expect(r.stderr.contains("\(name)=\(value): expected a positive number"), "\(r.all)")
        }
    }
}
