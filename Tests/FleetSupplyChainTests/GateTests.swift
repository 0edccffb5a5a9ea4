import Foundation
import Testing

import FleetCore
import FleetSupplyChain

@Suite("Gate: modes, policies, digests, globs")
struct GateTests {
    @Test func warnModeWarnsInsteadOfBlocking() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.sbomPath = nil
        fx.evidence.scanPath = try box.write("g.json", Samples.grype(severities: ["Critical"]))
        let v = SupplyChainGate(policies: [fx.policy("dev", mode: .warn)]).evaluate(fx.evidence)
        #expect(v.decision == .warned)
        #expect(v.reasons == [
            "no SBOM (spec.supplyChain.sbom), which policy dev requires",
            "scan report (grype) has 1 critical vulnerability, above the ceiling high",
        ])
        #expect(v.findings.allSatisfy { $0.mode == .warn && $0.policy == "dev" })
    }

    @Test func anyEnforcingFailureBlocks() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.scanPath = try box.write("g.json", Samples.grype(severities: ["High"]))
        var strict = fx.policy("prod-strict")
        strict.maxSeverity = .medium
        let lenient = fx.policy("prod")
        let warnStrict = { var p = strict; p.mode = .warn; p.name = "advisory"; return p }()

        let both = SupplyChainGate(policies: [lenient, strict]).evaluate(fx.evidence)
        #expect(both.decision == .blocked)
        #expect(both.findings.map(\.policy) == ["prod-strict"])
        #expect(SupplyChainGate(policies: [lenient, warnStrict]).evaluate(fx.evidence).decision == .warned)
        #expect(SupplyChainGate(policies: [lenient]).evaluate(fx.evidence).decision == .admitted)
    }

    @Test func duplicateReasonsAcrossPoliciesAreMerged() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.provenancePath = nil
        let v = SupplyChainGate(policies: [fx.policy("a"), fx.policy("b", mode: .warn)]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.findings.count == 2)
        #expect(v.reasons == [
            "no provenance statement (spec.supplyChain.provenance), which policy a requires",
            "no provenance statement (spec.supplyChain.provenance), which policy b requires",
        ])
    }

    @Test func noPoliciesStillChecksTheDeclaredDigest() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        #expect(SupplyChainGate(policies: []).evaluate(fx.evidence).decision == .admitted)
        fx.evidence.declaredDigest = "sha256:" + String(repeating: "0", count: 64)
        let v = SupplyChainGate(policies: []).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["artifact digest sha256:\(fx.digest.prefix(12))… differs from the manifest's sha256:000000000000…"])
        #expect(v.findings.first?.policy == SupplyChainGate.builtinPolicyName)
        fx.evidence.declaredDigest = "md5:abc"
        #expect(SupplyChainGate(policies: []).evaluate(fx.evidence).reasons
            == ["the manifest's artifact digest md5:abc is not of the form sha256:<64 hex digits>"])
    }

    @Test func imageDigestPinning() throws {
        let d1 = String(repeating: "a", count: 64)
        let d2 = String(repeating: "b", count: 64)
        let strict = GatePolicy(name: "pin", requireDigest: true, allowedRegistries: ["registry.example.com/mcp/*"])
        let gate = SupplyChainGate(policies: [strict])
        func eval(_ image: String, _ declared: String?) -> GateVerdict {
            gate.evaluate(ArtifactEvidence(server: "time", version: "1.2.0", image: image, declaredDigest: declared))
        }
        let ok = eval("registry.example.com/mcp/time:1.2.0@sha256:\(d1)", "sha256:\(d1)")
        #expect(ok.decision == .admitted, "\(ok.reasons)")
        #expect(ok.evidence?.artifactDigest == "sha256:\(d1)")
        #expect(eval("registry.example.com/mcp/time@sha256:\(d1)", "sha256:\(d2)").reasons
            == ["image digest sha256:aaaaaaaaaaaa… differs from the manifest's sha256:bbbbbbbbbbbb…"])
        #expect(eval("registry.example.com/mcp/time:1.2.0", "sha256:\(d1)").reasons
            == ["image registry.example.com/mcp/time:1.2.0 is not pinned by digest (@sha256:…), which policy pin requires"])
        #expect(eval("registry.example.com/mcp/time@sha256:\(d1)", nil).reasons
            == ["the manifest declares no artifact digest (spec.artifact.digest), which policy pin requires"])
        #expect(eval("ghcr.io/evil/time:1.2.0@sha256:\(d1)", "sha256:\(d1)").reasons
            == ["image ghcr.io/evil/time:1.2.0@sha256:\(d1) is not from an allowed registry (policy pin allows: registry.example.com/mcp/*)"])
    }

    @Test func imageReferenceParsing() {
        let r = ImageReference(parsing: "localhost:5000/mcp/time:1.2@sha256:" + String(repeating: "A", count: 64))
        #expect(r.repository == "localhost:5000/mcp/time")
        #expect(r.tag == "1.2")
        #expect(r.digest == "sha256:" + String(repeating: "a", count: 64))
        let p = ImageReference(parsing: "localhost:5000/time")
        #expect(p.repository == "localhost:5000/time")
        #expect(p.tag == nil)
        #expect(ImageReference(parsing: "postgres:16").fullyQualifiedRepository == "docker.io/library/postgres")
        #expect(ImageReference(parsing: "bitnami/redis").fullyQualifiedRepository == "docker.io/bitnami/redis")
        #expect(ImageReference(parsing: "x@sha256:zz").digest == nil)
    }

    @Test func registryGlobs() {
        func allowed(_ globs: [String], _ image: String) -> Bool {
            SupplyChainGate(policies: [GatePolicy(name: "r", allowedRegistries: globs)])
                .evaluate(ArtifactEvidence(server: "s", version: "1", image: image)).decision == .admitted
        }
        #expect(allowed(["registry.example.com/mcp/*"], "registry.example.com/mcp/time:1.2.0"))
        #expect(!allowed(["registry.example.com/mcp/*"], "registry.example.com/mcp/team/time:1.2.0"))
        #expect(allowed(["registry.example.com/mcp/**"], "registry.example.com/mcp/team/time:1.2.0"))
        #expect(!allowed(["registry.example.com/mcp/*"], "registry.example.com.evil.io/mcp/time"))
        #expect(allowed(["docker.io/library/*"], "postgres:16"))
        #expect(allowed(["registry.example.com/mcp/time:1.*"], "registry.example.com/mcp/time:1.2.0"))
        #expect(allowed(["a.io/x/*", "b.io/**"], "b.io/deep/er/img"))
    }

    @Test func commandGlobs() throws {
        func verdict(_ globs: [String], _ cmd: String) -> GateVerdict {
            SupplyChainGate(policies: [GatePolicy(name: "c", allowedCommands: globs)])
                .evaluate(ArtifactEvidence(server: "s", version: "1", commandPath: cmd, artifactPath: "/nonexistent/unused"))
        }
        #expect(verdict(["/opt/mcp/bin/*"], "/opt/mcp/bin/time-server").decision == .admitted)
        #expect(verdict(["/opt/mcp/bin/*"], "/opt/mcp/bin/sub/time-server").decision == .blocked)
        #expect(verdict(["/opt/mcp/**"], "/opt/mcp/bin/sub/time-server").decision == .admitted)
        #expect(verdict(["/usr/bin/python3*"], "/usr/bin/python3.12").decision == .admitted)
        #expect(verdict(["/opt/mcp/bin/*"], "/tmp/evil").reasons
            == ["command /tmp/evil is not an allowed command (policy c allows: /opt/mcp/bin/*)"])
    }

    @Test func globSemantics() {
        #expect(Glob("a/*/c").matches("a/b/c"))
        #expect(!Glob("a/*/c").matches("a/b/x/c"))
        #expect(Glob("a/**/c").matches("a/b/x/c"))
        #expect(Glob("a/**").matches("a/"))
        #expect(Glob("**").matches("anything/at/all"))
        #expect(Glob("a?c").matches("abc"))
        #expect(!Glob("a?c").matches("a/c"))
        #expect(!Glob("abc").matches("abcd"))
        #expect(Glob("").matches(""))
        #expect(Glob("*.*.*").matches("1.2.3"))
    }

    @Test func missingArtifactFile() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.artifactPath = box.path("gone.py")
        fx.evidence.sbomPath = nil
        fx.evidence.provenancePath = nil
        var p = fx.policy()
        p.requireSBOM = false
        p.requireProvenance = false
        let v = SupplyChainGate(policies: [p]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == [
            "cannot compute the artifact digest: artifact \(box.path("gone.py")) does not exist",
            "cannot check the signature: artifact \(box.path("gone.py")) does not exist",
        ])
    }

    @Test func streamingDigestMatchesOpenSSLForMultiChunkFile() throws {
        let box = try Sandbox()
        var bytes = [UInt8](repeating: 0, count: (3 << 20) + 12345)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) }
        let p = try box.write("big.bin", Data(bytes))
        #expect(try ArtifactDigest.sha256(ofFile: p) == "sha256:" + (try box.sha256Hex(p)))
    }
}

@Suite("Gate diagnostics")
struct GateDiagnosticsTests {
    @Test func findingsBecomeDiagnostics() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.sbomPath = nil
        fx.evidence.provenancePath = nil
        var warn = fx.policy("next", mode: .warn)
        warn.requireSBOM = false
        let v = SupplyChainGate(policies: [fx.policy(), warn]).evaluate(fx.evidence)
        let loc = SourceLocation(file: "servers/time.yaml", line: 3, column: 1)
        let d = v.diagnostics(at: loc)
        #expect(d.items.map(\.code) == ["supply-chain-sbom", "supply-chain-provenance", "supply-chain-provenance"])
        #expect(d.errorCount == 2)
        #expect(d.warningCount == 1)
        #expect(d.items[0].description == "servers/time.yaml:3:1: error: server time: no SBOM (spec.supplyChain.sbom), which policy baseline requires")
    }
}
