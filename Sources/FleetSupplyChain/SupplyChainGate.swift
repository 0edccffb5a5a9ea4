import FleetCore
import Crypto
import Foundation
import Synchronization

/// Decides whether a server's artifact may roll out, under the policies that apply to the target
/// environment.
///
/// Rules:
/// - evidence that a policy *requires* must be present and valid;
/// - evidence that is *present* is always checked (a present SBOM that describes another artifact, a
///   present signature that no trusted key verifies, a scan over the ceiling are problems even when
///   the policy does not require that kind of evidence);
/// - a declared digest (`spec.artifact.digest`) must match the artifact file or pinned image digest;
///   with no policies at all, only this check runs, as if under a built-in enforcing policy;
/// - a problem under an `enforce` policy blocks; problems only under `warn` policies warn.
public struct SupplyChainGate: Sendable {
    public let policies: [GatePolicy]
    public let cache: VerificationCache?
    /// Artifact files hashed by this gate: a fleet of servers running one binary hashes it once.
    let digests = FileDigestMemo()

    public init(policies: [GatePolicy], cache: VerificationCache? = nil) {
        self.policies = policies
        self.cache = cache
    }

    /// Name of the implicit policy used when no policy applies.
    public static let builtinPolicyName = "(built-in)"

    public func evaluate(_ e: ArtifactEvidence) -> GateVerdict {
        let inputs = Inputs(e, digests: digests)
        var key: String?
        if let cache {
            let k = VerificationCache.key(
                evidence: e, artifactDigest: inputs.artifactKeyPart,
                evidenceDigests: [inputs.signature.keyPart, inputs.sbom.keyPart, inputs.scan.keyPart, inputs.provenance.keyPart],
                policies: policies)
            if let v = cache.lookup(k) { return v }
            key = k
        }
        var evaluation = Evaluation(evidence: e, inputs: inputs, policies: policies)
        let verdict = evaluation.run()
        if let cache, let key { cache.store(verdict, forKey: key) }
        return verdict
    }

    /// Evaluate several servers (in order).
    public func evaluate(_ all: [ArtifactEvidence]) -> [GateVerdict] { all.map(evaluate) }
}

/// SHA-256 digests of files by path, reused while the file's identity (device, inode, size, modification
/// time) is what it was when hashed; a file replaced or rewritten is hashed again.
final class FileDigestMemo: Sendable {
    private struct Identity: Hashable {
        var device: UInt64, inode: UInt64, size: Int64, seconds: Int, nanoseconds: Int
    }
    private let known = Mutex<[String: (Identity, SHA256Digest)]>([:])

    private static func identity(_ path: String) -> Identity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return Identity(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
                        seconds: st.st_mtim.tv_sec, nanoseconds: st.st_mtim.tv_nsec)
    }

    func digest(_ path: String) throws(SupplyChainError) -> SHA256Digest {
        let before = Self.identity(path)
        if let before, let hit = known.withLock({ $0[path] }), hit.0 == before { return hit.1 }
        let digest = try SignatureVerifier.streamDigest(path)
        // Kept only when the file did not change while it was read.
        if let before, Self.identity(path) == before { known.withLock { $0[path] = (before, digest) } }
        return digest
    }
}

/// An evidence file as loaded for one evaluation.
enum Loaded {
    case absent
    case unreadable(String)
    case data(Data, digest: String)

    init(path: String?, what: String) {
        guard let path else {
            self = .absent
            return
        }
        do {
            let d = try EvidenceFile.read(path, what: what)
            self = .data(d, digest: ArtifactDigest.sha256(of: d))
        } catch {
            self = .unreadable(error.message)
        }
    }

    var keyPart: String {
        switch self {
        case .absent: "absent"
        case .unreadable(let m): "unreadable:\(m)"
        case .data(_, let d): d
        }
    }

    var digest: String? {
        if case .data(_, let d) = self { return d }
        return nil
    }
}

/// Everything read from disk for one evaluation; read once, shared by all policies.
struct Inputs {
    var fileDigest: Result<SHA256Digest, SupplyChainError>?
    var image: ImageReference?
    var signature: Loaded
    var sbom: Loaded
    var scan: Loaded
    var provenance: Loaded

    init(_ e: ArtifactEvidence, digests: FileDigestMemo? = nil) {
        if let p = e.artifactPath {
            do throws(SupplyChainError) {
                if let digests {
                    fileDigest = .success(try digests.digest(p))
                } else {
                    fileDigest = .success(try SignatureVerifier.streamDigest(p))
                }
            } catch { fileDigest = .failure(error) }
        }
        image = e.image.map(ImageReference.init(parsing:))
        signature = Loaded(path: e.signaturePath, what: "signature")
        sbom = Loaded(path: e.sbomPath, what: "SBOM")
        scan = Loaded(path: e.scanPath, what: "scan report")
        provenance = Loaded(path: e.provenancePath, what: "provenance")
    }

    var fileDigestString: String? {
        if case .success(let d)? = fileDigest { return "sha256:" + hex(d) }
        return nil
    }

    /// The digest the evidence must name: the artifact file's, else the pinned image digest.
    var subjectDigest: String? { fileDigestString ?? image?.digest }

    var artifactKeyPart: String {
        switch fileDigest {
        case nil: "no-file"
        case .success(let d)?: "sha256:" + hex(d)
        case .failure(let e)?: "unreadable:\(e.message)"
        }
    }
}

struct Evaluation {
    let evidence: ArtifactEvidence
    let inputs: Inputs
    let policies: [GatePolicy]

    private var findings: [GateFinding] = []
    private var record = EvidenceSummary()
    private var keyResults: [String: Bool] = [:]  // key fingerprint -> signature verified
    private var sbomResult: Result<SBOMDocument, SupplyChainError>?
    private var scanResult: Result<ScanSummary, SupplyChainError>?
    private var provResult: Result<ProvenanceStatement, SupplyChainError>?
    private var dsseFailed = false
    private var artifactBytes: [UInt8]?

    init(evidence: ArtifactEvidence, inputs: Inputs, policies: [GatePolicy]) {
        self.evidence = evidence
        self.inputs = inputs
        self.policies = policies
    }

    mutating func run() -> GateVerdict {
        record.artifactDigest = inputs.subjectDigest
        record.signatureDigest = inputs.signature.digest
        record.sbomDigest = inputs.sbom.digest
        record.scanDigest = inputs.scan.digest
        record.provenanceDigest = inputs.provenance.digest
        if policies.isEmpty {
            let builtin = GatePolicy(name: SupplyChainGate.builtinPolicyName)
            for m in digestProblems(builtin) { add(builtin, "digest", m) }
        }
        for p in policies {
            for m in digestProblems(p) { add(p, "digest", m) }
            for m in registryProblems(p) { add(p, "registry", m) }
            for m in commandProblems(p) { add(p, "command", m) }
            for m in signatureProblems(p) { add(p, "signature", m) }
            for m in sbomProblems(p) { add(p, "sbom", m) }
            for m in scanProblems(p) { add(p, "scan", m) }
            for m in provenanceProblems(p) { add(p, "provenance", m) }
        }
        if case .success(let st)? = provResult, let d = inputs.subjectDigest, st.names(digest: d), !dsseFailed {
            record.provenanceVerified = true
        }
        let decision: GateDecision =
            findings.isEmpty ? .admitted : findings.contains { $0.mode == .enforce } ? .blocked : .warned
        var reasons: [String] = []
        for f in findings where !reasons.contains(f.message) { reasons.append(f.message) }
        return GateVerdict(server: evidence.server, decision: decision, reasons: reasons, findings: findings, evidence: record)
    }

    private mutating func add(_ p: GatePolicy, _ check: String, _ message: String) {
        findings.append(GateFinding(policy: p.name, mode: p.mode, check: check, message: message))
    }

    // MARK: digest

    func digestProblems(_ p: GatePolicy) -> [String] {
        var out: [String] = []
        var declared: String?
        if let d = evidence.declaredDigest {
            declared = ArtifactDigest.normalize(d)
            if declared == nil { out.append("the manifest's artifact digest \(d) is not of the form sha256:<64 hex digits>") }
        } else if p.requireDigest {
            out.append("the manifest declares no artifact digest (spec.artifact.digest), which policy \(p.name) requires")
        }
        if let img = inputs.image, img.digest == nil {
            if let raw = img.rawDigest {
                out.append("image \(evidence.image ?? "") has a malformed digest @\(raw)")
            } else if p.requireDigest {
                out.append("image \(evidence.image ?? "") is not pinned by digest (@sha256:…), which policy \(p.name) requires")
            }
        }
        if case .failure(let err)? = inputs.fileDigest, declared != nil || p.requireDigest {
            out.append("cannot compute the artifact digest: \(err.message)")
        }
        if let declared {
            let file = inputs.fileDigestString
            let img = inputs.image?.digest
            if let file, let img {
                if file != declared && img != declared {
                    out.append("artifact digest \(ArtifactDigest.short(file)) and image digest \(ArtifactDigest.short(img)) both differ from the manifest's \(ArtifactDigest.short(declared))")
                }
            } else if let file, file != declared {
                out.append("artifact digest \(ArtifactDigest.short(file)) differs from the manifest's \(ArtifactDigest.short(declared))")
            } else if let img, img != declared {
                out.append("image digest \(ArtifactDigest.short(img)) differs from the manifest's \(ArtifactDigest.short(declared))")
            }
        }
        return out
    }

    // MARK: registries and commands

    func registryProblems(_ p: GatePolicy) -> [String] {
        guard !p.allowedRegistries.isEmpty, let img = inputs.image, let ref = evidence.image else { return [] }
        let subjects = [img.repository, img.fullyQualifiedRepository] + (img.tag.map { ["\(img.repository):\($0)"] } ?? [])
        if subjects.contains(where: { Glob.anyMatches(p.allowedRegistries, $0) }) { return [] }
        return ["image \(ref) is not from an allowed registry (policy \(p.name) allows: \(p.allowedRegistries.joined(separator: ", ")))"]
    }

    func commandProblems(_ p: GatePolicy) -> [String] {
        guard !p.allowedCommands.isEmpty, let cmd = evidence.commandPath else { return [] }
        if Glob.anyMatches(p.allowedCommands, cmd) { return [] }
        return ["command \(cmd) is not an allowed command (policy \(p.name) allows: \(p.allowedCommands.joined(separator: ", ")))"]
    }

    // MARK: signature

    mutating func signatureProblems(_ p: GatePolicy) -> [String] {
        switch inputs.signature {
        case .absent:
            return p.requireSignature ? ["no signature (spec.supplyChain.signature), which policy \(p.name) requires"] : []
        case .unreadable(let m):
            return p.requireSignature || !p.trustedKeys.isEmpty ? [m] : []
        case .data(let sig, _):
            if p.trustedKeys.isEmpty {
                return p.requireSignature ? ["policy \(p.name) requires a signature but trusts no keys"] : []
            }
            guard let fileDigest = inputs.fileDigest else {
                return ["no artifact file to check the signature against (set spec.supplyChain.artifact)"]
            }
            guard case .success(let digest) = fileDigest else {
                if case .failure(let err) = fileDigest { return ["cannot check the signature: \(err.message)"] }
                return []
            }
            var matched: TrustedKey?
            var loadError: String?
            for key in p.trustedKeys {
                if let known = keyResults[key.fingerprint] {
                    if known { matched = key; break } else { continue }
                }
                let ok: Bool
                do {
                    ok = try SignatureVerifier.verify(signatureFile: sig, keys: [key], artifactDigest: digest) { () throws(SupplyChainError) in
                        try self.loadArtifact()
                    } != nil
                } catch {
                    loadError = error.message
                    ok = false
                }
                keyResults[key.fingerprint] = ok
                if ok { matched = key; break }
            }
            if let matched {
                if record.signedBy == nil {
                    record.signedBy = matched.name
                    record.signatureAlgorithm = matched.algorithm
                    record.signerFingerprint = matched.fingerprint
                }
                return []
            }
            if let loadError { return ["cannot check the signature: \(loadError)"] }
            return ["signature does not verify against any trusted key (tried: \(p.trustedKeys.map(\.name).joined(separator: ", ")))"]
        }
    }

    func loadArtifact() throws(SupplyChainError) -> [UInt8] {
        guard let p = evidence.artifactPath else { throw SupplyChainError("no artifact file") }
        return try SignatureVerifier.readAll(p)
    }

    // MARK: SBOM

    mutating func sbomProblems(_ p: GatePolicy) -> [String] {
        switch inputs.sbom {
        case .absent:
            return p.requireSBOM ? ["no SBOM (spec.supplyChain.sbom), which policy \(p.name) requires"] : []
        case .unreadable(let m):
            return [m]
        case .data(let data, _):
            if sbomResult == nil {
                do { sbomResult = .success(try SBOMParser.parse(data, path: evidence.sbomPath ?? "SBOM")) } catch {
                    sbomResult = .failure(error)
                }
            }
            switch sbomResult! {
            case .failure(let err): return [err.message]
            case .success(let doc):
                record.sbomFormat = doc.formatName
                let fileName = evidence.artifactPath.map { URL(fileURLWithPath: $0).lastPathComponent }
                if let m = SBOMParser.mismatch(doc, server: evidence.server, version: evidence.version,
                                               artifactFileName: fileName, artifactDigest: inputs.subjectDigest) {
                    return [m]
                }
                return []
            }
        }
    }

    // MARK: scan

    mutating func scanProblems(_ p: GatePolicy) -> [String] {
        switch inputs.scan {
        case .absent:
            guard p.scanRequired else { return [] }
            let why = p.requireScan ? "requires one" : "sets maxSeverity \(p.maxSeverity.rawValue)"
            return ["no vulnerability scan report (spec.supplyChain.scan); policy \(p.name) \(why)"]
        case .unreadable(let m):
            return [m]
        case .data(let data, _):
            if scanResult == nil {
                do { scanResult = .success(try ScanReportParser.parse(data, path: evidence.scanPath ?? "scan report")) } catch {
                    scanResult = .failure(error)
                }
            }
            switch scanResult! {
            case .failure(let err): return [err.message]
            case .success(let s):
                record.scan = s.scanCounts
                return ScanReportParser.ceilingViolation(s, ceiling: p.maxSeverity).map { [$0] } ?? []
            }
        }
    }

    // MARK: provenance

    mutating func provenanceProblems(_ p: GatePolicy) -> [String] {
        switch inputs.provenance {
        case .absent:
            return p.requireProvenance ? ["no provenance statement (spec.supplyChain.provenance), which policy \(p.name) requires"] : []
        case .unreadable(let m):
            return [m]
        case .data(let data, _):
            if provResult == nil {
                do { provResult = .success(try ProvenanceParser.parse(data, path: evidence.provenancePath ?? "provenance")) } catch {
                    provResult = .failure(error)
                }
            }
            switch provResult! {
            case .failure(let err): return [err.message]
            case .success(let st):
                var out: [String] = []
                if let d = inputs.subjectDigest {
                    if !st.names(digest: d) {
                        let listed = st.subjects.compactMap { $0.sha256.map { "sha256:\($0)" } }.map(ArtifactDigest.short)
                        out.append("provenance subjects (\(listed.isEmpty ? "none with a sha256 digest" : listed.joined(separator: ", "))) do not include the artifact digest \(ArtifactDigest.short(d))")
                    }
                } else {
                    out.append("cannot check provenance: no artifact file or pinned image digest")
                }
                if let env = st.envelope, !env.signatures.isEmpty, !p.trustedKeys.isEmpty, env.verify(keys: p.trustedKeys) == nil {
                    dsseFailed = true
                    out.append("provenance envelope signature does not verify against any trusted key (tried: \(p.trustedKeys.map(\.name).joined(separator: ", ")))")
                }
                return out
            }
        }
    }
}
