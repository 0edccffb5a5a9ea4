import FleetCore
import FleetHTTP
@testable import FleetKubernetes
import Foundation
import Testing

@Suite struct ClusterConfigTests {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    func kubeconfig(current: String? = "dev", extraUsers: String = "") -> String {
        """
        apiVersion: v1
        kind: Config
        \(current.map { "current-context: \($0)" } ?? "")
        clusters:
        - name: dev-cluster
          cluster:
            server: https://127.0.0.1:6443
            certificate-authority-data: \(Data(pem.utf8).base64EncodedString())
            tls-server-name: kubernetes.default
        - name: prod-cluster
          cluster:
            server: https://prod.example:443
            certificate-authority: ca.crt
            insecure-skip-tls-verify: false
        users:
        - name: dev-user
          user:
            token: dev-token-value
        - name: prod-user
          user:
            tokenFile: token
            client-certificate-data: \(Data("CERT".utf8).base64EncodedString())
            client-key-data: \(Data("KEY".utf8).base64EncodedString())
        \(extraUsers)
        contexts:
        - name: dev
          context:
            cluster: dev-cluster
            user: dev-user
            namespace: team-a
        - name: prod
          context:
            cluster: prod-cluster
            user: prod-user
        """
    }

    @Test func currentContextWithInlineData() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(kubeconfig(), to: dir + "/config")
        let c = try ClusterConfig.fromKubeconfig(paths: [dir + "/config"])
        #expect(c.server == "https://127.0.0.1:6443")
        #expect(c.tls.caData == Array(pem.utf8))
        #expect(c.tls.serverName == "kubernetes.default")
        #expect(c.token == .value("dev-token-value"))
        #expect(c.namespace == "team-a")
        #expect(c.origin.contains("context dev"))
    }

    @Test func explicitContextResolvesRelativeFiles() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(kubeconfig(), to: dir + "/config")
        try write(pem, to: dir + "/ca.crt")
        try write("file-token\n", to: dir + "/token")
        let c = try ClusterConfig.fromKubeconfig(paths: [dir + "/config"], context: "prod")
        #expect(c.server == "https://prod.example:443")
        #expect(c.tls.caFile == dir + "/ca.crt")
        #expect(c.token == .file(dir + "/token"))
        #expect(c.tls.clientCertData == Array("CERT".utf8))
        #expect(c.tls.clientKeyData == Array("KEY".utf8))
        #expect(c.namespace == "default")
    }

    @Test func kubeconfigListFirstFileWins() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The first file defines only a context pointing at a cluster of the second, and a
        // different server for "dev-cluster": the first definition wins.
        try write("""
            current-context: dev
            clusters:
            - name: dev-cluster
              cluster:
                server: https://first.example:6443
            """, to: dir + "/a")
        try write(kubeconfig(current: "prod"), to: dir + "/b")
        let env = ["KUBECONFIG": "\(dir)/missing:\(dir)/a:\(dir)/b", "HOME": dir]
        let c = try ClusterConfig.resolve(settings: nil, environment: env)
        #expect(c.server == "https://first.example:6443")
        #expect(c.token == .value("dev-token-value"))
    }

    @Test func errorsNameFileAndKey() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/config"
        try write(kubeconfig(), to: path)
        #expect(throws: ClusterConfigError.self) { try ClusterConfig.fromKubeconfig(paths: [path], context: "nope") }
        do {
            _ = try ClusterConfig.fromKubeconfig(paths: [path], context: "prod")
            Issue.record("a missing ca.crt must fail")
        } catch {
            #expect(error.file == path)
            #expect(error.description.contains("clusters[prod-cluster].cluster.certificate-authority"))
            #expect(error.description.contains("ca.crt"))
        }
        try write(kubeconfig(current: nil), to: path)
        do {
            _ = try ClusterConfig.fromKubeconfig(paths: [path])
            Issue.record("no current-context must fail")
        } catch {
            #expect(error.key == "current-context")
        }
        try write(kubeconfig(extraUsers: "- name: exec-user\n  user:\n    exec:\n      command: aws\n").replacingOccurrences(of: "user: dev-user", with: "user: exec-user"), to: path)
        do {
            _ = try ClusterConfig.fromKubeconfig(paths: [path])
            Issue.record("exec credentials must be rejected")
        } catch {
            #expect(error.description.contains("users[exec-user].user.exec"))
            #expect(!error.description.contains("dev-token-value"))
        }
        try write("clusters: [unclosed", to: path)
        #expect(throws: ClusterConfigError.self) { try ClusterConfig.fromKubeconfig(paths: [path]) }
    }

    @Test func inClusterUsesTokenFileAndServiceEnvironment() throws {
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write("sa-token", to: dir + "/token")
        try write(pem, to: dir + "/ca.crt")
        try write("mcpfleet-system\n", to: dir + "/namespace")
        let paths = InClusterPaths(directory: dir)
        let c = try ClusterConfig.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"], paths: paths)
        #expect(c.server == "https://10.96.0.1:443")
        #expect(c.token == .file(dir + "/token"))  // a file, so rotation is picked up
        #expect(c.tls.caFile == dir + "/ca.crt")
        #expect(c.namespace == "mcpfleet-system")
        let v6 = try ClusterConfig.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"], paths: paths)
        #expect(v6.server == "https://[fd00::1]:443")

        var settings = KubernetesSettings()
        settings.inCluster = true
        #expect(throws: ClusterConfigError.self) { try ClusterConfig.resolve(settings: settings, environment: [:], inClusterPaths: paths) }
        do {
            _ = try ClusterConfig.inCluster(environment: ["KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"],
                                            paths: InClusterPaths(directory: dir + "/nothing"))
            Issue.record("missing token must fail")
        } catch {
            #expect(error.file == dir + "/nothing/token")
        }
    }
}

@Suite struct JSONValueTests {
    @Test func roundTripKeepsOrderAndTypes() throws {
        let text = #"{"b":1,"a":[true,null,-2.5,"x\"\n\u00e9\ud83d\ude00"],"c":{}}"#
        let v = try JSONValue.parse(text)
        #expect(v.members?.map(\.key) == ["b", "a", "c"])
        #expect(v["b"]?.int == 1)
        #expect(v["a"]?.array?[3].string == "x\"\né😀")
        #expect(try JSONValue.parse(v.serialized()) == v)
        #expect(throws: JSONParseError.self) { try JSONValue.parse("{\"a\":}") }
        #expect(throws: JSONParseError.self) { try JSONValue.parse("[1] x") }
    }

    @Test func statusErrorsCarryConflicts() throws {
        let body = #"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas","reason":"Conflict","details":{"name":"x","group":"apps","kind":"deployments","causes":[{"reason":"FieldManagerConflict","message":"conflict with \"kubectl-edit\" using apps/v1","field":".spec.replicas"}]},"code":409}"#
        let e = KubeError.from(response: HTTPResponse(status: 409, body: Array(body.utf8)), object: ObjectReference(kind: "Deployment", namespace: "ns", name: "x"), verb: "apply")
        #expect(e.isConflict)
        #expect(e.conflicts == [KubeError.FieldConflict(field: ".spec.replicas", manager: "kubectl-edit", message: "conflict with \"kubectl-edit\" using apps/v1")])
        #expect(e.description.hasPrefix("Deployment ns/x: apply failed (HTTP 409 Conflict)"))
        #expect(e.description.contains(".spec.replicas (owned by \"kubectl-edit\")"))
        #expect(e.driverError.terminal)
        #expect(e.driverError.resource == "Deployment ns/x")
    }

    @Test func retryBackoffIsBoundedAndJittered() {
        let p = RetryPolicy(maxAttempts: 5, initialBackoff: .milliseconds(100), maxBackoff: .seconds(1))
        for attempt in 0..<10 {
            let d = p.backoff(afterAttempt: attempt)
            let cap = min(Duration.milliseconds(100) * (1 << attempt), .seconds(1))
            #expect(d >= cap / 2 && d <= cap)
        }
        #expect(RetryPolicy.isRetryable(status: 429))
        #expect(RetryPolicy.isRetryable(status: 503))
        #expect(!RetryPolicy.isRetryable(status: 409))
    }

    @Test func rateLimiterAllowsBurstThenPaces() async throws {
        let limiter = RateLimiter(qps: 20, burst: 5)
        let clock = ContinuousClock()
        let start = clock.now
        for _ in 0..<5 { try await limiter.acquire() }
        #expect(clock.now - start < .milliseconds(40))
        for _ in 0..<4 { try await limiter.acquire() }
        // 4 tokens beyond the burst at 20/s take about 200 ms.
        #expect(clock.now - start >= .milliseconds(180))
    }

    @Test func microTimeHasSixFractionalDigits() {
        #expect(LeaderElector.microTime(Date(timeIntervalSince1970: 1_700_000_000.25)) == "2023-11-14T22:13:20.250000Z")
    }
}
