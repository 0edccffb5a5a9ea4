import FleetTesting
import Foundation
import Testing

/// Two `mcpfleet run` replicas against the project's Kubernetes test API server: only the Lease
/// holder acts, and when it stops the other takes over.
@Suite(.serialized) struct LeaderElectionCLITests {
    final class Child: @unchecked Sendable {
        let process = Process()
        let log: String

        init(_ program: String, _ args: [String], env: [String: String], log: String) throws {
            self.log = log
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = args
            process.environment = ProcessInfo.processInfo.environment.merging(env) { _, new in new }
            FileManager.default.createFile(atPath: log, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        func stop(_ signal: Int32 = SIGTERM) {
            guard process.isRunning else { return }
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
        }

        deinit { stop(SIGKILL) }
    }

    func get(_ base: String, _ path: String) throws -> [String: Any]? {
        let r = try run("/usr/bin/curl", ["-s", "-m", "5", base + path])
        return try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    }

    @Test func onlyTheLeaderActsAndAStandbyTakesOverWhenItStops() async throws {
        let dir = try makeTempDirectory("leader")
        let (server, port) = try await KubeTestCatalog.apiServer(log: dir + "/apiserver.log")
        defer { server.stop(SIGKILL) }
        let base = "http://127.0.0.1:\(port)"
        let ns = try run("/usr/bin/curl", ["-s", "-m", "5", "-X", "POST", "-H", "Content-Type: application/json", base + "/api/v1/namespaces",
                                            "-d", #"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"mcpfleet-system"}}"#])
        #expect(ns.status == 0, "\(ns.all)")
        try KubeTestCatalog.write(in: dir, apiServer: base)

        let env = ["MCPFLEET_KUBECONFIG": dir + "/kubeconfig"]
        let args = ["run", dir + "/catalog", "--env", "k8s", "--log-format", "json", "--log-level", "info", "--poll", "500ms", "--metrics-address", ""]
        let a = try Child(mcpfleetBinary, args, env: env.merging(["POD_NAME": "replica-a"]) { _, n in n }, log: dir + "/a.log")
        defer { a.stop(SIGKILL) }
        let leasePath = "/apis/coordination.k8s.io/v1/namespaces/mcpfleet-system/leases/mcpfleet-controller"
        func holder() throws -> String? { (try get(base, leasePath)?["spec"] as? [String: Any])?["holderIdentity"] as? String }
        try await waitUntil("replica-a to lead", timeout: .seconds(30), every: .milliseconds(200)) { try holder() == "replica-a" }
        try await waitUntil("the leader to deploy the server", timeout: .seconds(30), every: .milliseconds(200)) {
            try get(base, "/apis/apps/v1/namespaces/mcp-team/deployments")?["items"].map { ($0 as? [Any])?.isEmpty == false } ?? false
        }

        let b = try Child(mcpfleetBinary, args, env: env.merging(["POD_NAME": "replica-b"]) { _, n in n }, log: dir + "/b.log")
        defer { b.stop(SIGKILL) }
        try await waitUntil("replica-b to campaign", timeout: .seconds(30), every: .milliseconds(200)) { b.output.contains("campaigning for leadership") }
        #expect(try holder() == "replica-a")
        #expect(!b.output.contains("acquired leadership"), "the standby must not act while the leader holds the Lease")

        a.stop(SIGTERM)   // graceful: finishes its step and releases the Lease
        #expect(a.process.terminationStatus == 0, "\(a.output.suffix(2000))")
        try await waitUntil("replica-b to take over", timeout: .seconds(20), every: .milliseconds(200)) { try holder() == "replica-b" }
        try await waitUntil("replica-b to act as leader", timeout: .seconds(30), every: .milliseconds(200)) { b.output.contains("acquired leadership") }
        b.stop(SIGTERM)
        #expect(b.process.terminationStatus == 0, "\(b.output.suffix(2000))")
    }
}
