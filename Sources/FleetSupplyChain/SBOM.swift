import Foundation

/// What an SBOM says about the artifact it describes.
public struct SBOMDocument: Sendable, Hashable {
    public enum Format: String, Sendable, Hashable { case cyclonedx, spdx }
    public struct Subject: Sendable, Hashable {
        public var name: String
        public var version: String?
        /// Lower-case hex SHA-256 values listed for the subject (possibly several).
        public var sha256: [String]
    }

    public var format: Format
    /// `1.5` for CycloneDX, `2.3` for SPDX.
    public var specVersion: String
    /// The described artifact(s): CycloneDX `metadata.component`; SPDX described packages.
    public var subjects: [Subject]
    /// Number of components / packages listed in total.
    public var componentCount: Int

    /// `cyclonedx-1.5`, `spdx-2.3`.
    public var formatName: String { "\(format.rawValue)-\(specVersion)" }
}

/// Parses CycloneDX JSON (1.4–1.6) and SPDX 2.3 JSON and checks that an SBOM describes an artifact.
public enum SBOMParser {
    public static let cycloneDXVersions = ["1.4", "1.5", "1.6"]

    public static func parse(_ data: Data, path: String = "SBOM") throws(SupplyChainError) -> SBOMDocument {
        let obj = try EvidenceFile.jsonObject(data, what: "SBOM", path: path)
        if obj["bomFormat"] != nil { return try parseCycloneDX(obj, path: path) }
        if obj["spdxVersion"] != nil { return try parseSPDX(obj, path: path) }
        throw SupplyChainError("SBOM \(path) is neither CycloneDX (no bomFormat) nor SPDX (no spdxVersion)")
    }

    static func parseCycloneDX(_ o: [String: Any], path: String) throws(SupplyChainError) -> SBOMDocument {
        guard let bf = o["bomFormat"] as? String, bf == "CycloneDX" else {
            throw SupplyChainError("SBOM \(path): bomFormat is \(describe(o["bomFormat"])), expected \"CycloneDX\"")
        }
        guard let sv = o["specVersion"] as? String else {
            throw SupplyChainError("SBOM \(path): CycloneDX specVersion is missing or not a string")
        }
        guard cycloneDXVersions.contains(sv) else {
            throw SupplyChainError("SBOM \(path): CycloneDX specVersion \(sv) is not supported (1.4–1.6)")
        }
        guard let meta = o["metadata"] as? [String: Any] else {
            throw SupplyChainError("SBOM \(path): CycloneDX metadata is missing, so it does not say which artifact it describes")
        }
        guard let comp = meta["component"] as? [String: Any] else {
            throw SupplyChainError("SBOM \(path): CycloneDX metadata.component is missing, so it does not say which artifact it describes")
        }
        guard let name = comp["name"] as? String, !name.isEmpty else {
            throw SupplyChainError("SBOM \(path): CycloneDX metadata.component.name is missing")
        }
        var hashes: [String] = []
        if let hs = comp["hashes"] {
            guard let arr = hs as? [[String: Any]] else {
                throw SupplyChainError("SBOM \(path): CycloneDX metadata.component.hashes is not a list of {alg, content}")
            }
            for h in arr {
                guard let alg = h["alg"] as? String, let content = h["content"] as? String else {
                    throw SupplyChainError("SBOM \(path): CycloneDX metadata.component.hashes entry lacks alg or content")
                }
                if alg.uppercased() == "SHA-256" { hashes.append(content.lowercased()) }
            }
        }
        var count = 0
        if let comps = o["components"] {
            guard let arr = comps as? [[String: Any]] else {
                throw SupplyChainError("SBOM \(path): CycloneDX components is not a list of objects")
            }
            for (i, c) in arr.enumerated() where (c["name"] as? String) == nil {
                throw SupplyChainError("SBOM \(path): CycloneDX components[\(i)] has no name")
            }
            count = arr.count
        }
        let subject = SBOMDocument.Subject(name: name, version: comp["version"] as? String, sha256: hashes)
        return SBOMDocument(format: .cyclonedx, specVersion: sv, subjects: [subject], componentCount: count)
    }

    static func parseSPDX(_ o: [String: Any], path: String) throws(SupplyChainError) -> SBOMDocument {
        guard let v = o["spdxVersion"] as? String, v == "SPDX-2.3" else {
            throw SupplyChainError("SBOM \(path): spdxVersion is \(describe(o["spdxVersion"])), expected \"SPDX-2.3\"")
        }
        guard let docID = o["SPDXID"] as? String else {
            throw SupplyChainError("SBOM \(path): SPDX document has no SPDXID")
        }
        guard docID == "SPDXRef-DOCUMENT" else {
            throw SupplyChainError("SBOM \(path): SPDX document SPDXID is \(docID), expected SPDXRef-DOCUMENT")
        }
        let pkgsAny = o["packages"] ?? [Any]()
        guard let pkgs = pkgsAny as? [[String: Any]] else {
            throw SupplyChainError("SBOM \(path): SPDX packages is not a list of objects")
        }
        var byID: [String: SBOMDocument.Subject] = [:]
        for (i, p) in pkgs.enumerated() {
            guard let id = p["SPDXID"] as? String else {
                throw SupplyChainError("SBOM \(path): SPDX packages[\(i)] has no SPDXID")
            }
            guard let name = p["name"] as? String, !name.isEmpty else {
                throw SupplyChainError("SBOM \(path): SPDX package \(id) has no name")
            }
            var sums: [String] = []
            if let cs = p["checksums"] {
                guard let arr = cs as? [[String: Any]] else {
                    throw SupplyChainError("SBOM \(path): SPDX package \(id) checksums is not a list of {algorithm, checksumValue}")
                }
                for c in arr {
                    guard let alg = c["algorithm"] as? String, let val = c["checksumValue"] as? String else {
                        throw SupplyChainError("SBOM \(path): SPDX package \(id) has a checksum without algorithm or checksumValue")
                    }
                    if alg.uppercased() == "SHA256" { sums.append(val.lowercased()) }
                }
            }
            byID[id] = SBOMDocument.Subject(name: name, version: p["versionInfo"] as? String, sha256: sums)
        }
        var described: [String] = []
        if let dd = o["documentDescribes"] {
            guard let arr = dd as? [String] else {
                throw SupplyChainError("SBOM \(path): SPDX documentDescribes is not a list of SPDX ids")
            }
            described += arr
        }
        if let rels = o["relationships"] {
            guard let arr = rels as? [[String: Any]] else {
                throw SupplyChainError("SBOM \(path): SPDX relationships is not a list of objects")
            }
            for r in arr {
                let type = r["relationshipType"] as? String
                let from = r["spdxElementId"] as? String
                let to = r["relatedSpdxElement"] as? String
                if type == "DESCRIBES", from == docID, let to { described.append(to) }
                if type == "DESCRIBED_BY", to == docID, let from { described.append(from) }
            }
        }
        if described.isEmpty {
            throw SupplyChainError("SBOM \(path): SPDX document describes nothing (no documentDescribes and no DESCRIBES relationship)")
        }
        var subjects: [SBOMDocument.Subject] = []
        var seen = Set<String>()
        for id in described where seen.insert(id).inserted {
            guard let s = byID[id] else {
                throw SupplyChainError("SBOM \(path): SPDX document describes \(id), which is not one of its packages")
            }
            subjects.append(s)
        }
        return SBOMDocument(format: .spdx, specVersion: "2.3", subjects: subjects, componentCount: pkgs.count)
    }

    /// Nil when `doc` describes the artifact; otherwise why not. The subject's name must be the
    /// server name or the artifact's file name, its version the server version, and a SHA-256 hash,
    /// when listed, must equal `artifactDigest` (`sha256:<hex>`).
    public static func mismatch(_ doc: SBOMDocument, server: String, version: String, artifactFileName: String?, artifactDigest: String?) -> String? {
        let names = [server] + (artifactFileName.map { [$0] } ?? [])
        var reasons: [String] = []
        for s in doc.subjects {
            if !names.contains(s.name) || s.version != version {
                reasons.append("SBOM describes \(s.name) \(s.version ?? "(no version)"), not \(server) \(version)")
                continue
            }
            if let d = artifactDigest, !s.sha256.isEmpty, !s.sha256.contains(String(d.dropFirst("sha256:".count))) {
                reasons.append("SBOM hash of \(s.name) \(version) is sha256:\(s.sha256[0].prefix(12))…, not the artifact digest \(ArtifactDigest.short(d))")
                continue
            }
            return nil
        }
        return reasons.first ?? "SBOM describes no artifact"
    }

    static func describe(_ v: Any?) -> String {
        guard let v else { return "missing" }
        if let s = v as? String { return "\"\(s)\"" }
        return "\(v)"
    }
}
