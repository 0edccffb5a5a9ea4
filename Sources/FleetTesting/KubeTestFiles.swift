import Foundation

/// The files a test pointing the built `mcpfleet` at the project's Kubernetes test API server needs:
/// a kubeconfig without credentials and a one-server catalog (tenant `team`, environment `k8s`,
/// server `echo`, TCP probe).
public enum KubeTestFiles {
    /// `DIR/kubeconfig` for the API server at `base` (e.g. `http://127.0.0.1:PORT`).
    public static func writeKubeconfig(in dir: String, apiServer base: String) throws {
        try """
        apiVersion: v1
        kind: Config
        clusters: [{name: test, cluster: {server: "\(base)"}}]
        users: [{name: test, user: {}}]
        contexts: [{name: test, context: {cluster: test, user: test}}]
        current-context: test
        """.write(toFile: dir + "/kubeconfig", atomically: true, encoding: .utf8)
    }

    /// `DIR/catalog/fleet.yaml`: server `echo` with `replicas` replicas probed on `port`, and `rollout`
    /// (a flow mapping such as `{strategy: rolling, drainTimeout: 90s}`) when given.
    public static func writeCatalog(in dir: String, port: Int, replicas: Int = 1, rollout: String? = nil) throws {
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
          transport: {type: streamable-http, port: \(port)}
          health: {probe: tcp}
          replicas: \(replicas)
        """.appending(rollout.map { "\n  rollout: \($0)" } ?? "")
            .write(toFile: dir + "/catalog/fleet.yaml", atomically: true, encoding: .utf8)
    }
}
