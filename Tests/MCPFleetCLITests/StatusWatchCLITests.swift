import FleetTesting
import Foundation
import Testing

/// `mcpfleet status --watch` when the runtime goes away under it: against the project's Kubernetes
/// test API server, killed mid-watch and started again on the same port. The watch says why once
/// (not every second), keeps going, and says when it reads again; piped, it prints lines, no escapes.
@Suite(.serialized) struct StatusWatchCLITests {
    typealias Child = LeaderElectionCLITests.Child

    @Test func watchSurvivesTheAPIServerGoingAway() async throws {
        let dir = try makeTempDirectory("status-watch")
        var (server, port) = try await KubeTestCatalog.apiServer(log: dir + "/apiserver-1.log")
        defer { server.stop(SIGKILL) }
        try KubeTestCatalog.write(in: dir, apiServer: "http://127.0.0.1:\(port)")

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

        (server, _) = try await KubeTestCatalog.apiServer(port: port, log: dir + "/apiserver-2.log")
        try await waitUntil("the watch to read again", timeout: .seconds(60), every: .milliseconds(100)) {
            watch.output.contains("mcpfleet status --watch: reading the environment again")
        }
        let errors = watch.output.components(separatedBy: "cannot observe environment").count - 1
        #expect(errors == 1, "the same error is said once while it lasts, not every interval: \(watch.output.suffix(2000))")
        #expect(watch.process.isRunning)
    }
}
