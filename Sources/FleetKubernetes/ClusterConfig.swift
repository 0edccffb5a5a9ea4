public import FleetCore
public import FleetHTTP
import FleetYAML
import Foundation

/// How to reach one API server: its URL, TLS material, credentials and default namespace, read from a
/// kubeconfig or from the service-account files a pod gets.
///
/// Credentials are kept as references where they can rotate: a service-account token is a *file*
/// (re-read by `CurlTransport` when it changes), never a copied string.
public struct ClusterConfig: Sendable, Equatable {
    /// `https://host:port`, without a trailing slash.
    public var server: String
    public var tls: TLSConfiguration
    public var token: BearerToken?
    /// The context's namespace (kubeconfig) or the pod's namespace (in-cluster); "default" otherwise.
    public var namespace: String
    /// Where this came from, for messages: `kubeconfig /root/.kube/config, context prod` or `in-cluster`.
    public var origin: String

    public init(server: String, tls: TLSConfiguration = TLSConfiguration(), token: BearerToken? = nil, namespace: String = "default", origin: String = "explicit") {
        self.server = server.hasSuffix("/") ? String(server.dropLast()) : server
        self.tls = tls
        self.token = token
        self.namespace = namespace
        self.origin = origin
    }

    /// A transport configuration for `CurlTransport` with this cluster's TLS and credentials.
    public func transportConfiguration(requestTimeout: Duration = .seconds(30), maxConnections: Int = 32) -> CurlTransportConfiguration {
        CurlTransportConfiguration(tls: tls, bearerToken: token, connectTimeout: .seconds(5), requestTimeout: requestTimeout,
                                   proxy: .environment, userAgent: "mcpfleet/0.1 (kubernetes)", maxConnections: maxConnections)
    }
}

/// A configuration problem, naming the file and the key (and line) it concerns. Never contains a token.
public struct ClusterConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String?
    public var message: String

    public init(file: String, key: String? = nil, message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        if let key { return "\(file): \(key): \(message)" }
        return "\(file): \(message)"
    }
}

/// Where a pod finds its service-account credentials; injectable so tests need no real pod.
public struct InClusterPaths: Sendable, Equatable {
    public var tokenFile: String
    public var caFile: String
    public var namespaceFile: String

    public init(directory: String = "/var/run/secrets/kubernetes.io/serviceaccount") {
        tokenFile = directory + "/token"
        caFile = directory + "/ca.crt"
        namespaceFile = directory + "/namespace"
    }

    public static let standard = InClusterPaths()
}

extension ClusterConfig {
    /// Chooses the configuration as `kubectl` and client-go do: in-cluster when the Environment says so;
    /// otherwise an explicit kubeconfig (argument, then `spec.kubernetes.kubeconfig`), then `KUBECONFIG`,
    /// then `~/.kube/config`; and when none of those exists but the process runs in a pod, in-cluster.
    public static func resolve(
        settings: KubernetesSettings?, context: String? = nil, kubeconfig: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment, inClusterPaths: InClusterPaths = .standard
    ) throws(ClusterConfigError) -> ClusterConfig {
        if settings?.inCluster == true { return try inCluster(environment: environment, paths: inClusterPaths) }
        let wantedContext = context ?? settings?.context
        if let explicit = kubeconfig ?? settings?.kubeconfig {
            return try fromKubeconfig(paths: [expandHome(explicit, environment)], context: wantedContext)
        }
        if let list = environment["KUBECONFIG"], !list.isEmpty {
            let paths = list.split(separator: ":").map(String.init).filter { !$0.isEmpty }
            return try fromKubeconfig(paths: paths, context: wantedContext, skipMissing: true)
        }
        let home = environment["HOME"] ?? NSHomeDirectory()
        let defaultPath = home + "/.kube/config"
        if FileManager.default.fileExists(atPath: defaultPath) {
            return try fromKubeconfig(paths: [defaultPath], context: wantedContext)
        }
        if environment["KUBERNETES_SERVICE_HOST"] != nil { return try inCluster(environment: environment, paths: inClusterPaths) }
        throw ClusterConfigError(file: defaultPath, message: "no kubeconfig found (set KUBECONFIG, pass --kubeconfig, or set spec.kubernetes.inCluster)")
    }

    static func expandHome(_ path: String, _ environment: [String: String]) -> String {
        guard path == "~" || path.hasPrefix("~/") else { return path }
        return (environment["HOME"] ?? NSHomeDirectory()) + path.dropFirst()
    }

    // MARK: In-cluster

    /// The pod's own credentials: `KUBERNETES_SERVICE_HOST`/`_PORT`, the projected token (as a file, so
    /// kubelet's rotation is picked up), the cluster CA and the pod's namespace.
    public static func inCluster(environment: [String: String] = ProcessInfo.processInfo.environment, paths: InClusterPaths = .standard) throws(ClusterConfigError) -> ClusterConfig {
        guard let host = environment["KUBERNETES_SERVICE_HOST"], !host.isEmpty else {
            throw ClusterConfigError(file: "environment", key: "KUBERNETES_SERVICE_HOST", message: "not set: not running in a pod (unset spec.kubernetes.inCluster to use a kubeconfig)")
        }
        guard let port = environment["KUBERNETES_SERVICE_PORT"], let portNumber = Int(port), (1...65535).contains(portNumber) else {
            throw ClusterConfigError(file: "environment", key: "KUBERNETES_SERVICE_PORT", message: "missing or not a port number")
        }
        guard FileManager.default.isReadableFile(atPath: paths.tokenFile) else {
            throw ClusterConfigError(file: paths.tokenFile, message: "service-account token is missing or unreadable (is automountServiceAccountToken disabled?)")
        }
        guard FileManager.default.isReadableFile(atPath: paths.caFile) else {
            throw ClusterConfigError(file: paths.caFile, message: "cluster CA certificate is missing or unreadable")
        }
        var namespace = "default"
        if let data = FileManager.default.contents(atPath: paths.namespaceFile) {
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !text.isEmpty { namespace = text }
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return ClusterConfig(server: "https://\(hostPart):\(portNumber)", tls: TLSConfiguration(caFile: paths.caFile),
                             token: .file(paths.tokenFile), namespace: namespace, origin: "in-cluster")
    }

    // MARK: Kubeconfig

    /// Reads one or more kubeconfig files and resolves a context. With several files (a `KUBECONFIG`
    /// list) the first file to define a cluster, user or context name wins, and the first
    /// `current-context` wins, as kubectl merges them. Relative paths resolve against the file that
    /// holds them.
    public static func fromKubeconfig(paths: [String], context: String? = nil, skipMissing: Bool = false) throws(ClusterConfigError) -> ClusterConfig {
        var files: [KubeconfigFile] = []
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else {
                if skipMissing { continue }
                throw ClusterConfigError(file: path, message: "cannot read kubeconfig")
            }
            files.append(try KubeconfigFile.parse(Array(data), path: path))
        }
        guard let first = files.first else {
            throw ClusterConfigError(file: paths.joined(separator: ":"), message: "none of the kubeconfig files exists")
        }
        var clusters: [String: KubeconfigFile.Entry] = [:]
        var users: [String: KubeconfigFile.Entry] = [:]
        var contexts: [String: KubeconfigFile.Entry] = [:]
        var current: (name: String, file: String)?
        for f in files {
            for e in f.clusters where clusters[e.name] == nil { clusters[e.name] = e }
            for e in f.users where users[e.name] == nil { users[e.name] = e }
            for e in f.contexts where contexts[e.name] == nil { contexts[e.name] = e }
            if current == nil, let c = f.currentContext, !c.isEmpty { current = (c, f.path) }
        }
        let origin = paths.joined(separator: ":")
        guard let contextName = context ?? current?.name else {
            throw ClusterConfigError(file: first.path, key: "current-context", message: "not set and no context was given (--context or spec.kubernetes.context)")
        }
        guard let ctx = contexts[contextName] else {
            let known = contexts.keys.sorted().joined(separator: ", ")
            throw ClusterConfigError(file: context == nil ? (current?.file ?? first.path) : origin, key: context == nil ? "current-context" : "contexts",
                                     message: "no context named \"\(contextName)\" (known: \(known.isEmpty ? "none" : known))")
        }
        let clusterName = try ctx.requiredString("cluster")
        let userName = ctx.string("user")
        guard let cluster = clusters[clusterName] else {
            throw ClusterConfigError(file: ctx.file, key: "contexts[\(contextName)].context.cluster", message: "no cluster named \"\(clusterName)\"")
        }
        var tls = TLSConfiguration()
        let server = try cluster.requiredString("server")
        guard server.hasPrefix("https://") || server.hasPrefix("http://") else {
            throw ClusterConfigError(file: cluster.file, key: cluster.keyPath("server"), message: "must be an http:// or https:// URL")
        }
        tls.insecureSkipVerify = try cluster.bool("insecure-skip-tls-verify") ?? false
        tls.serverName = cluster.string("tls-server-name")
        if let data = cluster.string("certificate-authority-data") {
            tls.caData = try cluster.base64("certificate-authority-data", data)
        } else if let path = cluster.string("certificate-authority") {
            tls.caFile = try cluster.existingFile("certificate-authority", path)
        }
        var token: BearerToken?
        if let userName {
            guard let user = users[userName] else {
                throw ClusterConfigError(file: ctx.file, key: "contexts[\(contextName)].context.user", message: "no user named \"\(userName)\"")
            }
            if user.node["exec"] != nil || user.node["auth-provider"] != nil {
                throw ClusterConfigError(file: user.file, key: user.keyPath(user.node["exec"] != nil ? "exec" : "auth-provider"),
                                         message: "credential plugins are not supported; use a token, tokenFile or client certificate")
            }
            if user.node["username"] != nil || user.node["password"] != nil {
                throw ClusterConfigError(file: user.file, key: user.keyPath("username"), message: "basic authentication is not supported; use a token or client certificate")
            }
            if let value = user.string("token"), !value.isEmpty {
                token = .value(value)
            } else if let path = user.string("tokenFile") {
                token = .file(try user.existingFile("tokenFile", path))
            }
            if let data = user.string("client-certificate-data") {
                tls.clientCertData = try user.base64("client-certificate-data", data)
            } else if let path = user.string("client-certificate") {
                tls.clientCertFile = try user.existingFile("client-certificate", path)
            }
            if let data = user.string("client-key-data") {
                tls.clientKeyData = try user.base64("client-key-data", data)
            } else if let path = user.string("client-key") {
                tls.clientKeyFile = try user.existingFile("client-key", path)
            }
            let hasCert = tls.clientCertData != nil || tls.clientCertFile != nil
            let hasKey = tls.clientKeyData != nil || tls.clientKeyFile != nil
            if hasCert != hasKey {
                throw ClusterConfigError(file: user.file, key: user.keyPath(hasCert ? "client-key" : "client-certificate"),
                                         message: "a client certificate needs both a certificate and a key")
            }
        }
        let namespace = ctx.string("namespace").flatMap { $0.isEmpty ? nil : $0 } ?? "default"
        return ClusterConfig(server: server, tls: tls, token: token, namespace: namespace, origin: "kubeconfig \(origin), context \(contextName)")
    }
}

/// One kubeconfig file parsed into its named entries, each remembering its file and position.
struct KubeconfigFile {
    struct Entry {
        var name: String
        /// The inner mapping (`cluster:`, `user:` or `context:`).
        var node: Node
        var file: String
        var section: String
        var inner: String

        func keyPath(_ key: String) -> String {
            let at = node[key]?.location ?? node.location
            return "\(section)[\(name)].\(inner).\(key) (line \(at.line))"
        }

        func string(_ key: String) -> String? {
            guard let n = node[key], let s = n.scalar, !n.isNull else { return nil }
            return s.text
        }

        func requiredString(_ key: String) throws(ClusterConfigError) -> String {
            guard let s = string(key), !s.isEmpty else {
                throw ClusterConfigError(file: file, key: "\(section)[\(name)].\(inner).\(key) (line \(node.location.line))", message: "is required")
            }
            return s
        }

        func bool(_ key: String) throws(ClusterConfigError) -> Bool? {
            guard let s = string(key) else { return nil }
            switch s.lowercased() {
            case "true": return true
            case "false": return false
            default: throw ClusterConfigError(file: file, key: keyPath(key), message: "must be true or false, not \"\(s)\"")
            }
        }

        func base64(_ key: String, _ text: String) throws(ClusterConfigError) -> [UInt8] {
            let compact = text.filter { !$0.isWhitespace }
            guard let data = Data(base64Encoded: compact), !data.isEmpty else {
                throw ClusterConfigError(file: file, key: keyPath(key), message: "is not valid base64")
            }
            return Array(data)
        }

        /// Resolves a path relative to the kubeconfig's directory and checks it can be read.
        func existingFile(_ key: String, _ path: String) throws(ClusterConfigError) -> String {
            var resolved = path
            if !path.hasPrefix("/") {
                let dir = (file as NSString).deletingLastPathComponent
                resolved = dir.isEmpty ? path : dir + "/" + path
            }
            guard FileManager.default.isReadableFile(atPath: resolved) else {
                throw ClusterConfigError(file: file, key: keyPath(key), message: "file \(resolved) does not exist or cannot be read")
            }
            return resolved
        }
    }

    var path: String
    var currentContext: String?
    var clusters: [Entry] = []
    var users: [Entry] = []
    var contexts: [Entry] = []

    static func parse(_ bytes: [UInt8], path: String) throws(ClusterConfigError) -> KubeconfigFile {
        let result = YAMLLoader.parse(bytes, file: path)
        if let d = result.diagnostics.first(where: { $0.severity == .error }) {
            throw ClusterConfigError(file: path, message: "invalid YAML at line \(d.location?.line ?? 0): \(d.message)")
        }
        var out = KubeconfigFile(path: path)
        guard let root = result.documents.first?.root else { return out }
        guard root.mapping != nil else { throw ClusterConfigError(file: path, message: "is not a mapping") }
        if let c = root["current-context"], let s = c.scalar, !c.isNull { out.currentContext = s.text }
        func entries(_ section: String, _ inner: String) throws(ClusterConfigError) -> [Entry] {
            guard let list = root[section], !list.isNull else { return [] }
            guard let items = list.sequence else {
                throw ClusterConfigError(file: path, key: "\(section) (line \(list.location.line))", message: "must be a list")
            }
            var found: [Entry] = []
            for (i, item) in items.enumerated() {
                guard let name = item["name"]?.scalar?.text, !name.isEmpty else {
                    throw ClusterConfigError(file: path, key: "\(section)[\(i)].name (line \(item.location.line))", message: "is required")
                }
                let body = item[inner] ?? Node(.mapping([]), at: item.location)
                guard body.mapping != nil || body.isNull else {
                    throw ClusterConfigError(file: path, key: "\(section)[\(name)].\(inner) (line \(body.location.line))", message: "must be a mapping")
                }
                found.append(Entry(name: name, node: body.isNull ? Node(.mapping([]), at: body.location) : body, file: path, section: section, inner: inner))
            }
            return found
        }
        out.clusters = try entries("clusters", "cluster")
        out.users = try entries("users", "user")
        out.contexts = try entries("contexts", "context")
        return out
    }
}
