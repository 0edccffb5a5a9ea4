/// One entry of a tenant's `allowFrom`: who may connect to its servers on Kubernetes besides the
/// tenant's own namespace and mcpfleet's (controller probes, the gateway). The given selectors all
/// apply: `{namespace: a, podLabels: {app: agent}}` admits pods labelled `app=agent` in namespace `a`;
/// `podLabels` alone admits such pods in any namespace.
public struct NetworkPeer: Codable, Hashable, Sendable, CustomStringConvertible {
    public var namespace: String?
    public var namespaceLabels: [String: String]?
    public var podLabels: [String: String]?

    public init(namespace: String? = nil, namespaceLabels: [String: String]? = nil, podLabels: [String: String]? = nil) {
        self.namespace = namespace
        self.namespaceLabels = namespaceLabels
        self.podLabels = podLabels
    }

    /// A stable one-line form for plans (`namespace=a,pods{app=agent}`).
    public var description: String {
        var parts: [String] = []
        if let namespace { parts.append("namespace=\(namespace)") }
        func labels(_ m: [String: String]) -> String { m.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") }
        if let n = namespaceLabels { parts.append("namespaces{\(labels(n))}") }
        if let p = podLabels { parts.append("pods{\(labels(p))}") }
        return parts.joined(separator: ",")
    }
}
