import Crypto
import Foundation

/// A self-contained benchmark of the gate: it writes `servers` artifacts with full evidence
/// (P-256 signature in cosign format, CycloneDX SBOM, Grype report, in-toto statement) under
/// `directory`, then times signature verification alone, cold gate evaluations, warm (in-memory
/// cache) evaluations and evaluations with a cache reloaded from disk.
public enum SupplyChainBenchmark {
    public struct Report: Sendable, Codable, Hashable, CustomStringConvertible {
        public var servers: Int
        public var artifactBytes: Int
        /// Seconds to write the fixtures (not part of any measurement below).
        public var setupSeconds: Double
        /// Mean microseconds per ECDSA P-256 verification (precomputed digest, parsed key and signature).
        public var verifyMicros: Double
        /// Mean microseconds per full cold evaluation (hash artifact, read + hash 4 evidence files,
        /// verify signature, parse SBOM, scan report and provenance).
        public var coldEvaluateMicros: Double
        /// Mean microseconds per evaluation answered from the in-memory cache (still hashes files).
        public var warmEvaluateMicros: Double
        /// Mean microseconds per evaluation with a cache loaded from the JSON file of a previous run.
        public var persistedEvaluateMicros: Double
        public var admitted: Int
        public var cacheHits: Int

        public var verifiesPerSecond: Double { verifyMicros > 0 ? 1e6 / verifyMicros : 0 }

        public var description: String {
            func f(_ x: Double) -> String { String(format: "%.1f", x) }
            return """
            servers: \(servers) (artifact \(artifactBytes) bytes each), admitted \(admitted), cache hits \(cacheHits)
            P-256 verify (swift-crypto):  \(f(verifyMicros)) µs/signature  (\(f(verifiesPerSecond)) verify/s)
            gate, cold:                   \(f(coldEvaluateMicros)) µs/server  (\(f(coldEvaluateMicros * Double(servers) / 1000)) ms total)
            gate, warm in-memory cache:   \(f(warmEvaluateMicros)) µs/server
            gate, cache file reloaded:    \(f(persistedEvaluateMicros)) µs/server
            """
        }
    }

    public static func run(servers: Int = 1000, artifactBytes: Int = 16 << 10, directory: String) throws(SupplyChainError) -> Report {
        let clock = ContinuousClock()
        let setupStart = clock.now
        let root = URL(fileURLWithPath: directory)
        let key = P256.Signing.PrivateKey()
        let trusted = try TrustedKey(name: "bench", pem: key.publicKey.pemRepresentation)
        var all: [ArtifactEvidence] = []
        var digests: [SHA256Digest] = []
        var sigs: [P256.Signing.ECDSASignature] = []
        var rng = SystemRandomNumberGenerator()
        do {
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            for i in 0..<servers {
                let name = "bench-\(i)"
                var bytes = [UInt8](repeating: 0, count: artifactBytes)
                bytes.withUnsafeMutableBytes { buf in
                    var i = 0
                    while i < buf.count {
                        var word = rng.next()
                        let n = min(8, buf.count - i)
                        withUnsafeBytes(of: &word) { w in for j in 0..<n { buf[i + j] = w[j] } }
                        i += n
                    }
                }
                let digest = SHA256.hash(data: bytes)
                let dhex = hex(digest)
                let sig = try key.signature(for: digest)
                digests.append(digest)
                sigs.append(sig)
                func path(_ s: String) -> String { root.appendingPathComponent("\(name).\(s)").path }
                try Data(bytes).write(to: URL(fileURLWithPath: path("bin")))
                try Data((sig.derRepresentation.base64EncodedString() + "\n").utf8).write(to: URL(fileURLWithPath: path("sig")))
                let sbom = """
                {"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"metadata":{"component":{"type":"application","name":"\(name)","version":"1.0.\(i)","hashes":[{"alg":"SHA-256","content":"\(dhex)"}]}},"components":[{"type":"library","name":"dep","version":"1.0"}]}
                """
                try Data(sbom.utf8).write(to: URL(fileURLWithPath: path("cdx.json")))
                let grype = """
                {"matches":[{"vulnerability":{"id":"CVE-2024-0001","severity":"Low"},"artifact":{"name":"dep","version":"1.0"}}],"source":{"type":"file"},"descriptor":{"name":"grype","version":"0.87.0"}}
                """
                try Data(grype.utf8).write(to: URL(fileURLWithPath: path("grype.json")))
                let intoto = """
                {"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"\(name).bin","digest":{"sha256":"\(dhex)"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}
                """
                try Data(intoto.utf8).write(to: URL(fileURLWithPath: path("intoto.json")))
                all.append(ArtifactEvidence(
                    server: name, version: "1.0.\(i)", commandPath: path("bin"), declaredDigest: "sha256:" + dhex,
                    signaturePath: path("sig"), sbomPath: path("cdx.json"), scanPath: path("grype.json"), provenancePath: path("intoto.json")))
            }
        } catch let e as SupplyChainError {
            throw e
        } catch {
            throw SupplyChainError("benchmark setup in \(directory) failed: \(error)")
        }
        let setup = clock.now - setupStart

        func micros(_ d: Duration, _ n: Int) -> Double {
            let c = d.components
            return (Double(c.seconds) * 1e6 + Double(c.attoseconds) / 1e12) / Double(max(n, 1))
        }

        // 1. Signature verification alone.
        let pub = key.publicKey
        var ok = 0
        let tVerify = clock.measure {
            for i in 0..<servers where pub.isValidSignature(sigs[i], for: digests[i]) { ok += 1 }
        }
        guard ok == servers else { throw SupplyChainError("benchmark: \(servers - ok) signatures failed to verify") }

        let policy = GatePolicy(name: "bench", requireSignature: true, trustedKeys: [trusted], requireSBOM: true,
                                maxSeverity: .high, requireProvenance: true, requireDigest: true,
                                allowedCommands: [root.path + "/*"])
        // 2. Cold.
        var admitted = 0
        let tCold = clock.measure {
            let gate = SupplyChainGate(policies: [policy])
            for e in all where gate.evaluate(e).decision == .admitted { admitted += 1 }
        }
        // 3. Warm, in memory.
        let cachePath = root.appendingPathComponent("cache.json").path
        let cache = VerificationCache(path: cachePath)
        let gate = SupplyChainGate(policies: [policy], cache: cache)
        for e in all { _ = gate.evaluate(e) }
        let tWarm = clock.measure { for e in all { _ = gate.evaluate(e) } }
        try cache.save()
        // 4. Next run: cache reloaded from its file.
        let reloaded = VerificationCache(path: cachePath)
        let gate2 = SupplyChainGate(policies: [policy], cache: reloaded)
        let tPersisted = clock.measure { for e in all { _ = gate2.evaluate(e) } }

        return Report(
            servers: servers, artifactBytes: artifactBytes, setupSeconds: micros(setup, 1) / 1e6,
            verifyMicros: micros(tVerify, servers), coldEvaluateMicros: micros(tCold, servers),
            warmEvaluateMicros: micros(tWarm, servers), persistedEvaluateMicros: micros(tPersisted, servers),
            admitted: admitted, cacheHits: reloaded.hits)
    }
}

/// Parsing of `openssl speed ecdsap256` output, for comparison with the gate's own numbers.
public enum OpenSSLSpeed {
    public struct ECDSA: Sendable, Hashable, Codable {
        public var signPerSecond: Double
        public var verifyPerSecond: Double
        public var verifyMicros: Double { verifyPerSecond > 0 ? 1e6 / verifyPerSecond : 0 }
    }

    /// Finds the `256 bits ecdsa (nistp256)` result line (OpenSSL 1.1 and 3.x layouts) and returns its
    /// sign/s and verify/s columns (the last two numbers).
    public static func parseECDSAP256(_ output: String) -> ECDSA? {
        for line in output.split(whereSeparator: \.isNewline) where line.contains("nistp256") && line.contains("bits") {
            let nums = line.split(separator: " ").compactMap { Double($0) }
            guard nums.count >= 2 else { continue }
            return ECDSA(signPerSecond: nums[nums.count - 2], verifyPerSecond: nums[nums.count - 1])
        }
        return nil
    }
}
