import Foundation
import Testing

/// The supply-chain gate from the command line, on a copy of the example catalog.
@Suite struct VerifyCLITests {
    func catalogCopy() throws -> String {
        let dir = try makeTempDirectory("verify")
        try FileManager.default.copyItem(atPath: packageRoot + "/Manifests", toPath: dir + "/Manifests")
        return dir + "/Manifests"
    }

    @Test func exampleCatalogIsAdmitted() throws {
        let r = try mcpfleet("verify", packageRoot + "/Manifests")
        #expect(r.status == 0, "\(r.all)")
        #expect(r.stdout.contains("time"))
        #expect(r.stdout.contains("signed by release-2026"))
    }

    @Test func flippedSignatureByteBlocksEveryServerUsingIt() throws {
        let m = try catalogCopy()
        let sigPath = m + "/evidence/time-server.sig"
        var sig = try #require(FileManager.default.contents(atPath: sigPath))
        // Flip a byte inside the base64 text (keep it base64: swap one letter for another).
        let i = sig.firstIndex { $0 >= 0x41 && $0 <= 0x59 } ?? 0
        sig[i] += 1
        try sig.write(to: URL(fileURLWithPath: sigPath))
        let r = try mcpfleet("verify", m)
        #expect(r.status == 3, "\(r.all)")
        #expect(r.stdout.contains("✗ time"))
        #expect(r.stdout.contains("✗ worldclock"))
        #expect(r.stdout.contains("signature does not verify"))
        let plan = try mcpfleet("plan", m, "--env", "cluster", "--live", try emptyLive())
        #expect(plan.status == 3, "\(plan.all)")
        #expect(plan.stdout.contains("BLOCKED by policy"))
    }

    @Test func trustingAFreshKeyInsteadOfTheRealOneBlocks() throws {
        let m = try catalogCopy()
        let dir = try makeTempDirectory("freshkey")
        let gen = try run("/usr/bin/openssl", ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", dir + "/k.pem"])
        #expect(gen.status == 0, "\(gen.all)")
        let pub = try run("/usr/bin/openssl", ["pkey", "-in", dir + "/k.pem", "-pubout", "-out", m + "/keys/release-2026.pub"])
        #expect(pub.status == 0, "\(pub.all)")
        let r = try mcpfleet("verify", m, "--env", "cluster")
        #expect(r.status == 3, "\(r.all)")
        #expect(r.stdout.contains("✗ time"))
        #expect(r.stdout.contains("tried: release-2026"))
    }

    @Test func jsonReport() throws {
        let r = try mcpfleet("verify", packageRoot + "/Manifests", "-o", "json")
        #expect(r.status == 0)
        let reports = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        #expect(Set(reports.compactMap { $0["environment"] as? String }) == ["local", "host", "cluster"])
    }

    func emptyLive() throws -> String {
        let dir = try makeTempDirectory("live")
        try #"{"servers": [], "tenants": []}"#.write(toFile: dir + "/live.json", atomically: true, encoding: .utf8)
        return dir + "/live.json"
    }
}
