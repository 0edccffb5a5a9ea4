import FleetTesting
import Foundation
import Testing

/// `mcpfleet status --watch` when the runtime goes away under it: against the project's Kubernetes
/// test API server, killed mid-watch and started again on the same port. The watch says why once
/// (not every second), keeps going, and says when it reads again; piped, it prints lines, no escapes.
@Suite(.serialized) struct StatusWatchCLITests {
    typealias Child = LeaderElectionCLITests.Child

    func apiServer(_ dir: String, port: Int, log: String) async throws -> (Child, Int) {
        let server = try Child("/usr/bin/env", ["python3", packageRoot + "/Tests/KubeAPIServer/fake_apiserver.py", "--port", String(port)], env: [:], log: log)
        var bound = 0
        try await waitUntil("the API server's port", timeout: .seconds(30), every: .milliseconds(100)) {
            guard let line = server.output.split(separator: "\n").first(where: { $0.hasPrefix("PORT ") }) else { return false }
            bound = Int(line.dropFirst(5)) ?? 0
            return bound > 0
        }
        return (server, bound)
    }

    @Test func watchSurvivesTheAPIServerGoingAway() async throws {
        let dir = try makeTempDirectory("status-watch")
        var (server, port) = try await apiServer(dir, port: 0, log: dir + "/apiserver-1.log")
        defer { server.stop(SIGKILL) }
        try """
        apiVersion: v1
        kind: Config
        clusters: [{name: test, cluster: {server: "http://127.0.0.1:\(port)"}}]
        users: [{name: test, user: {}}]
        contexts: [{name: test, context: {cluster: test, user: test}}]
        current-context: test
        """.write(toFile: dir + "/kubeconfig", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/catalog", withIntermediateDirectories: true)
        try """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: team}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: k8s}
        spec: {driver: kubernetes}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: echo}
        spec:
          version: "1.0.0"
          tenant: team
          artifact: {image: "registry.example.com/mcp/echo:1.0.0@sha256:\(String(repeating: "ab", count: 32))"}
          transport: {type: streamable-http, port: 8080}
          replicas: 1
        """.write(toFile: dir + "/catalog/fleet.yaml", atomically: true, encoding: .utf8)

        let watch = try Child(mcpfleetBinary, ["status", dir + "/catalog", "--env", "k8s", "--watch", "--interval", "200ms"],
                              env: ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig"], log: dir + "/watch.log")
        defer { watch.stop(SIGKILL) }
        try await waitUntil("the first line", timeout: .seconds(30), every: .milliseconds(100)) { watch.output.contains(" echo · not running · ready 0/1") }
        #expect(!watch.output.contains("\u{1B}["), "no escape codes without a terminal")

        server.stop(SIGKILL)
        try await waitUntil("the watch to say why", timeout: .seconds(60), every: .milliseconds(100)) {
            watch.output.contains("mcpfleet status --watch: cannot observe environment k8s (kubernetes)") && watch.output.contains("(retrying)")
        }
        #expect(watch.process.isRunning, "a lost API server must not end the watch: \(watch.output.suffix(1500))")

        (server, _) = try await apiServer(dir, port: port, log: dir + "/apiserver-2.log")
        try await waitUntil("the watch to read again", timeout: .seconds(60), every: .milliseconds(100)) {
            watch.output.contains("mcpfleet status --watch: reading the environment again")
        }
        let errors = watch.output.components(separatedBy: "cannot observe environment").count - 1
        #expect(errors == 1, "the same error is said once while it lasts, not every interval: \(watch.output.suffix(2000))")
        #expect(watch.process.isRunning)
    }
}
