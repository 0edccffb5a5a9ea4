import FleetCore
import FleetKubernetes
import Foundation
import Testing

/// The gateway on Kubernetes (design 0009): two replicas behind a Service, a PDB, secrets mounted
/// (never rendered), read-only RBAC; valid against the official schemas.
@Suite struct GatewayRenderTests {
    func objects(tokens: [SecretReference] = [SecretReference(name: "research-gateway", key: "token")]) throws -> [KubeObject] {
        var (env, _) = try exampleCluster()
        var g = EnvironmentGatewaySettings()
        g.signingKey = SecretReference(name: "mcpfleet-gateway", key: "signing.key")
        env.gateway = g
        return try KubernetesRenderer.gatewayObjects(environment: env, tokens: tokens, options: KubernetesRenderOptions(environment: env),
                                                     gateway: GatewayRenderOptions(image: "ghcr.io/example/mcpfleet@sha256:" + String(repeating: "a", count: 64),
                                                                                   catalogRepository: "https://git.example.com/catalog.git"))
    }

    @Test func twoReplicasBehindAServiceWithADisruptionBudget() throws {
        let objects = try objects()
        #expect(objects.map(\.kind) == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy",
                                         "ValidatingAdmissionPolicyBinding", "Deployment", "PodDisruptionBudget", "Service"])
        let d = try #require(objects.first { $0.kind == "Deployment" })
        #expect(d.namespace == "mcpfleet-system" && d.json[["spec", "replicas"]]?.int == 2)
        #expect(objects.first { $0.kind == "PodDisruptionBudget" }?.json[["spec", "maxUnavailable"]]?.int == 1)
        let containers = try #require(d.json[["spec", "template", "spec", "containers"]]?.array)
        let args = containers.first?["args"]?.array?.compactMap(\.string) ?? []
        #expect(args.prefix(2) == ["gateway", "/git/repo/Manifests"] && args.contains("--env=cluster"), "\(args)")
        // The key and the tokens come from their Secrets, each at <dir>/<name>/<key>; no Secret (no value) is rendered.
        let volumes = d.json[["spec", "template", "spec", "volumes"]]?.array ?? []
        let projected = volumes.first { $0["name"]?.string == "secrets" }?["projected"]?["sources"]?.array ?? []
        let paths = projected.flatMap { $0["secret"]?["items"]?.array ?? [] }.compactMap { $0["path"]?.string }
        #expect(paths.sorted() == ["mcpfleet-gateway/signing.key", "research-gateway/token"])
        #expect(!objects.contains { $0.kind == "Secret" })
        // Read-only, but for its own session report Lease (design 0018): the only writes, in its namespace only,
        // held to the pod's own Lease by the admission policy.
        let rules = objects.filter { $0.kind.hasSuffix("Role") }.flatMap { $0.json["rules"]?.array ?? [] }
        let writes = rules.filter { !Set(($0["verbs"]?.array ?? []).compactMap(\.string)).isSubset(of: ["get", "list", "watch"]) }
        #expect(writes == [.obj(["apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "patch", "delete"]])])
        #expect(objects.first { $0.kind == "Role" }?.json["rules"]?.array?.contains(writes[0]) == true)
        let policy = try #require(objects.first { $0.kind == "ValidatingAdmissionPolicy" })
        #expect(policy.json[["spec", "matchConditions"]]?.array?.first?["expression"]?.string == "request.userInfo.username == 'system:serviceaccount:mcpfleet-system:mcpfleet-gateway'")
        #expect(policy.json[["spec", "validations"]]?.array?.first?["expression"]?.string
            == "'authentication.kubernetes.io/pod-name' in request.userInfo.extra && request.name == 'mcpfleet-gateway-report-' + request.userInfo.extra['authentication.kubernetes.io/pod-name'][0]")
        let env = containers.first?["env"]?.array ?? []
        #expect(env.contains { $0["name"]?.string == "MCPFLEET_POD_NAME" && $0[["valueFrom", "fieldRef", "fieldPath"]]?.string == "metadata.name" })
    }

    @Test func withoutASigningKeyTheReplicasCouldNotShareSessions() throws {
        let (env, _) = try exampleCluster()
        #expect {
            try KubernetesRenderer.gatewayObjects(environment: env, tokens: [], options: KubernetesRenderOptions(),
                                                  gateway: GatewayRenderOptions(image: "i", catalogRepository: "r"))
        } throws: { e in
            "\(e)".contains("spec.gateway.signingKey is required on Kubernetes")
        }
    }

    @Test func gatewayObjectsPassKubernetesValidateStrict() throws {
        guard let validator = which("kubernetes-validate") else {
            throw TestFailure("kubernetes-validate is not installed: pip install -r Tests/requirements.txt")
        }
        let dir = try makeTempDir("gateway-validate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var files: [String] = []
        for (i, o) in try objects().enumerated() {
            let path = "\(dir)/\(i)-\(o.kind.lowercased())-\(o.name).yaml"
            try write(o.json.prettyPrinted(), to: path)
            files.append(path)
        }
        for version in ["1.32.0", "1.35.0"] {
            let (status, out, err) = try run(validator, ["--strict", "--quiet", "-k", version] + files)
            #expect(status == 0, "kubernetes-validate \(version) failed:\n\(out)\n\(err)")
        }
    }
}
