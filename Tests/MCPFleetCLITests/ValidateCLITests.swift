import Foundation
import Testing

@Suite struct ValidateCLITests {
    @Test func exampleCatalogIsValid() throws {
        let r = try mcpfleet("validate", packageRoot + "/Manifests")
        #expect(r.status == 0, "\(r.all)")
        #expect(r.stdout.contains("valid"))
    }

    @Test func invalidFileNamesFileLineAndColumnWithACaret() throws {
        let r = try mcpfleet("validate", packageRoot + "/Manifests/invalid/unknown-field.yaml")
        #expect(r.status == 1)
        #expect(r.stderr.contains("Manifests/invalid/unknown-field.yaml:"))
        #expect(r.stderr.contains("error: unknown field"))
        #expect(r.stderr.contains("^"))
    }

    @Test func jsonOutputForEditors() throws {
        let r = try mcpfleet("validate", packageRoot + "/Manifests/invalid/unknown-field.yaml", "-o", "json")
        #expect(r.status == 1)
        let report = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        #expect(report?["errorCount"] as? Int == 1)
    }

    @Test func usageAndIOErrorsExitTwo() throws {
        #expect(try mcpfleet("validate").status == 2)
        #expect(try mcpfleet("validate", "--bogus-flag", ".").status == 2)
        #expect(try mcpfleet("validate", "/nonexistent/manifests").status == 2)
        #expect(try mcpfleet("frobnicate").status == 2)
    }

    @Test func bombsAndDeepNestingAreRejectedNotCrashed() throws {
        let dir = try makeTempDirectory("bombs")
        let bomb = """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t}
        a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
        b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
        c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
        d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
        e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
        f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
        g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
        h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
        i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
        """
        try bomb.write(toFile: dir + "/bomb.yaml", atomically: true, encoding: .utf8)
        let r = try mcpfleet("validate", dir + "/bomb.yaml")
        #expect(r.status == 1)
        #expect(r.stderr.contains("yaml-alias-limit"))
        try (String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000)).write(toFile: dir + "/deep.yaml", atomically: true, encoding: .utf8)
        let deep = try mcpfleet("validate", dir + "/deep.yaml")
        #expect(deep.status == 1)
        #expect(deep.stderr.contains("yaml-depth-limit"))
        try Data([0x6b, 0x3a, 0x20, 0xff, 0xfe, 0x0a]).write(to: URL(fileURLWithPath: dir + "/utf8.yaml"))
        #expect(try mcpfleet("validate", dir + "/utf8.yaml").status == 1)
    }
}
