import Foundation
import Testing

/// `mcpfleet plan --against GIT-REF` in a real git repository: the pull-request diff CI relies on.
@Suite struct PlanCLITests {
    static let fixtures = packageRoot + "/Tests/Fixtures/plan"

    func repository() throws -> String {
        let dir = try makeTempDirectory("plan-git")
        try git("init", "-q", "-b", "main", in: dir)
        try FileManager.default.copyItem(atPath: Self.fixtures + "/in-sync/manifests", toPath: dir + "/catalog")
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "base", in: dir)
        return dir
    }

    func replace(_ file: String, _ old: String, _ new: String) throws {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.contains(old), "\(file) does not contain \(old)")
        try text.replacingOccurrences(of: old, with: new).write(toFile: file, atomically: true, encoding: .utf8)
    }

    @Test func reformattingOnlyPlansNoChange() throws {
        let dir = try repository()
        try FileManager.default.removeItem(atPath: dir + "/catalog")
        try FileManager.default.copyItem(atPath: Self.fixtures + "/reformatted-no-change/before", toPath: dir + "/catalog")
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "reformat", in: dir)
        let r = try mcpfleet("plan", dir + "/catalog", "--against", "HEAD~1")
        #expect(r.status == 0, "\(r.all)")
        #expect(r.stdout.contains("No changes"))
    }

    @Test func replicaBumpPlansExactlyThatScale() throws {
        let dir = try repository()
        try replace(dir + "/catalog/servers/search.yaml", "replicas: 2", "replicas: 3")
        try git("commit", "-q", "-am", "scale search", in: dir)
        let r = try mcpfleet("plan", dir + "/catalog", "--against", "HEAD~1")
        #expect(r.status == 1, "\(r.all)")
        #expect(r.stdout.contains("↕ server search  (replicas 2 → 3)"))
        #expect(r.stdout.contains("Plan: 1 to scale."))
        let json = try mcpfleet("plan", dir + "/catalog", "--against", "HEAD~1", "-o", "json")
        let plan = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let changes = try #require(plan["changes"] as? [[String: Any]])
        #expect(changes.count == 1)
        #expect(changes.first?["action"] as? String == "scale")
        #expect(changes.first?["name"] as? String == "search")
    }

    @Test func secretReferenceChangeShowsReferencesOnly() throws {
        let dir = try repository()
        try replace(dir + "/catalog/servers/search.yaml", "name: search-creds,", "name: search-creds-v2,")
        try replace(dir + "/catalog/servers/search.yaml", "value: \"abc\"", "value: \"s3cr3t-plain-value\"")
        try git("commit", "-q", "-am", "rotate", in: dir)
        for format in ["text", "json", "markdown"] {
            let r = try mcpfleet("plan", dir + "/catalog", "--against", "HEAD~1", "-o", format)
            #expect(r.status == 1)
            if format != "json" { #expect(!r.all.contains("s3cr3t-plain-value"), "\(format) leaked a value") }
            #expect(r.stdout.contains("search-creds-v2"))
        }
    }

    @Test func markdownIsAPullRequestComment() throws {
        let dir = try repository()
        try replace(dir + "/catalog/servers/search.yaml", "version: \"1.0.0\"", "version: \"1.1.0\"")
        try git("commit", "-q", "-am", "bump", in: dir)
        let r = try mcpfleet("plan", dir + "/catalog", "--against", "HEAD~1", "-o", "markdown")
        #expect(r.status == 1)
        #expect(r.stdout.hasPrefix("### mcpfleet plan"))
        #expect(r.stdout.contains("| `~` | `server/search` | roll out"))
    }

    @Test func savedPlanAndLiveSnapshot() throws {
        let dir = try makeTempDirectory("plan-live")
        let live = dir + "/live.json"
        try #"{"servers": [], "tenants": []}"#.write(toFile: live, atomically: true, encoding: .utf8)
        let r = try mcpfleet("plan", Self.fixtures + "/in-sync/manifests", "--live", live, "--out", dir + "/plan.json", "-o", "json")
        #expect(r.status == 1)
        let saved = try String(contentsOfFile: dir + "/plan.json", encoding: .utf8)
        #expect(saved == r.stdout)
        // Byte-identical on a second run.
        #expect(try mcpfleet("plan", Self.fixtures + "/in-sync/manifests", "--live", live, "-o", "json").stdout == saved)
    }

    @Test func withoutABaselineThePlanObservesTheRuntime() throws {
        let dir = try repository()
        // The fixture's environment uses the local driver, whose state lives under the working directory.
        let r = try mcpfleet("plan", "catalog", cwd: dir)
        #expect(r.status == 1, "\(r.all)")
        #expect(r.stdout.contains("against local runtime of environment dev"))
        #expect(r.stdout.contains("Plan: 3 to create."))
    }

    @Test func errorsExitTwo() throws {
        let dir = try repository()
        #expect(try mcpfleet("plan", dir + "/catalog", "--against", "no-such-ref").status == 2)
        #expect(try mcpfleet("plan", packageRoot + "/Manifests", "--live", "/nonexistent.json").status == 2)
        #expect(try mcpfleet("plan", packageRoot + "/Manifests", "--live", dir + "/catalog/tenants.yaml").status == 2)
        // Several environments and none chosen.
        let live = dir + "/empty.json"
        try "{}".write(toFile: live, atomically: true, encoding: .utf8)
        let many = try mcpfleet("plan", packageRoot + "/Manifests", "--live", live)
        #expect(many.status == 2)
        #expect(many.stderr.contains("--env"))
    }
}
