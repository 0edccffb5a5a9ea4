import FleetCore
import Testing

// The rollout machine, transition by transition (tables), then whole rollouts against a simulated
// runtime checking the availability rules at every step.

let t0: Int64 = 1_700_000_000_000

func server(_ version: String, replicas: Int = 2, strategy: RolloutStrategy = .rolling, surge: Int = 1, unavailable: Int = 0,
            steps: [DesiredCanaryStep] = [], slo: DesiredSLO? = nil, autoRollback: Bool = true, deadline: Int64 = 60_000) -> DesiredServer {
    DesiredServer(name: "time", version: version, revision: "rev-\(version)", replicas: replicas, command: ["/bin/true"],
                  rollout: DesiredRollout(strategy: strategy, maxSurge: strategy == .recreate ? 0 : surge,
                                          maxUnavailable: strategy == .recreate ? replicas : unavailable, steps: steps,
                                          autoRollback: autoRollback, progressDeadlineMs: deadline),
                  slo: slo)
}

func live(_ groups: (String, Int, Int)...) -> LiveServer {
    LiveServer(name: "time", revisions: groups.map { LiveRevision(revision: "rev-\($0.0)", replicas: $0.1, ready: $0.2) })
}

func rec(phase: RolloutPhase = .stable, stable: String? = "1", target: String? = nil, pinned: String? = nil, pinForced: Bool = false, failed: [String] = [],
         paused: Bool = false, step: Int = 0, stepStartedAt: Int64 = t0, promoted: Bool = false, failureReasons: [String: String] = [:]) -> RolloutRecord {
    RolloutRecord(server: "time", phase: phase, stableRevision: stable.map { "rev-\($0)" }, targetRevision: target.map { "rev-\($0)" },
                  pinnedRevision: pinned.map { "rev-\($0)" }, pinForced: pinForced, failedRevisions: failed.map { "rev-\($0)" }, paused: paused, step: step,
                  stepStartedAt: stepStartedAt, promoted: promoted, failureReasons: Dictionary(uniqueKeysWithValues: failureReasons.map { ("rev-\($0.key)", $0.value) }))
}

let slo = DesiredSLO(name: "fast", successRate: 0.99, provider: .probe, intervalMs: 1000, count: 3, failureLimit: 1)
let canarySteps = [DesiredCanaryStep(replicas: 1, pauseMs: 5_000, analysis: true), DesiredCanaryStep(weight: 50, untilPromoted: true)]

struct Transition: CustomTestStringConvertible, Sendable {
    var name: String
    var desired: DesiredServer
    var record: RolloutRecord?
    var live: LiveServer?
    var analysis: AnalysisStatus? = nil
    var blocked: String? = nil
    var now: Int64 = t0 + 1_000
    var scales: [String: Int]
    var phase: RolloutPhase
    var target: String?? = .none
    var stable: String?? = .none
    var failed: [String]? = nil
    var removes: [String] = []
    var outcomes: [RevisionOutcome] = []
    var settled: Bool? = nil
    var paused: Bool? = nil
    var step: Int? = nil
    var analyses: Int? = nil
    var health: [String: RevisionHealth] = [:]
    var problems: [String: RevisionProblems] = [:]
    /// Text the record's message must contain.
    var message: String? = nil
    var stepStartedAt: Int64? = nil
    var displayPhase: RolloutPhase? = nil

    var testDescription: String { name }
}

let transitions: [Transition] = [
    Transition(name: "first deployment goes straight to full count", desired: server("1"), record: nil, live: nil,
               scales: ["1": 2], phase: .progressing, target: "rev-1", outcomes: [.pending]),
    Transition(name: "first deployment finishes when every instance is ready", desired: server("1"),
               record: rec(phase: .progressing, stable: nil, target: "1"), live: live(("1", 2, 2)),
               scales: [:], phase: .stable, target: .some(nil), stable: "rev-1", outcomes: [.promoted]),
    Transition(name: "steady state does nothing", desired: server("1"), record: rec(), live: live(("1", 2, 2)),
               scales: [:], phase: .stable, settled: true),
    Transition(name: "no record: adopt what serves", desired: server("1"), record: nil, live: live(("1", 2, 2)),
               scales: [:], phase: .stable, stable: "rev-1", settled: true),
    Transition(name: "scaling without a revision change is immediate", desired: server("1", replicas: 5), record: rec(), live: live(("1", 2, 2)),
               scales: ["1": 5], phase: .stable, target: .some(nil)),
    Transition(name: "scaling down is immediate", desired: server("1", replicas: 1), record: rec(), live: live(("1", 3, 3)),
               scales: ["1": 1], phase: .stable),
    Transition(name: "lost instances come back", desired: server("1"), record: rec(), live: live(("1", 1, 1)),
               scales: ["1": 2], phase: .stable),
    Transition(name: "rolling: starts with one surge instance", desired: server("2"), record: rec(), live: live(("1", 2, 2)),
               scales: ["2": 1], phase: .progressing, target: "rev-2", stable: "rev-1", outcomes: [.pending]),
    Transition(name: "rolling: old drained only as the new one is ready", desired: server("2"),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 1)),
               scales: ["1": 1], phase: .progressing),
    Transition(name: "rolling: waits while the new instance is not ready", desired: server("2"),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)),
               scales: [:], phase: .progressing),
    Transition(name: "rolling: maxUnavailable lets old go first", desired: server("2", replicas: 4, surge: 0, unavailable: 2),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 4, 4)),
               scales: ["1": 2], phase: .progressing),
    Transition(name: "rolling: finishes, keeps the previous revision at zero", desired: server("2"),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 0, 0), ("2", 2, 2)),
               scales: [:], phase: .stable, target: .some(nil), stable: "rev-2", outcomes: [.superseded, .promoted]),
    Transition(name: "rolling: finishes, removes older revisions", desired: server("3"),
               record: rec(phase: .progressing, stable: "2", target: "3"), live: live(("1", 0, 0), ("2", 0, 0), ("3", 2, 2)),
               scales: [:], phase: .stable, stable: "rev-3", removes: ["rev-1"], outcomes: [.superseded, .promoted]),
    Transition(name: "recreate: old to zero first", desired: server("2", strategy: .recreate), record: rec(), live: live(("1", 2, 2)),
               scales: ["1": 0], phase: .progressing, target: "rev-2", outcomes: [.pending]),
    Transition(name: "recreate: then new to full count", desired: server("2", strategy: .recreate),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 0, 0)),
               scales: ["2": 2], phase: .progressing),
    Transition(name: "canary: first step scales the canary", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(), live: live(("1", 4, 4)),
               scales: ["2": 1], phase: .progressing, target: "rev-2", outcomes: [.pending], step: 0),
    Transition(name: "canary: old makes room as the canary is ready", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 4, 4), ("2", 1, 1)),
               scales: ["1": 3], phase: .progressing),
    Transition(name: "canary: step reached starts analysis", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
               scales: [:], phase: .analyzing, analyses: 1),
    Transition(name: "canary: analysis running keeps it going", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .analyzing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0, verdict: .running),
               scales: [:], phase: .analyzing, analyses: 1),
    Transition(name: "canary: a stale analysis (before the step began) is ignored", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .analyzing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0 - 1, verdict: .fail),
               scales: [:], phase: .analyzing, analyses: 1),
    Transition(name: "canary: analysis passed, timed pause begins", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .analyzing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0, verdict: .pass),
               scales: [:], phase: .paused, step: 0),
    Transition(name: "canary: pause not over", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .paused, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)), now: t0 + 4_999,
               scales: [:], phase: .paused, step: 0),
    Transition(name: "canary: pause over, next step", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .paused, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)), now: t0 + 5_000,
               scales: [:], phase: .progressing, step: 1),
    Transition(name: "canary: promote cuts a timed pause short", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .paused, target: "2", promoted: true), live: live(("1", 3, 3), ("2", 1, 1)),
               scales: [:], phase: .progressing, step: 1),
    Transition(name: "canary: second step by weight (50% of 4)", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .progressing, target: "2", step: 1), live: live(("1", 3, 3), ("2", 1, 1)),
               scales: ["2": 2], phase: .progressing, step: 1),
    Transition(name: "canary: waits until promoted", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .paused, target: "2", step: 1), live: live(("1", 2, 2), ("2", 2, 2)), now: t0 + 3_600_000,
               scales: [:], phase: .paused, settled: true, step: 1),
    Transition(name: "canary: promoted, final step", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .paused, target: "2", step: 1, promoted: true), live: live(("1", 2, 2), ("2", 2, 2)),
               scales: [:], phase: .progressing, step: 2),
    Transition(name: "canary: final step to full count", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .progressing, target: "2", step: 2), live: live(("1", 2, 2), ("2", 2, 2)),
               scales: ["2": 3], phase: .progressing, step: 2),
    Transition(name: "analysis failed: roll back", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .analyzing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0, verdict: .fail),
               scales: [:], phase: .rolledBack, target: .some(nil), stable: "rev-1", failed: ["rev-2"], outcomes: [.rolledBack]),
    Transition(name: "after a rollback: back to the stable revision", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 3, 3), ("2", 1, 1)),
               scales: ["1": 4], phase: .rolledBack, failed: ["rev-2"]),
    Transition(name: "after a rollback: the failed revision drains as the stable one is ready", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 4, 4), ("2", 1, 1)),
               scales: ["2": 0], phase: .rolledBack, failed: ["rev-2"]),
    Transition(name: "after a rollback: failed group removed once drained", desired: server("2"),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 2, 2), ("2", 0, 0)),
               scales: [:], phase: .rolledBack, removes: ["rev-2"]),
    Transition(name: "a failed revision is not retried", desired: server("2"), record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 2, 2)),
               scales: [:], phase: .rolledBack, target: .some(nil), settled: true),
    Transition(name: "a new desired revision after a failure rolls out", desired: server("3"), record: rec(phase: .rolledBack, failed: ["2"]),
               live: live(("1", 2, 2)), scales: ["3": 1], phase: .progressing, target: "rev-3", failed: ["rev-2"], outcomes: [.pending]),
    Transition(name: "back to the stable revision in the manifests clears the rollback", desired: server("1"),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 2, 2)), scales: [:], phase: .stable),
    Transition(name: "inconclusive analysis pauses, never promotes", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .analyzing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0, verdict: .inconclusive),
               scales: [:], phase: .analyzing, settled: true, paused: true),
    Transition(name: "inconclusive analysis, promoted: continue", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo),
               record: rec(phase: .analyzing, target: "2", promoted: true), live: live(("1", 3, 3), ("2", 1, 1)),
               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0, verdict: .inconclusive),
               scales: [:], phase: .paused, paused: false),
    Transition(name: "progress deadline: roll back", desired: server("2", deadline: 10_000),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)), now: t0 + 10_000,
               scales: [:], phase: .rolledBack, target: .some(nil), failed: ["rev-2"], outcomes: [.rolledBack]),
    Transition(name: "progress deadline, rollback disabled: failed, held", desired: server("2", autoRollback: false, deadline: 10_000),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)), now: t0 + 10_000,
               scales: [:], phase: .failed, target: "rev-2", outcomes: [.failed], settled: true),
    Transition(name: "failed phase stays put", desired: server("2", autoRollback: false, deadline: 10_000),
               record: rec(phase: .failed, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)), now: t0 + 20_000,
               scales: [:], phase: .failed, settled: true),
    Transition(name: "first deployment never healthy: failed, nothing to go back to", desired: server("1", deadline: 10_000),
               record: rec(phase: .progressing, stable: nil, target: "1"), live: live(("1", 2, 0)), now: t0 + 10_000,
               scales: [:], phase: .failed, target: .some(nil), failed: ["rev-1"], outcomes: [.failed]),
    Transition(name: "paused holds everything", desired: server("2"), record: rec(phase: .progressing, target: "2", paused: true),
               live: live(("1", 2, 2), ("2", 1, 1)), scales: [:], phase: .progressing, settled: true),
    Transition(name: "pinned: converge on the pin", desired: server("2"), record: rec(stable: "2", pinned: "1"), live: live(("1", 0, 0), ("2", 2, 2)),
               scales: ["1": 1], phase: .progressing),
    Transition(name: "pinned: held there", desired: server("3"), record: rec(stable: "1", pinned: "1"), live: live(("1", 2, 2), ("2", 0, 0)),
               scales: [:], phase: .stable, target: .some(nil), stable: "rev-1", settled: true),
    Transition(name: "pinned mid-rollout: the rollout is abandoned, its revision not marked failed", desired: server("2"),
               record: rec(phase: .progressing, target: "2", pinned: "1"), live: live(("1", 2, 2), ("2", 1, 1)),
               scales: ["2": 0], phase: .progressing, target: .some(nil), failed: [], outcomes: [.abandoned], message: "pinned to revision rev-1"),
    Transition(name: "blocked by policy: never rolled out, recorded once", desired: server("2"), record: rec(), live: live(("1", 2, 2)), blocked: "unsigned",
               scales: [:], phase: .stable, target: .some(nil), outcomes: [.blocked], settled: false),
    Transition(name: "blocked by policy: held, not recorded again", desired: server("2"),
               record: { var r = rec(); r.message = "revision rev-2 is blocked by policy: unsigned"; return r }(), live: live(("1", 2, 2)), blocked: "unsigned",
               scales: [:], phase: .stable, target: .some(nil), outcomes: [], settled: true),
    Transition(name: "blocked mid-rollout: roll back", desired: server("2"), record: rec(phase: .progressing, target: "2"),
               live: live(("1", 2, 2), ("2", 1, 1)), blocked: "scan over ceiling",
               scales: [:], phase: .rolledBack, failed: ["rev-2"], outcomes: [.rolledBack]),
    Transition(name: "after a controller restart, unprobed old instances are not dropped", desired: server("2"),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)),
               scales: [:], phase: .progressing, health: ["rev-1": RevisionHealth(healthy: 0, probed: 0), "rev-2": RevisionHealth(healthy: 0, probed: 0)]),
    Transition(name: "probes hold a driver-ready new instance back", desired: server("2"),
               record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 1)),
               scales: [:], phase: .progressing, health: ["rev-2": RevisionHealth(healthy: 0, probed: 1)]),
    Transition(name: "after a rollback, probe-failing instances drain although the driver calls them ready", desired: server("2"),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 2, 2), ("2", 1, 1)),
               scales: ["2": 0], phase: .rolledBack, health: ["rev-1": RevisionHealth(healthy: 2, probed: 2), "rev-2": RevisionHealth(healthy: 0, probed: 1)]),
    Transition(name: "after a rollback, a never-probed failed instance drains while the stable revision is known ready", desired: server("2"),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 2, 2), ("2", 1, 1)),
               scales: ["2": 0], phase: .rolledBack, health: ["rev-1": RevisionHealth(healthy: 2, probed: 2), "rev-2": RevisionHealth(healthy: 0, probed: 0)]),
    Transition(name: "after a rollback, unknown failed instances stay while the stable revision is not known ready", desired: server("2"),
               record: rec(phase: .rolledBack, failed: ["2"]), live: live(("1", 2, 2), ("2", 1, 1)),
               scales: [:], phase: .rolledBack, health: ["rev-1": RevisionHealth(healthy: 1, probed: 2), "rev-2": RevisionHealth(healthy: 0, probed: 0)]),
    Transition(name: "desired changes mid-rollout: superseded, new rollout", desired: server("3"), record: rec(phase: .progressing, target: "2"),
               live: live(("1", 2, 2), ("2", 1, 1)), scales: ["2": 0], phase: .progressing, target: "rev-3", outcomes: [.abandoned, .pending]),

    // Fail fast, say why (issue 13).
    Transition(name: "a scale planned again (a retry) never moves the deadline", desired: server("2", deadline: 10_000), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2)), now: t0 + 5_000, scales: ["2": 1], phase: .progressing, stepStartedAt: t0),
    Transition(name: "the deadline counts from the step's start when scales keep being retried", desired: server("2", deadline: 10_000), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2)), now: t0 + 10_000, scales: [:], phase: .rolledBack, failed: ["rev-2"], outcomes: [.rolledBack], message: "progress deadline"),
    Transition(name: "more target instances ready than ever in the step moves the deadline on", desired: server("2", deadline: 10_000), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 1)), now: t0 + 9_000, scales: ["1": 1], phase: .progressing, stepStartedAt: t0 + 9_000),
    Transition(name: "a start failure retrying cannot fix fails the revision at once", desired: server("2"), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2)), scales: [:], phase: .rolledBack, failed: ["rev-2"], outcomes: [.rolledBack], problems: ["rev-2": RevisionProblems(unstartable: "command /srv/time is not an executable file")], message: "cannot start: command /srv/time is not an executable file"),
    Transition(name: "a crash loop fails the revision before the deadline", desired: server("2"), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)), scales: [:], phase: .rolledBack, failed: ["rev-2"], outcomes: [.rolledBack], problems: ["rev-2": RevisionProblems(restarts: 5, reasons: ["time-rev-2-2: exited with status 1 — log: OSError: [Errno 98] Address already in use"])], message: "crash-looping: 5 restarts since its rollout began — time-rev-2-2: exited with status 1"),
    Transition(name: "restarts below the crash-loop limit: the rollout goes on", desired: server("2"), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)), scales: [:], phase: .progressing, problems: ["rev-2": RevisionProblems(restarts: 4, reasons: ["time-rev-2-2: exited with status 1"])], message: "rolling: 0/2 ready on rev-2 — time-rev-2-2: exited with status 1"),
    Transition(name: "the deadline rollback names the cause", desired: server("2", deadline: 10_000), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 1)), now: t0 + 10_000, scales: [:], phase: .rolledBack, outcomes: [.rolledBack], health: ["rev-2": RevisionHealth(healthy: 0, probed: 1)], problems: ["rev-2": RevisionProblems(reasons: ["time-rev-2-2: probe failed: required tool(s) missing: echo"])], message: "(0/2 ready) — time-rev-2-2: probe failed: required tool(s) missing: echo"),
    Transition(name: "progress message says why instances are not ready", desired: server("2"), record: rec(phase: .progressing, target: "2"), live: live(("1", 2, 2), ("2", 1, 0)), scales: [:], phase: .progressing, problems: ["rev-2": RevisionProblems(reasons: ["time-rev-2-2: port 20001 is held by pid 42 (python3 -m http.server 20001)"])], message: "rolling: 0/2 ready on rev-2 — time-rev-2-2: port 20001 is held by pid 42"),
    Transition(name: "a rolled-back revision's hold says why it failed", desired: server("2"), record: rec(phase: .rolledBack, failed: ["2"], failureReasons: ["2": "revision rev-2 cannot start: no such file"]), live: live(("1", 2, 2)), scales: [:], phase: .rolledBack, settled: true, message: "failed its rollout and was rolled back: revision rev-2 cannot start: no such file"),
    Transition(name: "a failed first deployment is not adopted as the stable revision", desired: server("1"), record: rec(phase: .failed, stable: nil, failed: ["1"]), live: live(("1", 2, 0)), scales: [:], phase: .failed, target: .some(nil), stable: .some(nil), settled: true, message: "failed its rollout"),

    // Status details (issue 13).
    Transition(name: "stable with 1 of 2 ready is degraded, saying why", desired: server("1"), record: rec(), live: live(("1", 2, 1)), scales: [:], phase: .degraded, problems: ["rev-1": RevisionProblems(reasons: ["time-rev-1-1: exited with status 2"])], message: "1/2 replicas ready on rev-1 — time-rev-1-1: exited with status 2"),
    Transition(name: "degraded recovers to stable", desired: server("1"), record: rec(phase: .degraded), live: live(("1", 2, 2)), scales: [:], phase: .stable, settled: true),
    Transition(name: "a scale-up in progress is not degraded", desired: server("1", replicas: 3), record: rec(), live: live(("1", 2, 2)), scales: ["1": 3], phase: .stable),
    Transition(name: "unprobed instances after a restart are not degraded", desired: server("1"), record: rec(), live: live(("1", 2, 2)), scales: [:], phase: .stable, health: ["rev-1": RevisionHealth(healthy: 0, probed: 0)]),
    Transition(name: "an operator pause shows as paused, the step kept", desired: server("2"), record: rec(phase: .progressing, target: "2", paused: true), live: live(("1", 2, 2), ("2", 1, 1)), scales: [:], phase: .progressing, settled: true, displayPhase: .paused),
    Transition(name: "a 2-step canary counts 2 steps", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo), record: rec(phase: .progressing, target: "2"), live: live(("1", 4, 4), ("2", 1, 0)), scales: [:], phase: .progressing, message: "step 1 of 2: 0/1 ready"),
    Transition(name: "the canary's last move is the final step", desired: server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo), record: rec(phase: .progressing, target: "2", step: 2), live: live(("1", 1, 1), ("2", 4, 3)), scales: [:], phase: .progressing, message: "final step: 3/4 ready"),

    // One rule set (issue 13).
    Transition(name: "a pin to a revision policy blocks is not deployed", desired: server("2"), record: rec(pinned: "2"), live: live(("1", 2, 2), ("2", 0, 0)), blocked: "unsigned artifact", scales: [:], phase: .stable, stable: "rev-1", message: "pinned revision rev-2 is blocked by policy: unsigned artifact"),
    Transition(name: "a forced pin to a blocked revision is deployed", desired: server("2"), record: rec(pinned: "2", pinForced: true), live: live(("1", 2, 2), ("2", 0, 0)), blocked: "unsigned artifact", scales: ["2": 1], phase: .progressing),
    Transition(name: "a pause holds a pin's convergence too", desired: server("2"), record: rec(pinned: "2", paused: true), live: live(("1", 2, 2)), scales: [:], phase: .stable, settled: true, displayPhase: .paused),
]

@Test(arguments: transitions)
func rolloutTransition(_ t: Transition) {
    let out = RolloutMachine.step(RolloutInput(desired: t.desired, record: t.record, live: t.live, analysis: t.analysis, health: t.health,
                                               blockedReason: t.blocked, problems: t.problems, now: t.now))
    var scales: [String: Int] = [:]
    var removes: [String] = []
    var outcomes: [RevisionOutcome] = []
    var analyses = 0
    for a in out.actions {
        switch a {
        case .scale(let r, let n): scales[String(r.dropFirst(4))] = n
        case .removeRevision(let r): removes.append(r)
        case .recordRevision(_, let o, _): outcomes.append(o)
        case .runAnalysis: analyses += 1
        case .audit: break
        }
    }
    #expect(scales == t.scales, "scales")
    #expect(out.record.phase == t.phase, "phase: \(out.record.message ?? "")")
    if case .some(let target) = t.target { #expect(out.record.targetRevision == target, "target") }
    if case .some(let stable) = t.stable { #expect(out.record.stableRevision == stable, "stable") }
    if let failed = t.failed { #expect(out.record.failedRevisions == failed, "failed") }
    #expect(removes == t.removes, "removes")
    #expect(outcomes == t.outcomes, "outcomes")
    if let settled = t.settled { #expect(out.settled == settled, "settled") }
    if let paused = t.paused { #expect(out.record.paused == paused, "paused") }
    if let step = t.step { #expect(out.record.step == step, "step") }
    if let expected = t.analyses { #expect(analyses == expected, "analyses") }
    if let text = t.message { #expect(out.record.message?.contains(text) == true, "message: \(out.record.message ?? "nil")") }
    if let at = t.stepStartedAt { #expect(out.record.stepStartedAt == at, "stepStartedAt") }
    if let shown = t.displayPhase { #expect(out.record.displayPhase == shown, "displayPhase") }
    #expect(out.record.updatedAt == t.now)
}

/// `resume` continues a canary pause where it was: the time spent paused does not count.
@Test func resumeContinuesTheCanaryPauseTimer() {
    let d = server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo)  // step 1 pauses 5 s after analysis
    var record = rec(phase: .paused, target: "2")  // the canary pause began at t0
    record.pause(at: t0 + 2_000, message: "paused by an operator")
    record.resume(at: t0 + 60_000)
    #expect(record.stepStartedAt == t0 + 58_000)
    #expect(!record.paused && record.pausedAt == nil && record.message == nil)
    let out = RolloutMachine.step(RolloutInput(desired: d, record: record, live: live(("1", 3, 3), ("2", 1, 1)), now: t0 + 60_000))
    #expect(out.record.phase == .paused, "3 s of the 5 s pause remain: \(out.record.message ?? "")")
    #expect(out.wakeAt == t0 + 63_000)
    let later = RolloutMachine.step(RolloutInput(desired: d, record: out.record, live: live(("1", 3, 3), ("2", 1, 1)), now: t0 + 63_000))
    #expect(later.record.phase == .progressing && later.record.step == 1)
}

/// The planner and the machine word every hold the same, because both ask `RolloutRules`.
@Test(arguments: [
    rec(stable: "1", pinned: "1"),
    rec(phase: .progressing, target: "2", paused: true),
    rec(phase: .rolledBack, failed: ["2"]),
])
func plannerAndMachineAgreeOnHolds(_ record: RolloutRecord) {
    let d = server("2")
    let l = live(("1", 2, 2))
    let out = RolloutMachine.step(RolloutInput(desired: d, record: record, live: l, now: t0 + 1_000))
    let merged = LiveState(servers: [l]).merging([out.record])
    let plan = Planner.plan(desired: DesiredState(environment: "e", driver: .local, servers: [d]), live: merged, baseline: "live")
    #expect(plan.holds.count == 1)
    #expect(plan.holds.first?.reason == out.record.message, "planner: \(plan.holds.first?.reason ?? "-") machine: \(out.record.message ?? "-")")
}

@Test func pinRefusals() {
    let history = [RevisionRecord(server: "time", revision: "rev-2", version: "2", fields: [], createdAt: t0, outcome: .rolledBack,
                                  reason: "analysis of revision rev-2 failed at step 1 of 2: success rate 0.5 < 0.99"),
                   RevisionRecord(server: "time", revision: "rev-3", version: "3", fields: [], createdAt: t0, outcome: .abandoned, reason: "pinned")]
    #expect(RolloutRules.pinRefusal(revision: "rev-2", blockedReason: nil, failedRevisions: ["rev-2"], history: history)?.contains("success rate 0.5") == true)
    #expect(RolloutRules.pinRefusal(revision: "rev-3", blockedReason: nil, failedRevisions: [], history: history) == nil)
    #expect(RolloutRules.pinRefusal(revision: "rev-3", blockedReason: "unsigned", failedRevisions: [], history: history)?.contains("blocked by policy") == true)
    #expect(RolloutRules.pinRefusal(revision: "rev-1", blockedReason: nil, failedRevisions: [], history: history) == nil)
}

// MARK: - whole rollouts against a simulated runtime

/// A runtime in a few lines: instances become ready one tick after they start; bad revisions never do.
struct SimulatedRuntime {
    var groups: [String: [Int]] = [:]
    var bad: Set<String> = []

    func live() -> LiveServer {
        LiveServer(name: "time", revisions: groups.keys.sorted().map { rev in
            LiveRevision(revision: rev, replicas: groups[rev]!.count, ready: bad.contains(rev) ? 0 : groups[rev]!.filter { $0 >= 1 }.count)
        })
    }

    mutating func tick() { for k in groups.keys { groups[k] = groups[k]!.map { $0 + 1 } } }

    mutating func apply(_ actions: [RolloutAction]) {
        for a in actions {
            switch a {
            case .scale(let r, let n):
                var g = groups[r] ?? []
                while g.count < n { g.append(0) }
                // Drop unready instances first (as ReplicaSets do).
                g.sort()
                if g.count > n { g.removeFirst(g.count - n) }
                groups[r] = g
            case .removeRevision(let r): groups[r] = nil
            default: break
            }
        }
    }
}

struct RunResult {
    var record: RolloutRecord
    var runtime: SimulatedRuntime
    var minReady = Int.max
    var maxTotal = 0
    var steps = 0
}

func simulate(_ d: DesiredServer, from start: SimulatedRuntime, record: RolloutRecord?, verdict: AnalysisVerdict = .pass,
              promoteWhenWaiting: Bool = true, maxSteps: Int = 200) -> RunResult {
    var runtime = start
    var record = record
    var now = t0
    var analysis: AnalysisStatus?
    var result = RunResult(record: record ?? RolloutRecord(server: d.name), runtime: runtime)
    for i in 0..<maxSteps {
        runtime.tick()
        let out = RolloutMachine.step(RolloutInput(desired: d, record: record, live: runtime.live(), analysis: analysis, now: now))
        record = out.record
        runtime.apply(out.actions)
        for case .runAnalysis(let r, let s, let notBefore) in out.actions where analysis?.step != s || analysis?.revision != r || (analysis?.startedAt ?? 0) < notBefore {
            analysis = AnalysisStatus(revision: r, step: s, startedAt: now, verdict: verdict)
        }
        let l = runtime.live()
        result.maxTotal = max(result.maxTotal, l.totalReplicas)
        if i > 0 { result.minReady = min(result.minReady, l.readyReplicas) }
        result.steps = i + 1
        if out.settled && record?.paused == false {
            if record?.phase == .paused && promoteWhenWaiting { record?.promoted = true; continue }
            if record?.targetRevision == nil { break }
        }
        now += 1_000
    }
    result.record = record!
    result.runtime = runtime
    return result
}

func running(_ groups: [String: Int]) -> SimulatedRuntime {
    SimulatedRuntime(groups: groups.mapValues { Array(repeating: 5, count: $0) })
}

@Test(arguments: [
    (RolloutStrategy.rolling, 1, 0), (.rolling, 0, 1), (.rolling, 2, 1), (.rolling, 1, 2), (.recreate, 0, 4), (.canary, 1, 0), (.canary, 0, 1),
])
func wholeRolloutKeepsAvailability(strategy: RolloutStrategy, surge: Int, unavailable: Int) {
    let d = server("2", replicas: 4, strategy: strategy, surge: surge, unavailable: unavailable, steps: strategy == .canary ? canarySteps : [], slo: slo)
    let r = simulate(d, from: running(["rev-1": 4]), record: rec())
    #expect(r.record.phase == .stable)
    #expect(r.record.stableRevision == "rev-2")
    #expect(r.runtime.groups["rev-2"]?.count == 4)
    #expect((r.runtime.groups["rev-1"]?.count ?? 0) == 0)
    #expect(r.minReady >= 4 - d.rollout.maxUnavailable, "ready fell to \(r.minReady)")
    #expect(r.maxTotal <= 4 + d.rollout.maxSurge, "total rose to \(r.maxTotal)")
}

@Test(arguments: [RolloutStrategy.rolling, .canary])
func failedAnalysisRollsBackAndStays(strategy: RolloutStrategy) {
    let d = server("2", replicas: 3, strategy: strategy, steps: strategy == .canary ? canarySteps : [], slo: slo)
    var r = simulate(d, from: running(["rev-1": 3]), record: rec(), verdict: .fail)
    #expect(r.record.phase == .rolledBack)
    #expect(r.record.failedRevisions == ["rev-2"])
    #expect(r.runtime.groups["rev-1"]?.count == 3)
    #expect(r.runtime.groups["rev-2"] == nil)
    #expect(r.minReady >= 3)
    // Stays rolled back: more steps change nothing.
    r = simulate(d, from: r.runtime, record: r.record, verdict: .pass, maxSteps: 5)
    #expect(r.runtime.groups["rev-2"] == nil)
    #expect(r.record.phase == .rolledBack)
}

@Test func neverReadyRevisionRollsBackAtTheDeadline() {
    let d = server("2", replicas: 2, deadline: 5_000)
    var start = running(["rev-1": 2])
    start.bad = ["rev-2"]
    let r = simulate(d, from: start, record: rec())
    #expect(r.record.phase == .rolledBack)
    #expect(r.runtime.groups["rev-2"] == nil)
    #expect(r.runtime.groups["rev-1"]?.count == 2)
    #expect(r.minReady >= 2)
}

/// An inconclusive analysis pauses with the reason the person deciding needs (too few calls, no data,
/// no provider), in the record's message and the audit entry.
@Test func anInconclusivePauseSaysWhy() {
    let d = server("2", replicas: 4, strategy: .canary, steps: canarySteps, slo: slo)
    let few = SLOMeasurement(result: .inconclusive, detail: "too few tool calls through the gateway: 3 calls, 0 errors (at least 20 needed)", time: t0 + 500)
    let out = RolloutMachine.step(RolloutInput(desired: d, record: rec(phase: .analyzing, target: "2"), live: live(("1", 3, 3), ("2", 1, 1)),
                                               analysis: AnalysisStatus(revision: "rev-2", step: 0, startedAt: t0, verdict: .inconclusive,
                                                                        measurements: [few]), now: t0 + 1_000))
    #expect(out.record.paused)
    #expect(out.record.message?.contains("(too few tool calls through the gateway: 3 calls, 0 errors (at least 20 needed))") == true, "\(out.record.message ?? "")")
    let audited = out.actions.compactMap { if case .audit("analysis-inconclusive", _, let reason, _) = $0 { reason } else { nil } }
    #expect(audited.count == 1 && audited[0].contains("too few tool calls"), "\(out.actions)")
}

@Test func sloMath() {
    #expect(SLOMath.verdict([.pass, .pass], count: 3, failureLimit: 1) == .running)
    #expect(SLOMath.verdict([.fail, .fail], count: 3, failureLimit: 1) == .fail)
    #expect(SLOMath.verdict([.pass, .fail, .pass], count: 3, failureLimit: 1) == .pass)
    #expect(SLOMath.verdict([.pass, .inconclusive, .inconclusive], count: 3, failureLimit: 1) == .inconclusive)
    #expect(SLOMath.verdict([.fail], count: 3, failureLimit: 0) == .fail)
    let s = DesiredSLO(name: "s", successRate: 0.99, latencyP95Ms: 200)
    #expect(SLOMath.judge(successRate: 1, latencyP95Ms: 20, slo: s, time: 0).result == .pass)
    #expect(SLOMath.judge(successRate: 0.5, latencyP95Ms: 20, slo: s, time: 0).result == .fail)
    #expect(SLOMath.judge(successRate: 1, latencyP95Ms: 300, slo: s, time: 0).result == .fail)
    #expect(SLOMath.judge(successRate: nil, latencyP95Ms: 20, slo: s, time: 0).result == .inconclusive)
    var h = LatencyHistogram()
    for _ in 0..<95 { h.observe(3) }
    for _ in 0..<5 { h.observe(800) }
    let p95 = h.quantile(0.95) ?? 0
    #expect(p95 > 2 && p95 <= 5)
    #expect(LatencyHistogram().quantile(0.95) == nil)
}

/// A serving revision restarting outside a rollout: one `crash-loop` entry per episode (not per
/// restart), none while it keeps crashing, `crash-loop-recovered` once ready and quiet; slow restarts
/// spread over more than the window are no episode.
@Test func steadyStateCrashLoopIsAnnouncedOncePerEpisode() {
    let d = server("1")
    var record = rec()
    // As the rollout's completion left it.
    record.crashWatch = CrashLoopWatch(revision: "rev-1", baseline: 0, since: t0, restarts: 0, lastRestartAt: t0)
    var audits: [String] = []
    func at(_ ms: Int64, restarts: Int, ready: Int = 2) {
        let out = RolloutMachine.step(RolloutInput(desired: d, record: record, live: live(("1", 2, ready)),
                                                   problems: ["rev-1": RevisionProblems(restarts: restarts, reasons: ["time-rev-1-0: exited with status 3"])], now: t0 + ms))
        record = out.record
        for case .audit(let action, _, let reason, _) in out.actions { audits.append("\(action): \(reason)") }
    }
    at(0, restarts: 0)
    for i in 1...4 { at(Int64(i) * 1_000, restarts: i, ready: 1) }
    #expect(audits.isEmpty)
    at(5_000, restarts: 5, ready: 0)
    #expect(audits == ["crash-loop: 5 restarts in 5 s while serving — time-rev-1-0: exited with status 3"], "\(audits)")
    for i in 6...20 { at(Int64(i) * 1_000, restarts: i, ready: 0) }
    #expect(audits.count == 1, "\(audits)")
    // Ready again but restarted recently: not yet recovered.
    at(30_000, restarts: 20)
    #expect(audits.count == 1)
    at(20_000 + RolloutMachine.crashLoopQuietMs, restarts: 20)
    #expect(audits.count == 2 && audits[1].hasPrefix("crash-loop-recovered: 2/2 ready"), "\(audits)")
    at(20_000 + RolloutMachine.crashLoopQuietMs + 1_000, restarts: 20)
    #expect(audits.count == 2)
    // Four restarts per window, window after window: never an episode.
    var now = 100_000 + RolloutMachine.crashLoopQuietMs
    var restarts = 20
    for _ in 0..<3 {
        for _ in 0..<4 { restarts += 1; now += 1_000; at(now, restarts: restarts) }
        now += RolloutMachine.crashLoopWindowMs + 1_000
        at(now, restarts: restarts)
    }
    #expect(audits.count == 2, "\(audits)")
    // A quiet server's record is not rewritten to move its window.
    let quiet = record
    at(now + 5 * RolloutMachine.crashLoopWindowMs, restarts: restarts)
    #expect(record.crashWatch == quiet.crashWatch)
}

@Test func crashLoopWatchStartsWithTheRolloutsCompletionAndNeverAloneForAQuietServer() {
    // Completing a rollout starts the watch in the same record write.
    var done: RolloutRecord? = nil
    var writes: [RolloutRecord] = []
    for i in 0..<6 where done?.phase != .stable {
        done = RolloutMachine.step(RolloutInput(desired: server("1"), record: done, live: live(("1", 2, 2)), now: t0 + Int64(i))).record
        writes.append(done!)
    }
    #expect(done?.phase == .stable && done?.crashWatch?.revision == "rev-1" && done?.crashWatch?.baseline == 0, "\(String(describing: done))")
    // The step that made it stable wrote the watch with it: one more step changes nothing.
    let after = RolloutMachine.step(RolloutInput(desired: server("1"), record: done, live: live(("1", 2, 2)), now: t0 + 10)).record
    #expect(after.crashWatch == done?.crashWatch)
    // A record without a watch (written before it existed) and no restarts: nothing is added.
    let quiet = RolloutMachine.step(RolloutInput(desired: server("1"), record: rec(), live: live(("1", 2, 2)), now: t0 + 1_000))
    #expect(quiet.record.crashWatch == nil)
    // Restarts counted before the watch existed are its baseline, never an episode at once.
    var record = rec()
    for (i, restarts) in [7, 7, 8].enumerated() {
        record = RolloutMachine.step(RolloutInput(desired: server("1"), record: record, live: live(("1", 2, 2)),
                                                  problems: ["rev-1": RevisionProblems(restarts: restarts)], now: t0 + Int64(i) * 1_000)).record
    }
    #expect(record.crashWatch?.baseline == 7 && record.crashWatch?.restarts == 8 && record.crashWatch?.looping == false)
}
