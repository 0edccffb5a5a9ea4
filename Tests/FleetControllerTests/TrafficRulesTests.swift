import FleetController
import FleetCore
import FleetTesting
import Foundation
import Testing

// Traffic during rollouts (design 0009): canary weights, draining, and judging real tool calls.

@Suite struct TrafficRulesTests {
    let steps = [DesiredCanaryStep(weight: 20, untilPromoted: true), DesiredCanaryStep(replicas: 2, untilPromoted: true), DesiredCanaryStep(weight: 60)]

    @Test func weightsFollowTheCanaryStep() {
        let d = server("2", replicas: 4, strategy: .canary, steps: steps)
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .paused, target: "2", step: 0)) == ["rev-2": 20, "rev-1": 80])
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .paused, target: "2", step: 1)) == nil, "a replicas: step goes by replica")
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .analyzing, target: "2", step: 2)) == ["rev-2": 60, "rev-1": 40])
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .progressing, target: "2", step: 3)) == nil, "the final step goes by replica")
        #expect(TrafficRules.weights(desired: d, record: nil) == nil)
        // A first deployment (nothing stable): the canary is all there is.
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .progressing, stable: nil, target: "2", step: 0)) == ["rev-2": 100])
        // Rolling updates go by replica.
        #expect(TrafficRules.weights(desired: server("2", replicas: 4), record: rec(phase: .progressing, target: "2")) == nil)
        // A record whose target is not the desired revision (the manifests moved on): by replica until the machine catches up.
        #expect(TrafficRules.weights(desired: server("3", replicas: 4, strategy: .canary, steps: steps), record: rec(phase: .paused, target: "2")) == nil)
    }

    @Test func aRollbackTakesNewSessionsOffTheFailedRevisionAtOnce() {
        let d = server("2", replicas: 4, strategy: .canary, steps: steps)
        let rolledBack = rec(phase: .rolledBack, stable: "1", target: nil, failed: ["2"])
        #expect(TrafficRules.weights(desired: d, record: rolledBack) == ["rev-1": 100])
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .progressing, stable: "2", pinned: "1")) == ["rev-1": 100])
        #expect(TrafficRules.weights(desired: d, record: rec(phase: .failed, stable: nil, target: nil)) == nil)
    }

    @Test func drainEndsWithTheLastSessionOrTheTimeout() {
        #expect(TrafficRules.drain(openSessions: 0, since: 1000, now: 1000, timeoutMs: 30_000) == .done(reason: "no open sessions"))
        #expect(TrafficRules.drain(openSessions: 2, since: 1000, now: 5000, timeoutMs: 30_000) == .wait(deadline: 31_000))
        guard case .done(let why) = TrafficRules.drain(openSessions: 1, since: 1000, now: 31_000, timeoutMs: 30_000) else {
            Issue.record("the timeout ends the drain"); return
        }
        #expect(why.contains("drain timeout") && why.contains("1 open session"))
        var d = server("1")
        #expect(TrafficRules.drainTimeoutMs(d) == 30_000)
        d.rollout.drainTimeoutMs = 5_000
        #expect(TrafficRules.drainTimeoutMs(d) == 5_000)
    }

    static let bounds = [10.0, 100, 1000]

    @Test func toolCallsAreJudgedPerIntervalAndTooFewAreInconclusive() {
        let objective = DesiredSLO(name: "tools", successRate: 0.99, latencyP95Ms: 400, provider: .gateway, intervalMs: 1000, count: 3, failureLimit: 1)
        // 100 calls, 10 errors: 90 % < 99 %.
        let failing = ToolCallWindow(calls: 100, errors: 10, bounds: Self.bounds, latencyBuckets: [90, 10, 0, 0])
        let m = SLOMath.judge(canary: failing, stable: nil, slo: objective, time: 1)
        #expect(m.result == .fail && m.successRate == 0.9)
        #expect(m.detail?.contains("success rate 0.9 < 0.99") == true && m.detail?.contains("100 calls, 10 errors") == true, "\(m.detail ?? "")")
        // Latency from the buckets: p95 falls in (10, 100].
        let slow = ToolCallWindow(calls: 100, errors: 0, bounds: Self.bounds, latencyBuckets: [0, 0, 50, 50])
        #expect(SLOMath.judge(canary: slow, stable: nil, slo: objective, time: 1).result == .fail, "p95 beyond 1000 ms")
        let good = ToolCallWindow(calls: 100, errors: 0, bounds: Self.bounds, latencyBuckets: [95, 5, 0, 0])
        let passed = SLOMath.judge(canary: good, stable: nil, slo: objective, time: 1)
        #expect(passed.result == .pass && (passed.latencyP95Ms ?? 999) <= 10, "\(passed)")
        // Too few calls: inconclusive, never a pass — even when all of them succeeded.
        let few = ToolCallWindow(calls: 5, errors: 0, bounds: Self.bounds, latencyBuckets: [5, 0, 0, 0])
        let idle = SLOMath.judge(canary: few, stable: nil, slo: objective, minimumCalls: 20, time: 1)
        #expect(idle.result == .inconclusive && idle.detail?.contains("too few tool calls") == true, "\(idle)")
        // Against the stable revision over the same interval: worse by more than the tolerance fails.
        let canary = ToolCallWindow(calls: 1000, errors: 5, bounds: Self.bounds, latencyBuckets: [1000, 0, 0, 0])
        let stable = ToolCallWindow(calls: 1000, errors: 0, bounds: Self.bounds, latencyBuckets: [1000, 0, 0, 0])
        let lenient = DesiredSLO(name: "tools", successRate: 0.99, provider: .gateway)
        #expect(SLOMath.judge(canary: canary, stable: stable, slo: lenient, tolerance: 0.001, time: 1).result == .fail)
        #expect(SLOMath.judge(canary: canary, stable: stable, slo: lenient, tolerance: 0.01, time: 1).result == .pass)
    }

    @Test func windowsAreDifferencesOfCumulativeCounts() {
        let before = ToolCallWindow(calls: 10, errors: 1, bounds: Self.bounds, latencyBuckets: [5, 5, 0, 0])
        let after = ToolCallWindow(calls: 30, errors: 4, bounds: Self.bounds, latencyBuckets: [20, 8, 2, 0])
        #expect(after.subtracting(before) == ToolCallWindow(calls: 20, errors: 3, bounds: Self.bounds, latencyBuckets: [15, 3, 2, 0]))
        // A gateway restart resets its counters: the new counts are the interval.
        #expect(before.subtracting(after) == before)
    }

    @Test func theGatewayProviderMeasuresFromTheRunsStart() async {
        let counts = LockedCounts()
        let provider = GatewayAnalysisProvider(minimumCalls: 10) { _ in ["rev-2": counts.window] }
        let d = server("2")
        let objective = DesiredSLO(name: "tools", successRate: 0.95, provider: .gateway)
        counts.add(calls: 500, errors: 100) // before the run: not this run's business
        await provider.begin(server: d, revision: "rev-2")
        counts.add(calls: 100, errors: 10)
        let first = await provider.measure(server: d, revision: "rev-2", slo: objective, now: 1)
        #expect(first.result == .fail && first.successRate == 0.9, "\(first)")
        counts.add(calls: 100, errors: 1)
        let second = await provider.measure(server: d, revision: "rev-2", slo: objective, now: 2)
        #expect(second.result == .pass && second.successRate == 0.99, "\(second)")
        let third = await provider.measure(server: d, revision: "rev-2", slo: objective, now: 3)
        #expect(third.result == .inconclusive, "no calls in the interval: \(third)")
    }

    /// `analysis.compareWithStable` (design 0016): a canary within the absolute objective but worse than the
    /// stable revision over the same interval by more than the tolerance fails; within it, or without the
    /// setting, it passes; the stable revision's calls before the run do not count.
    @Test func theGatewayProviderComparesWithTheStableRevisionWhenAsked() async {
        let canary = LockedCounts(), stable = LockedCounts()
        let provider = GatewayAnalysisProvider(minimumCalls: 10) { _ in ["rev-2": canary.window, "rev-1": stable.window] }
        let d = server("2")
        var compared = DesiredSLO(name: "tools", successRate: 0.95, provider: .gateway)
        compared.compareWithStable = true
        var plain = compared
        plain.compareWithStable = nil
        stable.add(calls: 1000, errors: 500) // before the run: would make any canary look good
        await provider.begin(server: d, revision: "rev-2")
        // Canary 96 % and stable 100 %: both above the 95 % objective, the canary 4 points worse.
        canary.add(calls: 100, errors: 4)
        stable.add(calls: 400, errors: 0)
        let worse = await provider.measure(server: d, revision: "rev-2", slo: compared, now: 1)
        #expect(worse.result == .fail, "\(worse)")
        #expect(worse.detail?.contains("below the stable revision's 1 over the same interval by more than the tolerance 0.01") == true, "\(worse)")
        // Within a 5-point tolerance it passes; so does the same interval without the setting.
        canary.add(calls: 100, errors: 4)
        stable.add(calls: 400, errors: 0)
        var lenient = compared
        lenient.stableTolerance = 0.05
        #expect(await provider.measure(server: d, revision: "rev-2", slo: lenient, now: 2).result == .pass)
        canary.add(calls: 100, errors: 4)
        stable.add(calls: 400, errors: 0)
        #expect(await provider.measure(server: d, revision: "rev-2", slo: plain, now: 3).result == .pass)
        // A stable revision with too few calls in the interval is no comparison: the objective alone decides.
        canary.add(calls: 100, errors: 4)
        stable.add(calls: 3, errors: 0)
        #expect(await provider.measure(server: d, revision: "rev-2", slo: compared, now: 4).result == .pass)
    }

    /// A `gateway` provider the environment chose, where the gateway does not serve in the controller's
    /// process (`run --once`): the probes measure, and the measurement says so. A `gateway` the SLO names
    /// stays inconclusive there, naming the missing provider.
    @Test func aDefaultedGatewayProviderFallsBackToProbesOnlyWhenDefaulted() async throws {
        struct Fixed: AnalysisProvider {
            func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement {
                SLOMeasurement(result: .pass, successRate: 1, detail: "probed", time: now)
            }
        }
        for defaulted in [true, false] {
            let clock = ManualClock()
            let seen = SeenMeasurements()
            let runner = AnalysisRunner(providers: [.probe: Fixed()], clock: clock) { _, status in seen.set(status.measurements) }
            var d = server("2")
            var slo = DesiredSLO(name: "tools", successRate: 0.99, provider: .gateway, intervalMs: 1000, count: 1, failureLimit: 0)
            slo.providerDefaulted = defaulted ? true : nil
            d.slo = slo
            await runner.ensure(server: d, revision: "rev-2", step: 0, notBefore: 0)
            try await waitUntil("the run sleeps") { clock.sleeperCount == 1 }
            clock.advance(byMs: 1000)
            try await waitUntil("a measurement") { !seen.value.isEmpty }
            let m = try #require(seen.value.first)
            if defaulted {
                #expect(m.result == .pass && m.detail == "probe (the gateway does not serve in the controller's process); probed", "\(m)")
            } else {
                #expect(m.result == .inconclusive && m.detail == "no gateway analysis provider configured", "\(m)")
            }
        }
    }
}

final class LockedCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var w = ToolCallWindow(bounds: [10, 100])
    var window: ToolCallWindow { lock.withLock { w } }
    func add(calls: Int, errors: Int) {
        lock.withLock {
            w.calls += calls
            w.errors += errors
            w.latencyBuckets[0] += calls
        }
    }
}

final class SeenMeasurements: @unchecked Sendable {
    private let lock = NSLock()
    private var v: [SLOMeasurement] = []
    var value: [SLOMeasurement] { lock.withLock { v } }
    func set(_ m: [SLOMeasurement]) { lock.withLock { v = m } }
}
