public import FleetCore

/// What the gateway's Kubernetes objects need beyond the catalog: the mcpfleet image and where its
/// pods read the manifests from (a git-sync sidecar, as the controller's install does).
public struct GatewayRenderOptions: Sendable, Hashable {
    public var image: String
    public var catalogRepository: String
    public var catalogRef: String
    /// The manifest directory inside the repository.
    public var catalogPath: String
    public var replicas: Int
    public var gitSyncImage = "registry.k8s.io/git-sync/git-sync:v4.4.0"

    public init(image: String, catalogRepository: String, catalogRef: String = "main", catalogPath: String = "Manifests", replicas: Int = 2) {
        self.image = image
        self.catalogRepository = catalogRepository
        self.catalogRef = catalogRef
        self.catalogPath = catalogPath
        self.replicas = replicas
    }
}

/// The gateway on Kubernetes (docs/designs/0009-traffic.md): `mcpfleet gateway` as a Deployment of
/// (by default) two replicas behind a Service, a PodDisruptionBudget keeping one up, the session
/// signing key and tenants' tokens mounted from their Secrets (never rendered: they are created with
/// `kubectl create secret`), and a read-only identity. Per-revision Deployments are reached through
/// it; routes and weights come from the rollout store's ConfigMaps, watched.
extension KubernetesRenderer {
    public static let gatewayName = "mcpfleet-gateway"
    static let gatewayReportsPolicy = "mcpfleet-gateway-reports"
    static let gatewayPort = 9470
    static let gatewaySecretsDir = "/var/run/mcpfleet/secrets"

    /// - Parameter tokens: the tenants' gateway token references (`spec.gateway.tokens`), mounted beside the key.
    public static func gatewayObjects(environment: Environment, tokens: [SecretReference], options: KubernetesRenderOptions,
                                      gateway g: GatewayRenderOptions) throws(KubernetesRenderError) -> [KubeObject] {
        let ns = options.controllerNamespace
        guard let key = environment.gateway?.signingKey else {
            throw KubernetesRenderError(server: gatewayName, message: "spec.gateway.signingKey is required on Kubernetes: every gateway replica must sign sessions with the same key (a Secret)")
        }
        guard g.replicas >= 1 else { throw KubernetesRenderError(server: gatewayName, message: "the gateway needs at least 1 replica (got \(g.replicas))") }
        var labels = [labelName: "mcpfleet", "app.kubernetes.io/component": "gateway", labelManagedBy: managedBy, "app.kubernetes.io/part-of": "mcpfleet"]
        let selector = [labelName: "mcpfleet", "app.kubernetes.io/component": "gateway"]
        // Secrets the gateway reads: the signing key and every tenant's tokens, each at <dir>/<name>/<key>.
        let refs = [key] + tokens
        var byName: [String: [String]] = [:]
        for r in refs where !(byName[r.name]?.contains(r.key) ?? false) { byName[r.name, default: []].append(r.key) }
        let sources: [JSONValue] = byName.keys.sorted().map { name in
            .obj(["secret": .obj(["name": .string(name), "items": .array(byName[name]!.sorted().map { k in .obj(["key": .string(k), "path": .string("\(name)/\(k)")]) })])])
        }
        let hardened: JSONValue = .obj(["allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                                        "capabilities": .obj(["drop": ["ALL"]])])
        func gitSync(_ name: String, oneTime: Bool) -> JSONValue {
            var args: [JSONValue] = [.string("--repo=\(g.catalogRepository)"), .string("--ref=\(g.catalogRef)"), "--root=/git", "--link=repo", "--depth=1"]
            args.append(oneTime ? "--one-time" : "--period=30s")
            return .obj(["name": .string(name), "image": .string(g.gitSyncImage), "args": .array(args), "securityContext": hardened,
                         "resources": .obj(["requests": .strings(["cpu": "10m", "memory": "32Mi"]), "limits": .strings(["cpu": "200m", "memory": "128Mi"])]),
                         "volumeMounts": [.obj(["name": "git", "mountPath": "/git"]), .obj(["name": "tmp", "mountPath": "/tmp"])]])
        }
        let probe: (String) -> JSONValue = { path in
            .obj(["httpGet": .obj(["path": .string(path), "port": "http"]), "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3])
        }
        let gateway: JSONValue = .obj([
            "name": "gateway", "image": .string(g.image),
            "args": .array(["gateway", .string("/git/repo/\(g.catalogPath)"), .string("--env=\(environment.name)"),
                            .string("--address=0.0.0.0:\(gatewayPort)"), "--refresh=2s", "--log-format=json"]),
            "env": [.obj(["name": "MCPFLEET_NAMESPACE", "valueFrom": .obj(["fieldRef": .obj(["fieldPath": "metadata.namespace"])])]),
                    // Names this replica's session report Lease (design 0018).
                    .obj(["name": "MCPFLEET_POD_NAME", "valueFrom": .obj(["fieldRef": .obj(["fieldPath": "metadata.name"])])]),
                    .obj(["name": "MCPFLEET_SECRETS_DIR", "value": .string(gatewaySecretsDir)])],
            "workingDir": "/tmp",
            "ports": [.obj(["name": "http", "containerPort": .int(Int64(gatewayPort)), "protocol": "TCP"])],
            "livenessProbe": probe("/healthz"), "readinessProbe": probe("/readyz"),
            "securityContext": hardened,
            "resources": .obj(["requests": .strings(["cpu": "100m", "memory": "64Mi"]), "limits": .strings(["cpu": "2", "memory": "256Mi"])]),
            "volumeMounts": [.obj(["name": "git", "mountPath": "/git", "readOnly": true]), .obj(["name": "secrets", "mountPath": .string(gatewaySecretsDir), "readOnly": true]),
                             .obj(["name": "tmp", "mountPath": "/tmp"])],
        ])
        let deployment = KubeObject(.obj([
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(name: gatewayName, namespace: ns, labels: labels),
            "spec": .obj([
                "replicas": .int(Int64(g.replicas)),
                // One replica at a time, never below the count: sessions live in signed ids, so any replica serves them.
                "strategy": .obj(["type": "RollingUpdate", "rollingUpdate": .obj(["maxUnavailable": 0, "maxSurge": 1])]),
                "revisionHistoryLimit": 3,
                "selector": .obj(["matchLabels": .strings(selector)]),
                "template": .obj([
                    "metadata": .obj(["labels": .strings(labels)]),
                    "spec": .obj([
                        "serviceAccountName": .string(gatewayName), "automountServiceAccountToken": true, "enableServiceLinks": false,
                        "securityContext": .obj(["runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                                                 "seccompProfile": .obj(["type": "RuntimeDefault"])]),
                        // Replicas on different nodes where the cluster has them.
                        "topologySpreadConstraints": [.obj(["maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                                                            "labelSelector": .obj(["matchLabels": .strings(selector)])])],
                        "imagePullSecrets": options.imagePullSecrets.isEmpty ? nil : .array(options.imagePullSecrets.map { .obj(["name": .string($0)]) }),
                        "initContainers": [gitSync("git-sync-init", oneTime: true)],
                        "containers": [gateway, gitSync("git-sync", oneTime: false)],
                        "volumes": [.obj(["name": "git", "emptyDir": .obj(["sizeLimit": "256Mi"])]),
                                    .obj(["name": "secrets", "projected": .obj(["defaultMode": 0o440, "sources": .array(sources)])]),
                                    .obj(["name": "tmp", "emptyDir": .obj(["sizeLimit": "64Mi"])])],
                    ]),
                ]),
            ]),
        ]))
        labels.removeValue(forKey: "app.kubernetes.io/part-of")
        let service = KubeObject(.obj([
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(name: gatewayName, namespace: ns, labels: labels),
            "spec": .obj(["type": "ClusterIP", "selector": .strings(selector),
                          "ports": [.obj(["name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"])]]),
        ]))
        let pdb = KubeObject(.obj([
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(name: gatewayName, namespace: ns, labels: labels),
            "spec": .obj(["maxUnavailable": 1, "selector": .obj(["matchLabels": .strings(selector)])]),
        ]))
        let account = KubeObject(.obj(["apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name: gatewayName, namespace: ns, labels: labels)]))
        // Reads pods and Deployments (routes) and the route object (weights, draining marks), all watched;
        // writes only its own session report Lease (design 0018) — RBAC cannot name a pod's object, so the
        // admission policy below holds each gateway pod to `mcpfleet-gateway-report-<its pod name>`.
        let read: JSONValue = ["get", "list", "watch"]
        let clusterRole = KubeObject(.obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name: gatewayName, namespace: nil, labels: labels),
            "rules": [.obj(["apiGroups": [""], "resources": ["pods", "namespaces"], "verbs": read]),
                      .obj(["apiGroups": ["apps"], "resources": ["deployments"], "verbs": read])],
        ]))
        let clusterBinding = KubeObject(.obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name: gatewayName, namespace: nil, labels: labels),
            "roleRef": .obj(["apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": .string(gatewayName)]),
            "subjects": [.obj(["kind": "ServiceAccount", "name": .string(gatewayName), "namespace": .string(ns)])],
        ]))
        let role = KubeObject(.obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name: gatewayName, namespace: ns, labels: labels),
            "rules": [.obj(["apiGroups": [""], "resources": ["configmaps"], "verbs": read]),
                      .obj(["apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create", "patch", "delete"]])],
        ]))
        let user = "system:serviceaccount:\(ns):\(gatewayName)", podName = "authentication.kubernetes.io/pod-name"
        let policy = KubeObject(.obj([
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": meta(name: gatewayReportsPolicy, namespace: nil, labels: labels),
            "spec": .obj([
                "failurePolicy": "Fail",
                "matchConstraints": .obj(["resourceRules": [.obj(["apiGroups": ["coordination.k8s.io"], "apiVersions": ["*"],
                                                                  "operations": ["CREATE", "UPDATE", "DELETE"], "resources": ["leases"]])]]),
                "matchConditions": [.obj(["name": "gateway-service-account", "expression": .string("request.userInfo.username == '\(user)'")])],
                "validations": [.obj([
                    "expression": .string("'\(podName)' in request.userInfo.extra && request.name == '\(KubernetesDrainBoard.reportPrefix)' + request.userInfo.extra['\(podName)'][0]"),
                    "message": .string("a gateway pod may write only its own session report Lease, \(KubernetesDrainBoard.reportPrefix)<its pod name>"),
                    "reason": "Forbidden",
                ])],
            ]),
        ]))
        let policyBinding = KubeObject(.obj([
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": meta(name: gatewayReportsPolicy, namespace: nil, labels: labels),
            "spec": .obj(["policyName": .string(gatewayReportsPolicy), "validationActions": ["Deny"],
                          "matchResources": .obj(["namespaceSelector": .obj(["matchLabels": .obj(["kubernetes.io/metadata.name": .string(ns)])])])]),
        ]))
        let roleBinding = KubeObject(.obj([
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name: gatewayName, namespace: ns, labels: labels),
            "roleRef": .obj(["apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": .string(gatewayName)]),
            "subjects": [.obj(["kind": "ServiceAccount", "name": .string(gatewayName), "namespace": .string(ns)])],
        ]))
        return [account, clusterRole, clusterBinding, role, roleBinding, policy, policyBinding, deployment, pdb, service]
    }
}
