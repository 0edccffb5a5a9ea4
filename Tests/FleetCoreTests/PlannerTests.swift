import FleetCore
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

    @Test func liveFingerprintMovesWithRevisionsNotHealth() {
        let live = LiveState.converged(desired([("a", "1.0.0", 2)]))
        var unhealthy = live
        unhealthy.servers[0].revisions[0].ready = 0
        #expect(live.fingerprint == unhealthy.fingerprint)
        var scaled = live
        scaled.servers[0].revisions[0].replicas = 3
        #expect(live.fingerprint != scaled.fingerprint)
    }
}
