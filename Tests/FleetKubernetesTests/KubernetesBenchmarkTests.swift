import FleetCore
@testable import FleetKubernetes
import Foundation
import Testing

/// Applies 1,000 servers' objects (a Service and a Deployment each) to the test API server with the
/// driver, and the same rendered objects with `kubectl apply --server-side`, and reports both
/// throughputs. Runs only with `MCPFLEET_K8S_BENCH=1` (Benchmarks/kubernetes/run.sh sets it); the
/// count can be changed with `MCPFLEET_K8S_BENCH_SERVERS`.
@Suite(.serialized) struct KubernetesBenchmarkTests {
    static let enabled = ProcessInfo.processInfo.environment["MCPFLEET_K8S_BENCH"] == "1"

    @Test(.enabled(if: enabled)) func driverVersusKubectlServerSideApply() async throws {
        let env = ProcessInfo.processInfo.environment
        let count = Int(env["MCPFLEET_K8S_BENCH_SERVERS"] ?? "") ?? 1000
        let concurrency = Int(env["MCPFLEET_K8S_BENCH_CONCURRENCY"] ?? "") ?? 16
        guard let kubectl = which("kubectl") else { throw TestFailure("kubectl is not installed") }
        // TLS for both clients: kubectl sends its bearer token only over TLS.
        let api = try KubeAPIServerProcess(tls: true)
        defer { api.stop() }
        let (environment, state) = try exampleCluster()
        let template = try #require(state.server("time"))
        func servers(_ prefix: String, tenant: String) -> [DesiredServer] {
            (0..<count).map { i in
                var s = template
                s.name = "\(prefix)-\(i)"
                s.tenant = tenant
                s.replicas = 1
                return s
            }
        }
        let client = try api.client()
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

        /// Scales every server with at most `concurrency` calls in flight.
        func scaleAll(_ driver: KubernetesDriver, _ servers: [DesiredServer], replicas: Int) async throws {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var next = 0
                while next < min(concurrency, servers.count) {
                    let s = servers[next]
                    group.addTask { try await driver.scale(s, replicas: replicas) }
                    next += 1
                }
                for try await _ in group where next < servers.count {
                    let s = servers[next]
                    group.addTask { try await driver.scale(s, replicas: replicas) }
                    next += 1
                }
            }
        }

        // mcpfleet: the driver with the given client limits (default 50 qps, burst 100).
        let qps = Double(env["MCPFLEET_K8S_BENCH_QPS"] ?? "") ?? 50
        let burst = Int(env["MCPFLEET_K8S_BENCH_BURST"] ?? "") ?? 100
        let driver = try KubernetesDriver(environment: environment, config: api.config, transport: try api.transport(),
                                          options: KubernetesDriverOptions(qps: qps, burst: burst))
        try await driver.ensureTenant(DesiredTenant(name: "bench-driver", isolation: .shared, namespace: "mcp-bench-driver", fields: []))
        try await driver.ensureTenant(DesiredTenant(name: "bench-kubectl", isolation: .shared, namespace: "mcp-bench-kubectl", fields: []))
        let toApply = servers("d", tenant: "bench-driver")
        try await api.reset()
        let driverStart = clock.now
        try await scaleAll(driver, toApply, replicas: 1)
        let driverElapsed = clock.now - driverStart
        let driverLog = try await api.requests()

        // kubectl: the same rendered objects in another namespace, one `apply --server-side` run.
        var objects: [KubeObject] = []
        for s in servers("d", tenant: "bench-kubectl") {
            objects.append(try KubernetesRenderer.service(s, namespace: "mcp-bench-kubectl"))
            objects.append(try KubernetesRenderer.deployment(s, namespace: "mcp-bench-kubectl", replicas: 1))
        }
        let dir = try makeTempDir("bench")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/objects.yaml"
        try write(KubernetesRenderer.yamlStream(objects), to: file)
        let kubeconfig = try api.writeKubeconfig(in: dir)
        try await api.reset()
        let kubectlStart = clock.now
        let (status, _, err) = try run(kubectl, ["--kubeconfig", kubeconfig, "--cache-dir", dir + "/cache", "apply", "--server-side", "-f", file])
        let kubectlElapsed = clock.now - kubectlStart
        #expect(status == 0, "kubectl apply failed: \(err.prefix(2000))")
        let kubectlLog = try await api.requests()

        // Both produced the same objects.
        #expect(try await client.list(.deployment, namespace: "mcp-bench-driver").items.count == count)
        #expect(try await client.list(.deployment, namespace: "mcp-bench-kubectl").items.count == count)

        // Throttling: the server answers 20 Deployment writes with 429 + Retry-After: 1 (as API
        // Priority and Fairness would under load) while the driver scales everything to 2. It must
        // absorb them — one retry per 429, after the second asked for — not amplify them.
        try await api.reset()
        try await api.injectFaults(#"{"status":429,"retry_after":1,"count":20,"method":"PATCH","path_regex":"/deployments/"}"#)
        let retriesBefore = driver.client.statistics.retries
        let throttledStart = clock.now
        try await scaleAll(driver, toApply, replicas: 2)
        let throttledElapsed = clock.now - throttledStart
        let throttledLog = try await api.requests()
        let throttled429 = throttledLog.filter { $0["status"]?.int == 429 }.count
        let retries = driver.client.statistics.retries - retriesBefore

        let objectsApplied = Double(2 * count)
        let driverRate = objectsApplied / seconds(driverElapsed)
        let kubectlRate = objectsApplied / seconds(kubectlElapsed)
        func fmt(_ v: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", v) }
        func count429(_ log: [JSONValue]) -> Int { log.filter { $0["status"]?.int == 429 }.count }
        let report = """
            | run | servers | objects | seconds | objects/s | requests | 429s | retries |
            |---|---|---|---|---|---|---|---|
            | mcpfleet driver, \(concurrency) in flight, \(fmt(qps, 0)) qps / burst \(burst) | \(count) | \(Int(objectsApplied)) | \(fmt(seconds(driverElapsed))) | \(fmt(driverRate, 0)) | \(driverLog.count) | \(count429(driverLog)) | 0 |
            | kubectl apply --server-side | \(count) | \(Int(objectsApplied)) | \(fmt(seconds(kubectlElapsed))) | \(fmt(kubectlRate, 0)) | \(kubectlLog.count) | \(count429(kubectlLog)) | – |
            | mcpfleet driver, rescale to 2 with 20 injected 429s (Retry-After: 1) | \(count) | \(count) | \(fmt(seconds(throttledElapsed))) | \(fmt(Double(count) / seconds(throttledElapsed), 0)) | \(throttledLog.count) | \(throttled429) | \(retries) |

            speed-up over kubectl: \(fmt(driverRate / kubectlRate, 1))x

            """
        print(report)
        if let out = env["MCPFLEET_K8S_BENCH_OUT"] { try write(report, to: out) }
        #expect(throttled429 == 20)
        #expect(retries == 20)
    }
}
