import Crypto
import Foundation

/// A public key a policy trusts: ECDSA P-256 or Ed25519, given as an SPKI `PUBLIC KEY` PEM
/// (what `cosign generate-key-pair` writes to `cosign.pub` and `openssl pkey -pubout` prints).
public struct TrustedKey: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    /// `ecdsa-p256-sha256` or `ed25519`.
    public let algorithm: String
    /// Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (the same as
    /// `openssl pkey -pubin -in key.pub -outform DER | sha256sum`).
    public let fingerprint: String
    let key: Key

    enum Key: Sendable {
        case p256(P256.Signing.PublicKey)
        case ed25519(Curve25519.Signing.PublicKey)
    }

    public static let ecdsaP256 = "ecdsa-p256-sha256"
    public static let ed25519 = "ed25519"

    /// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32-byte raw key follows it.
    static let ed25519SPKIPrefix: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]

    public init(name: String, pem: String) throws(SupplyChainError) {
        let der = try Self.decodePEM(name: name, pem: pem)
        try self.init(name: name, der: der)
    }

    /// From DER SubjectPublicKeyInfo bytes.
    public init(name: String, der: [UInt8]) throws(SupplyChainError) {
        self.name = name
        self.fingerprint = sha256Hex(der)
        if der.count == 44, Array(der.prefix(12)) == Self.ed25519SPKIPrefix {
            do {
                key = .ed25519(try Curve25519.Signing.PublicKey(rawRepresentation: der.suffix(32)))
            } catch {
                throw SupplyChainError("trusted key \(name): the Ed25519 public key is invalid")
            }
            algorithm = Self.ed25519
            return
        }
        do {
            key = .p256(try P256.Signing.PublicKey(derRepresentation: der))
            algorithm = Self.ecdsaP256
        } catch {
            throw SupplyChainError("trusted key \(name): \(Self.describeUnsupported(der))")
        }
    }

    public var description: String { "\(name) (\(algorithm), \(fingerprint.prefix(16)))" }

    public static func == (a: TrustedKey, b: TrustedKey) -> Bool { a.name == b.name && a.fingerprint == b.fingerprint }
    public func hash(into h: inout Hasher) {
        h.combine(name)
        h.combine(fingerprint)
    }

    /// Verify `signature` over `message`. For P-256, `messageDigest` (SHA-256 of the message), when
    /// given, is used instead of hashing `message` again; for Ed25519 the whole message is needed.
    func verify(signature: [UInt8], message: () throws(SupplyChainError) -> [UInt8], messageDigest: SHA256Digest?) throws(SupplyChainError) -> Bool {
        switch key {
        case .p256(let k):
            let sig: P256.Signing.ECDSASignature
            if let s = try? P256.Signing.ECDSASignature(derRepresentation: signature) {
                sig = s
            } else if signature.count == 64, let s = try? P256.Signing.ECDSASignature(rawRepresentation: signature) {
                sig = s
            } else {
                return false
            }
            if let d = messageDigest { return k.isValidSignature(sig, for: d) }
            return k.isValidSignature(sig, for: try message())
        case .ed25519(let k):
            guard signature.count == 64 else { return false }
            return k.isValidSignature(signature, for: try message())
        }
    }

    static func decodePEM(name: String, pem: String) throws(SupplyChainError) -> [UInt8] {
        let lines = pem.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let begin = lines.firstIndex(where: { $0.hasPrefix("-----BEGIN ") }) else {
            throw SupplyChainError("trusted key \(name): not a PEM document (no -----BEGIN line)")
        }
        let label = lines[begin].dropFirst("-----BEGIN ".count).replacingOccurrences(of: "-----", with: "")
        if label.contains("PRIVATE KEY") {
            throw SupplyChainError("trusted key \(name): is a private key (\(label)); give the public key (openssl pkey -in key.pem -pubout)")
        }
        guard label == "PUBLIC KEY" else {
            throw SupplyChainError("trusted key \(name): PEM type is \(label), expected PUBLIC KEY (SubjectPublicKeyInfo)")
        }
        guard let end = lines[begin...].firstIndex(where: { $0 == "-----END PUBLIC KEY-----" }) else {
            throw SupplyChainError("trusted key \(name): PEM has no -----END PUBLIC KEY----- line")
        }
        let body = lines[(begin + 1)..<end].joined()
        guard !body.isEmpty, let data = Data(base64Encoded: body) else {
            throw SupplyChainError("trusted key \(name): PEM body is not valid base64")
        }
        return Array(data)
    }

    /// Name the algorithm of an SPKI we cannot use, by its OIDs.
    static func describeUnsupported(_ der: [UInt8]) -> String {
        let known: [([UInt8], String)] = [
            ([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01], "RSA"),
            ([0x2b, 0x81, 0x04, 0x00, 0x22], "ECDSA P-384"),
            ([0x2b, 0x81, 0x04, 0x00, 0x23], "ECDSA P-521"),
            ([0x2b, 0x81, 0x04, 0x00, 0x0a], "ECDSA secp256k1"),
            ([0x06, 0x03, 0x2b, 0x65, 0x71], "Ed448"),
        ]
        for (oid, alg) in known where contains(der, oid) {
            return "\(alg) keys are not supported (use ECDSA P-256 or Ed25519)"
        }
        return "not a valid ECDSA P-256 or Ed25519 SubjectPublicKeyInfo"
    }

    private static func contains(_ hay: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= hay.count else { return false }
        for i in 0...(hay.count - needle.count) where Array(hay[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
