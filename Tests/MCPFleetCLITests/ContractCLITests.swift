import Foundation
import Testing

/// How contract files break (issue 17): missing, truncated, a link out of the manifest root. Each is a
/// clear error naming the file, exit status 2, nothing written.
@Suite struct ContractCLITests {
    func catalog(_ contract: String? = "contracts/s1.json") throws -> String {
        let dir = try makeTempDirectory("contract-cli")
        let spec = contract.map { "  contract: \($0)\n" } ?? ""
        try """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t1}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: dev}
        spec: {driver: local, portRange: 20000-20999, stateDir: \(dir)/state}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: s1}
        spec:
          version: "1.0.0"
          tenant: t1
          artifact: {command: [/bin/true]}
          transport: {type: streamable-http, port: 20100}
        \(spec)
        """.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: dir + "/contracts", withIntermediateDirectories: true)
        return dir
    }

    @Test func aMissingContractFileIsNamed() throws {
        let dir = try catalog()
        let r = try mcpfleet("plan", dir, "--live", try emptyLive(dir))
        #expect(r.status == 2, "\(r.all)")
        #expect(r.all.contains("contracts/s1.json") && r.all.contains("does not exist") && r.all.contains("mcpfleet contract pull s1"), "\(r.all)")
    }

    @Test func aTruncatedContractFileIsNamed() throws {
        let dir = try catalog()
        try #"{"formatVersion":1,"server":{"name":"s1","vers"#.write(toFile: dir + "/contracts/s1.json", atomically: true, encoding: .utf8)
        let r = try mcpfleet("plan", dir, "--live", try emptyLive(dir))
        #expect(r.status == 2, "\(r.all)")
        #expect(r.all.contains("contracts/s1.json") && r.all.contains("not a contract"), "\(r.all)")
    }

    @Test func aLinkOutOfTheRootIsNotRead() throws {
        let dir = try catalog()
        let outside = try makeTempDirectory("contract-outside")
        try "{}".write(toFile: outside + "/secret.json", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/contracts/s1.json", withDestinationPath: outside + "/secret.json")
        let r = try mcpfleet("plan", dir, "--live", try emptyLive(dir))
        #expect(r.status == 2, "\(r.all)")
        #expect(r.all.contains("leads out of the manifest root") && !r.all.contains(outside), "\(r.all)")
    }

    @Test func diffOfTwoFiles() throws {
        let dir = try makeTempDirectory("contract-diff")
        let old = #"{"formatVersion":1,"server":{"name":"s","version":"1"},"tools":[{"name":"a","inputSchema":{"type":"object"}}],"prompts":[],"resourceTemplates":[]}"#
        let new = #"{"formatVersion":1,"server":{"name":"s","version":"2"},"tools":[{"name":"a","inputSchema":{"type":"object","properties":{"x":{"type":"string"}},"required":["x"]}}],"prompts":[],"resourceTemplates":[]}"#
        try old.write(toFile: dir + "/old.json", atomically: true, encoding: .utf8)
        try new.write(toFile: dir + "/new.json", atomically: true, encoding: .utf8)
        let r = try mcpfleet("contract", "diff", dir + "/old.json", dir + "/new.json")
        #expect(r.status == 1, "\(r.all)")
        #expect(r.stdout.contains("BREAKING tool `a`: new required parameter `x`"), "\(r.stdout)")
        let same = try mcpfleet("contract", "diff", dir + "/old.json", dir + "/old.json")
        #expect(same.status == 0, "\(same.all)")
        let missing = try mcpfleet("contract", "diff", dir + "/old.json", dir + "/nope.json")
        #expect(missing.status == 2 && missing.all.contains("nope.json"), "\(missing.all)")
    }

    @Test func pullWithNothingToReadFailsClearly() throws {
        let dir = try catalog(nil)
        let r = try mcpfleet("contract", "pull", "s1", "-C", dir, "--url", "http://127.0.0.1:9/mcp", "--timeout-ms", "1000")
        #expect(r.status == 2, "\(r.all)")
        #expect(r.all.contains("cannot read the MCP surface of http://127.0.0.1:9/mcp"), "\(r.all)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/contracts/s1.json"))
        let unknown = try mcpfleet("contract", "pull", "nope", "-C", dir)
        #expect(unknown.status == 2 && unknown.all.contains("no server `nope`"), "\(unknown.all)")
    }

    func emptyLive(_ dir: String) throws -> String {
        let path = dir + "/live.json"
        try #"{"environment":"dev","driver":"local","servers":[],"tenants":[]}"#.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}
