import FleetCore
import FleetYAML
import Testing

@Suite struct PlannerTests {
    func desired(_ servers: [(String, String, Int)]) -> DesiredState {
        let c = loadText(minimalTenantAndEnv + servers.enumerated().map { i, s in
            server(s.0, spec: "  replicas: \(s.2)", version: "\"\(s.1)\"", port: 20100 + i * 10)
        }.joined())
        return Renderer.desiredState(c.catalog, environment: c.catalog.environments[0])
    }

    @Test func pausedServersAreHeld() {
        let old = desired([("a", "1.0.0", 1)])
        var live = LiveState.converged(old)
        live.servers[0].paused = true
        let plan = Planner.plan(desired: desired([("a", "2.0.0", 1)]), live: live, baseline: "t")
        #expect(plan.changes.isEmpty)
        #expect(plan.holds.first?.reason.contains("paused") == true)
    }

    @Test func rolloutInProgressIsNotReplanned() {
        let old = desired([("a", "1.0.0", 2)]), new = desired([("a", "2.0.0", 2)])
        var live = LiveState.converged(old)
        live.servers[0].revisions.append(LiveRevision(revision: new.servers[0].revision, replicas: 1, ready: 0))
        live.servers[0].revisions[0].replicas = 1
        live.servers[0].targetRevision = new.servers[0].revision
        live.servers[0].phase = .progressing
        let plan = Planner.plan(desired: new, live: live, baseline: "t")
        #expect(plan.changes.isEmpty)
        #expect(plan.holds.first?.reason.contains("in progress") == true)
    }

    @Test func blockedVerdictMakesExitThree() {
        let new = desired([("a", "1.0.0", 1)])
        let verdict = PolicyVerdict(server: "a", revision: new.servers[0].revision, decision: .blocked, policies: ["p"], reasons: ["unsigned"])
        let plan = Planner.plan(desired: new, live: LiveState(), verdicts: ["a": verdict], baseline: "t")
        #expect(plan.changes.last?.blocked == true)
        #expect(plan.exitCode == 3)
        #expect(plan.summary.blocked == 1)
    }

    func verdict(_ d: DesiredState, _ decision: VerdictDecision, signature: String = "sha256:aaaa") -> PolicyVerdict {
        PolicyVerdict(server: "a", revision: d.servers[0].revision, decision: decision, policies: ["p"], reasons: decision == .blocked ? ["bad signature"] : [],
                      evidence: EvidenceSummary(artifactDigest: "sha256:1111", signedBy: decision == .blocked ? nil : "release", signatureDigest: signature))
    }

    @Test func settingsChangesAreUpdatesNotRollouts() {
        let old = desired([("a", "1.0.0", 2)])
        var new = old
        new.servers[0].rollout.autoRollback = false
        new.servers[0].rollout.strategy = .recreate
        new.servers[0].labels = ["tier": "edge"]
        let plan = Planner.plan(desired: new, live: LiveState.converged(old), baseline: "t")
        #expect(plan.changes.map(\.action) == [.update])
        #expect(plan.changes[0].toRevision == old.servers[0].revision, "a settings change makes no new revision")
        #expect(Set(plan.changes[0].fields.map(\.path)) == ["rollout.strategy", "rollout.autoRollback", "labels.tier"])
        #expect(plan.exitCode == 1)
        #expect(plan.unrecorded.isEmpty)
    }

    @Test func aVerdictThatTurnsBlockedIsAChangeAndExitsThree() {
        let d = desired([("a", "1.0.0", 1)])
        let live = LiveState.converged(d, verdicts: ["a": verdict(d, .admitted)])
        // Unchanged verdict and evidence: nothing to do.
        #expect(Planner.plan(desired: d, live: live, verdicts: ["a": verdict(d, .admitted)], baseline: "t").exitCode == 0)
        // New evidence, same verdict: a change (exit 1), named by its field.
        let resigned = Planner.plan(desired: d, live: live, verdicts: ["a": verdict(d, .admitted, signature: "sha256:bbbb")], baseline: "t")
        #expect(resigned.exitCode == 1)
        #expect(resigned.changes.first?.fields.map(\.path) == ["supplyChain.signature"])
        // Tampered: blocked now, exit 3.
        let tampered = Planner.plan(desired: d, live: live, verdicts: ["a": verdict(d, .blocked, signature: "sha256:cccc")], baseline: "t")
        #expect(tampered.exitCode == 3)
        #expect(tampered.changes.first?.fields.first == FieldChange(path: "supplyChain.verdict", old: "admitted", new: "blocked"))
        #expect(PlanFormatter(color: false).text(tampered).contains("✗ a"))
    }

    @Test func aBaselineWithoutVerdictsFailsClosedOnABlockedServer() {
        let d = desired([("a", "1.0.0", 1)])
        var live = LiveState.converged(d)
        live.servers[0].admission = nil
        live.objects = nil
        live.servers[0].settings = nil
        let plan = Planner.plan(desired: d, live: live, verdicts: ["a": verdict(d, .blocked)], baseline: "t")
        #expect(plan.exitCode == 3)
        #expect(plan.changes.first?.blocked == true)
        #expect(plan.unrecorded == ["environment, policy and SLO settings", "server rollout settings, SLOs and labels"])
        #expect(PlanFormatter(color: false).text(plan).contains("Not compared"))
    }

    @Test func heldServersStillShowSettingsChanges() {
        let old = desired([("a", "1.0.0", 1), ("b", "1.0.0", 1)])
        var new = desired([("a", "2.0.0", 1), ("b", "1.0.0", 1)])
        new.servers[0].rollout.progressDeadlineMs = 1_800_000
        var live = LiveState.converged(old)
        live.servers[0].paused = true
        let plan = Planner.plan(desired: new, live: live, baseline: "t")
        #expect(plan.holds.map(\.server) == ["a"])
        #expect(plan.changes.map(\.subject) == ["server/a"])
        #expect(plan.changes.first?.fields.map(\.path) == ["rollout.progressDeadline"])
    }

    @Test func catalogObjectsAreComparedWhenTheBaselineRecordsThem() {
        let before = loadText(minimalTenantAndEnv + """
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Policy
        metadata: {name: gate}
        spec: {mode: warn}

        """ + server(spec: "  slo: fast") + """
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: SLO
        metadata: {name: fast}
        spec: {successRate: "99%", analysis: {count: 5, failureLimit: 1}}
        """)
        let after = loadText(minimalTenantAndEnv + """
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Policy
        metadata: {name: gate}
        spec: {mode: enforce}

        """ + server(spec: "  slo: fast") + """
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: SLO
        metadata: {name: fast}
        spec: {successRate: "50%", analysis: {count: 5, failureLimit: 3}}
        """)
        #expect(!before.diagnostics.hasErrors && !after.diagnostics.hasErrors, "\(before.errorsText)\(after.errorsText)")
        let env = after.catalog.environments[0]
        let old = Renderer.desiredState(before.catalog, environment: env), new = Renderer.desiredState(after.catalog, environment: env)
        let plan = Planner.plan(desired: new, live: LiveState.converged(old), baseline: "t")
        #expect(plan.changes.map(\.subject) == ["policy/gate", "slo/fast"])
        #expect(plan.changes.flatMap { $0.fields.map(\.path) } == ["mode", "successRate", "analysis.failureLimit"])
        #expect(plan.exitCode == 1)
        // Dropped from the catalog: a deletion, last.
        let dropped = Planner.plan(desired: Renderer.desiredState(loadText(minimalTenantAndEnv + server()).catalog, environment: env),
                                   live: LiveState.converged(new), baseline: "t")
        #expect(dropped.changes.filter { $0.action == .delete }.map(\.subject) == ["policy/gate", "slo/fast"])
    }

    @Test func liveFingerprintMovesWithRevisionsNotHealth() {
        let live = LiveState.converged(desired([("a", "1.0.0", 2)]))
        var unhealthy = live
        unhealthy.servers[0].revisions[0].ready = 0
        #expect(live.fingerprint == unhealthy.fingerprint)
        var scaled = live
        scaled.servers[0].revisions[0].replicas = 3
        #expect(live.fingerprint != scaled.fingerprint)
    }

    // MARK: the default analysis provider (design 0016)

    func sloCatalog(_ analysis: String) -> LoadedCatalog {
        loadText(minimalTenantAndEnv + server(spec: "  slo: tools") + """
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: SLO
        metadata: {name: tools}
        spec: {successRate: "99%", analysis: \(analysis)}
        """)
    }

    @Test func anSLONamingNoProviderIsJudgedByTheGatewayWhereTheControllerServesIt() throws {
        let c = sloCatalog("{count: 5, failureLimit: 1}")
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)")
        let local = c.catalog.environments[0]
        var systemd = local, systemdWithGateway = local, kubernetes = local, kubernetesWithGateway = local
        systemd.driver = .systemd
        systemdWithGateway.driver = .systemd
        systemdWithGateway.gateway = EnvironmentGatewaySettings()
        systemdWithGateway.gateway?.address = "127.0.0.1:9470"
        kubernetes.driver = .kubernetes
        // Kubernetes with `spec.gateway`: the gateway Deployment's replicas report their tool calls (design 0018).
        kubernetesWithGateway.driver = .kubernetes
        kubernetesWithGateway.gateway = EnvironmentGatewaySettings()
        kubernetesWithGateway.gateway?.signingKey = SecretReference(name: "mcpfleet-gateway", key: "signing.key")
        let cases: [(Environment, AnalysisProviderKind)] = [(local, .gateway), (systemd, .probe), (systemdWithGateway, .gateway), (kubernetes, .probe),
                                                            (kubernetesWithGateway, .gateway)]
        for (env, expected) in cases {
            let slo = try #require(Renderer.desiredState(c.catalog, environment: env).servers.first?.slo)
            #expect(slo.provider == expected, "\(env.driver)")
            #expect(slo.providerDefaulted == true)
        }
        // A named provider stays as named, everywhere.
        let named = sloCatalog("{provider: probe, count: 5, failureLimit: 1}")
        let slo = try #require(Renderer.desiredState(named.catalog, environment: local).servers.first?.slo)
        #expect(slo.provider == .probe && slo.providerDefaulted == nil)
    }

    @Test func planShowsTheDefaultProviderAndTheChangeOfDefault() throws {
        // A baseline written when `probe` was the default (same as naming it), then the same SLO naming none.
        let before = sloCatalog("{provider: probe, count: 5, failureLimit: 1}"), after = sloCatalog("{count: 5, failureLimit: 1}")
        let env = after.catalog.environments[0]
        let old = Renderer.desiredState(before.catalog, environment: env), new = Renderer.desiredState(after.catalog, environment: env)
        let plan = Planner.plan(desired: new, live: LiveState.converged(old), baseline: "t")
        let field = try #require(plan.changes.first { $0.subject == "slo/tools" }?.fields.first { $0.path == "analysis.provider" })
        let text = PlanFormatter(color: false).text(plan)
        #expect(text.contains("analysis.provider: probe → gateway (default here)"), "\(text)")
        #expect(field.path == "analysis.provider")
        let json = try CanonicalJSON.encode(plan)
        #expect(json.contains("\"providerDefaulted\" : true"))
        // Naming the default explicitly afterwards is no change of provider.
        let explicit = Renderer.desiredState(sloCatalog("{provider: gateway, count: 5, failureLimit: 1}").catalog, environment: env)
        let same = Planner.plan(desired: explicit, live: LiveState.converged(new), baseline: "t")
        #expect(!same.changes.contains { $0.fields.contains { $0.path == "analysis.provider" } })
    }

    @Test func compareWithStableIsDecodedShownAndCheckedWhereItIs() throws {
        let c = sloCatalog("{provider: gateway, compareWithStable: true, stableTolerance: \"0.5%\"}")
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)")
        let state = Renderer.desiredState(c.catalog, environment: c.catalog.environments[0])
        let slo = try #require(state.servers.first?.slo)
        #expect(slo.compareWithStable == true && slo.stableTolerance == 0.005)
        let before = Renderer.desiredState(sloCatalog("{provider: gateway}").catalog, environment: c.catalog.environments[0])
        let plan = Planner.plan(desired: state, live: LiveState.converged(before), baseline: "t")
        let text = PlanFormatter(color: false).text(plan)
        #expect(text.contains("+ analysis.compareWithStable: true") && text.contains("+ analysis.stableTolerance: 0.5%"), "\(text)")
        // Named with another provider: an error at the key; a tolerance that is no percentage: at its value.
        let probe = sloCatalog("{provider: probe, compareWithStable: true}")
        #expect(probe.codes == ["invalid-value"])
        #expect(probe.errorsText.contains("`spec.analysis.compareWithStable` applies to the `gateway` provider only"), "\(probe.errorsText)")
        let bad = sloCatalog("{compareWithStable: yes, stableTolerance: 2}")
        #expect(bad.codes.count == 2, "\(bad.errorsText)")
        #expect(bad.errorsText.contains("stableTolerance"), "\(bad.errorsText)")
        let line = try #require(bad.diagnostics.sorted.first { $0.message.contains("stableTolerance") })
        #expect(line.description.contains("test.yaml:"), "\(line.description)")
    }
}

/// `DesiredState.serverIndex` answers what `server(_:)` answers, for every name at once (issue 14:
/// the controller and the gateway's route refresh looked servers up by a scan, O(N²) per pass).
@Suite struct DesiredServerIndexTests {
    func spec(_ name: String, _ version: String) -> DesiredServer {
        DesiredServer(name: name, version: version, revision: "rev-\(name)-\(version)", replicas: 1, command: ["/bin/true"])
    }

    @Test func theIndexFindsWhatTheScanFinds() {
        // A repeated name (an invalid catalog the validator reports) resolves to the first, as the scan does.
        let state = DesiredState(environment: "e", driver: .local,
                                 servers: [spec("a", "1"), spec("b", "1"), spec("a", "2"), spec("c", "1")], tenants: [])
        let index = state.serverIndex()
        #expect(index.count == 3)
        for name in ["a", "b", "c", "missing"] {
            #expect(index[name].map { state.servers[$0] } == state.server(name), "\(name)")
        }
        #expect(index["a"].map { state.servers[$0].version } == "1")
    }
}
