/// A resource type the driver uses, addressed without discovery (as client-go's typed clients are):
/// the set is fixed and every type is served by every supported Kubernetes release.
public struct ResourceType: Sendable, Hashable, CustomStringConvertible {
    public var group: String
    public var version: String
    public var kind: String
    public var plural: String
    public var namespaced: Bool

    public init(group: String, version: String, kind: String, plural: String, namespaced: Bool) {
        self.group = group
        self.version = version
        self.kind = kind
        self.plural = plural
        self.namespaced = namespaced
    }

    public var apiVersion: String { group.isEmpty ? version : "\(group)/\(version)" }
    public var description: String { kind }

    /// `/api/v1[/namespaces/NS]/PLURAL[/NAME]` or `/apis/GROUP/VERSION/...`.
    public func path(namespace: String?, name: String? = nil) -> String {
        var p = group.isEmpty ? "/api/\(version)" : "/apis/\(group)/\(version)"
        if namespaced, let namespace { p += "/namespaces/\(KubeClient.escapePath(namespace))" }
        p += "/\(plural)"
        if let name { p += "/\(KubeClient.escapePath(name))" }
        return p
    }

    public static let namespace = ResourceType(group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false)
    public static let resourceQuota = ResourceType(group: "", version: "v1", kind: "ResourceQuota", plural: "resourcequotas", namespaced: true)
    public static let limitRange = ResourceType(group: "", version: "v1", kind: "LimitRange", plural: "limitranges", namespaced: true)
    public static let service = ResourceType(group: "", version: "v1", kind: "Service", plural: "services", namespaced: true)
    public static let configMap = ResourceType(group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: true)
    public static let pod = ResourceType(group: "", version: "v1", kind: "Pod", plural: "pods", namespaced: true)
    public static let deployment = ResourceType(group: "apps", version: "v1", kind: "Deployment", plural: "deployments", namespaced: true)
    public static let networkPolicy = ResourceType(group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies", namespaced: true)
    public static let lease = ResourceType(group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", namespaced: true)
    public static let secret = ResourceType(group: "", version: "v1", kind: "Secret", plural: "secrets", namespaced: true)
    public static let podDisruptionBudget = ResourceType(group: "policy", version: "v1", kind: "PodDisruptionBudget", plural: "poddisruptionbudgets", namespaced: true)

    public static let known: [ResourceType] = [.namespace, .resourceQuota, .limitRange, .service, .configMap, .pod, .deployment, .networkPolicy, .lease, .secret, .podDisruptionBudget]

    /// The type of an object by its `apiVersion` and `kind`.
    public static func of(apiVersion: String, kind: String) -> ResourceType? {
        known.first { $0.apiVersion == apiVersion && $0.kind == kind }
    }
}

/// A Kubernetes object as an ordered JSON value, with accessors for the fields everything needs.
public struct KubeObject: Sendable, Hashable, CustomStringConvertible {
    public var json: JSONValue

    public init(_ json: JSONValue) { self.json = json }

    public var apiVersion: String { json["apiVersion"]?.string ?? "" }
    public var kind: String { json["kind"]?.string ?? "" }
    public var name: String { json[["metadata", "name"]]?.string ?? "" }
    public var namespace: String? { json[["metadata", "namespace"]]?.string }
    public var resourceVersion: String? { json[["metadata", "resourceVersion"]]?.string }
    public var generation: Int? { json[["metadata", "generation"]]?.int }
    public var labels: [String: String] { json[["metadata", "labels"]]?.stringMap ?? [:] }
    public var annotations: [String: String] { json[["metadata", "annotations"]]?.stringMap ?? [:] }
    public var type: ResourceType? { ResourceType.of(apiVersion: apiVersion, kind: kind) }

    public var reference: ObjectReference { ObjectReference(kind: kind, namespace: namespace, name: name) }
    public var description: String { reference.description }
}

/// `Kind namespace/name`, the way errors name an object.
public struct ObjectReference: Sendable, Hashable, CustomStringConvertible {
    public var kind: String
    public var namespace: String?
    public var name: String?

    public init(kind: String, namespace: String? = nil, name: String? = nil) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
    }

    public var description: String {
        switch (namespace, name) {
        case (let ns?, let n?): return "\(kind) \(ns)/\(n)"
        case (nil, let n?): return "\(kind) \(n)"
        case (let ns?, nil): return "\(kind) in namespace \(ns)"
        case (nil, nil): return kind
        }
    }
}
