/// A Tenant's `allowFrom` (docs/designs/0012-telling-people-what-happened.md, Kubernetes objects).
extension ManifestDecoder {
    enum NetworkKeys {
        static let peer = ["namespace", "namespaceLabels", "podLabels"]
    }

    static func tenantAllowFrom(_ node: Node, _ r: FieldReader) -> [NetworkPeer] {
        guard let items = node.sequence else {
            r.error("type-mismatch", "expected a list for `spec.allowFrom`, found \(node.kindDescription)", at: node.location,
                    hint: "allowFrom: [{namespace: clients}, {namespaceLabels: {team: research}}, {podLabels: {app: agent}}]")
            return []
        }
        var out: [NetworkPeer] = []
        for (i, item) in items.enumerated() {
            let path = FieldPath("spec.allowFrom", index: i)
            guard let f = r.mapping(item, path: path, allowed: NetworkKeys.peer) else { continue }
            var peer = NetworkPeer()
            if let n = f.value("namespace"), let text = r.string(n, path: f.child("namespace")) {
                peer.namespace = r.checkName(text, rule: .dnsLabel, path: f.child("namespace"), at: n.location)
            }
            func labels(_ key: String) -> [String: String]? {
                guard let entries = r.stringMap(f, key) else { return nil }
                var m: [String: String] = [:]
                for e in entries {
                    if !Syntax.isLabelKey(e.key) {
                        r.error("invalid-value", "`\(f.child(key))`: `\(FieldReader.printable(e.key))` is not \(Syntax.NameRule.labelKey.requirement)", at: e.keyLocation)
                    } else if !Syntax.isLabelValue(e.value) {
                        r.error("invalid-value", "`\(f.child(key)).\(e.key)`: `\(FieldReader.printable(e.value))` is not \(Syntax.NameRule.labelValue.requirement)", at: e.valueLocation)
                    } else {
                        m[e.key] = e.value
                    }
                }
                return m
            }
            peer.namespaceLabels = labels("namespaceLabels")
            peer.podLabels = labels("podLabels")
            if peer.namespace == nil && (peer.namespaceLabels?.isEmpty ?? true) && (peer.podLabels?.isEmpty ?? true) {
                // An empty selector would admit everyone: refused (unless an invalid value was already reported).
                if f.entries.isEmpty || (!f.has("namespace") && f.value("namespaceLabels")?.mapping?.isEmpty != false && f.value("podLabels")?.mapping?.isEmpty != false) {
                    r.error("missing-field", "`\(path)` needs at least one of `namespace`, `namespaceLabels`, `podLabels` (an empty entry would admit everyone)",
                            at: f.entries.first?.key.location ?? item.location)
                }
                continue
            }
            out.append(peer)
        }
        return out
    }
}
