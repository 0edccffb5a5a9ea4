import Foundation
import Testing

/// Issue 19 from the built binary: `render` prints YAML that kubernetes-validate accepts, keeps
/// sensitive inline values out of the pod spec (and out of the output unless asked), and `status -o
/// markdown` is markdown with the sync line.
@Suite struct RenderStatusCLITests {
    func catalog() throws -> String {
        let dir = try makeTempDirectory("render")
        try """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: research}
        spec:
          isolation: strict
          allowFrom:
            - namespace: agents
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: cluster}
        spec: {driver: kubernetes}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: weather}
        spec:
          version: "1.0.0"
          tenant: research
          artifact: {image: "ghcr.io/example/weather:1.0.0@sha256:\(String(repeating: "a", count: 64))"}
          transport: {type: streamable-http, port: 8080}
          replicas: 3
          environments: [cluster]
          env:
            - {name: WEATHER_API_TOKEN, value: "ghp_abcdefghijklmnopqrstuvwxyz0123456789"}
            - {name: UNITS, value: metric}

        """.write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
        return dir
    }

    @Test func renderPrintsValidYAMLWithoutTheSecret() throws {
        let dir = try catalog()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let token = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
        let r = try mcpfleet("render", dir)
        #expect(r.status == 0, "\(r.all)")
        #expect(r.stdout.hasPrefix("---\napiVersion: v1\nkind: Namespace\n"), "\(r.stdout.prefix(200))")
        #expect(!r.all.contains(token), "the token leaked into render's output")
        #expect(r.stderr.contains("not printed: Secret mcp-research/weather-"), "\(r.stderr)")
        #expect(r.stdout.contains("kind: PodDisruptionBudget") && r.stdout.contains("startupProbe:") && r.stdout.contains("livenessProbe:"))
        #expect(r.stdout.contains("kubernetes.io/metadata.name: agents"), "allowFrom in the NetworkPolicy")
        #expect(r.stdout.contains("secretKeyRef:"))

        // What kubectl would apply passes the official schemas, strict.
        let file = dir + "-render.yaml"  // outside the catalog
        try r.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let validator = try #require(["/root/.pyenv/shims/kubernetes-validate", "/usr/local/bin/kubernetes-validate", "/usr/bin/kubernetes-validate"]
            .first { FileManager.default.isExecutableFile(atPath: $0) }, "kubernetes-validate is not installed")
        let v = try run(validator, ["--strict", "--quiet", "-k", "1.32.0", file])
        #expect(v.status == 0, "\(v.all)")

        // Asked for: the Secret, base64 (never the value in clear), and JSON with -o json.
        let withSecret = try mcpfleet("render", dir, "--include-secrets", "-o", "json")
        #expect(withSecret.status == 0, "\(withSecret.all)")
        #expect(withSecret.stdout.contains("\"kind\": \"Secret\""))
        #expect(withSecret.stdout.contains(Data(token.utf8).base64EncodedString()) && !withSecret.stdout.contains(token))
    }

    @Test func statusMarkdownIsATableWithTheSyncLine() throws {
        let dir = try catalog()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        defer { try? FileManager.default.removeItem(atPath: dir + "-state") }
        try """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: local}
        spec: {driver: local, portRange: 20000-20099, stateDir: \(dir)-state}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: clock}
        spec:
          version: "1"
          tenant: research
          artifact: {command: [/bin/true]}
          transport: {type: streamable-http, port: 20010}

        """.write(toFile: dir + "/local.yaml", atomically: true, encoding: .utf8)
        try git("init", "-q", in: dir)
        try git("add", "-A", in: dir)
        try git("commit", "-q", "-m", "catalog", in: dir)
        let head = try run("/usr/bin/git", ["rev-parse", "HEAD"], cwd: dir).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try mcpfleet("status", dir, "--env", "local", "-o", "markdown")
        #expect(r.status == 0, "\(r.all)")
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first == "### mcpfleet: local")
        #expect(r.stdout.contains("OutOfSync with commit \(head.prefix(12)): 1 of 1 servers not at their desired revision (clock)"), "\(r.stdout)")
        let table = lines.filter { $0.hasPrefix("|") }
        #expect(table.count == 3, "\(r.stdout)")
        #expect(table[1].allSatisfy { $0 == "|" || $0 == "-" })
        #expect(table[2].hasPrefix("| clock | research | 1 | 0/0 |"), "\(table[2])")
        #expect(r.stdout.contains("- ⚠️ no controller is running"))
        let text = try mcpfleet("status", dir, "--env", "local")
        #expect(text.stdout.hasPrefix("OutOfSync with commit \(head.prefix(12))"), "\(text.stdout)")
    }
}
