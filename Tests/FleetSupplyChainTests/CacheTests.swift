import Foundation
import Testing

import FleetSupplyChain

@Suite("Verification cache and benchmark")
struct CacheTests {
    @Test func cacheHitForUnchangedEvidence() throws {
        let box = try Sandbox()
        let fx = try Fixture(box: box)
        let cache = VerificationCache()
        let gate = SupplyChainGate(policies: [fx.policy()], cache: cache)
        let first = gate.evaluate(fx.evidence)
        #expect(cache.hits == 0)
        #expect(cache.misses == 1)
        let second = gate.evaluate(fx.evidence)
        #expect(cache.hits == 1)
        #expect(second == first)
        #expect(second.decision == .admitted)
    }

    @Test func changedSignatureInvalidatesTheCache() throws {
        let box = try Sandbox()
        let fx = try Fixture(box: box)
        let cache = VerificationCache()
        let gate = SupplyChainGate(policies: [fx.policy()], cache: cache)
        #expect(gate.evaluate(fx.evidence).decision == .admitted)
        // Same path, new contents: a signature by an untrusted key.
        _ = try box.p256Key("attacker")
        try box.signP256(key: "attacker", file: fx.artifact, out: "server.sig")
        let v = gate.evaluate(fx.evidence)
        #expect(cache.hits == 0)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["signature does not verify against any trusted key (tried: release-2026)"])
    }

    @Test func changedSBOMScanKeyOrArtifactInvalidatesTheCache() throws {
        let box = try Sandbox()
        let fx = try Fixture(box: box)
        let cache = VerificationCache()
        var gate = SupplyChainGate(policies: [fx.policy()], cache: cache)
        #expect(gate.evaluate(fx.evidence).decision == .admitted)

        try box.write("grype.json", Samples.grype(severities: ["Critical"]))
        #expect(gate.evaluate(fx.evidence).decision == .blocked)
        try box.write("grype.json", Samples.grype(severities: []))
        #expect(gate.evaluate(fx.evidence).decision == .admitted)

        try box.write("sbom.cdx.json", Samples.cycloneDX(name: "acme", version: "9", sha256: nil))
        #expect(gate.evaluate(fx.evidence).decision == .blocked)
        try box.write("sbom.cdx.json", Samples.cycloneDX(name: "time", version: "1.2.0", sha256: fx.digest))
        let hitsBefore = cache.hits
        #expect(gate.evaluate(fx.evidence).decision == .admitted)
        #expect(cache.hits == hitsBefore + 1)  // back to a state seen before

        // Rotated key with the same name: different fingerprint, so no stale admit.
        let rotated = try TrustedKey(name: "release-2026", pem: try box.p256Key("rotated"))
        gate = SupplyChainGate(policies: [fx.policy(keys: [rotated])], cache: cache)
        #expect(gate.evaluate(fx.evidence).decision == .blocked)

        gate = SupplyChainGate(policies: [fx.policy()], cache: cache)
        try box.write("server.py", "tampered\n")
        #expect(gate.evaluate(fx.evidence).decision == .blocked)
    }

    @Test func cachePersistsAcrossRunsAtomically() throws {
        let box = try Sandbox()
        let fx = try Fixture(box: box)
        let path = box.path("state/supplychain-cache.json")
        let run1 = VerificationCache(path: path)
        let v1 = SupplyChainGate(policies: [fx.policy()], cache: run1).evaluate(fx.evidence)
        try run1.save()
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: box.path("state"))
        #expect(leftovers == ["supplychain-cache.json"])

        let run2 = VerificationCache(path: path)
        #expect(run2.loadError == nil)
        #expect(run2.count == 1)
        let v2 = SupplyChainGate(policies: [fx.policy()], cache: run2).evaluate(fx.evidence)
        #expect(run2.hits == 1)
        #expect(v2 == v1)

        // A changed signature is not served from the persisted cache either.
        _ = try box.p256Key("other")
        try box.signP256(key: "other", file: fx.artifact, out: "server.sig")
        let run3 = VerificationCache(path: path)
        #expect(SupplyChainGate(policies: [fx.policy()], cache: run3).evaluate(fx.evidence).decision == .blocked)
        #expect(run3.hits == 0)
        try run3.save(pruneUnused: true)
        #expect(VerificationCache(path: path).count == 1)
    }

    @Test func corruptCacheFileStartsEmpty() throws {
        let box = try Sandbox()
        let path = try box.write("cache.json", "{not json")
        let cache = VerificationCache(path: path)
        #expect(cache.count == 0)
        #expect(cache.loadError?.hasPrefix("cache file \(path) could not be read") == true)
    }

    @Test func smallBenchmarkRuns() throws {
        let box = try Sandbox()
        let r = try SupplyChainBenchmark.run(servers: 20, artifactBytes: 1024, directory: box.path("bench"))
        #expect(r.servers == 20)
        #expect(r.admitted == 20)
        #expect(r.cacheHits == 20)
        #expect(r.verifyMicros > 0)
    }

    @Test func parsesOpenSSLSpeedOutput() throws {
        let s = try #require(OpenSSLSpeed.parseECDSAP256(Samples.opensslSpeed))
        #expect(s.signPerSecond == 64117.3)
        #expect(s.verifyPerSecond == 21151.0)
        #expect(OpenSSLSpeed.parseECDSAP256("nothing here") == nil)
    }

    /// The full benchmark: 1,000 servers, compared with `openssl speed`. Runs only when
    /// MCPFLEET_BENCH=1 (see Benchmarks/supplychain/README.md).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["MCPFLEET_BENCH"] == "1"))
    func benchmark1000Servers() throws {
        let box = try Sandbox()
        let n = Int(ProcessInfo.processInfo.environment["MCPFLEET_BENCH_SERVERS"] ?? "") ?? 1000
        let r = try SupplyChainBenchmark.run(servers: n, directory: box.path("bench"))
        // `openssl speed` is run by Benchmarks/supplychain/run.sh: started from here it inherits a signal
        // mask that blocks its SIGALRM and never finishes.
        var speed: OpenSSLSpeed.ECDSA?
        if let file = ProcessInfo.processInfo.environment["MCPFLEET_BENCH_OPENSSL"] {
            speed = OpenSSLSpeed.parseECDSAP256(String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self))
        }
        var text = r.description
        if let speed {
            text += String(format: "\nopenssl speed ecdsap256:       %.1f µs/verify (%.1f verify/s); swift-crypto/openssl = %.2fx",
                           speed.verifyMicros, speed.verifyPerSecond, r.verifyMicros / speed.verifyMicros)
        }
        print("BENCHMARK\n" + text)
        if let out = ProcessInfo.processInfo.environment["MCPFLEET_BENCH_OUT"] {
            try Data((text + "\n").utf8).write(to: URL(fileURLWithPath: out))
        }
        #expect(r.admitted == n)
    }
}
