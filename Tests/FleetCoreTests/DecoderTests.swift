import FleetCore
import FleetYAML
import Testing

@Suite struct DecoderTests {
    @Test func versionStaysAString() throws {
        let c = loadText(minimalTenantAndEnv + server(version: "1.10"))
        #expect(c.diagnostics.isEmpty, "\(c.errorsText)")
        #expect(c.catalog.servers.first?.version == "1.10")
    }

    @Test func yaml11BooleansAreStringsWhereStringsAreExpected() throws {
        let c = loadText(minimalTenantAndEnv + server(spec: "  description: NO"))
        #expect(c.diagnostics.isEmpty, "\(c.errorsText)")
        #expect(c.catalog.servers.first?.description == "NO")
    }

    @Test func yaml11BooleanWhereABoolIsExpectedIsAnErrorWithHint() throws {
        let c = loadText(minimalTenantAndEnv + server(spec: "  rollout: {autoRollback: yes}"))
        let d = try #require(c.diagnostics.items.first)
        #expect(d.code == "type-mismatch")
        #expect(d.hint?.contains("true or false") == true)
    }

    @Test func everyProblemIsReportedInOneRun() {
        let c = loadText(minimalTenantAndEnv + server(spec: """
          replica: 3
          rollout: {strategy: blue-green}
          resources: {cpu: lots}
          health: {interval: soon}
        """, version: "latest"))
        #expect(c.codes.sorted() == ["invalid-duration", "invalid-quantity", "invalid-value", "invalid-version", "unknown-field"])
        let unknown = c.diagnostics.items.first { $0.code == "unknown-field" }
        #expect(unknown?.hint == "did you mean `replicas`?")
        #expect(unknown?.location?.line == 18)
        #expect(unknown?.location?.column == 3)
    }

    @Test func hostileValuesCannotReachACommandLine() {
        let c = loadText(minimalTenantAndEnv + server(spec: """
          env:
            - {name: A, value: "x\\nExecStartPre=/bin/sh -c evil"}
            - {name: B, value: "${HOME}"}
        """))
        #expect(c.codes == ["unsafe-value", "unsafe-value"])
    }

    @Test func pathTraversalInNamesAndEvidenceIsRejected() {
        let c = loadFiles(["a.yaml": minimalTenantAndEnv + server(spec: "  supplyChain: {sbom: ../../etc/passwd}"),
                           "b.yaml": "apiVersion: mcpfleet.io/v1alpha1\nkind: Tenant\nmetadata: {name: ../etc}\n"])
        #expect(c.codes.sorted() == ["invalid-name", "invalid-path"])
    }

    @Test func evidencePathsResolveFromTheManifestDirectory() throws {
        let c = loadFiles(["servers/a.yaml": minimalTenantAndEnv + server(spec: "  supplyChain: {sbom: ../evidence/a.cdx.json, signature: ./a.sig}")])
        #expect(c.diagnostics.isEmpty, "\(c.errorsText)")
        let sc = try #require(c.catalog.servers.first?.supplyChain)
        #expect(sc.sbom == "evidence/a.cdx.json")
        #expect(sc.signature == "servers/a.sig")
    }

    @Test func secretsMustBeReferences() {
        let c = loadText(minimalTenantAndEnv + server(spec: """
          env:
            - {name: TOKEN, isSecret: true, value: hunter2}
        """))
        #expect(c.codes == ["secret-inline"])
        #expect(!c.errorsText.contains("hunter2"))
    }

    @Test func crossDocumentRules() {
        let c = loadText(minimalTenantAndEnv + server("a", port: 20100) + server("b", port: 20101) + """

        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: c}
        spec:
          version: "1"
          tenant: t2
          slo: missing
          artifact: {command: [c]}
          transport: {type: stdio}

        """ + server("a", port: 20300))
        // Server c is stdio without a port: the local driver's bridge needs one (issue 19).
        #expect(c.codes.sorted() == ["duplicate-name", "missing-field", "port-collision", "unresolved-reference", "unresolved-reference"])
    }

    /// Issue 19: a stdio server without a port passed validate and was refused by the local driver at
    /// run time; a stdio server's block was not checked against others; an ephemeral portRange went unnoticed.
    @Test func stdioServersNeedAPortBlockOnHostDrivers() {
        func stdio(_ name: String, port: Int?) -> String {
            """

            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Server
            metadata: {name: \(name)}
            spec:
              version: "1"
              tenant: t1
              artifact: {command: [/opt/mcp/bin/\(name)]}
              transport: {type: stdio\(port.map { ", port: \($0)" } ?? "")}

            """
        }
        let missing = loadText(minimalTenantAndEnv + stdio("bridged", port: nil))
        #expect(missing.codes == ["missing-field"])
        #expect(missing.errorsText.contains("server `bridged` has no `spec.transport.port`") && missing.errorsText.contains("bridge"), "\(missing.errorsText)")
        #expect(missing.errorsText.contains("mem/test.yaml:"), "file:line:col: \(missing.errorsText)")
        // Its block (port + replicas + surge) collides with a streamable-http server's.
        let overlap = loadText(minimalTenantAndEnv + server("web", port: 20100) + stdio("bridged", port: 20101))
        #expect(overlap.codes == ["port-collision"], "\(overlap.errorsText)")
        #expect(overlap.errorsText.contains("overlap server `web`"), "\(overlap.errorsText)")
        #expect(loadText(minimalTenantAndEnv + server("web", port: 20100) + stdio("bridged", port: 20110)).codes.isEmpty)
        // On Kubernetes a stdio server is refused by the renderer, not for its port.
        let kube = minimalTenantAndEnv.replacingOccurrences(of: "spec: {driver: local, portRange: 20000-20999}", with: "spec: {driver: kubernetes}")
        #expect(!loadText(kube + stdio("bridged", port: nil)).codes.contains("missing-field"))
    }

    @Test func portRangeInTheEphemeralRangeIsWarnedAbout() {
        let env = minimalTenantAndEnv.replacingOccurrences(of: "portRange: 20000-20999", with: "portRange: 40000-40999")
        let c = loadText(env + server("web", port: 40100))
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)")
        let warning = c.diagnostics.items.first { $0.code == "ephemeral-ports" }
        #expect(warning?.severity == .warning)
        #expect(warning?.message.contains("40000-40999 overlaps the kernel's ephemeral port range 32768-60999") == true, "\(warning?.message ?? "-")")
        #expect(!loadText(minimalTenantAndEnv + server("web", port: 20100)).diagnostics.items.contains { $0.code == "ephemeral-ports" })
    }

    @Test func quotasHold() {
        let text = """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t1}
        spec: {quota: {maxReplicas: 3, memory: 1Gi}}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: dev}
        spec: {driver: local, portRange: 20000-20999}

        """ + server("a", spec: "  replicas: 2\n  resources: {memory: 256Mi}", port: 20100) + server("b", spec: "  replicas: 2", port: 20200)
        let c = loadText(text)
        #expect(c.codes == ["quota-exceeded"])
        #expect(c.diagnostics.items.first?.message.contains("`b`") == true)
    }

    @Test func foreignDocumentsAreErrors() {
        let c = loadText("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
        #expect(c.codes == ["foreign-document"])
    }

    @Test func formatterShowsLineAndCaret() throws {
        let c = loadText(minimalTenantAndEnv + server(spec: "  replica: 3"))
        let text = c.renderDiagnostics(color: false)
        #expect(text.contains("test.yaml:18:3: error: unknown field `replica` in `spec` [unknown-field]"))
        #expect(text.contains(" 18 |   replica: 3\n    |   ^\n"))
        #expect(text.contains("hint: did you mean `replicas`?"))
    }
}
