public import FleetCore
import Foundation

/// Settings the rendering depends on besides the desired state.
public struct KubernetesRenderOptions: Sendable, Hashable {
    /// Where the mcpfleet controller runs: the only other namespace allowed into strict tenants.
    public var controllerNamespace: String
    /// Recorded on Deployments (`mcpfleet.io/manifest-commit`) so `observe` can say where a revision came from.
    public var manifestCommit: String?
    /// `spec.kubernetes.namespacePrefix`: prepended to a tenant's namespace unless it already starts with it.
    public var namespacePrefix: String?
    public var imagePullSecrets: [String]

    public init(controllerNamespace: String = "mcpfleet-system", manifestCommit: String? = nil, namespacePrefix: String? = nil, imagePullSecrets: [String] = []) {
        self.controllerNamespace = controllerNamespace
        self.manifestCommit = manifestCommit
        self.namespacePrefix = namespacePrefix
        self.imagePullSecrets = imagePullSecrets
    }

    public init(environment: Environment, controllerNamespace: String = "mcpfleet-system", manifestCommit: String? = nil) {
        self.init(controllerNamespace: controllerNamespace, manifestCommit: manifestCommit,
                  namespacePrefix: environment.kubernetes?.namespacePrefix, imagePullSecrets: environment.kubernetes?.imagePullSecrets ?? [])
    }
}

/// A server that cannot run on Kubernetes as written (no image, image not pinned, stdio transport...).
public struct KubernetesRenderError: Error, Sendable, CustomStringConvertible, Equatable {
    public var server: String
    public var message: String

    public var description: String { "server \(server): \(message)" }
    public var driverError: DriverError { DriverError("server \(server)", message, terminal: true) }
}

/// Pure rendering of desired state into Kubernetes objects (no I/O): per tenant a Namespace,
/// ResourceQuota, LimitRange and, for strict isolation, a NetworkPolicy; per server one Deployment per
/// revision (`<server>-<revision>`) and one Service selecting every revision, so a canary is simply the
/// new revision's Deployment running beside the old one behind the same Service.
public enum KubernetesRenderer {
    public static let managedBy = "mcpfleet"
    public static let labelName = "app.kubernetes.io/name"
    public static let labelInstance = "app.kubernetes.io/instance"
    public static let labelVersion = "app.kubernetes.io/version"
    public static let labelPartOf = "app.kubernetes.io/part-of"
    public static let labelManagedBy = "app.kubernetes.io/managed-by"
    public static let labelTenant = "mcpfleet.io/tenant"
    public static let labelRevision = "mcpfleet.io/revision"
    public static let annotationRevision = "mcpfleet.io/revision"
    public static let annotationCommit = "mcpfleet.io/manifest-commit"
    /// Tenants' spec fields on their Namespace (tenants have no revision records). Deployments carried
    /// their fields here too before the spec digest replaced it; `observe` still reads them from
    /// Deployments an older mcpfleet created.
    public static let annotationFields = "mcpfleet.io/fields"
    /// `sha256:<hex>` of what mcpfleet set in a Deployment's containers (`specDigest`): a Deployment
    /// whose containers no longer hash to it was edited outside mcpfleet.
    public static let annotationSpecDigest = "mcpfleet.io/spec-digest"
    public static let annotationVersion = "mcpfleet.io/version"
    public static let annotationPath = "mcpfleet.io/path"
    public static let annotationIsolation = "mcpfleet.io/isolation"
    public static let networkPolicyName = "mcpfleet-tenant-isolation"
    public static let quotaName = "mcpfleet-tenant-quota"
    public static let limitRangeName = "mcpfleet-defaults"
    /// Port used when a server gives none (Kubernetes pods have their own network namespace).
    public static let defaultPort = 8080
    public static var managedSelector: String { "\(labelManagedBy)=\(managedBy)" }

    // MARK: Whole state

    /// Every object of a desired state, each Deployment at its desired replica count; tenants first.
    public static func render(_ state: DesiredState, options: KubernetesRenderOptions = KubernetesRenderOptions()) throws(KubernetesRenderError) -> [KubeObject] {
        var out: [KubeObject] = []
        var namespaces: [String: String] = [:]
        for tenant in state.tenants {
            try checkNames(tenant, options: options)
            namespaces[tenant.name] = namespace(for: tenant, options: options)
            out += tenantObjects(tenant, options: options)
        }
        for server in state.servers {
            guard let ns = namespaces[server.tenant] else {
                throw KubernetesRenderError(server: server.name, message: "tenant \(server.tenant) is not part of the desired state")
            }
            out.append(try service(server, namespace: ns))
            if let secret = try envSecret(server, namespace: ns) { out.append(secret) }
            out.append(try deployment(server, namespace: ns, replicas: server.replicas, options: options))
            if let pdb = try podDisruptionBudget(server, namespace: ns) { out.append(pdb) }
        }
        return out
    }

    /// A YAML stream (`---`-separated, block style) that `kubectl apply -f` reads.
    public static func yamlStream(_ objects: [KubeObject]) -> String {
        objects.map { "---\n" + $0.json.yaml() }.joined()
    }

    /// The same objects as JSON documents (`render -o json`).
    public static func jsonStream(_ objects: [KubeObject]) -> String {
        objects.map { "---\n" + $0.json.prettyPrinted() }.joined()
    }

    // MARK: Tenants

    public static func namespace(for tenant: DesiredTenant, options: KubernetesRenderOptions) -> String {
        guard let prefix = options.namespacePrefix, !prefix.isEmpty, !tenant.namespace.hasPrefix(prefix) else { return tenant.namespace }
        return prefix + tenant.namespace
    }

    static func field(_ tenant: DesiredTenant, _ path: String) -> SpecField? { tenant.fields.first { $0.path == path } }

    /// A quantity as written when Kubernetes reads it the same way, else mcpfleet's canonical form.
    static func quantity(_ f: SpecField) -> String {
        isKubernetesQuantity(f.display) ? f.display : f.canonical
    }

    static func isKubernetesQuantity(_ s: String) -> Bool {
        let suffixes = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E", ""]
        for suffix in suffixes where s.hasSuffix(suffix) {
            let number = s.dropLast(suffix.count)
            let parts = number.split(separator: ".", omittingEmptySubsequences: false)
            if !number.isEmpty, parts.count <= 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }) { return true }
        }
        return false
    }

    static func baseLabels(tenant: String) -> [String: String] {
        [labelPartOf: "mcpfleet", labelManagedBy: managedBy, labelTenant: tenant]
    }

    static func meta(name: String, namespace: String?, labels: [String: String], annotations: [String: String] = [:]) -> JSONValue {
        .obj(["name": .string(name), "namespace": namespace.map(JSONValue.string), "labels": .strings(labels),
              "annotations": annotations.isEmpty ? nil : .strings(annotations)])
    }

    static func fieldsJSON(_ fields: [SpecField]) -> String {
        JSONValue.array(fields.map { .obj(["path": .string($0.path), "display": .string($0.display), "canonical": .string($0.canonical)]) }).jsonText
    }

    /// Reads the `mcpfleet.io/fields` annotation back.
    public static func decodeFields(_ text: String?) -> [SpecField]? {
        guard let text, let items = (try? JSONValue.parse(text))?.array else { return nil }
        return items.compactMap { item in
            guard let path = item["path"]?.string, let display = item["display"]?.string else { return nil }
            return SpecField(path: path, display: display, canonical: item["canonical"]?.string)
        }
    }

    /// Namespace, ResourceQuota (when the tenant has a quota), LimitRange and, for strict isolation, a NetworkPolicy.
    public static func tenantObjects(_ tenant: DesiredTenant, options: KubernetesRenderOptions) -> [KubeObject] {
        let ns = namespace(for: tenant, options: options)
        let labels = baseLabels(tenant: tenant.name)
        var out: [KubeObject] = []
        var nsLabels = labels
        // Every pod mcpfleet renders satisfies the "restricted" Pod Security Standard; enforce it.
        nsLabels["pod-security.kubernetes.io/enforce"] = "restricted"
        nsLabels["pod-security.kubernetes.io/enforce-version"] = "latest"
        out.append(KubeObject(.obj([
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": meta(name: ns, namespace: nil, labels: nsLabels,
                             annotations: [annotationFields: fieldsJSON(tenant.fields), annotationIsolation: tenant.isolation.rawValue]),
        ])))

        let cpu = field(tenant, "quota.cpu")
        let memory = field(tenant, "quota.memory")
        let replicas = field(tenant, "quota.maxReplicas")
        var hard: [JSONMember] = []
        if let cpu { hard += [JSONMember("requests.cpu", .string(quantity(cpu))), JSONMember("limits.cpu", .string(quantity(cpu)))] }
        if let memory { hard += [JSONMember("requests.memory", .string(quantity(memory))), JSONMember("limits.memory", .string(quantity(memory)))] }
        if let replicas { hard.append(JSONMember("pods", .string(replicas.display))) }
        if !hard.isEmpty {
            out.append(KubeObject(.obj([
                "apiVersion": "v1", "kind": "ResourceQuota",
                "metadata": meta(name: quotaName, namespace: ns, labels: labels),
                "spec": .obj(["hard": .object(hard)]),
            ])))
        }

        // Defaults for containers that declare no resources (a quota on cpu/memory rejects those
        // otherwise), clamped so one default container always fits the quota.
        let cpuQuota = cpu.flatMap { Int($0.canonical.dropLast()) }  // canonical "2000m"
        let memQuota = memory.flatMap { Int64($0.canonical) }
        func cpuValue(_ millis: Int) -> JSONValue { .string("\(min(millis, cpuQuota ?? millis))m") }
        func memValue(_ bytes: Int64) -> JSONValue {
            let v = min(bytes, memQuota ?? bytes)
            return .string(v % (1 << 20) == 0 ? "\(v >> 20)Mi" : String(v))
        }
        out.append(KubeObject(.obj([
            "apiVersion": "v1", "kind": "LimitRange",
            "metadata": meta(name: limitRangeName, namespace: ns, labels: labels),
            "spec": .obj(["limits": [.obj([
                "type": "Container",
                "defaultRequest": .obj(["cpu": cpuValue(100), "memory": memValue(64 << 20)]),
                "default": .obj(["cpu": cpuValue(500), "memory": memValue(256 << 20)]),
            ])]]),
        ])))

        if tenant.isolation == .strict {
            out.append(networkPolicy(namespace: ns, labels: labels, controllerNamespace: options.controllerNamespace, allowFrom: tenant.allowFrom ?? []))
        }
        return out
    }

    /// Strict isolation: pods accept traffic only from their own namespace, from the controller's (its
    /// probes and the gateway run there; always allowed) and from the tenant's `allowFrom` peers; they
    /// may reach their own namespace, DNS anywhere, and addresses outside the private ranges (external
    /// APIs), but not other tenants' pods or the link-local metadata service.
    static func networkPolicy(namespace ns: String, labels: [String: String], controllerNamespace: String, allowFrom: [NetworkPeer] = []) -> KubeObject {
        let privateV4 = ["10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"]
        var from: [JSONValue] = [
            .obj(["podSelector": .object([])]),
            .obj(["namespaceSelector": .obj(["matchLabels": .strings(["kubernetes.io/metadata.name": controllerNamespace])])]),
        ]
        for peer in allowFrom {
            var nsLabels = peer.namespaceLabels ?? [:]
            if let n = peer.namespace { nsLabels["kubernetes.io/metadata.name"] = n }
            // Both selectors in one peer: pods matching podLabels in the matching namespaces; podLabels
            // alone: in any namespace (an empty namespaceSelector), not only the tenant's own.
            var p: [JSONMember] = [JSONMember("namespaceSelector", nsLabels.isEmpty ? .object([]) : .obj(["matchLabels": .strings(nsLabels)]))]
            if let pods = peer.podLabels, !pods.isEmpty { p.append(JSONMember("podSelector", .obj(["matchLabels": .strings(pods)]))) }
            from.append(.object(p))
        }
        return KubeObject(.obj([
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(name: networkPolicyName, namespace: ns, labels: labels),
            "spec": .obj([
                "podSelector": .object([]),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [.obj(["from": .array(from)])],
                "egress": [
                    .obj(["to": [.obj(["podSelector": .object([])])]]),
                    .obj(["ports": [.obj(["protocol": "UDP", "port": 53]), .obj(["protocol": "TCP", "port": 53])]]),
                    .obj(["to": [
                        .obj(["ipBlock": .obj(["cidr": "0.0.0.0/0", "except": .array(privateV4.map(JSONValue.string))])]),
                        .obj(["ipBlock": .obj(["cidr": "::/0", "except": ["fc00::/7", "fe80::/10"]])]),
                    ]]),
                ],
            ]),
        ]))
    }

    // MARK: Servers

    public static func deploymentName(server: String, revision: String) -> String { "\(server)-\(revision)" }

    /// A label value Kubernetes accepts: invalid characters become `_`, at most 63, alphanumeric ends.
    static func labelValue(_ s: String) -> String {
        var chars = s.map { c -> Character in c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".") ? c : "_" }
        if chars.count > 63 { chars = Array(chars.prefix(63)) }
        while let f = chars.first, !(f.isLetter || f.isNumber) { chars.removeFirst() }
        while let l = chars.last, !(l.isLetter || l.isNumber) { chars.removeLast() }
        return String(chars)
    }

    public static func serverLabels(_ server: DesiredServer) -> [String: String] {
        var labels = baseLabels(tenant: server.tenant)
        labels[labelName] = server.name
        labels[labelInstance] = server.name
        labels[labelVersion] = labelValue(server.version)
        labels[labelRevision] = server.revision
        return labels
    }

    /// The image reference the pods run: pinned by digest. An image with `@sha256:` is used as is; an
    /// image with only a tag gets `spec.artifact.digest` appended; otherwise rendering fails, because a
    /// tag can move under a running revision and a revision must mean one exact artifact.
    public static func pinnedImage(_ server: DesiredServer) throws(KubernetesRenderError) -> String {
        guard let image = server.image, !image.isEmpty else {
            throw KubernetesRenderError(server: server.name, message: "has no artifact.image; a Kubernetes environment runs images only")
        }
        if image.contains("@sha256:") { return image }
        if let digest = server.digest, digest.hasPrefix("sha256:") { return "\(image)@\(digest)" }
        throw KubernetesRenderError(server: server.name, message: "image \(image) is not pinned by digest; write it as image@sha256:... or set artifact.digest")
    }

    /// The environment of the container: the manifest's variables (secrets by reference), plus `PORT`
    /// (the container port) unless the manifest sets it. `command` is not used: it says how to run
    /// the artifact on a host (`python3 ${MANIFEST_DIR}/server.py --port ${PORT}`), while in an image
    /// the image's own ENTRYPOINT and CMD run, and `PORT` tells it where to listen.
    public static func containerEnv(_ server: DesiredServer, port: Int) -> [JSONValue] {
        var env: [JSONValue] = server.env.map { e in
            if let ref = e.secretRef {
                return .obj(["name": .string(e.name), "valueFrom": .obj(["secretKeyRef": .obj(["name": .string(ref.name), "key": .string(ref.key)])])])
            }
            // A sensitive plain value (a token written inline) never sits in the pod spec, where anyone
            // who may read Deployments sees it: it goes into the revision's Secret (`envSecret`).
            if e.isSensitive || e.sealed != nil {
                return .obj(["name": .string(e.name), "valueFrom": .obj(["secretKeyRef": .obj([
                    "name": .string(envSecretName(server: server.name, revision: server.revision)), "key": .string(e.name)])])])
            }
            return .obj(["name": .string(e.name), "value": .string(e.value ?? "")])
        }
        if !server.env.contains(where: { $0.name == "PORT" }) { env.append(.obj(["name": "PORT", "value": .string(String(port))])) }
        return env
    }

    static func port(_ server: DesiredServer) throws(KubernetesRenderError) -> Int {
        guard server.transport != .stdio else {
            throw KubernetesRenderError(server: server.name, message: "uses the stdio transport; on Kubernetes a server must listen on a port (streamable-http or sse), e.g. behind mcp-proxy")
        }
        return server.port ?? defaultPort
    }

    static func seconds(_ ms: Int64) -> Int { max(1, Int((ms + 999) / 1000)) }

    /// The Deployment of one revision at `replicas`. Its pod template depends only on the revision's
    /// content, so scaling never restarts pods and a new revision never mutates an old Deployment.
    public static func deployment(_ server: DesiredServer, namespace: String, replicas: Int, options: KubernetesRenderOptions = KubernetesRenderOptions()) throws(KubernetesRenderError) -> KubeObject {
        try checkNames(server, namespace: namespace, options: options)
        guard server.name.first?.isLetter == true else {
            throw KubernetesRenderError(server: server.name, message: "name must start with a letter to name a Kubernetes Service")
        }
        let image = try pinnedImage(server)
        let port = try port(server)
        let labels = serverLabels(server)
        var metaLabels = labels
        for (k, v) in server.labels where metaLabels[k] == nil && Syntax.isLabelKey(k) && Syntax.isLabelValue(v) { metaLabels[k] = v }
        // The revision's fields stay in the rollout store's revision records (`plan` reads them there);
        // the object carries only a digest of its containers, to tell a hand edit (`specDigest`).
        var annotations = [annotationRevision: server.revision, annotationVersion: server.version]
        if let commit = options.manifestCommit { annotations[annotationCommit] = commit }
        let selector: [String: String] = [labelInstance: server.name, labelRevision: server.revision]

        let env = containerEnv(server, port: port)
        // Requests equal limits: a server gets what it asked for and no more (Guaranteed QoS when both are set).
        var resources: [JSONMember] = []
        var amounts: [JSONMember] = []
        if let cpu = server.cpu { amounts.append(JSONMember("cpu", .string(isKubernetesQuantity(cpu) ? cpu : "\(server.cpuMillis ?? 0)m"))) }
        if let memory = server.memory { amounts.append(JSONMember("memory", .string(isKubernetesQuantity(memory) ? memory : String(server.memoryBytes ?? 0)))) }
        if !amounts.isEmpty { resources = [JSONMember("requests", .object(amounts)), JSONMember("limits", .object(amounts))] }

        let probes = self.probes(server)

        let container = JSONValue.obj([
            "name": "mcp",
            "image": .string(image),
            "imagePullPolicy": "IfNotPresent",
            "ports": [.obj(["name": "mcp", "containerPort": .int(Int64(port)), "protocol": "TCP"])],
            "env": .array(env),
            "resources": resources.isEmpty ? nil : .object(resources),
            "startupProbe": probes.startup,
            "livenessProbe": probes.liveness,
            "readinessProbe": probes.readiness,
            "securityContext": .obj([
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": .obj(["drop": ["ALL"]]),
                "seccompProfile": .obj(["type": "RuntimeDefault"]),
            ]),
            "volumeMounts": [.obj(["name": "tmp", "mountPath": "/tmp"])],
        ])
        let podSpec = JSONValue.obj([
            // MCP servers do not talk to the API server; no token in their pods.
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": .obj(["runAsNonRoot": true, "seccompProfile": .obj(["type": "RuntimeDefault"])]),
            "imagePullSecrets": options.imagePullSecrets.isEmpty ? nil : .array(options.imagePullSecrets.map { .obj(["name": .string($0)]) }),
            "containers": [container],
            "volumes": [.obj(["name": "tmp", "emptyDir": .obj(["sizeLimit": "64Mi"])])],
            // Replicas prefer different nodes and zones; soft, so a small cluster still schedules them.
            "affinity": .obj(["podAntiAffinity": .obj(["preferredDuringSchedulingIgnoredDuringExecution": [.obj([
                "weight": 100,
                "podAffinityTerm": .obj(["topologyKey": "kubernetes.io/hostname", "labelSelector": .obj(["matchLabels": .strings([labelInstance: server.name])])]),
            ])]])]),
            "topologySpreadConstraints": [
                .obj(["maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": .obj(["matchLabels": .strings(selector)])]),
                .obj(["maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                      "labelSelector": .obj(["matchLabels": .strings(selector)])]),
            ],
        ])
        annotations[annotationSpecDigest] = specDigest(containers: [container])
        return KubeObject(.obj([
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": meta(name: deploymentName(server: server.name, revision: server.revision), namespace: namespace, labels: metaLabels, annotations: annotations),
            "spec": .obj([
                "replicas": .int(Int64(max(0, replicas))),
                "revisionHistoryLimit": 1,
                "progressDeadlineSeconds": .int(Int64(seconds(server.rollout.progressDeadlineMs))),
                "selector": .obj(["matchLabels": .strings(selector)]),
                "template": .obj([
                    "metadata": .obj(["labels": .strings(labels), "annotations": .strings([annotationPath: server.path, annotationRevision: server.revision])]),
                    "spec": podSpec,
                ]),
            ]),
        ]))
    }

    /// The digest of what a hand edit of a Deployment usually changes and the API server never rewrites:
    /// each container's name, image, command, args, env and container ports, keys sorted. Resources and
    /// probes are left out: the API server normalizes quantities and fills in probe defaults, so a
    /// digest over them would call every Deployment on a real cluster edited.
    public static func specDigest(containers: [JSONValue]) -> String {
        // Keys sorted, and what the API server leaves out when it serializes (empty strings and lists,
        // `omitempty`) left out here too.
        func normalized(_ v: JSONValue?) -> JSONValue? {
            switch v {
            case .object(let members)?:
                return .object(members.sorted { $0.key < $1.key }.compactMap { m in normalized(m.value).map { JSONMember(m.key, $0) } })
            case .array(let items)?: return items.isEmpty ? nil : .array(items.compactMap(normalized))
            case .string("")?, .null?, nil: return nil
            default: return v
            }
        }
        let projection = JSONValue.array(containers.map { c in
            .obj(["name": c["name"], "image": c["image"], "command": normalized(c["command"]), "args": normalized(c["args"]),
                  "env": normalized(c["env"]),
                  "ports": c["ports"]?.array.map { .array($0.map { $0["containerPort"] ?? .null }) }])
        })
        return PlanSafety.digest(projection.jsonText)
    }

    /// The spec digest of a live Deployment's containers (nil without a pod template).
    public static func specDigest(ofDeployment json: JSONValue) -> String? {
        json[["spec", "template", "spec", "containers"]]?.array.map { specDigest(containers: $0) }
    }

    /// Startup, liveness and readiness probes from `health`. An MCP endpoint answers plain GETs with
    /// 4xx and the kubelet cannot POST, so `probe: mcp` checks the socket here while the controller runs
    /// the real MCP `initialize` (and `requireTools`) probe against each pod; `probe: http` uses the
    /// health path. The startup probe gives a revision until its progress deadline to come up (liveness
    /// starts after it, so a slow start is not killed); liveness restarts a pod that stops answering
    /// for twice the readiness threshold; readiness takes it out of the Service at once.
    static func probes(_ server: DesiredServer) -> (startup: JSONValue, liveness: JSONValue, readiness: JSONValue) {
        let h = server.health
        let handler: JSONMember
        switch h.probe {
        case .http: handler = JSONMember("httpGet", .obj(["path": .string(h.path ?? "/healthz"), "port": "mcp"]))
        case .mcp, .tcp: handler = JSONMember("tcpSocket", .obj(["port": "mcp"]))
        }
        let period = seconds(h.intervalMs)
        let timeout = seconds(h.timeoutMs)
        let threshold = max(1, h.failureThreshold)
        func probe(period: Int, failures: Int) -> JSONValue {
            .object([handler, JSONMember("periodSeconds", .int(Int64(period))), JSONMember("timeoutSeconds", .int(Int64(timeout))),
                     JSONMember("failureThreshold", .int(Int64(failures)))])
        }
        let startupPeriod = min(period, 5)
        let startupFailures = max(1, (seconds(server.rollout.progressDeadlineMs) + startupPeriod - 1) / startupPeriod)
        return (probe(period: startupPeriod, failures: startupFailures), probe(period: period, failures: threshold * 2), probe(period: period, failures: threshold))
    }

    public static func envSecretName(server: String, revision: String) -> String { "\(server)-\(revision)-env" }

    /// The revision's sensitive plain env values (tokens written inline) as an immutable Secret the pod
    /// reads them from, so they are not in the Deployment. Nil when the server has none. Throws when a
    /// value is sealed (a spec read back from a saved plan or live state, without its value).
    public static func envSecret(_ server: DesiredServer, namespace: String) throws(KubernetesRenderError) -> KubeObject? {
        let sensitive = server.env.filter { $0.secretRef == nil && ($0.isSensitive || $0.sealed != nil) }
        guard !sensitive.isEmpty else { return nil }
        var data: [JSONMember] = []
        for e in sensitive {
            guard let value = e.value else {
                throw KubernetesRenderError(server: server.name, message: "the value of sensitive variable \(e.name) is not available here (sealed); render from the catalog")
            }
            data.append(JSONMember(e.name, .string(Data(value.utf8).base64EncodedString())))
        }
        var labels = serverLabels(server)
        labels[labelVersion] = nil
        return KubeObject(.obj([
            "apiVersion": "v1", "kind": "Secret",
            "metadata": meta(name: envSecretName(server: server.name, revision: server.revision), namespace: namespace, labels: labels,
                             annotations: [annotationRevision: server.revision]),
            "type": "Opaque",
            "immutable": true,
            "data": .object(data),
        ]))
    }

    public static func podDisruptionBudgetName(server: String) -> String { server }

    /// A server with more than one replica keeps all but one up through voluntary disruptions (node
    /// drains, cluster upgrades); every revision's pods count, so a canary is covered too.
    public static func podDisruptionBudget(_ server: DesiredServer, namespace: String) throws(KubernetesRenderError) -> KubeObject? {
        guard server.replicas > 1 else { return nil }
        var labels = baseLabels(tenant: server.tenant)
        labels[labelName] = server.name
        labels[labelInstance] = server.name
        return KubeObject(.obj([
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(name: podDisruptionBudgetName(server: server.name), namespace: namespace, labels: labels),
            "spec": .obj([
                "maxUnavailable": 1,
                "selector": .obj(["matchLabels": .strings([labelInstance: server.name, labelManagedBy: managedBy])]),
            ]),
        ]))
    }

    // MARK: Names

    /// Refuses any name Kubernetes would not take, by the rules `mcpfleet validate` applies
    /// (`Syntax.NameRule`): a saved plan or a hand-made desired state gets no further than a catalog.
    public static func checkNames(_ server: DesiredServer, namespace: String, options: KubernetesRenderOptions) throws(KubernetesRenderError) {
        func need(_ ok: Bool, _ what: @autoclosure () -> String, _ rule: Syntax.NameRule) throws(KubernetesRenderError) {
            if !ok { throw KubernetesRenderError(server: server.name, message: "\(what()) is not \(rule.requirement)") }
        }
        try need(Syntax.isDNSLabel(server.name), "name `\(Syntax.printable(server.name))`", .dnsLabel)
        try need(Syntax.isDNSLabel(server.tenant), "tenant `\(Syntax.printable(server.tenant))`", .dnsLabel)
        try need(Syntax.isDNSLabel(namespace), "namespace `\(Syntax.printable(namespace))`", .dnsLabel)
        for e in server.env {
            try need(Syntax.isEnvName(e.name), "environment variable `\(Syntax.printable(e.name))`", .envName)
            if let ref = e.secretRef { try need(Syntax.isDNSLabel(ref.name), "secret name `\(Syntax.printable(ref.name))`", .dnsLabel) }
        }
        for (k, v) in server.labels {
            try need(Syntax.isLabelKey(k), "label key `\(Syntax.printable(k))`", .labelKey)
            try need(Syntax.isLabelValue(v), "label value of `\(Syntax.printable(k))`", .labelValue)
        }
        for s in options.imagePullSecrets { try need(Syntax.isDNSLabel(s), "image pull secret `\(Syntax.printable(s))`", .dnsLabel) }
    }

    public static func checkNames(_ tenant: DesiredTenant, options: KubernetesRenderOptions) throws(KubernetesRenderError) {
        func need(_ ok: Bool, _ what: @autoclosure () -> String, _ rule: Syntax.NameRule) throws(KubernetesRenderError) {
            if !ok { throw KubernetesRenderError(server: "tenant/\(tenant.name)", message: "\(what()) is not \(rule.requirement)") }
        }
        try need(Syntax.isDNSLabel(tenant.name), "tenant name `\(Syntax.printable(tenant.name))`", .dnsLabel)
        if let p = options.namespacePrefix, !p.isEmpty { try need(Syntax.isNamespacePrefix(p), "namespace prefix `\(Syntax.printable(p))`", .namespacePrefix) }
        let ns = namespace(for: tenant, options: options)
        try need(Syntax.isDNSLabel(ns), "namespace `\(Syntax.printable(ns))`", .dnsLabel)
    }

    /// One Service per server selecting every revision's pods, so traffic follows replica counts.
    public static func service(_ server: DesiredServer, namespace: String) throws(KubernetesRenderError) -> KubeObject {
        let port = try port(server)
        var labels = baseLabels(tenant: server.tenant)
        labels[labelName] = server.name
        labels[labelInstance] = server.name
        return KubeObject(.obj([
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(name: server.name, namespace: namespace, labels: labels, annotations: [annotationPath: server.path]),
            "spec": .obj([
                "type": "ClusterIP",
                "selector": .strings([labelInstance: server.name, labelManagedBy: managedBy]),
                "ports": [.obj(["name": "mcp", "port": .int(Int64(port)), "targetPort": "mcp", "protocol": "TCP"])],
            ]),
        ]))
    }
}
