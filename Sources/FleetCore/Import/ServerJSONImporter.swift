import Foundation

/// Turns an official MCP registry `server.json` into a `Server` manifest (YAML text), mapping what
/// overlaps — packages, transports, environment variables with `isSecret` — and saying in comments
/// what needs a human (an image digest to pin, arguments without a value).
public enum ServerJSONImporter {
    public struct Options: Sendable {
        public var tenant: String
        public var name: String?
        public var port: Int?
        /// Which package to use when there are several: by `registryType` (`oci`, `pypi`, `npm`, …).
        public var registryType: String?
        public var secretName: String?

        public init(tenant: String, name: String? = nil, port: Int? = nil, registryType: String? = nil, secretName: String? = nil) {
            self.tenant = tenant
            self.name = name
            self.port = port
            self.registryType = registryType
            self.secretName = secretName
        }
    }

    public struct ImportError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    struct ServerJSON: Decodable {
        var name: String
        var description: String?
        var version: String?
        var packages: [Package]?
        var remotes: [Remote]?
    }

    struct Package: Decodable {
        var registryType: String?
        var identifier: String
        var version: String?
        var transport: Transport?
        var runtimeHint: String?
        var packageArguments: [Argument]?
        var environmentVariables: [EnvironmentVariable]?
    }

    struct Transport: Decodable {
        var type: String
        var url: String?
    }

    struct Remote: Decodable {
        var type: String
        var url: String?
    }

    struct Argument: Decodable {
        var type: String?
        var name: String?
        var value: String?
        var valueHint: String?
        var `default`: String?
    }

    struct EnvironmentVariable: Decodable {
        var name: String
        var description: String?
        var isRequired: Bool?
        var isSecret: Bool?
        var `default`: String?
        var value: String?
    }

    public static func importServer(_ json: Data, options: Options) throws -> String {
        let doc: ServerJSON
        do { doc = try JSONDecoder().decode(ServerJSON.self, from: json) } catch {
            throw ImportError(description: "not a server.json: \(error)")
        }
        let candidates = doc.packages ?? []
        guard !candidates.isEmpty else {
            if doc.remotes?.isEmpty == false {
                throw ImportError(description: "\(doc.name) has only `remotes` (a hosted server); mcpfleet runs packages, not remote endpoints")
            }
            throw ImportError(description: "\(doc.name) lists no packages")
        }
        let package: Package
        if let want = options.registryType {
            guard let p = candidates.first(where: { $0.registryType == want }) else {
                throw ImportError(description: "\(doc.name) has no `\(want)` package (it has: \(candidates.compactMap(\.registryType).joined(separator: ", ")))")
            }
            package = p
        } else {
            // Prefer an OCI image (it runs everywhere), then the first package.
            package = candidates.first { $0.registryType == "oci" } ?? candidates[0]
        }

        let name = try options.name ?? derivedName(doc.name)
        guard Syntax.isDNSLabel(name) else { throw ImportError(description: "`\(name)` is not a valid server name (DNS-1123 label); pass --name") }
        guard let version = package.version ?? doc.version, Syntax.versionProblem(version) == nil else {
            throw ImportError(description: "\(doc.name): the package has no concrete version (`latest` and ranges are not allowed); pin one")
        }

        var notes: [String] = []
        var lines: [String] = []
        func q(_ s: String) -> String { yamlQuote(s) }
        lines.append("# Imported from the MCP registry server.json of \(doc.name) \(version) (\(package.registryType ?? "package") \(package.identifier)).")
        lines.append("apiVersion: \(APIVersion.v1alpha1)")
        lines.append("kind: Server")
        lines.append("metadata:")
        lines.append("  name: \(name)")
        lines.append("  annotations:")
        lines.append("    mcpfleet.io/registry-name: \(q(doc.name))")
        lines.append("spec:")
        if let d = doc.description { lines.append("  description: \(q(d))") }
        lines.append("  version: \(q(version))")
        lines.append("  tenant: \(options.tenant)")
        lines.append("  artifact:")
        var args: [String] = []
        for a in package.packageArguments ?? [] {
            let value = (a.value ?? a.default).map(substitutePort)
            switch (a.type ?? "positional", a.name, value) {
            case ("named", let n?, let v?): args += [n, v]
            case ("named", let n?, nil) where a.valueHint == nil: args.append(n)
            case (_, _, let v?): args.append(v)
            default: notes.append("argument \(a.name ?? a.valueHint ?? "?") has no value: add it to `command` yourself")
            }
        }
        switch package.registryType {
        case "oci":
            let ref = package.identifier.contains("@") || package.identifier.split(separator: "/").last?.contains(":") == true
                ? package.identifier : "\(package.identifier):\(version)"
            lines.append("    image: \(q(ref))")
            if !ref.contains("@sha256:") { notes.append("pin the image by digest (`image: …@sha256:…` and `digest:`) before production policies admit it") }
            if !args.isEmpty { notes.append("the image's entrypoint receives no arguments from this manifest; package arguments were: \(args.joined(separator: " "))") }
        case "pypi":
            let runner = package.runtimeHint ?? "uvx"
            lines.append("    command: [\((["\(runner)", "\(package.identifier)==\(version)"] + args).map(q).joined(separator: ", "))]")
        case "npm":
            let runner = package.runtimeHint ?? "npx"
            lines.append("    command: [\(([runner, "-y", "\(package.identifier)@\(version)"] + args).map(q).joined(separator: ", "))]")
        default:
            let runner = package.runtimeHint ?? package.identifier
            lines.append("    command: [\(([runner] + args).map(q).joined(separator: ", "))]")
            notes.append("registry type `\(package.registryType ?? "unknown")`: check the command")
        }
        let transportType = package.transport?.type ?? "stdio"
        guard let transport = TransportType(rawValue: transportType) else {
            throw ImportError(description: "\(doc.name): transport `\(transportType)` is not one of stdio, streamable-http, sse")
        }
        lines.append("  transport:")
        lines.append("    type: \(transport.rawValue)")
        // Host drivers give every server a port block (a stdio server's bridge listens there too).
        let port = options.port ?? 8080
        if options.port == nil {
            notes.append(transport == .stdio
                ? "the port defaults to 8080 (the local driver's stdio bridge listens there); give each server its own free block"
                : "the port defaults to 8080; set `transport.port` to what the server listens on (it gets `${PORT}`)")
        }
        lines.append("    port: \(port)")
        if transport != .stdio, let url = package.transport?.url, let path = urlPath(url) { lines.append("    path: \(q(path))") }
        let vars = package.environmentVariables ?? []
        if !vars.isEmpty {
            let secretName = options.secretName ?? "\(name)-secrets"
            lines.append("  env:")
            for v in vars {
                guard Syntax.isEnvName(v.name) else { notes.append("skipped environment variable `\(v.name)`: not a valid name"); continue }
                lines.append("    - name: \(v.name)")
                if let d = v.description { lines.append("      description: \(q(d))") }
                if v.isSecret == true {
                    let key = v.name.lowercased().map { $0 == "_" ? "-" : $0 }.map(String.init).joined()
                    lines.append("      isSecret: true")
                    lines.append("      secretRef: {name: \(secretName), key: \(key)}")
                } else if let value = v.value ?? v.default {
                    lines.append("      value: \(q(substitutePort(value)))")
                } else {
                    lines.append("      value: \"\"")
                    if v.isRequired == true { notes.append("`\(v.name)` is required and has no default: set its value") }
                }
            }
        }
        if !notes.isEmpty {
            lines.insert(contentsOf: ["# Review before committing:"] + notes.map { "#   - \($0)" }, at: 1)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The registry's `{port}` placeholder (server.json variable syntax) as mcpfleet's `${PORT}`, the
    /// port the driver gives each instance.
    static func substitutePort(_ s: String) -> String {
        var out = ""
        var rest = Substring(s)
        while let r = rest.range(of: "{port}", options: .caseInsensitive) {
            out += rest[..<r.lowerBound]
            out += out.hasSuffix("$") ? String(rest[r]) : "${PORT}"
            rest = rest[r.upperBound...]
        }
        return out + rest
    }

    /// `io.github.user/local-weather` → `local-weather`.
    static func derivedName(_ registryName: String) throws -> String {
        let last = registryName.split(separator: "/").last.map(String.init) ?? registryName
        var out = ""
        for c in last.lowercased() {
            if c.isASCII && (c.isLetter || c.isNumber) { out.append(c) } else if !out.hasSuffix("-") { out.append("-") }
        }
        while out.hasPrefix("-") { out.removeFirst() }
        while out.hasSuffix("-") { out.removeLast() }
        guard !out.isEmpty else { throw ImportError(description: "cannot derive a server name from `\(registryName)`; pass --name") }
        return String(out.prefix(63))
    }

    static func urlPath(_ url: String) -> String? {
        guard let scheme = url.range(of: "://") else { return nil }
        let rest = url[scheme.upperBound...]
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        let path = String(rest[slash...]).split(separator: "?").first.map(String.init) ?? "/"
        return path.contains("{") ? nil : path
    }

    /// A double-quoted YAML scalar: safe for any text (no coercion, no injection).
    static func yamlQuote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 || u.value == 0x7f { out += String(format: "\\x%02x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
