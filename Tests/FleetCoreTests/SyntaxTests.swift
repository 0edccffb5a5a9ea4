import FleetCore
import FleetYAML
import Testing

@Suite struct SyntaxTests {
    @Test(arguments: [
        ("400ms", 400), ("30s", 30_000), ("5m", 300_000), ("1h30m", 5_400_000), ("1m30s", 90_000), ("0s", 0),
    ] as [(String, Int64)])
    func durationsParse(text: String, millis: Int64) {
        #expect(Syntax.duration(text) == .milliseconds(millis))
    }

    @Test(arguments: ["", "5", "5 m", "-5s", "1.5s", "5d", "ms", "5mm", "s5", "5m30", "99999999999s"])
    func durationsRejected(text: String) {
        #expect(Syntax.duration(text) == nil)
    }

    @Test(arguments: [("500m", 500), ("2", 2000), ("0.5", 500), ("1.25", 1250), ("100m", 100)] as [(String, Int)])
    func cpuQuantities(text: String, millis: Int) {
        #expect(Syntax.cpuMillis(text) == millis)
    }

    @Test(arguments: ["", "m", "1.2345", "-1", "1e3", "500 m", "abc", "0.5m"])
    func cpuRejected(text: String) {
        #expect(Syntax.cpuMillis(text) == nil)
    }

    @Test(arguments: [("256Mi", Int64(256) << 20), ("1Gi", Int64(1) << 30), ("500M", 500_000_000), ("1024", 1024), ("1k", 1000)] as [(String, Int64)])
    func memoryQuantities(text: String, bytes: Int64) {
        #expect(Syntax.memoryBytes(text) == bytes)
    }

    @Test(arguments: ["", "Mi", "1.5Gi", "256mi", "-1Gi", "1 Gi", "99999999999999Ti"])
    func memoryRejected(text: String) {
        #expect(Syntax.memoryBytes(text) == nil)
    }

    @Test func versions() {
        #expect(Syntax.versionProblem("1.10") == nil)
        #expect(Syntax.versionProblem("2.0.0-rc.1+build.5") == nil)
        #expect(Syntax.versionProblem("v1.2.3") == nil)
        #expect(Syntax.versionProblem("latest") == .latest)
        #expect(Syntax.versionProblem("LATEST") == .latest)
        #expect(Syntax.versionProblem("^1.2") == .range)
        #expect(Syntax.versionProblem(">=1.0 <2.0") == .range)
        #expect(Syntax.versionProblem("1.x") == .range)
        #expect(Syntax.versionProblem("1.*") == .range)
        #expect(Syntax.versionProblem("-1") == .malformed)
        #expect(Syntax.versionProblem("") == .malformed)
    }

    @Test(arguments: [("ok", true), ("a-b-1", true), (String(repeating: "a", count: 63), true),
                      (String(repeating: "a", count: 64), false), ("-a", false), ("a-", false), ("A", false),
                      ("../etc", false), ("a/b", false), ("a\nb", false), ("", false), ("a.b", false)] as [(String, Bool)])
    func dnsLabels(name: String, valid: Bool) {
        #expect(Syntax.isDNSLabel(name) == valid)
    }

    @Test func controlCharacters() {
        #expect(Syntax.hasControlCharacter("a\nb"))
        #expect(Syntax.hasControlCharacter("a\u{0}b"))
        #expect(Syntax.hasControlCharacter("a\u{2028}b"))
        #expect(!Syntax.hasControlCharacter("100% safe ünïcode"))
    }

    @Test func substitutions() {
        #expect(Syntax.substitutions(in: "--port=${PORT}/${REPLICA}") == ["PORT", "REPLICA"])
        #expect(Syntax.substitutions(in: "${OOPS") == nil)
        #expect(Syntax.substitutions(in: "$PORT") == [])
    }

    @Test func didYouMean() {
        #expect(Syntax.closest(to: "replica", in: ["replicas", "resources", "rollout"]) == "replicas")
        #expect(Syntax.closest(to: "zzzzzz", in: ["replicas"]) == nil)
    }

    @Test func oneBoundForEveryDuration() {
        #expect(Syntax.duration("168h") == Syntax.maxDuration)
        // Accepted by the syntax, refused by the bound (one message for every duration field).
        let long = loadText(minimalTenantAndEnv + server(spec: "  health: {interval: 3000000h}"))
        #expect(long.codes == ["invalid-duration"], "\(long.errorsText)")
        #expect(long.errorsText.contains("at most 168h"))
        let pause = loadText(minimalTenantAndEnv + server(spec: "  rollout: {strategy: canary, steps: [{weight: 10, pause: 200h}]}"))
        #expect(pause.codes == ["invalid-duration"], "\(pause.errorsText)")
        // Many huge components overflow nothing: they are refused.
        #expect(Syntax.duration(String(repeating: "999999999h", count: 4000)) == nil)
    }

    @Test func nameRules() {
        for (rule, good, bad) in [
            (Syntax.NameRule.dnsLabel, ["a", "mcp-1", String(repeating: "a", count: 63)], ["", "A", "-a", "a-", "../x", "a\nb", String(repeating: "a", count: 64)]),
            (.namespacePrefix, ["mcp-", "team1-", "x"], ["", "-x", "../../apis/", "team-\n---\nkind: Secret", "Upper-", String(repeating: "a", count: 63)]),
            (.labelKey, ["tier", "app.kubernetes.io/name", "example.com/a_b.c"], ["", "/x", "a b", "Example.com/x", "a..b/x", "-x.com/y", "tier/"]),
            (.labelValue, ["", "core", "v1.2_3"], ["-x", "a b", String(repeating: "a", count: 64)]),
            (.envName, ["PATH", "_x1"], ["1X", "A-B", ""]),
            (.fieldManager, ["mcpfleet", "ci.bot_1"], ["", "mcp fleet", "a/b", String(repeating: "a", count: 129)]),
        ] {
            for g in good { #expect(rule.accepts(g), "\(rule) should accept \(g)") }
            for b in bad { #expect(!rule.accepts(b), "\(rule) should refuse \(b)") }
        }
    }

    @Test func namespacePrefixAndNamesThatReachKubernetes() {
        let env = """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t1, annotations: {"bad key": x}}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: dev}
        spec: {driver: kubernetes, kubernetes: {namespacePrefix: "a/../", fieldManager: "x y"}, serverSelector: {"tier/": a}}

        """
        let loaded = loadText(env)
        #expect(loaded.codes == ["invalid-name", "invalid-name", "invalid-name", "invalid-name"], "\(loaded.errorsText)")
    }

    @Test func durationFormatting() {
        #expect(Syntax.format(.milliseconds(400)) == "400ms")
        #expect(Syntax.format(.seconds(90)) == "1m30s")
        #expect(Syntax.format(.seconds(3600)) == "1h")
    }
}
