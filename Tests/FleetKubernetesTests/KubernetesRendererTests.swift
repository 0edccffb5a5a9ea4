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
            "Service/time", "Deployment/time-\(server.revision)", "PodDisruptionBudget/time",
        ])
        let d = try #require(objects.first { $0.kind == "Deployment" }).json
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
        // A digest of the containers instead of the ~1.5 KB fields (those stay in the rollout store).
        #expect(annotations["mcpfleet.io/fields"] == nil)
        #expect(annotations["mcpfleet.io/spec-digest"] == KubernetesRenderer.specDigest(ofDeployment: d))
        var edited = d
        var container = try #require(d[["spec", "template", "spec", "containers"]]?.array?.first)
        container["env"] = .array([])
        edited["spec"]?["template"]?["spec"]?["containers"] = .array([container])
        #expect(KubernetesRenderer.specDigest(ofDeployment: edited) != annotations["mcpfleet.io/spec-digest"])
        // What the API server leaves out when it serializes (an empty value, empty lists) and key order
        // do not count as edits.
        let withEmpty = [JSONValue.obj(["name": "mcp", "image": "i", "args": [], "env": [.obj(["value": "", "name": "A"])]])]
        let asServed = [JSONValue.obj(["image": "i", "env": [.obj(["name": "A"])], "name": "mcp"])]
        #expect(KubernetesRenderer.specDigest(containers: withEmpty) == KubernetesRenderer.specDigest(containers: asServed))
        let c = try #require(d[["spec", "template", "spec", "containers"]]?.array?.first)
        #expect(c["image"]?.string?.contains("@sha256:") == true)
        #expect(c["args"] == nil)  // the image's own ENTRYPOINT/CMD run
        #expect(c["env"] == [.obj(["name": "TIME_DEFAULT_TIMEZONE", "value": "UTC"]), .obj(["name": "PORT", "value": "18200"])])
        #expect(c[["securityContext", "readOnlyRootFilesystem"]] == true)
        #expect(c[["securityContext", "capabilities", "drop"]] == ["ALL"])
        #expect(c[["readinessProbe", "tcpSocket", "port"]] == "mcp")
        // Startup allows the progress deadline; liveness tolerates twice the readiness threshold.
        #expect(c[["startupProbe", "tcpSocket", "port"]] == "mcp")
        let startupBudget = (c[["startupProbe", "periodSeconds"]]?.int ?? 0) * (c[["startupProbe", "failureThreshold"]]?.int ?? 0)
        #expect(startupBudget >= Int(server.rollout.progressDeadlineMs / 1000), "\(startupBudget)")
        #expect(c[["livenessProbe", "failureThreshold"]]?.int == 2 * (c[["readinessProbe", "failureThreshold"]]?.int ?? 0))
        // Replicas spread softly over hosts and zones.
        let pod = try #require(d[["spec", "template", "spec"]])
        #expect(pod[["affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution"]]?.array?.first?[["podAffinityTerm", "topologyKey"]] == "kubernetes.io/hostname")
        #expect(pod["topologySpreadConstraints"]?.array?.map { $0["whenUnsatisfiable"] } == ["ScheduleAnyway", "ScheduleAnyway"])
        let pdb = try #require(objects.last).json
        #expect(pdb[["spec", "maxUnavailable"]] == 1)
        #expect(pdb[["spec", "selector", "matchLabels"]]?.stringMap == ["app.kubernetes.io/instance": "time", "app.kubernetes.io/managed-by": "mcpfleet"])
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

    /// Issue 19: an inline token was printed in the pod env (`render --driver kubernetes`); it now goes
    /// into the revision's Secret, and the pod reads it from there.
    @Test func sensitiveInlineValuesGoIntoTheRevisionsSecret() throws {
        let token = "ghp_" + String(repeating: "x", count: 36)
        let s = try server { $0.env = [DesiredEnvVar(name: "API_TOKEN", value: token), DesiredEnvVar(name: "ZONE", value: "UTC")] }
        let d = try KubernetesRenderer.deployment(s, namespace: "ns", replicas: 1)
        #expect(!d.json.jsonText.contains(token))
        let secretName = "time-\(s.revision)-env"
        #expect(d.json[["spec", "template", "spec", "containers"]]?.array?.first?["env"]?.array?.first
                == .obj(["name": "API_TOKEN", "valueFrom": .obj(["secretKeyRef": .obj(["name": .string(secretName), "key": "API_TOKEN"])])]))
        let secret = try #require(try KubernetesRenderer.envSecret(s, namespace: "ns"))
        #expect(secret.name == secretName && secret.json["immutable"] == true)
        #expect(secret.json[["data", "API_TOKEN"]]?.string == Data(token.utf8).base64EncodedString())
        #expect(secret.json["data"]?.members?.count == 1, "only the sensitive value")
        // No sensitive value: no Secret; one replica: no disruption budget.
        #expect(try KubernetesRenderer.envSecret(try server(), namespace: "ns") == nil)
        #expect(try KubernetesRenderer.podDisruptionBudget(try server { $0.replicas = 1 }, namespace: "ns") == nil)
        // A sealed value (a saved plan) cannot be rendered into a Secret: said, not guessed.
        let sealed = try server { $0.env = [DesiredEnvVar(name: "API_TOKEN", sealed: "sha256:abc")] }
        #expect(throws: KubernetesRenderError.self) { try KubernetesRenderer.envSecret(sealed, namespace: "ns") }
    }

    @Test func allowFromAddsPeersToTheStrictPolicyAndTheControllerNamespaceStays() throws {
        let t = DesiredTenant(name: "team", isolation: .strict, namespace: "team", fields: [], allowFrom: [
            NetworkPeer(namespace: "clients"), NetworkPeer(namespaceLabels: ["env": "prod"], podLabels: ["app": "agent"]), NetworkPeer(podLabels: ["role": "mcp-client"]),
        ])
        let policy = try #require(KubernetesRenderer.tenantObjects(t, options: KubernetesRenderOptions()).first { $0.kind == "NetworkPolicy" })
        let from = try #require(policy.json[["spec", "ingress"]]?.array?.first?["from"]?.array)
        #expect(from == [
            .obj(["podSelector": .object([])]),
            .obj(["namespaceSelector": .obj(["matchLabels": .obj(["kubernetes.io/metadata.name": "mcpfleet-system"])])]),
            .obj(["namespaceSelector": .obj(["matchLabels": .obj(["kubernetes.io/metadata.name": "clients"])])]),
            .obj(["namespaceSelector": .obj(["matchLabels": .obj(["env": "prod"])]), "podSelector": .obj(["matchLabels": .obj(["app": "agent"])])]),
            .obj(["namespaceSelector": .object([]), "podSelector": .obj(["matchLabels": .obj(["role": "mcp-client"])])]),
        ])
    }

    /// The YAML reads back (PyYAML) as exactly the JSON it came from, including strings YAML would
    /// otherwise take for numbers, booleans or null.
    @Test func yamlReadsBackAsTheSameJSON() throws {
        let (env, state) = try exampleCluster()
        var objects = try KubernetesRenderer.render(state, options: KubernetesRenderOptions(environment: env, manifestCommit: "0123abc"))
        objects.append(KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": .obj(["name": "tricky"]), "data": .obj([
            "a": "1.10", "b": "yes", "c": "null", "d": "", "e": " lead", "f": "x: y", "g": "# not a comment", "h": "line\nbreak", "i": "tab\there",
            "j": "-dash", "k": "0x1F", "l": "~", "m": "ünïcode", "n": "quote\"s", "o": "<<", "p": "on", "q": "\u{7f}del", "r": "@at", "s": "trailing:",
        ]), "list": [[], .object([]), .null, true, 3, .array([1, 2]), .obj(["x": .array(["a"])])]])))
        let dir = try makeTempDir("yaml")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try write(KubernetesRenderer.yamlStream(objects), to: dir + "/all.yaml")
        try write(KubernetesRenderer.jsonStream(objects), to: dir + "/all.json")
        let (status, out, err) = try run("/usr/bin/env", ["python3", "-c", """
            import json, sys, yaml
            docs = [d for d in yaml.safe_load_all(open(sys.argv[1]))]
            want = [json.loads(part) for part in open(sys.argv[2]).read().split("---\\n") if part.strip()]
            if docs != want:
                for a, b in zip(docs, want):
                    if a != b: print(json.dumps(a, sort_keys=True)); print(json.dumps(b, sort_keys=True))
                sys.exit(1)
            print(len(docs))
            """, dir + "/all.yaml", dir + "/all.json"])
        #expect(status == 0, "\(out)\n\(err)")
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == String(objects.count))
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
        s.env = [DesiredEnvVar(name: "TOKEN", secretRef: SecretReference(name: "creds", key: "token")), DesiredEnvVar(name: "A", value: "b"),
                 DesiredEnvVar(name: "API_KEY", value: "sk-" + String(repeating: "z", count: 40))]
        s.replicas = 3
        s.cpu = nil
        s.memory = nil
        s.command = nil
        objects.append(try KubernetesRenderer.deployment(s, namespace: "mcp-research", replicas: 0))
        objects.append(try #require(try KubernetesRenderer.envSecret(s, namespace: "mcp-research")))
        objects.append(try #require(try KubernetesRenderer.podDisruptionBudget(s, namespace: "mcp-research")))
        objects += KubernetesRenderer.tenantObjects(DesiredTenant(name: "shared", isolation: .shared, namespace: "shared", fields: []), options: KubernetesRenderOptions())
        objects += KubernetesRenderer.tenantObjects(DesiredTenant(name: "open", isolation: .strict, namespace: "open", fields: [],
                                                                  allowFrom: [NetworkPeer(namespace: "clients", podLabels: ["app": "agent"]), NetworkPeer(podLabels: ["a": "b"])]),
                                                    options: KubernetesRenderOptions())
        let dir = try makeTempDir("validate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var files: [String] = []
        for (i, o) in objects.enumerated() {
            // The YAML `render` prints by default, as kubectl and the validator read it.
            let path = "\(dir)/\(i)-\(o.kind.lowercased())-\(o.name).yaml"
            try write(o.json.yaml(), to: path)
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
