import FleetTesting
import Foundation

/// The project's Kubernetes test API server as a child process, and a one-server catalog pointed at
/// it: what the CLI tests that need a cluster start from.
enum KubeTestCatalog {
    typealias Child = LeaderElectionCLITests.Child

    /// Starts `fake_apiserver.py` on `port` (0: any) with `arguments` and waits for the port it bound.
    static func apiServer(port: Int = 0, arguments: [String] = [], log: String) async throws -> (server: Child, port: Int) {
        let server = try Child("/usr/bin/env", ["python3", packageRoot + "/Tests/KubeAPIServer/fake_apiserver.py", "--port", String(port)] + arguments,
                               env: [:], log: log)
        var bound = 0
        try await waitUntil("the API server's port", timeout: .seconds(30), every: .milliseconds(100)) {
            guard let line = server.output.split(separator: "\n").first(where: { $0.hasPrefix("PORT ") }) else { return false }
            bound = Int(line.dropFirst(5)) ?? 0
            return bound > 0
        }
        return (server, bound)
    }

    /// `DIR/kubeconfig` for the server at `base`, and `DIR/catalog/fleet.yaml`: tenant `team`,
    /// environment `k8s`, server `echo` (one replica, TCP probe of `serverPort`).
    static func write(in dir: String, apiServer base: String, serverPort: Int = 8080) throws {
        try KubeTestFiles.writeKubeconfig(in: dir, apiServer: base)
        try KubeTestFiles.writeCatalog(in: dir, port: serverPort)
    }
}
