import Crypto
import Foundation

/// An in-toto attestation statement (v0.1 or v1), read from plain JSON or from a DSSE envelope.
public struct ProvenanceStatement: Sendable, Hashable {
    public struct Subject: Sendable, Hashable {
        public var name: String?
        /// Lower-case hex, when the subject lists a sha256 digest.
        public var sha256: String?
    }
    public var statementType: String
    public var predicateType: String
    public var subjects: [Subject]
    /// Present when the statement came wrapped in a DSSE envelope.
    public var envelope: DSSEEnvelope?

    public func names(digest: String) -> Bool {
        let h = String(digest.dropFirst("sha256:".count)).lowercased()
        return subjects.contains { $0.sha256 == h }
    }
}

/// A DSSE envelope (`payloadType`, base64 `payload`, `signatures[].sig`).
public struct DSSEEnvelope: Sendable, Hashable {
    public var payloadType: String
    public var payload: [UInt8]
    public var signatures: [[UInt8]]

    /// DSSE v1 pre-authentication encoding: `DSSEv1 SP len(type) SP type SP len(body) SP body`.
    public static func pae(payloadType: String, payload: [UInt8]) -> [UInt8] {
        let t = Array(payloadType.utf8)
        return Array("DSSEv1 \(t.count) ".utf8) + t + Array(" \(payload.count) ".utf8) + payload
    }

    /// The first key that verifies one of the envelope's signatures over the PAE, or nil.
    public func verify(keys: [TrustedKey]) -> SignatureVerifier.Match? {
        let message = Self.pae(payloadType: payloadType, payload: payload)
        let digest = SHA256.hash(data: message)
        for key in keys {
            for sig in signatures {
                let ok = (try? key.verify(signature: sig, message: { () throws(SupplyChainError) in message }, messageDigest: digest)) ?? false
                if ok { return SignatureVerifier.Match(keyName: key.name, algorithm: key.algorithm) }
            }
        }
        return nil
    }
}

public enum ProvenanceParser {
    public static let statementTypes = ["https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"]
    public static let inTotoPayloadType = "application/vnd.in-toto+json"

    public static func parse(_ data: Data, path: String = "provenance") throws(SupplyChainError) -> ProvenanceStatement {
        let o = try EvidenceFile.jsonObject(data, what: "provenance", path: path)
        if o["payloadType"] != nil || o["payload"] != nil {
            guard let pt = o["payloadType"] as? String else {
                throw SupplyChainError("provenance \(path): DSSE envelope has no payloadType")
            }
            guard pt == inTotoPayloadType else {
                throw SupplyChainError("provenance \(path): DSSE payloadType is \(pt), expected \(inTotoPayloadType)")
            }
            guard let p64 = o["payload"] as? String, let payload = Data(base64Encoded: p64) ?? Data(base64URLEncoded: p64) else {
                throw SupplyChainError("provenance \(path): DSSE payload is missing or not base64")
            }
            var sigs: [[UInt8]] = []
            if let arr = o["signatures"] as? [[String: Any]] {
                for s in arr {
                    if let b = s["sig"] as? String, let d = Data(base64Encoded: b) ?? Data(base64URLEncoded: b) { sigs.append(Array(d)) }
                }
            }
            var st = try statement(try EvidenceFile.jsonObject(payload, what: "provenance payload in", path: path), path: path)
            st.envelope = DSSEEnvelope(payloadType: pt, payload: Array(payload), signatures: sigs)
            return st
        }
        return try statement(o, path: path)
    }

    static func statement(_ o: [String: Any], path: String) throws(SupplyChainError) -> ProvenanceStatement {
        guard let t = o["_type"] as? String else {
            throw SupplyChainError("provenance \(path): not an in-toto statement (no _type)")
        }
        guard statementTypes.contains(t) else {
            throw SupplyChainError("provenance \(path): _type is \(t), expected \(statementTypes.joined(separator: " or "))")
        }
        guard let pred = o["predicateType"] as? String, !pred.isEmpty else {
            throw SupplyChainError("provenance \(path): in-toto statement has no predicateType")
        }
        guard let subs = o["subject"] as? [[String: Any]], !subs.isEmpty else {
            throw SupplyChainError("provenance \(path): in-toto statement has no subject")
        }
        let subjects = subs.map { s in
            ProvenanceStatement.Subject(
                name: s["name"] as? String,
                sha256: ((s["digest"] as? [String: Any])?["sha256"] as? String)?.lowercased())
        }
        return ProvenanceStatement(statementType: t, predicateType: pred, subjects: subjects, envelope: nil)
    }
}

extension Data {
    init?(base64URLEncoded s: String) {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        self.init(base64Encoded: t)
    }
}
