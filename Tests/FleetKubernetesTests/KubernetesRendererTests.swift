import FleetCore
import FleetYAML
@testable import FleetKubernetes
import Foundation
import Testing

@Suite struct KubernetesRendererTests {
    @Test func exampleClusterRendersTenantAndServerObjects() throws {
        let (env, state) = try exampleCluster()
        let objects = try KubernetesRenderer.render(state, options: KubernetesRenderOptions(environment: env, manifestCommit: "abc123"))
        let kinds = objects.map { "\($0.kind)/\($0.name)" }
        let server = try #require(state.server("time"))
        #expect(kinds == [
            "Namespace/mcp-research", "ResourceQuota/mcpfleet-tenant-quota", "LimitRange/mcpfleet-defaults", "NetworkPolicy/mcpfleet-tenant-isolation",
            "Service/time", "Deployment/time-\(server.revision)",
        ])
        let d = try #require(objects.last).json
        #expect(d[["spec", "replicas"]]?.int == 2)
        #expect(d[["metadata", "namespace"]]?.string == "mcp-research")
        let labels = d[["metadata", "labels"]]?.stringMap ?? [:]
        #expect(labels["app.kubernetes.io/managed-by"] == "mcpfleet")
        #expect(labels["app.kubernetes.io/part-of"] == "mcpfleet")
        #expect(labels["mcpfleet.io/revision"] == server.revision)
        #expect(labels["app.kubernetes.io/version"] == "1.10")
        #expect(labels["sdk"] == "python")
        let annotations = d[["metadata", "annotations"]]?.stringMap ?? [:]
        #expect(annotations["mcpfleet.io/manifest-commit"] == "abc123")
        #expect(KubernetesRenderer.decodeFields(annotations["mcpfleet.io/fields"]) == server.fields)
        let c = try #require(d[["spec", "template", "spec", "containers"]]?.array?.first)
        #expect(c["image"]?.string?.contains("@sha256:") == true)
        #expect(c["args"] == nil)  // the image's own ENTRYPOINT/CMD run
        #expect(c["env"] == [.obj(["name": "TIME_DEFAULT_TIMEZONE", "value": "UTC"]), .obj(["name": "PORT", "value": "18200"])])
        #expect(c[["securityContext", "readOnlyRootFilesystem"]] == true)
        #expect(c[["securityContext", "capabilities", "drop"]] == ["ALL"])
        #expect(c[["readinessProbe", "tcpSocket", "port"]] == "mcp")
        #expect(c[["resources", "limits", "memory"]] == "96Mi")
        #expect(d[["spec", "template", "spec", "imagePullSecrets"]] == [.obj(["name": "ghcr-pull"])])
        #expect(d[["spec", "selector", "matchLabels"]]?.stringMap == ["app.kubernetes.io/instance": "time", "mcpfleet.io/revision": server.revision])
        let svc = objects[4].json
        #expect(svc[["spec", "selector"]]?.stringMap == ["app.kubernetes.io/instance": "time", "app.kubernetes.io/managed-by": "mcpfleet"])
        let quota = objects[1].json
        #expect(quota[["spec", "hard"]]?.stringMap == ["requests.cpu": "1", "limits.cpu": "1", "requests.memory": "1Gi", "limits.memory": "1Gi", "pods": "4"])
    }

    func server(_ edit: (inout DesiredServer) -> Void = { _ in }) throws -> DesiredServer {
        var s = try #require(try exampleCluster().1.server("time"))
        edit(&s)
        return s
    }

    @Test func imagesMustBePinnedByDigest() throws {
        let tagOnly = try server { $0.image = "ghcr.io/x/y:1.0"; $0.digest = nil }
        #expect(throws: KubernetesRenderError.self) { try KubernetesRenderer.deployment(tagOnly, namespace: "ns", replicas: 1) }
        let withDigest = try server { $0.image = "ghcr.io/x/y:1.0"; $0.digest = "sha256:" + String(repeating: "a", count: 64) }
        let d = try KubernetesRenderer.deployment(withDigest, namespace: "ns", replicas: 1)
        #expect(d.json[["spec", "template", "spec", "containers"]]?.array?.first?["image"]?.string == "ghcr.io/x/y:1.0@sha256:" + String(repeating: "a", count: 64))
        let noImage = try server { $0.image = nil }
        #expect(throws: KubernetesRenderError.self) { try KubernetesRenderer.deployment(noImage, namespace: "ns", replicas: 1) }
        let stdio = try server { $0.transport = .stdio }
        #expect(throws: KubernetesRenderError.self) { try KubernetesRenderer.deployment(stdio, namespace: "ns", replicas: 1) }
    }

    @Test func secretsAreReferencedNeverInlined() throws {
        let s = try server { $0.env = [DesiredEnvVar(name: "TOKEN", secretRef: SecretReference(name: "creds", key: "token")), DesiredEnvVar(name: "ZONE", value: "UTC")] }
        let d = try KubernetesRenderer.deployment(s, namespace: "ns", replicas: 1)
        let env = d.json[["spec", "template", "spec", "containers"]]?.array?.first?["env"]
        #expect(env == [.obj(["name": "TOKEN", "valueFrom": .obj(["secretKeyRef": .obj(["name": "creds", "key": "token"])])]), .obj(["name": "ZONE", "value": "UTC"]),
                        .obj(["name": "PORT", "value": "18200"])])
    }

    @Test func sharedTenantsGetNoNetworkPolicyAndPrefixApplies() {
        let t = DesiredTenant(name: "team", isolation: .shared, namespace: "team", fields: [])
        let objects = KubernetesRenderer.tenantObjects(t, options: KubernetesRenderOptions(namespacePrefix: "mcp-"))
        #expect(objects.map(\.kind) == ["Namespace", "LimitRange"])
        #expect(objects[0].name == "mcp-team")
        #expect(KubernetesRenderer.namespace(for: DesiredTenant(name: "x", isolation: .strict, namespace: "mcp-x", fields: []),
                                             options: KubernetesRenderOptions(namespacePrefix: "mcp-")) == "mcp-x")
    }

    @Test func labelValuesAreSanitised() {
        #expect(KubernetesRenderer.labelValue("1.0.0+build.5") == "1.0.0_build.5")
        #expect(KubernetesRenderer.labelValue("-x-") == "x")
        #expect(KubernetesRenderer.labelValue(String(repeating: "a", count: 80)).count == 63)
    }

    /// Every rendered object passes the official schemas in strict mode (no unknown fields).
    @Test func renderedObjectsPassKubernetesValidateStrict() throws {
        guard let validator = which("kubernetes-validate") else {
            throw TestFailure("kubernetes-validate is not installed: pip install -r Tests/requirements.txt")
        }
        let (env, state) = try exampleCluster()
        var objects = try KubernetesRenderer.render(state, options: KubernetesRenderOptions(environment: env, manifestCommit: "0123abc"))
        // Also the variants the example does not exercise: http probe, secrets, shared tenant, no quota.
        var s = try #require(state.servers.first)
        s.name = "variant"
        s.health.probe = .http
        s.health.path = "/healthz"
        s.env = [DesiredEnvVar(name: "TOKEN", secretRef: SecretReference(name: "creds", key: "token")), DesiredEnvVar(name: "A", value: "b")]
        s.cpu = nil
        s.memory = nil
        s.command = nil
        objects.append(try KubernetesRenderer.deployment(s, namespace: "mcp-research", replicas: 0))
        objects += KubernetesRenderer.tenantObjects(DesiredTenant(name: "shared", isolation: .shared, namespace: "shared", fields: []), options: KubernetesRenderOptions())
        let dir = try makeTempDir("validate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var files: [String] = []
        for (i, o) in objects.enumerated() {
            let path = "\(dir)/\(i)-\(o.kind.lowercased())-\(o.name).yaml"
            try write(o.json.prettyPrinted(), to: path)
            files.append(path)
        }
        for version in ["1.32.0", "1.35.0"] {
            let (status, out, err) = try run(validator, ["--strict", "--quiet", "-k", version] + files)
            #expect(status == 0, "kubernetes-validate \(version) failed:\n\(out)\n\(err)")
        }
    }

    /// The in-cluster install manifests pass the same strict validation.
    @Test func installManifestsPassKubernetesValidateStrict() throws {
        guard let validator = which("kubernetes-validate") else {
            throw TestFailure("kubernetes-validate is not installed: pip install -r Tests/requirements.txt")
        }
        let dir = packageRoot + "/Manifests/deploy/kubernetes"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") && $0 != "kustomization.yaml" }.sorted()
        #expect(files.count == 5)
        let (status, out, err) = try run(validator, ["--strict", "--quiet", "-k", "1.32.0"] + files.map { dir + "/" + $0 })
        #expect(status == 0, "kubernetes-validate failed:\n\(out)\n\(err)")
    }
}
