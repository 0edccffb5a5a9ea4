import FleetCore
import FleetSupplyChain
import FleetYAML
import Foundation

/// Connects the catalog's policies and evidence files to the supply-chain gate.
///
/// Every file it reads (evidence, trusted keys, `${MANIFEST_DIR}/…` artifacts) must resolve inside the
/// manifest root once links are followed: one that leaves it is an error naming the path as written in
/// the manifest, and is never read.
public struct SupplyChainWiring {
    public var catalog: Catalog
    public var baseDirectory: String
    public var cache: VerificationCache?

    public struct KeyError: Error, CustomStringConvertible {
        public var description: String
    }

    public init(catalog: Catalog, baseDirectory: String, cache: VerificationCache? = nil) {
        self.catalog = catalog
        self.baseDirectory = baseDirectory
        self.cache = cache
    }

    public var root: String {
        baseDirectory.hasPrefix("/") ? baseDirectory : FileManager.default.currentDirectoryPath + "/" + baseDirectory
    }

    /// The gate policies that apply to an environment, with their trusted keys loaded.
    public func policies(for environment: Environment) throws -> (gate: [GatePolicy], names: [String]) {
        var out: [GatePolicy] = []
        for p in catalog.policies where p.applies(to: environment.name) {
            var keys: [TrustedKey] = []
            for k in p.trustedKeys {
                let pem: String
                switch k.material {
                case .pem(let text): pem = text
                case .file(let path):
                    let full = try confined(path, what: "policy \(p.name): trusted key \(k.name)")
                    guard let data = FileManager.default.contents(atPath: full) else {
                        throw KeyError(description: "policy \(p.name): cannot read trusted key \(k.name) from \(full)")
                    }
                    pem = String(decoding: data, as: UTF8.self)
                }
                do { keys.append(try TrustedKey(name: k.name, pem: pem)) } catch {
                    throw KeyError(description: "policy \(p.name): \(error)")
                }
            }
            out.append(GatePolicy(
                name: p.name, mode: p.mode == .enforce ? .enforce : .warn, requireSignature: p.requireSignature, trustedKeys: keys,
                requireSBOM: p.requireSBOM, maxSeverity: VulnerabilitySeverity(rawValue: p.maxSeverity.rawValue) ?? .critical,
                requireScan: p.requireScan, requireProvenance: p.requireProvenance, requireDigest: p.requireDigest,
                allowedRegistries: p.allowedRegistries, allowedCommands: p.allowedCommands))
        }
        return (out, out.map(\.name))
    }

    public func absolute(_ rootRelative: String) -> String {
        (root + "/" + rootRelative as NSString).standardizingPath
    }

    /// `absolute(path)`, refused when following its links leads out of the manifest root.
    public func confined(_ rootRelative: String, what: String) throws -> String {
        let full = absolute(rootRelative)
        if RootConfinement(root: root)?.contains(full) == false {
            throw KeyError(description: "\(what): `\(rootRelative)` is a symbolic link that leads out of the manifest root; it is not read")
        }
        return full
    }

    /// `command[0]` as the host would run it: absolute, under the manifest directory, or found on PATH.
    public func resolveCommand(_ server: DesiredServer) throws -> String? {
        guard let program = server.command?.first else { return nil }
        if program.hasPrefix("/") { return program }
        let prefix = "${MANIFEST_DIR}/"
        if program.hasPrefix(prefix) {
            return try confined((server.manifestDirectory.isEmpty ? "" : server.manifestDirectory + "/") + program.dropFirst(prefix.count),
                                what: "server \(server.name): artifact.command")
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    public func evidence(for server: DesiredServer, driver: DriverKind) throws -> ArtifactEvidence {
        let spec = catalog.server(server.name)?.supplyChain
        let commandPath = driver == .kubernetes ? nil : try resolveCommand(server)
        func file(_ key: String, _ path: String?) throws -> String? {
            try path.map { try confined($0, what: "server \(server.name): supplyChain.\(key)") }
        }
        return ArtifactEvidence(
            server: server.name, version: server.version,
            image: driver == .kubernetes ? server.image : nil,
            commandPath: commandPath,
            artifactPath: try file("artifact", spec?.artifact) ?? commandPath,
            declaredDigest: server.digest,
            signaturePath: try file("signature", spec?.signature), sbomPath: try file("sbom", spec?.sbom),
            scanPath: try file("scan", spec?.scan), provenancePath: try file("provenance", spec?.provenance))
    }

    /// A verdict for every server of the desired state.
    public func verdicts(for desired: DesiredState, environment: Environment) throws -> [String: PolicyVerdict] {
        let (policies, names) = try self.policies(for: environment)
        let gate = SupplyChainGate(policies: policies, cache: cache)
        var out: [String: PolicyVerdict] = [:]
        for server in desired.servers {
            let v = gate.evaluate(try evidence(for: server, driver: environment.driver))
            out[server.name] = PolicyVerdict(
                server: server.name, revision: server.revision,
                decision: v.decision == .blocked ? .blocked : v.decision == .warned ? .warned : .admitted,
                policies: names.isEmpty ? [SupplyChainGate.builtinPolicyName] : names,
                reasons: v.reasons, evidence: v.evidence)
        }
        return out
    }

    /// Shows each trusted key of the desired state's policies by its fingerprint (SHA-256 of the DER
    /// public key, as `openssl pkey -pubin -outform DER | sha256sum`), so swapping a key file is a change.
    public func recordKeyFingerprints(in desired: inout DesiredState, environment: Environment) throws {
        let (policies, _) = try self.policies(for: environment)
        for i in desired.objects.indices where desired.objects[i].kind == .policy {
            guard let p = policies.first(where: { $0.name == desired.objects[i].name }) else { continue }
            for k in p.trustedKeys {
                guard let f = desired.objects[i].fields.firstIndex(where: { $0.path == "trustedKeys." + k.name }) else { continue }
                desired.objects[i].fields[f] = SpecField(path: "trustedKeys." + k.name, display: "\(k.algorithm) sha256:\(k.fingerprint.prefix(12))",
                                                         canonical: "\(k.algorithm):\(k.fingerprint)")
            }
        }
    }

    /// Digests of every file the verdicts rest on (evidence, artifacts, key files): relative to the root
    /// when inside it, else absolute. `apply plan.json` refuses the plan when one of them moved.
    public func evidenceDigests(for desired: DesiredState, environment: Environment) throws -> [FileDigest] {
        var paths = Set<String>()
        for server in desired.servers {
            let e = try evidence(for: server, driver: environment.driver)
            for p in [e.artifactPath, e.signaturePath, e.sbomPath, e.scanPath, e.provenancePath].compactMap({ $0 }) { paths.insert(p) }
        }
        for p in catalog.policies where p.applies(to: environment.name) {
            for k in p.trustedKeys { if case .file(let path) = k.material { paths.insert(try confined(path, what: "policy \(p.name)")) } }
        }
        let base = (root as NSString).standardizingPath + "/"
        return paths.sorted().map { path in
            let digest = (try? ArtifactDigest.sha256(ofFile: path)) ?? "absent"
            return FileDigest(path: path.hasPrefix(base) ? String(path.dropFirst(base.count)) : path, sha256: digest)
        }
    }

    /// The files a catalog's verdicts read under the root (for a git baseline, written out first).
    public static func referencedFiles(_ catalog: Catalog) -> [String] {
        var out: [String] = []
        for s in catalog.servers {
            if let sc = s.supplyChain { out += [sc.artifact, sc.signature, sc.sbom, sc.scan, sc.provenance].compactMap { $0 } }
            if let program = s.artifact.command?.first, program.hasPrefix("${MANIFEST_DIR}/") {
                let dir = s.source.relativeDirectory
                out.append((dir.isEmpty ? "" : dir + "/") + program.dropFirst("${MANIFEST_DIR}/".count))
            }
        }
        for p in catalog.policies {
            for k in p.trustedKeys { if case .file(let path) = k.material { out.append(path) } }
        }
        return out
    }
}
