import Crypto
import Foundation

/// Detached blob signatures: cosign `sign-blob --key` output (base64 of a DER ECDSA P-256 signature
/// over SHA-256 of the blob; raw DER and raw 64-byte r‖s are accepted too), and Ed25519 (base64 of
/// the 64-byte signature, or the 64 raw bytes).
public enum SignatureVerifier {
    public struct Match: Sendable, Hashable {
        public var keyName: String
        public var algorithm: String
    }

    /// The byte strings a signature file may encode: base64 text (whitespace ignored) when it
    /// decodes, and the raw file bytes.
    public static func candidates(_ file: Data) -> [[UInt8]] {
        var out: [[UInt8]] = []
        let ws: Set<UInt8> = [0x20, 0x09, 0x0a, 0x0d]
        let compact = file.filter { !ws.contains($0) }
        if !compact.isEmpty, let decoded = Data(base64Encoded: compact) { out.append(Array(decoded)) }
        let raw = Array(file)
        if !raw.isEmpty, !out.contains(raw) { out.append(raw) }
        return out
    }

    /// The first key (in order) that `signatureFile` verifies against for the artifact, or nil.
    /// `artifactDigest` is SHA-256 of the artifact (enough for P-256); `artifactBytes` loads the
    /// artifact itself and is only called when an Ed25519 key is tried.
    public static func verify(
        signatureFile: Data, keys: [TrustedKey], artifactDigest: SHA256Digest?,
        artifactBytes: () throws(SupplyChainError) -> [UInt8]
    ) throws(SupplyChainError) -> Match? {
        let sigs = candidates(signatureFile)
        for key in keys {
            for sig in sigs where try key.verify(signature: sig, message: artifactBytes, messageDigest: artifactDigest) {
                return Match(keyName: key.name, algorithm: key.algorithm)
            }
        }
        return nil
    }

    /// Convenience: verify a signature file against the artifact file at `artifactPath`.
    public static func verify(signaturePath: String, artifactPath: String, keys: [TrustedKey]) throws(SupplyChainError) -> Match? {
        let sig = try EvidenceFile.read(signaturePath, what: "signature")
        let digest = try streamDigest(artifactPath)
        return try verify(signatureFile: sig, keys: keys, artifactDigest: digest) { () throws(SupplyChainError) in
            try readAll(artifactPath)
        }
    }

    static func streamDigest(_ path: String) throws(SupplyChainError) -> SHA256Digest {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SupplyChainError("artifact \(EvidenceFile.unreadableReason(path))")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk: Data?
            do { chunk = try handle.read(upToCount: ArtifactDigest.chunkSize) } catch {
                throw SupplyChainError("artifact \(path) cannot be read: \(error.localizedDescription)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize()
    }

    static func readAll(_ path: String) throws(SupplyChainError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SupplyChainError("artifact \(EvidenceFile.unreadableReason(path))")
        }
        return Array(data)
    }
}
