import FleetCore
import FleetYAML
import Foundation
import Testing

/// Credentials are recognised by name and by shape, and appear nowhere as written: not in any plan
/// format, not in a persisted spec, not in a diagnostic.
@Suite struct PlanSafetyTests {
    // Made-up tokens of the real shapes (none is a live credential).
    static let shaped: [(String, String)] = [
        ("GitHub classic", "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"),
        ("GitHub fine-grained", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("GitLab", "glpat-Ab3dEf6hIj9kLm2nOp5q"),
        ("Slack bot", "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"),
        ("Slack webhook", "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"),
        ("AWS access key id", "AKIAIOSFODNN7EXAMPLE"),
        ("Google API key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
        ("Stripe live key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ("Stripe webhook secret", "whsec_5f8a9b7c6d5e4f3a2b1c0d9e"),
        ("JWT", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ("PEM private key", "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"),
        ("URL with a password", "postgres://app:s3cr3t-Pa55@db.internal:5432/app"),
        ("URL with a token parameter", "https://api.example.com/v1?region=eu&access_token=abcdef0123456789"),
        ("Bearer header", "Bearer ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"),
    ]

    @Test(arguments: shaped)
    func credentialShapesAreSensitiveWhateverTheirName(kind: String, value: String) {
        #expect(PlanSafety.looksLikeSecret(value), "\(kind)")
        #expect(PlanSafety.isSensitive(name: "GREETING", value: value), "\(kind)")
        #expect(!PlanSafety.redact("value: \(value) # end").contains(value), "\(kind)")
    }

    @Test(arguments: ["info", "UTC", "https://example.com/path?x=1", "postgres://db.internal:5432/app", "en_US.UTF-8",
                      "/opt/mcp/bin/search", "ghp_short", "sk_live_", "--port", "registry.example.com/mcp/time:1.10", "eyJ.not.a.jwt"])
    func ordinaryValuesAreNot(value: String) {
        #expect(!PlanSafety.isSensitive(name: "LOG_LEVEL", value: value))
        #expect(PlanSafety.redact(value) == value)
    }

    @Test func namesAndEntropy() {
        #expect(PlanSafety.isSensitive(name: "API_TOKEN", value: "x"))
        #expect(PlanSafety.isSensitive(name: "db-password", value: "hunter2"))
        // A weak name (`KEY`) counts only with a random-looking value.
        #expect(PlanSafety.isSensitive(name: "SIGNING_KEY", value: "q8Z2mW5pR1tY7uI3oP9aS4dF"))
        #expect(!PlanSafety.isSensitive(name: "SORT_KEY", value: "created_at"))
        #expect(!PlanSafety.isSensitive(name: nil, value: "q8Z2mW5pR1tY7uI3oP9aS4dF"))
    }

    @Test func argumentsByOptionAndShape() {
        let argv = ["/opt/mcp/bin/s", "--api-key", "abc123", "--token=zzz", "--port", "8080", "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "--verbose"]
        #expect(PlanSafety.sensitiveArguments(argv) == [false, false, true, true, false, false, true, false])
    }

    @Test func maskedAndSealedForms() {
        #expect(PlanSafety.masked("abc") == "(sensitive, sha256:ba7816bf8f01)")
        let sealed = PlanSafety.sealed("abc")
        #expect(sealed == "(sensitive, sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)")
        #expect(PlanSafety.sealedDigest(sealed) == PlanSafety.digest("abc"))
        #expect(PlanSafety.sealedDigest("(sensitive, sha256:ba7816bf8f01)") == nil)
    }

    static let catalog = minimalTenantAndEnv + """
    ---
    apiVersion: mcpfleet.io/v1alpha1
    kind: Server
    metadata: {name: s1}
    spec:
      version: "1.0.0"
      tenant: t1
      artifact: {command: [/opt/mcp/bin/s1, --port, "${PORT}", --token, "canary-arg-7d1e0c"]}
      transport: {type: streamable-http, port: 20100}
      env:
        - {name: API_TOKEN, value: canary-by-name-4f2a9b}
        - {name: GREETING, value: "ghp_CanaryByShape0123456789abcdefghijkl"}
        - {name: LOG_LEVEL, value: info}

    """
    static let canaries = ["canary-by-name-4f2a9b", "ghp_CanaryByShape0123456789abcdefghijkl", "canary-arg-7d1e0c"]

    @Test func plansAndPersistedSpecsCarryNoSensitiveValue() throws {
        let loaded = loadText(Self.catalog)
        #expect(!loaded.diagnostics.hasErrors, "\(loaded.errorsText)")
        let desired = Renderer.desiredState(loaded.catalog, environment: loaded.catalog.environments[0])
        let plan = Planner.plan(desired: desired, live: LiveState(), baseline: "t")
        let all = PlanFormatter(color: false).text(plan) + PlanFormatter(color: false).markdown(plan) + (try CanonicalJSON.encode(plan))
            + (try CanonicalJSON.encode(LiveState.converged(desired)))
        for c in Self.canaries { #expect(!all.contains(c), "\(c) leaked") }
        #expect(all.contains("env.API_TOKEN: (sensitive, sha256:"))
        #expect(all.contains("env.GREETING: (sensitive, sha256:"))
        #expect(all.contains("\"info\""))

        // A persisted spec is sealed; the same manifests make it whole again, and its revision holds.
        let server = desired.servers[0]
        var decoded = try JSONDecoder().decode(DesiredServer.self, from: Data(try CanonicalJSON.encode(server).utf8))
        #expect(decoded.sealedDigests.count == 3)
        #expect(decoded.unseal([:]).count == 3)
        #expect(decoded.unseal(Renderer.sensitiveValues(desired)).isEmpty)
        #expect(decoded.env == server.env)
        #expect(decoded.command == server.command)
        #expect(decoded.revision == server.revision)
        #expect(Renderer.revision(of: server.fields) == server.revision)
    }

    @Test func validateMasksTheValueInItsExcerpt() {
        let loaded = loadText(Self.catalog)
        let warnings = loaded.diagnostics.items.filter { $0.code == "possible-secret" }
        #expect(warnings.count == 3, "\(loaded.errorsText)")
        let text = loaded.renderDiagnostics(color: false)
        let json = (try? CanonicalJSON.encode(loaded.report)) ?? ""
        for c in Self.canaries {
            #expect(!text.contains(c), "excerpt shows \(c):\n\(text)")
            #expect(!json.contains(c))
        }
        #expect(text.contains("(sensitive, sha256:"))
    }

    @Test func errorsAboutAValueNeverEchoIt() {
        let loaded = loadText(minimalTenantAndEnv + server(spec: "  env: [{name: PASSWORD, value: \"hunter2-canary\\nx\"}, {name: T, isSecret: true, value: \"inline-canary-1\"}]"))
        #expect(loaded.codes.contains("unsafe-value") && loaded.codes.contains("secret-inline"), "\(loaded.errorsText)")
        let out = loaded.renderDiagnostics(color: false) + ((try? CanonicalJSON.encode(loaded.report)) ?? "")
        #expect(!out.contains("hunter2-canary"), "\(out)")
        #expect(!out.contains("inline-canary-1"), "\(out)")
    }
}
