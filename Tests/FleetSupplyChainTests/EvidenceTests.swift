import Foundation
import Testing

import FleetCore
import FleetSupplyChain

@Suite("SBOM, scan and provenance")
struct EvidenceTests {
    @Test func missingSBOMWhenRequired() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.sbomPath = nil
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["no SBOM (spec.supplyChain.sbom), which policy baseline requires"])
        var p = fx.policy()
        p.requireSBOM = false
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).decision == .admitted)
    }

    @Test func sbomForAnotherArtifact() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.sbomPath = try box.write("other.cdx.json", Samples.cycloneDX(name: "acme-tool", version: "1.0", sha256: nil))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["SBOM describes acme-tool 1.0, not time 1.2.0"])

        fx.evidence.sbomPath = try box.write("oldver.cdx.json", Samples.cycloneDX(name: "time", version: "1.1.0", sha256: fx.digest))
        #expect(SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence).reasons == ["SBOM describes time 1.1.0, not time 1.2.0"])

        let wrong = String(repeating: "ab", count: 32)
        fx.evidence.sbomPath = try box.write("hash.cdx.json", Samples.cycloneDX(name: "time", version: "1.2.0", sha256: wrong))
        let v3 = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v3.reasons == ["SBOM hash of time 1.2.0 is sha256:abababababab…, not the artifact digest sha256:\(fx.digest.prefix(12))…"])
    }

    @Test func sbomNamedByArtifactFileNameAndPresentButUnrequiredIsChecked() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.sbomPath = try box.write("file.cdx.json", Samples.cycloneDX(name: "server.py", version: "1.2.0", sha256: fx.digest, specVersion: "1.6"))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .admitted, "\(v.reasons)")
        #expect(v.evidence?.sbomFormat == "cyclonedx-1.6")
        var p = fx.policy()
        p.requireSBOM = false
        fx.evidence.sbomPath = try box.write("other.cdx.json", Samples.cycloneDX(name: "acme-tool", version: "1.0", sha256: nil))
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).decision == .blocked)
    }

    @Test func malformedSBOMs() throws {
        func err(_ json: String) -> String {
            do {
                _ = try SBOMParser.parse(Data(json.utf8), path: "s.json")
                return "parsed"
            } catch { return error.message }
        }
        #expect(err("[1]") == "SBOM s.json is not a JSON object")
        #expect(err("{") == "SBOM s.json is not valid JSON")
        #expect(err(#"{"name":"x"}"#) == "SBOM s.json is neither CycloneDX (no bomFormat) nor SPDX (no spdxVersion)")
        #expect(err(#"{"bomFormat":"CycloneDX","specVersion":"1.2"}"#) == "SBOM s.json: CycloneDX specVersion 1.2 is not supported (1.4–1.6)")
        #expect(err(#"{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{}}"#)
            == "SBOM s.json: CycloneDX metadata.component is missing, so it does not say which artifact it describes")
        #expect(err(#"{"bomFormat":"SPDX","specVersion":"1.5"}"#) == #"SBOM s.json: bomFormat is "SPDX", expected "CycloneDX""#)
        #expect(err(#"{"spdxVersion":"SPDX-2.2","SPDXID":"SPDXRef-DOCUMENT"}"#) == #"SBOM s.json: spdxVersion is "SPDX-2.2", expected "SPDX-2.3""#)
        #expect(err(Samples.spdx(name: "time", version: "1.2.0", sha256: "00", describes: false))
            == "SBOM s.json: SPDX document describes nothing (no documentDescribes and no DESCRIBES relationship)")
        #expect(err(#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[],"documentDescribes":["SPDXRef-X"]}"#)
            == "SBOM s.json: SPDX document describes SPDXRef-X, which is not one of its packages")
    }

    @Test(arguments: [false, true])
    func spdxSBOMIsAccepted(useRelationship: Bool) throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.sbomPath = try box.write("sbom.spdx.json", Samples.spdx(name: "time", version: "1.2.0", sha256: fx.digest, useRelationship: useRelationship))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .admitted, "\(v.reasons)")
        #expect(v.evidence?.sbomFormat == "spdx-2.3")
        let doc = try SBOMParser.parse(try box.read("sbom.spdx.json"))
        #expect(doc.subjects.map(\.name) == ["time"])
        #expect(doc.componentCount == 2)
    }

    @Test func grypeScanOverCeiling() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.scanPath = try box.write("g.json", Samples.grype(severities: ["Critical", "High", "Negligible", "Critical", "Unknown"]))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["scan report (grype) has 2 critical vulnerabilities, above the ceiling high"])
        #expect(v.evidence?.scan == ScanCounts(scanner: "grype", critical: 2, high: 1, medium: 0, low: 0, other: 2, highest: "critical"))
        // The parser keeps every severity it read; the recorded evidence folds the unnamed ones into `other`.
        let parsed = try ScanReportParser.parse(Data(contentsOf: URL(fileURLWithPath: try #require(fx.evidence.scanPath))))
        #expect(parsed.counts == ["critical": 2, "high": 1, "negligible": 1, "unknown": 1])
        #expect(parsed.highest == .critical)
        var p = fx.policy()
        p.maxSeverity = .medium
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).reasons
            == ["scan report (grype) has 2 critical, 1 high vulnerabilities, above the ceiling medium"])
        p.maxSeverity = .critical
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).decision == .admitted)
    }

    @Test func trivyScanOverCeiling() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.scanPath = try box.write("t.json", Samples.trivy(osSeverities: ["LOW", "HIGH", "UNKNOWN"], langSeverities: ["MEDIUM"]))
        var p = fx.policy()
        p.maxSeverity = .medium
        let v = SupplyChainGate(policies: [p]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["scan report (trivy) has 1 high vulnerability, above the ceiling medium"])
        #expect(v.evidence?.scan == ScanCounts(scanner: "trivy", critical: 0, high: 1, medium: 1, low: 1, other: 1, highest: "high"))
        p.maxSeverity = .high
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).decision == .admitted)
        p.maxSeverity = .none
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).reasons
            == ["scan report (trivy) has 1 high, 1 medium, 1 low, 1 unknown vulnerabilities, above the ceiling none"])
    }

    @Test func cleanTrivyReportAndMissingScan() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.scanPath = try box.write("t.json", Samples.trivy(osSeverities: [], langSeverities: []))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .admitted, "\(v.reasons)")
        #expect(v.evidence?.scan?.highest == VulnerabilitySeverity.none.rawValue)
        fx.evidence.scanPath = nil
        var p = fx.policy()
        p.requireScan = false  // still implied by maxSeverity high
        #expect(SupplyChainGate(policies: [p]).evaluate(fx.evidence).reasons
            == ["no vulnerability scan report (spec.supplyChain.scan); policy baseline sets maxSeverity high"])
    }

    @Test func malformedScanReports() throws {
        func err(_ json: String) -> String {
            do {
                _ = try ScanReportParser.parse(Data(json.utf8), path: "r.json")
                return "parsed"
            } catch { return error.message }
        }
        #expect(err(#"{"foo":1}"#) == "scan report r.json is neither Grype JSON (no matches) nor Trivy JSON (no SchemaVersion/Results)")
        #expect(err(#"{"SchemaVersion":1,"Results":[]}"#) == "scan report r.json: Trivy SchemaVersion 1 is not supported (2)")
        #expect(err(#"{"matches":[{"vulnerability":{"id":"CVE-1","severity":"Severe"}}]}"#)
            == "scan report r.json: Grype matches[0] (CVE-1) has unknown severity Severe")
        #expect(err(#"{"matches":{}}"#) == "scan report r.json: Grype matches is not a list of objects")
    }

    @Test func provenanceMatchAndMismatch() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        fx.evidence.provenancePath = try box.write("v01.json", Samples.inToto(sha256: fx.digest, type: "https://in-toto.io/Statement/v0.1"))
        #expect(SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence).evidence?.provenanceVerified == true)

        let other = String(repeating: "cd", count: 32)
        fx.evidence.provenancePath = try box.write("bad.json", Samples.inToto(sha256: other))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .blocked)
        #expect(v.reasons == ["provenance subjects (sha256:cdcdcdcdcdcd…) do not include the artifact digest sha256:\(fx.digest.prefix(12))…"])
        #expect(v.evidence?.provenanceVerified == false)

        fx.evidence.provenancePath = try box.write("notintoto.json", #"{"_type":"https://example.com/Other","subject":[]}"#)
        #expect(SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence).reasons
            == ["provenance \(box.path("notintoto.json")): _type is https://example.com/Other, expected https://in-toto.io/Statement/v1 or https://in-toto.io/Statement/v0.1"])
    }

    @Test func dsseEnvelopeSignedWithTrustedKey() throws {
        let box = try Sandbox()
        var fx = try Fixture(box: box)
        let payload = Data(Samples.inToto(sha256: fx.digest).utf8)
        let pae = DSSEEnvelope.pae(payloadType: "application/vnd.in-toto+json", payload: Array(payload))
        let paePath = try box.write("pae.bin", Data(pae))
        try box.run(["dgst", "-sha256", "-sign", box.path("release.pem"), "-out", box.path("pae.sig"), paePath])
        func envelope(_ sig: Data) -> String {
            #"{"payloadType":"application/vnd.in-toto+json","payload":"\#(payload.base64EncodedString())","signatures":[{"keyid":"","sig":"\#(sig.base64EncodedString())"}]}"#
        }
        fx.evidence.provenancePath = try box.write("env.json", envelope(try box.read("pae.sig")))
        let v = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v.decision == .admitted, "\(v.reasons)")
        #expect(v.evidence?.provenanceVerified == true)

        _ = try box.p256Key("rogue")
        try box.run(["dgst", "-sha256", "-sign", box.path("rogue.pem"), "-out", box.path("rogue.sig"), paePath])
        fx.evidence.provenancePath = try box.write("env2.json", envelope(try box.read("rogue.sig")))
        let v2 = SupplyChainGate(policies: [fx.policy()]).evaluate(fx.evidence)
        #expect(v2.decision == .blocked)
        #expect(v2.reasons == ["provenance envelope signature does not verify against any trusted key (tried: release-2026)"])
        #expect(v2.evidence?.provenanceVerified == false)
    }

    /// The committed example evidence (real `cyclonedx-py` output) parses and names the `time` server.
    @Test func exampleEvidenceParses() throws {
        let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let ev = root.appendingPathComponent("Manifests/evidence")
        let sbom = try SBOMParser.parse(try Data(contentsOf: ev.appendingPathComponent("time-server.cdx.json")))
        #expect(sbom.format == .cyclonedx)
        #expect(sbom.subjects.first?.name == "time")
        #expect(sbom.subjects.first?.sha256.count == 1)
        let scan = try ScanReportParser.parse(try Data(contentsOf: ev.appendingPathComponent("time-server.grype.json")))
        #expect(scan.highest <= .high)
        let st = try ProvenanceParser.parse(try Data(contentsOf: ev.appendingPathComponent("time-server.intoto.json")))
        #expect(st.subjects.first?.sha256 == sbom.subjects.first?.sha256.first)
        let pem = try String(contentsOf: root.appendingPathComponent("Manifests/keys/release-2026.pub"), encoding: .utf8)
        #expect(try TrustedKey(name: "release-2026", pem: pem).algorithm == "ecdsa-p256-sha256")
    }

    /// The committed example evidence admits the committed `time` server under the catalog's rules.
    /// If this fails after editing Manifests/servers/time/server.py, re-run scripts/make-example-evidence.sh.
    @Test func exampleEvidenceAdmitsTheTimeServer() throws {
        let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        func p(_ rel: String) -> String { root.appendingPathComponent(rel).path }
        let pem = try String(contentsOf: URL(fileURLWithPath: p("Manifests/keys/release-2026.pub")), encoding: .utf8)
        let key = try TrustedKey(name: "release-2026", pem: pem)
        let version = try #require(try exampleVersion(p("Manifests/servers/time.yaml")))
        let evidence = ArtifactEvidence(
            server: "time", version: version, commandPath: "/usr/bin/python3", artifactPath: p("Manifests/servers/time/server.py"),
            signaturePath: p("Manifests/evidence/time-server.sig"), sbomPath: p("Manifests/evidence/time-server.cdx.json"),
            scanPath: p("Manifests/evidence/time-server.grype.json"), provenancePath: p("Manifests/evidence/time-server.intoto.json"))
        let catalog = GatePolicy(name: "catalog", requireSignature: true, trustedKeys: [key], requireSBOM: true, maxSeverity: .high)
        let next = GatePolicy(name: "next", mode: .warn, maxSeverity: .medium, requireProvenance: true)
        let v = SupplyChainGate(policies: [catalog, next]).evaluate(evidence)
        #expect(v.decision == .admitted, "stale example evidence? re-run scripts/make-example-evidence.sh: \(v.reasons)")
        #expect(v.evidence?.signedBy == "release-2026")
        #expect(v.evidence?.provenanceVerified == true)
    }

    private func exampleVersion(_ path: String) throws -> String? {
        let text = try String(contentsOf: URL(fileURLWithPath: path), encoding: .utf8)
        for line in text.split(separator: "\n") where line.hasPrefix("  version:") {
            return line.dropFirst("  version:".count).trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\"", with: "")
        }
        return nil
    }
}
