import Foundation
import FleetCore
import FleetYAML
import Testing

@Suite struct RevisionTests {
    func revisions(_ c: LoadedCatalog) -> [String: String] {
        guard let env = c.catalog.environments.first else { return [:] }
        return Dictionary(uniqueKeysWithValues: Renderer.desiredState(c.catalog, environment: env).servers.map { ($0.name, $0.revision) })
    }

    @Test func independentOfKeyOrderQuotingCommentsAndLayout() {
        let a = loadText(minimalTenantAndEnv + server(spec: "  resources: {cpu: 500m, memory: 256Mi}\n  env: [{name: A, value: x}, {name: B, value: y}]"))
        let b = loadFiles([
            "z/one.yml": """
            # the same server, written differently
            kind: Server
            apiVersion: "mcpfleet.io/v1alpha1"
            spec:
              env:
              - {value: 'y', name: B}   # order of env vars does not matter
              - name: A
                value: "x"
              resources: {memory: "256Mi", cpu: "0.5"}
              transport: {port: 20100, type: streamable-http}
              artifact:
                command: ['/opt/mcp/bin/s1', "--port", "${PORT}"]
              tenant: t1
              version: '1.0.0'
            metadata: {name: s1}
            """,
            "a/base.yaml": minimalTenantAndEnv,
        ])
        #expect(a.diagnostics.isEmpty && b.diagnostics.isEmpty, "\(a.errorsText)\(b.errorsText)")
        #expect(revisions(a) == revisions(b))
        #expect(revisions(a)["s1"]?.count == 12)
    }

    @Test func replicasAreNotPartOfTheRevision() {
        let a = loadText(minimalTenantAndEnv + server(spec: "  replicas: 1"))
        let b = loadText(minimalTenantAndEnv + server(spec: "  replicas: 4"))
        #expect(revisions(a) == revisions(b))
    }

    @Test(arguments: [
        "  env: [{name: A, value: z}]",
        "  env: [{name: A, secretRef: {name: s, key: k}}]",
        "  resources: {memory: 512Mi}",
        "  health: {probe: tcp}",
        "  artifact: {command: [/opt/mcp/bin/s1, --verbose]}",
    ])
    func runningChangesMakeANewRevision(extra: String) {
        let base = loadText(minimalTenantAndEnv + server(spec: "  env: [{name: A, value: x}]"))
        let text = minimalTenantAndEnv + server(spec: extra)
        // A second `artifact` key would be a duplicate: replace the default one instead.
        let changed = loadText(extra.contains("artifact") ? text.replacingOccurrences(of: "  artifact: {command: [/opt/mcp/bin/s1, --port, \"${PORT}\"]}\n", with: "") : text)
        #expect(changed.diagnostics.isEmpty, "\(changed.errorsText)")
        #expect(revisions(base)["s1"] != revisions(changed)["s1"])
    }

    @Test func versionBumpChangesTheRevision() {
        #expect(revisions(loadText(minimalTenantAndEnv + server(version: "1.0.0")))["s1"] != revisions(loadText(minimalTenantAndEnv + server(version: "1.0.1")))["s1"])
    }
}
