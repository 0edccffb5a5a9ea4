import FleetCore
import FleetSupplyChain
import Foundation

/// Connects the catalog's policies and evidence files to the supply-chain gate.
struct SupplyChainWiring {
    var catalog: Catalog
    var baseDirectory: String
    var cache: VerificationCache?

    struct KeyError: Error, CustomStringConvertible {
        var description: String
    }

    /// The gate policies that apply to an environment, with their trusted keys loaded.
    func policies(for environment: Environment) throws -> (gate: [GatePolicy], names: [String]) {
        var out: [GatePolicy] = []
        for p in catalog.policies where p.applies(to: environment.name) {
            var keys: [TrustedKey] = []
            for k in p.trustedKeys {
                let pem: String
                switch k.material {
                case .pem(let text): pem = text
                case .file(let path):
                    let full = absolute(path)
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

    func absolute(_ rootRelative: String) -> String {
        let base = baseDirectory.hasPrefix("/") ? baseDirectory : FileManager.default.currentDirectoryPath + "/" + baseDirectory
        return (base + "/" + rootRelative as NSString).standardizingPath
    }

    /// `command[0]` as the host would run it: absolute, under the manifest directory, or found on PATH.
    func resolveCommand(_ server: DesiredServer) -> String? {
        guard let program = server.command?.first else { return nil }
        if program.hasPrefix("/") { return program }
        let prefix = "${MANIFEST_DIR}/"
        if program.hasPrefix(prefix) {
            return absolute((server.manifestDirectory.isEmpty ? "" : server.manifestDirectory + "/") + program.dropFirst(prefix.count))
        }
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    func evidence(for server: DesiredServer, driver: DriverKind) -> ArtifactEvidence {
        let spec = catalog.server(server.name)?.supplyChain
        let commandPath = driver == .kubernetes ? nil : resolveCommand(server)
        return ArtifactEvidence(
            server: server.name, version: server.version,
            image: driver == .kubernetes ? server.image : nil,
            commandPath: commandPath,
            artifactPath: spec?.artifact.map(absolute) ?? commandPath,
            declaredDigest: server.digest,
            signaturePath: spec?.signature.map(absolute), sbomPath: spec?.sbom.map(absolute),
            scanPath: spec?.scan.map(absolute), provenancePath: spec?.provenance.map(absolute))
    }

    /// A verdict for every server of the desired state.
    func verdicts(for desired: DesiredState, environment: Environment) throws -> [String: PolicyVerdict] {
        let (policies, names) = try self.policies(for: environment)
        let gate = SupplyChainGate(policies: policies, cache: cache)
        var out: [String: PolicyVerdict] = [:]
        for server in desired.servers {
            let v = gate.evaluate(evidence(for: server, driver: environment.driver))
            out[server.name] = PolicyVerdict(
                server: server.name, revision: server.revision,
                decision: v.decision == .blocked ? .blocked : v.decision == .warned ? .warned : .admitted,
                policies: names.isEmpty ? [SupplyChainGate.builtinPolicyName] : names,
                reasons: v.reasons, evidence: v.evidence)
        }
        return out
    }
}
