/// One manifest file's parsed documents, as handed over by the YAML loader.
public struct ManifestFileInput: Sendable {
    public var file: String
    public var relativePath: String
    public var documents: [SourceDocument]

    public init(file: String, relativePath: String, documents: [SourceDocument]) {
        self.file = file
        self.relativePath = relativePath
        self.documents = documents
    }
}

/// Turns positioned YAML documents into the typed `Catalog`, collecting every problem.
public enum ManifestDecoder {
    /// Known and required keys per mapping, built once (an array literal in a call is built on every call).
    enum Keys {
        static let document = ["apiVersion", "kind", "metadata", "spec"]
        static let documentRequired = ["apiVersion", "kind", "metadata"]
        static let metadata = ["name", "labels", "annotations"]
        static let metadataRequired = ["name"]
        static let server = ["description", "version", "tenant", "artifact", "transport", "env", "replicas", "resources", "health", "rollout", "slo", "supplyChain", "environments", "gateway", "contract", "tools"]
        static let serverRequired = ["version", "tenant", "artifact", "transport"]
        static let artifact = ["image", "command", "workingDirectory", "digest"]
        static let transport = ["type", "port", "path"]
        static let transportRequired = ["type"]
        static let env = ["name", "value", "secretRef", "isSecret", "description"]
        static let envRequired = ["name"]
        static let secretRef = ["name", "key"]
        static let secretRefRequired = ["name", "key"]
        static let resources = ["cpu", "memory"]
        static let health = ["probe", "path", "interval", "timeout", "failureThreshold", "requireTools"]
        static let rollout = ["strategy", "maxSurge", "maxUnavailable", "steps", "autoRollback", "progressDeadline", "drainTimeout"]
        static let canaryStep = ["weight", "replicas", "pause", "analysis"]
        static let supplyChain = ["artifact", "signature", "sbom", "scan", "provenance"]
        static let policy = ["mode", "environments", "requireSignature", "trustedKeys", "requireSBOM", "maxSeverity", "requireScan", "requireProvenance", "requireDigest", "allowedRegistries", "allowedCommands", "contracts"]
        static let trustedKey = ["name", "publicKey", "file"]
        static let trustedKeyRequired = ["name"]
        static let slo = ["successRate", "latencyP95", "analysis"]
        static let analysis = ["provider", "interval", "count", "failureLimit", "prometheus", "minimumCalls", "compareWithStable", "stableTolerance"]
        static let prometheus = ["address", "successRateQuery", "latencyP95Query"]
        static let prometheusRequired = ["address"]
        static let tenant = ["displayName", "isolation", "namespace", "quota", "gateway", "allowFrom"]
        static let quota = ["cpu", "memory", "maxServers", "maxReplicas", "tasks"]
        static let environment = ["driver", "description", "portRange", "stateDir", "secretsDir", "serverSelector", "local", "systemd", "kubernetes", "gateway", "notifications"]
        static let environmentRequired = ["driver"]
        static let local = ["logDir", "maxLogBytes", "restartBackoff"]
        static let systemd = ["unitDir", "unitPrefix", "relax"]
        static let kubernetes = ["context", "kubeconfig", "inCluster", "namespacePrefix", "fieldManager", "imagePullSecrets"]
    }
    public static func decode(_ files: [ManifestFileInput]) -> (catalog: Catalog, diagnostics: Diagnostics) {
        // Documents decode independently: runs of files are decoded on every core and the partial
        // catalogs and diagnostics merged in file order (what a sequential loop gives, then sorted).
        let parts = files.withUnsafeBufferPointer { all in
            Parallel.chunks(all.count, minimumChunk: 2) { range -> (Catalog, Diagnostics) in
                var catalog = Catalog()
                var diagnostics = Diagnostics()
                for i in range {
                    let file = all.baseAddress! + i
                    for document in file.pointee.documents {
                        guard let root = document.root else { continue }
                        let source = DocumentSource(file: file.pointee.file, relativePath: file.pointee.relativePath, index: document.index)
                        let reader = FieldReader(document: root.location)
                        decodeDocument(root, source: source, reader: reader, into: &catalog)
                        diagnostics.append(contentsOf: reader.diagnostics)
                        if !reader.sensitive.isEmpty { catalog.sensitiveValues.formUnion(reader.sensitive) }
                    }
                }
                return (catalog, diagnostics)
            }
        }
        var (catalog, diagnostics) = parts.count == 1 ? parts[0] : (Catalog(), Diagnostics())
        if parts.count > 1 {
            for (part, partDiagnostics) in parts {
                catalog.servers.append(contentsOf: part.servers)
                catalog.policies.append(contentsOf: part.policies)
                catalog.slos.append(contentsOf: part.slos)
                catalog.tenants.append(contentsOf: part.tenants)
                catalog.environments.append(contentsOf: part.environments)
                catalog.sensitiveValues.formUnion(part.sensitiveValues)
                diagnostics.append(contentsOf: partDiagnostics)
            }
        }
        catalog.servers.sortInPlace { $0.pointee.name }
        catalog.policies.sort { $0.name < $1.name }
        catalog.slos.sort { $0.name < $1.name }
        catalog.tenants.sort { $0.name < $1.name }
        catalog.environments.sort { $0.name < $1.name }
        return (catalog, diagnostics)
    }

    static func decodeDocument(_ root: Node, source: DocumentSource, reader r: FieldReader, into catalog: inout Catalog) {
        guard root.mapping != nil else {
            r.error("type-mismatch", "expected a manifest document (a mapping with apiVersion, kind, metadata and spec), found \(root.kindDescription)", at: root.location)
            return
        }
        // apiVersion first: a foreign document is reported as such, not as a pile of unknown fields.
        if let api = root["apiVersion"], let text = api.scalar?.text, text != APIVersion.v1alpha1 {
            r.error("foreign-document", "document has apiVersion `\(FieldReader.printable(text))`, expected `\(APIVersion.v1alpha1)`", at: api.location,
                    hint: "list the file in .mcpfleetignore at the manifest root if it is not part of the catalog")
            return
        }
        guard let top = r.mapping(root, path: "", allowed: Keys.document, required: Keys.documentRequired) else { return }
        _ = r.string(top, "apiVersion")
        guard let kindNode = top.value("kind"), let kindText = r.string(kindNode, path: "kind") else { return }
        guard let kind = Kind(rawValue: kindText) else {
            let names = Kind.allCases.map(\.rawValue)
            r.error("unknown-kind", "unknown kind `\(FieldReader.printable(kindText))`; expected one of \(names.joined(separator: ", "))", at: kindNode.location,
                    hint: Syntax.closest(to: kindText, in: names).map { "did you mean `\($0)`?" })
            return
        }
        let meta = metadata(top, r)
        let specNode = top.value("spec")
        if specNode == nil, kind == .server || kind == .environment {
            r.error("missing-field", "missing required field `spec`", at: root.mapping?.first?.key.location ?? root.location)
        }
        let spec = specNode ?? Node(.mapping([]), at: root.location)
        switch kind {
        case .server: if let s = server(spec, meta, source, r) { catalog.servers.append(s) }
        case .policy: if let p = policy(spec, meta, source, r) { catalog.policies.append(p) }
        case .slo: if let s = slo(spec, meta, source, r) { catalog.slos.append(s) }
        case .tenant: if let t = tenant(spec, meta, source, r) { catalog.tenants.append(t) }
        case .environment: if let e = environment(spec, meta, source, r) { catalog.environments.append(e) }
        }
    }

    static func metadata(_ top: Fields, _ r: FieldReader) -> ObjectMeta? {
        guard let node = top.value("metadata"),
              let m = r.mapping(node, path: "metadata", allowed: Keys.metadata, required: Keys.metadataRequired) else { return nil }
        r.record("metadata.name", m.entry("name"))
        let name = r.name(m, "name")
        var meta = ObjectMeta(name: name ?? "")
        meta.labels = labelMap(m, "labels", r)
        let annotations = r.stringMap(m, "annotations") ?? []
        meta.annotations.reserveCapacity(annotations.count)
        for entry in annotations {
            if Syntax.isLabelKey(entry.key) { meta.annotations[entry.key] = entry.value }
            else { r.error("invalid-name", "annotation key `\(FieldReader.printable(entry.key))` must be \(Syntax.NameRule.labelKey.requirement)", at: entry.keyLocation) }
        }
        return name == nil ? nil : meta
    }

    /// A label map (`metadata.labels`, `spec.serverSelector`): keys and values by the shared name rules.
    static func labelMap(_ f: Fields, _ key: String, _ r: FieldReader) -> [String: String] {
        let entries = r.stringMap(f, key) ?? []
        var out: [String: String] = [:]
        // Sized once: growing a dictionary from empty rehashes it at every doubling.
        out.reserveCapacity(entries.count)
        for entry in entries {
            if !Syntax.NameRule.labelKey.accepts(entry.key) {
                r.error("invalid-name", "`\(f.child(key))` key `\(FieldReader.printable(entry.key))` must be \(Syntax.NameRule.labelKey.requirement)", at: entry.keyLocation)
            } else if !Syntax.NameRule.labelValue.accepts(entry.value) {
                r.error("invalid-value", "`\(f.child(key)).\(entry.key)` must be \(Syntax.NameRule.labelValue.requirement); found `\(FieldReader.printable(entry.value))`", at: entry.valueLocation)
            } else {
                out[entry.key] = entry.value
            }
        }
        return out
    }

    // MARK: Server

    static let allowedSubstitutions = ["PORT", "REPLICA", "MANIFEST_DIR"]

    static func server(_ node: Node, _ meta: ObjectMeta?, _ source: DocumentSource, _ r: FieldReader) -> Server? {
        guard let f = r.mapping(node, path: "spec", allowed: Keys.server, required: Keys.serverRequired) else { return nil }
        // The positions CatalogValidator points at (see FieldReader.record).
        r.record("spec.tenant", f.entry("tenant"))
        r.record("spec.slo", f.entry("slo"))
        r.recordItems(f, "environments")

        let description = r.string(f, "description")
        var version: String?
        if let v = f.value("version"), let text = r.string(v, path: "spec.version") {
            switch Syntax.versionProblem(text) {
            case .latest?: r.error("invalid-version", "`spec.version` must name a concrete version, not `\(text)`", at: v.location, hint: "pin the version you tested, e.g. `1.4.2`")
            case .range?: r.error("invalid-version", "`spec.version` must be a single version, not a range: `\(FieldReader.printable(text))`", at: v.location)
            case .malformed?: r.error("invalid-version", "`spec.version` is not a version string: `\(FieldReader.printable(text))`", at: v.location)
            case nil: version = text
            }
        }
        let tenant = r.name(f, "tenant")
        let artifact = f.value("artifact").flatMap { artifactSpec($0, r) }
        let transport = f.value("transport").flatMap { transportSpec($0, r) }
        let env = envList(f, r)
        let replicas = r.int(f, "replicas", range: 0...1000)
        let resources = f.value("resources").flatMap { resourcesSpec($0, path: "spec.resources", r) }
        let health = f.value("health").flatMap { healthSpec($0, r) }
        let rollout = f.value("rollout").flatMap { rolloutSpec($0, r) }
        let slo = r.name(f, "slo")
        let supplyChain = f.value("supplyChain").flatMap { supplyChainSpec($0, source: source, r) }
        let environments = r.nameList(f, "environments")

        if let t = transport, t.type != .stdio, t.port == nil, let tnode = f.value("transport"), tnode["port"].map({ $0.isNull }) ?? true {
            r.error("missing-field", "missing required field `spec.transport.port` (required unless the transport is stdio)", at: tnode.mapping?.first?.key.location ?? tnode.location)
        }
        guard let meta, let version, let tenant, let artifact, let transport else { return nil }
        var s = Server(metadata: meta, version: version, tenant: tenant, artifact: artifact, transport: transport, source: source, locations: r.locations)
        s.description = description
        s.env = env
        if let replicas { s.replicas = replicas }
        s.resources = resources
        if let health { s.health = health }
        if let rollout { s.rollout = rollout }
        s.slo = slo
        s.supplyChain = supplyChain
        s.environments = environments
        s.gateway = f.value("gateway").flatMap { serverGateway($0, r) }
        serverContract(f, into: &s, source: source, r)
        s.locations = r.locations
        return s
    }

    static func artifactSpec(_ node: Node, _ r: FieldReader) -> Artifact? {
        guard let f = r.mapping(node, path: "spec.artifact", allowed: Keys.artifact) else { return nil }
        var a = Artifact()
        if let n = f.value("image"), let image = r.string(n, path: "spec.artifact.image") {
            if image.isEmpty || image.contains(where: { $0.isWhitespace }) || Syntax.hasControlCharacter(image) {
                r.error("invalid-value", "`spec.artifact.image` is not an image reference: `\(FieldReader.printable(image))`", at: n.location)
            } else if image.hasSuffix(":latest") {
                r.error("invalid-version", "`spec.artifact.image` uses the `latest` tag; pin a version or digest", at: n.location)
            } else {
                a.image = image
            }
        }
        if let items = r.list(f, "command") {
            if items.isEmpty {
                r.error("invalid-value", "`spec.artifact.command` must have at least one element (the program)", at: f.value("command")?.location ?? node.location)
            }
            var argv: [String] = []
            for (i, item) in items.enumerated() {
                let path = FieldPath("spec.artifact.command", index: i)
                guard let arg = r.string(item, path: "\(path)") else { continue }
                guard checkSafe(arg, path: "\(path)", at: item.location, r) else { continue }
                // Where CatalogValidator may point (a `${MANIFEST_DIR}` file that links out of the root);
                // recorded only then: building every item's path cost more than the rest of the item.
                if arg.hasPrefix("${MANIFEST_DIR}") { r.locations.record(path.description, item.location) }
                if i == 0 {
                    let ok = arg.hasPrefix("/") || arg.hasPrefix("${MANIFEST_DIR}/") || (!arg.isEmpty && !arg.contains("/") && !arg.contains("$"))
                    if !ok {
                        r.error("invalid-path", "`\(path)` must be an absolute path, a program name found on PATH, or start with `${MANIFEST_DIR}/`; found `\(arg)`", at: item.location)
                        continue
                    }
                }
                // `${MANIFEST_DIR}` stays the manifest directory: no climbing out of it.
                if (i == 0 || arg.hasPrefix("${MANIFEST_DIR}")), arg.split(separator: "/").contains("..") {
                    r.error("invalid-path", "`\(path)` must not contain `..`", at: item.location)
                    continue
                }
                argv.append(arg)
            }
            if argv.count == items.count, !items.isEmpty {
                a.command = argv
                for (i, sensitive) in (PlanSafety.anySensitiveArgument(argv) ? PlanSafety.sensitiveArguments(argv) : []).enumerated() where sensitive {
                    r.sensitive.append(argv[i])
                    r.diagnostics.append(.warning("possible-secret", "`\(FieldPath("spec.artifact.command", index: i))` looks like a credential; plans show only its digest, but a real secret belongs in a secretRef passed through the environment", at: items[i].location,
                                                  hint: "command lines are visible to every user of the host (`ps`); read the secret from an environment variable instead"))
                }
            }
        }
        if let n = f.value("workingDirectory"), let wd = r.string(n, path: "spec.artifact.workingDirectory"), checkSafe(wd, path: "spec.artifact.workingDirectory", at: n.location, r) {
            if wd.hasPrefix("${MANIFEST_DIR}") { r.locations.record("spec.artifact.workingDirectory", n.location) }
            if wd.hasPrefix("${MANIFEST_DIR}"), wd.split(separator: "/").contains("..") {
                r.error("invalid-path", "`spec.artifact.workingDirectory` must not contain `..`", at: n.location)
            } else if wd.hasPrefix("/") || wd.hasPrefix("${MANIFEST_DIR}") { a.workingDirectory = wd }
            else { r.error("invalid-path", "`spec.artifact.workingDirectory` must be absolute, found `\(wd)`", at: n.location) }
        }
        if let n = f.value("digest"), let d = r.string(n, path: "spec.artifact.digest") {
            if Syntax.isSHA256Digest(d) { a.digest = d }
            else { r.error("invalid-value", "`spec.artifact.digest` must be `sha256:` followed by 64 lowercase hex digits", at: n.location) }
        }
        if f.value("image") == nil, f.value("command") == nil {
            r.error("missing-field", "`spec.artifact` needs `image` (Kubernetes) or `command` (systemd, local), or both", at: node.mapping?.first?.key.location ?? node.location)
        }
        return a
    }

    /// Rejects control characters and unknown `${…}` substitutions in values that reach a command line,
    /// unit file or environment.
    @discardableResult
    /// `echo: false` for values that may be secrets: the message names the field, never the value.
    static func checkSafe(_ value: String, path: @autoclosure () -> String, at location: SourceLocation, _ r: FieldReader, echo: Bool = true) -> Bool {
        if Syntax.hasControlCharacter(value) {
            let shown = echo ? " (`\(FieldReader.printable(value))`)" : ""
            r.error("unsafe-value", "`\(path())` contains a control character\(shown); newlines and NUL cannot be written safely into a unit or command line", at: location)
            return false
        }
        guard let subs = Syntax.substitutions(in: value) else {
            r.error("unsafe-value", "`\(path())` has an unterminated `${`", at: location)
            return false
        }
        if let bad = subs.first(where: { !allowedSubstitutions.contains($0) }) {
            r.error("unsafe-value", "`\(path())` refers to `${\(FieldReader.printable(bad))}`; only \(allowedSubstitutions.map { "${\($0)}" }.joined(separator: ", ")) are substituted", at: location)
            return false
        }
        return true
    }

    static func transportSpec(_ node: Node, _ r: FieldReader) -> Transport? {
        guard let f = r.mapping(node, path: "spec.transport", allowed: Keys.transport, required: Keys.transportRequired) else { return nil }
        r.record("spec.transport.port", f.entry("port"))
        let type = r.enumValue(f, "type", TransportType.self)
        let port = r.port(f, "port")
        var path: String?
        if let n = f.value("path"), let p = r.string(n, path: "spec.transport.path") {
            if p.hasPrefix("/"), checkSafe(p, path: "spec.transport.path", at: n.location, r), !p.contains(" ") { path = p }
            else if p.hasPrefix("/") == false { r.error("invalid-path", "`spec.transport.path` must start with `/`, found `\(FieldReader.printable(p))`", at: n.location) }
        }
        guard let type else { return nil }
        return Transport(type: type, port: port, path: path)
    }

    static func envList(_ f: Fields, _ r: FieldReader) -> [EnvVar] {
        guard let items = r.list(f, "env") else { return [] }
        var out: [EnvVar] = []
        // Names seen so far: a list, not a dictionary (a handful per server, and a dictionary per server
        // cost more to grow than to scan).
        var seen: [(name: String, location: SourceLocation)] = []
        for (i, item) in items.enumerated() {
            let path = FieldPath("spec.env", index: i)
            guard let e = r.mapping(item, path: path, allowed: Keys.env, required: Keys.envRequired) else { continue }
            var name: String?
            if let n = e.value("name"), let text = r.string(n, path: "\(path).name") {
                if !Syntax.isEnvName(text) {
                    r.error("invalid-value", "`\(path).name` must match [A-Za-z_][A-Za-z0-9_]*, found `\(FieldReader.printable(text))`", at: n.location)
                } else if let first = seen.first(where: { Fields.same($0.name, text) })?.location {
                    r.error("invalid-value", "environment variable `\(text)` is set twice (first at line \(first.line))", at: n.location)
                } else {
                    seen.append((text, n.location))
                    name = text
                }
            }
            let isSecret = r.bool(e, "isSecret") ?? false
            let description = r.string(e, "description")
            var source: EnvVar.Source?
            if e.has("value"), e.has("secretRef") {
                let second = [e.keyLocation("value"), e.keyLocation("secretRef")].compactMap { $0 }.max() ?? item.location
                r.error("conflicting-fields", "`\(path)` sets both `value` and `secretRef`; use exactly one", at: second)
            } else if let v = e.value("value") {
                if isSecret {
                    if let t = v.scalar?.text { r.sensitive.append(t) }
                    r.error("secret-inline", "`\(path)` (\(name ?? "?")) is marked isSecret but carries an inline value; secrets must come from a secretRef, never from the manifest", at: e.keyLocation("value") ?? v.location)
                } else if let text = r.string(v, path: "\(path).value"), checkSafe(text, path: "\(path).value", at: v.location, r, echo: false) {
                    source = .value(text)
                    if PlanSafety.isSensitive(name: name, value: text) {
                        // Never shown again: excerpts of this file mask it (LoadedCatalog.sourceText).
                        r.sensitive.append(text)
                        let why = name.map(PlanSafety.looksSensitive) == true ? "has a secret-looking name" : "looks like a credential"
                        r.diagnostics.append(.warning("possible-secret", "`\(path)` (\(name ?? "?")) \(why) but an inline value; plans and saved plans show only its digest, but a real secret belongs in a secretRef", at: e.keyLocation("value") ?? v.location,
                                                      hint: "use `secretRef: {name: …, key: …}` and `isSecret: true`"))
                    }
                } else if let text = v.scalar?.text, PlanSafety.isSensitive(name: name, value: text) || Syntax.hasControlCharacter(text) {
                    r.sensitive.append(text)
                }
            } else if let ref = e.value("secretRef") {
                if let rf = r.mapping(ref, path: path.appending("secretRef"), allowed: Keys.secretRef, required: Keys.secretRefRequired),
                   let sname = r.name(rf, "name"), let kn = rf.value("key"), let key = r.string(kn, path: "\(path).secretRef.key") {
                    // [-._a-zA-Z0-9]+ (ASCII letters only: the former Unicode property test accepted exactly these).
                    if key.isEmpty || !key.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f }) {
                        r.error("invalid-value", "`\(path).secretRef.key` must match [-._a-zA-Z0-9]+, found `\(FieldReader.printable(key))`", at: kn.location)
                    } else {
                        source = .secret(SecretReference(name: sname, key: key))
                    }
                }
            } else {
                r.error("missing-field", "`\(path)` needs `value` or `secretRef`", at: item.mapping?.first?.key.location ?? item.location)
            }
            if let name, let source { out.append(EnvVar(name: name, source: source, isSecret: isSecret, description: description)) }
        }
        return out
    }

    static func resourcesSpec(_ node: Node, path: FieldPath, _ r: FieldReader) -> Resources? {
        guard let f = r.mapping(node, path: path, allowed: Keys.resources) else { return nil }
        var res = Resources()
        if let n = f.value("cpu"), let text = n.scalar?.text {
            if let m = Syntax.cpuMillis(text), m > 0 { res.cpu = text; res.cpuMillis = m }
            else { r.error("invalid-quantity", "`\(path).cpu` must be a CPU quantity such as `500m` or `2`, found `\(FieldReader.printable(text))`", at: n.location) }
        }
        if let n = f.value("memory"), let text = n.scalar?.text {
            if let b = Syntax.memoryBytes(text), b > 0 { res.memory = text; res.memoryBytes = b }
            else { r.error("invalid-quantity", "`\(path).memory` must be a memory quantity such as `256Mi` or `1Gi`, found `\(FieldReader.printable(text))`", at: n.location) }
        }
        return res
    }

    static func healthSpec(_ node: Node, _ r: FieldReader) -> HealthCheck? {
        guard let f = r.mapping(node, path: "spec.health", allowed: Keys.health) else { return nil }
        var h = HealthCheck()
        if let p = r.enumValue(f, "probe", ProbeKind.self) { h.probe = p }
        if let n = f.value("path"), let p = r.string(n, path: "spec.health.path") {
            if p.hasPrefix("/"), checkSafe(p, path: "spec.health.path", at: n.location, r) { h.path = p }
            else if !p.hasPrefix("/") { r.error("invalid-path", "`spec.health.path` must start with `/`", at: n.location) }
        }
        if let d = r.duration(f, "interval") { h.interval = d }
        if let d = r.duration(f, "timeout") { h.timeout = d }
        if let n = r.int(f, "failureThreshold", range: 1...100) { h.failureThreshold = n }
        if let tools = r.stringList(f, "requireTools") { h.requireTools = tools }
        return h
    }

    static func rolloutSpec(_ node: Node, _ r: FieldReader) -> RolloutSpec? {
        guard let f = r.mapping(node, path: "spec.rollout", allowed: Keys.rollout) else { return nil }
        var ro = RolloutSpec()
        if let s = r.enumValue(f, "strategy", RolloutStrategy.self) { ro.strategy = s }
        if let v = r.intOrPercent(f, "maxSurge") { ro.maxSurge = v }
        if let v = r.intOrPercent(f, "maxUnavailable") { ro.maxUnavailable = v }
        if let b = r.bool(f, "autoRollback") { ro.autoRollback = b }
        if let d = r.duration(f, "progressDeadline") { ro.progressDeadline = d }
        if let d = r.duration(f, "drainTimeout") { ro.drainTimeout = d }
        if let items = r.list(f, "steps") {
            if ro.strategy != .canary {
                r.error("invalid-value", "`spec.rollout.steps` only applies to the canary strategy (strategy is `\(ro.strategy.rawValue)`)", at: f.keyLocation("steps") ?? node.location)
            } else if items.isEmpty {
                r.error("invalid-value", "`spec.rollout.steps` must have at least one step", at: f.value("steps")?.location ?? node.location)
            }
            for (i, item) in items.enumerated() {
                let path = FieldPath("spec.rollout.steps", index: i)
                guard let s = r.mapping(item, path: path, allowed: Keys.canaryStep) else { continue }
                var size: CanaryStep.Size?
                if s.has("weight"), s.has("replicas") {
                    let second = [s.keyLocation("weight"), s.keyLocation("replicas")].compactMap { $0 }.max() ?? item.location
                    r.error("conflicting-fields", "`\(path)` sets both `weight` and `replicas`; use exactly one", at: second)
                } else if let w = r.int(s, "weight", range: 1...100) {
                    size = .weight(w)
                } else if let n = r.int(s, "replicas", range: 1...1000) {
                    size = .replicas(n)
                } else if !s.has("weight"), !s.has("replicas") {
                    r.error("missing-field", "`\(path)` needs `weight` or `replicas`", at: item.mapping?.first?.key.location ?? item.location)
                }
                var pause: CanaryPause?
                if let pn = s.value("pause"), let text = r.string(pn, path: "\(path).pause") {
                    if text == "untilPromoted" { pause = .untilPromoted }
                    else if Syntax.duration(text) != nil { pause = r.checkDuration(text, path: "\(path).pause", at: pn.location, allowZero: true).map { .duration($0) } }
                    else { r.error("invalid-duration", "`\(path).pause` must be a duration such as `5m` or `untilPromoted`, found `\(FieldReader.printable(text))`", at: pn.location) }
                }
                let analysis = r.bool(s, "analysis")
                if let size { ro.steps.append(CanaryStep(size: size, pause: pause, analysis: analysis)) }
            }
        } else if ro.strategy == .canary {
            r.error("missing-field", "missing required field `spec.rollout.steps` (required by the canary strategy)", at: node.mapping?.first?.key.location ?? node.location)
        }
        return ro
    }

    /// Resolves a path written relative to the manifest file into a path relative to the manifest root,
    /// rejecting absolute paths and any path that climbs out of the root.
    static func rootRelative(_ path: String, from directory: String) -> String? {
        guard !path.isEmpty, !path.hasPrefix("/"), !path.contains("\0") else { return nil }
        var parts = directory.split(separator: "/").map(String.init)
        for component in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch component {
            case ".": continue
            case "..":
                guard !parts.isEmpty else { return nil }
                parts.removeLast()
            default: parts.append(String(component))
            }
        }
        return parts.isEmpty ? nil : parts.joined(separator: "/")
    }

    static func supplyChainSpec(_ node: Node, source: DocumentSource, _ r: FieldReader) -> SupplyChainSpec? {
        guard let f = r.mapping(node, path: "spec.supplyChain", allowed: Keys.supplyChain) else { return nil }
        r.record("spec.supplyChain.artifact", f.entry("artifact"))
        r.record("spec.supplyChain.signature", f.entry("signature"))
        r.record("spec.supplyChain.sbom", f.entry("sbom"))
        r.record("spec.supplyChain.scan", f.entry("scan"))
        r.record("spec.supplyChain.provenance", f.entry("provenance"))
        func path(_ key: String) -> String? {
            guard let n = f.value(key), let text = r.string(n, path: "spec.supplyChain.\(key)") else { return nil }
            guard checkSafe(text, path: "spec.supplyChain.\(key)", at: n.location, r) else { return nil }
            guard let resolved = rootRelative(text, from: source.relativeDirectory) else {
                r.error("invalid-path", "`spec.supplyChain.\(key)` must be a path relative to the manifest file that stays inside the manifest directory, found `\(text)`", at: n.location)
                return nil
            }
            return resolved
        }
        return SupplyChainSpec(artifact: path("artifact"), signature: path("signature"), sbom: path("sbom"), scan: path("scan"), provenance: path("provenance"))
    }

    // MARK: Policy

    static func policy(_ node: Node, _ meta: ObjectMeta?, _ source: DocumentSource, _ r: FieldReader) -> Policy? {
        guard let f = r.mapping(node, path: "spec", allowed: Keys.policy) else { return nil }
        r.recordItems(f, "environments")
        r.recordItems(f, "trustedKeys")
        guard let meta else { return nil }
        var p = Policy(metadata: meta, source: source, locations: r.locations)
        if let m = r.enumValue(f, "mode", PolicyMode.self) { p.mode = m }
        p.environments = r.nameList(f, "environments")
        if let b = r.bool(f, "requireSignature") { p.requireSignature = b }
        if let b = r.bool(f, "requireSBOM") { p.requireSBOM = b }
        if let b = r.bool(f, "requireScan") { p.requireScan = b }
        if let b = r.bool(f, "requireProvenance") { p.requireProvenance = b }
        if let b = r.bool(f, "requireDigest") { p.requireDigest = b }
        if let s = r.enumValue(f, "maxSeverity", SeverityCeiling.self) { p.maxSeverity = s; if s < .critical { p.requireScan = true } }
        p.allowedRegistries = r.stringList(f, "allowedRegistries") ?? []
        p.allowedCommands = r.stringList(f, "allowedCommands") ?? []
        p.contracts = r.enumValue(f, "contracts", ContractsMode.self)
        var keyNames: [String: SourceLocation] = [:]
        for (i, item) in (r.list(f, "trustedKeys") ?? []).enumerated() {
            let path = FieldPath("spec.trustedKeys", index: i)
            guard let k = r.mapping(item, path: path, allowed: Keys.trustedKey, required: Keys.trustedKeyRequired) else { continue }
            let name = r.name(k, "name")
            if let name, let first = keyNames[name] {
                r.error("duplicate-name", "trusted key `\(name)` is listed twice (first at line \(first.line))", at: k.value("name")?.location ?? item.location)
                continue
            }
            if let name { keyNames[name] = k.value("name")?.location }
            var material: TrustedKeySpec.Material?
            if k.has("publicKey"), k.has("file") {
                let second = [k.keyLocation("publicKey"), k.keyLocation("file")].compactMap { $0 }.max() ?? item.location
                r.error("conflicting-fields", "`\(path)` sets both `publicKey` and `file`; use exactly one", at: second)
            } else if let pem = r.string(k, "publicKey") {
                if pem.contains("-----BEGIN PUBLIC KEY-----") { material = .pem(pem) }
                else { r.error("invalid-value", "`\(path).publicKey` must be a PEM public key (-----BEGIN PUBLIC KEY-----)", at: k.value("publicKey")?.location ?? item.location) }
            } else if let fn = k.value("file"), let file = r.string(fn, path: "\(path).file") {
                if let resolved = rootRelative(file, from: source.relativeDirectory) { material = .file(resolved) }
                else { r.error("invalid-path", "`\(path).file` must be a relative path inside the manifest directory, found `\(file)`", at: fn.location) }
            } else if !k.has("publicKey"), !k.has("file") {
                r.error("missing-field", "`\(path)` needs `publicKey` or `file`", at: item.mapping?.first?.key.location ?? item.location)
            }
            if let name, let material { p.trustedKeys.append(TrustedKeySpec(name: name, material: material)) }
        }
        if p.requireSignature, p.trustedKeys.isEmpty, f.value("trustedKeys") == nil {
            r.error("missing-field", "`spec.requireSignature` is true but no `spec.trustedKeys` are given", at: f.keyLocation("requireSignature") ?? node.location)
        }
        p.locations = r.locations
        return p
    }

    // MARK: SLO

    static func slo(_ node: Node, _ meta: ObjectMeta?, _ source: DocumentSource, _ r: FieldReader) -> SLO? {
        guard let f = r.mapping(node, path: "spec", allowed: Keys.slo) else { return nil }
        guard let meta else { return nil }
        var s = SLO(metadata: meta, source: source, locations: r.locations)
        if let n = f.value("successRate"), let text = r.string(n, path: "spec.successRate") {
            if let v = Syntax.percentFraction(text) { s.successRate = v; s.successRateText = text }
            else { r.error("invalid-value", "`spec.successRate` must be a percentage such as `99.5%`, found `\(FieldReader.printable(text))`", at: n.location) }
        }
        s.latencyP95 = r.duration(f, "latencyP95")
        if !f.has("successRate"), !f.has("latencyP95") {
            r.error("missing-field", "an SLO needs `spec.successRate`, `spec.latencyP95` or both", at: node.mapping?.first?.key.location ?? node.location)
        }
        if let an = f.value("analysis"), let a = r.mapping(an, path: "spec.analysis", allowed: Keys.analysis) {
            if let p = r.enumValue(a, "provider", AnalysisProviderKind.self) { s.analysis.provider = p }
            if let d = r.duration(a, "interval") { s.analysis.interval = d }
            if let c = r.int(a, "count", range: 1...100) { s.analysis.count = c }
            if let m = r.int(a, "minimumCalls", range: 1...1_000_000) { s.analysis.minimumCalls = m }
            if let l = r.int(a, "failureLimit", range: 0...100) {
                if l >= s.analysis.count {
                    r.error("invalid-value", "`spec.analysis.failureLimit` (\(l)) must be less than `spec.analysis.count` (\(s.analysis.count))", at: a.value("failureLimit")?.location ?? an.location)
                } else { s.analysis.failureLimit = l }
            }
            if let pn = a.value("prometheus"), let pf = r.mapping(pn, path: "spec.analysis.prometheus", allowed: Keys.prometheus, required: Keys.prometheusRequired),
               let addrNode = pf.value("address"), let addr = r.string(addrNode, path: "spec.analysis.prometheus.address") {
                if (addr.hasPrefix("http://") || addr.hasPrefix("https://")), !Syntax.hasControlCharacter(addr), !addr.contains(" ") {
                    s.analysis.prometheus = PrometheusAnalysis(address: addr, successRateQuery: r.string(pf, "successRateQuery"), latencyP95Query: r.string(pf, "latencyP95Query"))
                } else {
                    r.error("invalid-value", "`spec.analysis.prometheus.address` must be an http(s) URL, found `\(FieldReader.printable(addr))`", at: addrNode.location)
                }
            }
            if let c = r.bool(a, "compareWithStable") { s.analysis.compareWithStable = c }
            if let n = a.value("stableTolerance"), let text = r.string(n, path: "spec.analysis.stableTolerance") {
                if let v = Syntax.percentFraction(text), v < 1 { s.analysis.stableTolerance = v; s.analysis.stableToleranceText = text }
                else { r.error("invalid-value", "`spec.analysis.stableTolerance` must be a percentage below 100% such as `1%` (percentage points of success rate), found `\(FieldReader.printable(text))`", at: n.location) }
            }
            // Comparing with the stable revision needs both revisions' tool calls: only the gateway counts them.
            for key in ["compareWithStable", "stableTolerance"] {
                guard let p = s.analysis.provider, p != .gateway, let n = a.value(key) else { continue }
                r.error("invalid-value", "`spec.analysis.\(key)` applies to the `gateway` provider only (this SLO names `\(p.rawValue)`)", at: n.location)
            }
            if s.analysis.provider == .prometheus, a.value("prometheus") == nil {
                r.error("missing-field", "missing required field `spec.analysis.prometheus` (required by provider prometheus)", at: an.mapping?.first?.key.location ?? an.location)
            }
        }
        s.locations = r.locations
        return s
    }

    // MARK: Tenant

    static func tenant(_ node: Node, _ meta: ObjectMeta?, _ source: DocumentSource, _ r: FieldReader) -> Tenant? {
        guard let f = r.mapping(node, path: "spec", allowed: Keys.tenant) else { return nil }
        guard let meta else { return nil }
        var t = Tenant(metadata: meta, source: source, locations: r.locations)
        t.displayName = r.string(f, "displayName")
        if let i = r.enumValue(f, "isolation", Isolation.self) { t.isolation = i }
        t.namespace = r.name(f, "namespace")
        if let qn = f.value("quota"), let q = r.mapping(qn, path: "spec.quota", allowed: Keys.quota) {
            if let res = resourcesSpec(Node(.mapping(qn.mapping?.filter { $0.keyText == "cpu" || $0.keyText == "memory" } ?? []), at: qn.location), path: "spec.quota", r) {
                t.quota.cpu = res.cpu; t.quota.cpuMillis = res.cpuMillis
                t.quota.memory = res.memory; t.quota.memoryBytes = res.memoryBytes
            }
            t.quota.maxServers = r.int(q, "maxServers", range: 0...100_000)
            t.quota.maxReplicas = r.int(q, "maxReplicas", range: 0...1_000_000)
            t.quota.tasks = r.int(q, "tasks", range: 1...1_000_000)
        }
        t.gateway = f.value("gateway").flatMap { tenantGateway($0, r) }
        t.allowFrom = f.value("allowFrom").map { tenantAllowFrom($0, r) } ?? []
        t.locations = r.locations
        return t
    }

    // MARK: Environment

    static func environment(_ node: Node, _ meta: ObjectMeta?, _ source: DocumentSource, _ r: FieldReader) -> Environment? {
        guard let f = r.mapping(node, path: "spec", allowed: Keys.environment, required: Keys.environmentRequired) else { return nil }
        let driver = r.enumValue(f, "driver", DriverKind.self)
        guard let meta, let driver else { return nil }
        var e = Environment(metadata: meta, driver: driver, source: source, locations: r.locations)
        e.description = r.string(f, "description")
        if let n = f.value("portRange"), let text = r.string(n, path: "spec.portRange") {
            let parts = text.split(separator: "-", omittingEmptySubsequences: false)
            if parts.count == 2, let lo = Int(parts[0]), let hi = Int(parts[1]), (1...65535).contains(lo), (1...65535).contains(hi), lo <= hi,
               parts.allSatisfy({ $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }) {
                e.portRange = PortRange(lower: lo, upper: hi)
            } else {
                r.error("invalid-port", "`spec.portRange` must be `LOW-HIGH` with 1 ≤ LOW ≤ HIGH ≤ 65535, found `\(FieldReader.printable(text))`", at: n.location)
            }
        }
        for key in ["stateDir", "secretsDir"] {
            if let n = f.value(key), let text = r.string(n, path: "spec.\(key)"), checkSafe(text, path: "spec.\(key)", at: n.location, r) {
                if key == "stateDir" { e.stateDir = text } else { e.secretsDir = text }
            }
        }
        e.serverSelector = labelMap(f, "serverSelector", r)
        let sections = ["local", "systemd", "kubernetes"].filter { f.has($0) }
        for section in sections where section != driver.rawValue {
            r.error("conflicting-fields", "`spec.\(section)` does not match `spec.driver: \(driver.rawValue)`", at: f.keyLocation(section) ?? node.location)
        }
        if let n = f.value("local"), let l = r.mapping(n, path: "spec.local", allowed: Keys.local) {
            var s = LocalSettings()
            s.logDir = r.string(l, "logDir")
            s.maxLogBytes = r.int(l, "maxLogBytes", range: 1024...(1 << 40))
            s.restartBackoff = r.duration(l, "restartBackoff")
            e.local = s
        }
        if let n = f.value("systemd"), let sd = r.mapping(n, path: "spec.systemd", allowed: Keys.systemd) {
            var s = SystemdSettings()
            if let dn = sd.value("unitDir"), let d = r.string(dn, path: "spec.systemd.unitDir"), checkSafe(d, path: "spec.systemd.unitDir", at: dn.location, r) {
                if d.hasPrefix("/") { s.unitDir = d } else { r.error("invalid-path", "`spec.systemd.unitDir` must be absolute", at: dn.location) }
            }
            if let p = r.name(sd, "unitPrefix") { s.unitPrefix = p }
            s.relax = r.stringList(sd, "relax") ?? []
            e.systemd = s
        }
        if let n = f.value("kubernetes"), let k = r.mapping(n, path: "spec.kubernetes", allowed: Keys.kubernetes) {
            var s = KubernetesSettings()
            s.context = r.string(k, "context")
            s.kubeconfig = r.string(k, "kubeconfig")
            s.inCluster = r.bool(k, "inCluster") ?? false
            r.record("spec.kubernetes.namespacePrefix", k.entry("namespacePrefix"))
            if let n = k.value("namespacePrefix"), let p = r.string(n, path: "spec.kubernetes.namespacePrefix") {
                s.namespacePrefix = r.checkName(p, rule: .namespacePrefix, path: "spec.kubernetes.namespacePrefix", at: n.location)
            }
            if let n = k.value("fieldManager"), let fm = r.string(n, path: "spec.kubernetes.fieldManager"),
               let ok = r.checkName(fm, rule: .fieldManager, path: "spec.kubernetes.fieldManager", at: n.location) { s.fieldManager = ok }
            s.imagePullSecrets = r.nameList(k, "imagePullSecrets") ?? []
            e.kubernetes = s
        }
        e.gateway = f.value("gateway").flatMap { environmentGateway($0, r) }
        e.notifications = f.value("notifications").map { environmentNotifications($0, r) } ?? []
        e.locations = r.locations
        return e
    }
}
