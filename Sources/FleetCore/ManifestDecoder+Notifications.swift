/// The `notifications` list of an Environment (docs/designs/0012-telling-people-what-happened.md).
extension ManifestDecoder {
    enum NotificationKeys {
        static let target = ["name", "type", "url", "urlSecretRef", "signingKey", "token", "repository", "apiURL", "events", "servers"]
        static let targetRequired = ["name", "type"]
    }

    static func environmentNotifications(_ node: Node, _ r: FieldReader) -> [NotificationTarget] {
        guard let items = node.sequence else {
            r.error("type-mismatch", "expected a list for `spec.notifications`, found \(node.kindDescription)", at: node.location,
                    hint: "notifications: [{name: ops, type: webhook, url: https://…, signingKey: {name: SECRET, key: KEY}}]")
            return []
        }
        var out: [NotificationTarget] = []
        var seen: Set<String> = []
        for (i, item) in items.enumerated() {
            let path = FieldPath("spec.notifications", index: i)
            guard let f = r.mapping(item, path: path, allowed: NotificationKeys.target, required: NotificationKeys.targetRequired),
                  let name = r.name(f, "name") else { continue }
            if !seen.insert(name).inserted, let n = f.value("name") {
                r.error("duplicate-name", "notification `\(name)` is defined twice in `spec.notifications`", at: n.location)
            }
            guard let kind = r.enumValue(f, "type", NotificationTarget.Kind.self) else { continue }
            var t = NotificationTarget(name: name, kind: kind)
            if let n = f.value("url"), let url = r.string(n, path: f.child("url")) {
                t.url = checkURL(url, path: f.child("url"), at: n.location, r)
            }
            t.urlSecretRef = f.value("urlSecretRef").flatMap { secretReference($0, path: path.appending("urlSecretRef"), r) }
            t.signingKey = f.value("signingKey").flatMap { secretReference($0, path: path.appending("signingKey"), r) }
            t.token = f.value("token").flatMap { secretReference($0, path: path.appending("token"), r) }
            if let n = f.value("apiURL"), let url = r.string(n, path: f.child("apiURL")) {
                t.apiURL = checkURL(url, path: f.child("apiURL"), at: n.location, r)
            }
            if let n = f.value("repository"), let repo = r.string(n, path: f.child("repository")) {
                let parts = repo.split(separator: "/", omittingEmptySubsequences: false)
                if parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) } }) {
                    t.repository = repo
                } else {
                    r.error("invalid-value", "`\(f.child("repository"))` must be `OWNER/NAME`, found `\(FieldReader.printable(repo))`", at: n.location)
                }
            }
            if let items = r.list(f, "events") {
                var kinds: Set<RolloutEventKind> = []
                for (j, n) in items.enumerated() {
                    guard let text = r.string(n, path: "\(f.child("events"))[\(j)]") else { continue }
                    if let k = RolloutEventKind(rawValue: text) { kinds.insert(k) } else {
                        r.error("invalid-value", "unknown event `\(FieldReader.printable(text))` in `\(f.child("events"))`", at: n.location,
                                hint: "expected one of: \(RolloutEventKind.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                }
                t.events = kinds
            }
            if let names = r.nameList(f, "servers") { t.servers = Set(names) }
            // What each type needs to be sent at all, said here rather than at the first event.
            let at = f.entries.first?.key.location ?? item.location
            switch kind {
            case .webhook, .slack:
                if f.has("url") == f.has("urlSecretRef") {
                    r.error("missing-field", "`\(path)` (\(kind.rawValue)) needs exactly one of `url` and `urlSecretRef`", at: at,
                            hint: kind == .slack ? "a Slack webhook URL is a credential: `urlSecretRef: {name: slack, key: url}`" : nil)
                }
                if kind == .slack, let n = f.value("url") {
                    r.error("secret-in-manifest", "`\(f.child("url"))`: a Slack incoming-webhook URL carries its token; reference it with `urlSecretRef`", at: n.location)
                }
            case .github:
                if t.repository == nil { r.error("missing-field", "missing required field `\(f.child("repository"))` (github)", at: at) }
                if t.token == nil { r.error("missing-field", "missing required field `\(f.child("token"))` (github)", at: at) }
            }
            out.append(t)
        }
        return out
    }

    /// An http(s) URL without user info (credentials go in `urlSecretRef`).
    static func checkURL(_ text: String, path: String, at location: SourceLocation, _ r: FieldReader) -> String? {
        let lower = text.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://"), !text.contains(where: { $0 == " " || $0.isNewline }) else {
            r.error("invalid-value", "`\(path)` must be an http:// or https:// URL, found `\(FieldReader.printable(text))`", at: location)
            return nil
        }
        let authority = text.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false).dropFirst(2).first ?? ""
        if authority.contains("@") || text.contains("?") {
            r.error("secret-in-manifest", "`\(path)` carries credentials or a query string; put the URL in a secret and reference it with `urlSecretRef`", at: location)
            return nil
        }
        return text
    }
}
