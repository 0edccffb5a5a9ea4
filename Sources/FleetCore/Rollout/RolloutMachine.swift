/// What the controller asks of the world after one machine step.
public enum RolloutAction: Hashable, Sendable, CustomStringConvertible {
    /// Make exactly `replicas` instances of `revision` exist.
    case scale(revision: String, replicas: Int)
    /// Remove a revision group (instances and definition).
    case removeRevision(String)
    /// Record how a revision ended (or that it began) in the revision history.
    case recordRevision(revision: String, outcome: RevisionOutcome, reason: String)
    /// Append to the audit log (`step`: which rollout step an entry of action `step` reached).
    case audit(action: String, revision: String?, reason: String, step: RolloutStep? = nil)
    /// Make sure an analysis run of `revision` at `step`, started no earlier than `notBefore`, is under way.
    case runAnalysis(revision: String, step: Int, notBefore: Int64)

    public var description: String {
        switch self {
        case .scale(let r, let n): return "scale \(r) to \(n)"
        case .removeRevision(let r): return "remove revision \(r)"
        case .recordRevision(let r, let o, _): return "record \(r) as \(o.rawValue)"
        case .audit(let a, let r, _, _): return "audit \(a) \(r ?? "")"
        case .runAnalysis(let r, let s, _): return "analyse \(r) at step \(s)"
        }
    }
}

/// The state of the analysis run for a revision, as the controller's analysis runner reports it.
public struct AnalysisStatus: Hashable, Sendable {
    public var revision: String
    public var step: Int
    /// Unix epoch milliseconds when the run started; results of runs older than the current step are ignored.
    public var startedAt: Int64
    public var verdict: AnalysisVerdict
    public var measurements: [SLOMeasurement]

    public init(revision: String, step: Int, startedAt: Int64, verdict: AnalysisVerdict, measurements: [SLOMeasurement] = []) {
        self.revision = revision
        self.step = step
        self.startedAt = startedAt
        self.verdict = verdict
        self.measurements = measurements
    }
}

/// What the controller's own probes say about a revision's instances.
public struct RevisionHealth: Hashable, Sendable {
    /// Instances whose recent probes pass.
    public var healthy: Int
    /// Instances probed at least once.
    public var probed: Int

    public init(healthy: Int, probed: Int) {
        self.healthy = healthy
        self.probed = probed
    }
}

public struct RolloutInput: Sendable {
    public var desired: DesiredServer
    public var record: RolloutRecord?
    public var live: LiveServer?
    public var analysis: AnalysisStatus?
    /// Per revision; when present, a revision's ready count is at most its healthy count.
    public var health: [String: RevisionHealth]
    /// Set when policy blocks the desired revision: it is never rolled out.
    public var blockedReason: String?
    /// Per revision: what keeps its instances from being ready (fails a rollout fast, and says why).
    public var problems: [String: RevisionProblems]
    /// Unix epoch milliseconds.
    public var now: Int64

    public init(desired: DesiredServer, record: RolloutRecord?, live: LiveServer?, analysis: AnalysisStatus? = nil,
                health: [String: RevisionHealth] = [:], blockedReason: String? = nil, problems: [String: RevisionProblems] = [:], now: Int64) {
        self.desired = desired
        self.record = record
        self.live = live
        self.analysis = analysis
        self.health = health
        self.blockedReason = blockedReason
        self.problems = problems
        self.now = now
    }
}

public struct RolloutStepResult: Hashable, Sendable {
    public var record: RolloutRecord
    public var actions: [RolloutAction]
    /// True when nothing is in motion: the next step is due only when something changes (or at resync).
    public var settled: Bool
    /// Epoch ms of the next time-based event (pause end, progress deadline), if any.
    public var wakeAt: Int64?
    /// True when the machine moved to a new phase without acting: step again at once.
    public var again: Bool
}

/// The rollout state machine: pure, one step per call, resumable from the persisted record alone
/// (as gitops-engine's sync). Availability rules hold at every step: never fewer than
/// `replicas − maxUnavailable` ready instances (counting only what is ready now), never more than
/// `replicas + maxSurge` instances in existence.
public enum RolloutMachine {
    /// At most this many failed revisions are remembered.
    public static let failedRevisionLimit = 16
    /// Restarts of a rollout's target instances (summed) that make it a crash loop: the revision fails
    /// before its progress deadline (systemd's default start limit is the same burst).
    public static let crashLoopRestarts = 5
    /// Outside a rollout, a serving revision is crash-looping after `crashLoopRestarts` restarts within
    /// this window; the episode ends (`crash-loop-recovered`) once every replica is ready and none has
    /// restarted for `crashLoopQuietMs`.
    public static let crashLoopWindowMs: Int64 = 10 * 60_000
    public static let crashLoopQuietMs: Int64 = 60_000

    struct Stage: Equatable {
        var goal: Int
        /// Percent of the desired replicas: the step's `weight`, else what its replica count makes.
        var weight: Int = 100
        var analysis: Bool
        var pauseMs: Int64?
        var untilPromoted: Bool
    }

    static func stages(_ d: DesiredServer) -> [Stage] {
        let n = d.replicas
        let final = Stage(goal: n, analysis: d.slo != nil && d.rollout.strategy != .canary, pauseMs: nil, untilPromoted: false)
        guard d.rollout.strategy == .canary, !d.rollout.steps.isEmpty else { return [final] }
        var out = d.rollout.steps.map { step -> Stage in
            var goal = step.replicas ?? Int((Double(step.weight ?? 100) * Double(n) / 100).rounded(.up))
            goal = n == 0 ? 0 : min(n, max(1, goal))
            let weight = step.weight ?? (n == 0 ? 100 : Int((Double(goal) * 100 / Double(n)).rounded()))
            return Stage(goal: goal, weight: weight, analysis: step.analysis && d.slo != nil, pauseMs: step.pauseMs, untilPromoted: step.untilPromoted)
        }
        out.append(Stage(goal: n, analysis: false, pauseMs: nil, untilPromoted: false))
        return out
    }

    /// How status names stage `index`: a canary's own steps are "step i of N" (N = the steps in the
    /// manifest); the move to every replica after them is the "final step".
    static func stageLabel(_ d: DesiredServer, _ index: Int) -> String {
        guard d.rollout.strategy == .canary, !d.rollout.steps.isEmpty else { return d.rollout.strategy.rawValue }
        return index < d.rollout.steps.count ? "step \(index + 1) of \(d.rollout.steps.count)" : "final step"
    }

    struct Group {
        var revision: String
        var replicas: Int
        /// Ready as far as rollouts go: the driver's count, capped by the controller's probes.
        var ready: Int
        /// Ready as the driver reports it (probes not yet run do not make an instance unready here).
        var driverReady: Int
        /// Every instance has been probed (or the controller does not probe this revision).
        var fullyProbed: Bool

        /// Every instance is known to be down: stopping any of them costs no availability.
        var allDown: Bool { ready == 0 && (driverReady == 0 || fullyProbed) }
    }

    public static func step(_ input: RolloutInput) -> RolloutStepResult {
        var m = Run(input: input)
        m.run()
        var record = m.record
        record.updatedAt = input.now
        return RolloutStepResult(record: record, actions: m.actions, settled: m.settled, wakeAt: m.wakeAt, again: m.again)
    }

    struct Run {
        let input: RolloutInput
        let d: DesiredServer
        let now: Int64
        var record: RolloutRecord
        var groups: [Group]
        var actions: [RolloutAction] = []
        var settled = false
        var wakeAt: Int64?
        var again = false

        init(input: RolloutInput) {
            self.input = input
            d = input.desired
            now = input.now
            groups = (input.live?.revisions ?? []).map { r in
                let driverReady = min(r.ready, r.replicas)
                var ready = driverReady
                if let h = input.health[r.revision] { ready = min(ready, h.healthy) }
                let probed = input.health[r.revision].map { $0.probed >= r.replicas } ?? true
                return Group(revision: r.revision, replicas: r.replicas, ready: ready, driverReady: driverReady, fullyProbed: probed)
            }
            if let r = input.record {
                record = r
            } else {
                // No bookkeeping (first sight, or state lost): adopt what serves now as the stable revision.
                let serving = input.live?.servingRevision
                record = RolloutRecord(server: input.desired.name, stableRevision: (serving?.replicas ?? 0) > 0 ? serving?.revision : nil,
                                       stepStartedAt: input.now, updatedAt: input.now)
            }
        }

        func group(_ rev: String?) -> Group? { rev.flatMap { r in groups.first { $0.revision == r } } }

        var facts: RolloutFacts {
            RolloutFacts(server: d.name, desiredRevision: d.revision,
                         serving: d.revision == record.stableRevision
                             || (record.stableRevision == nil && record.targetRevision == nil && isOnlyRevision(d.revision) && !record.failedRevisions.contains(d.revision)),
                         inProgress: record.targetRevision == d.revision, pinnedRevision: record.pinnedRevision, pinForced: record.pinForced,
                         paused: record.paused, pauseMessage: record.message, failedRevisions: record.failedRevisions, failure: record.failureReasons[d.revision],
                         blockedReason: input.blockedReason)
        }

        mutating func run() {
            let facts = self.facts
            let rule = RolloutRules.hold(facts)
            switch rule {
            case .paused(let message)?:
                record.message = message
                settled = true
                return
            case .pinned(let pin)?:
                holdOn(pin, pinned: true)
                return
            case .blocked(_, _, pinned: true)?:
                // The pin names a revision policy blocks: hold what serves, say why.
                if let stable = record.stableRevision { abandonTarget(for: stable) }
                hold(message: RolloutRules.message(rule!, facts: facts))
                return
            default:
                break
            }
            if let t = record.targetRevision, t != d.revision {
                actions.append(.recordRevision(revision: t, outcome: .abandoned, reason: "the desired revision changed to \(d.revision) before the rollout finished"))
                actions.append(.audit(action: "rollout-superseded", revision: t, reason: "superseded by \(d.revision)"))
                record.targetRevision = nil
                resetStep()
            }
            if case .blocked(_, let reason, _)? = rule, record.targetRevision == d.revision {
                rollback(reason: "revision \(d.revision) became blocked by policy: \(reason)")
                return
            }
            if let rule {
                let message = RolloutRules.message(rule, facts: facts)
                if case .blocked(let rev, let reason, _) = rule, record.message != message {
                    // Recorded once, when the hold begins: `history` shows why a release never rolled out.
                    actions.append(.recordRevision(revision: rev, outcome: .blocked, reason: reason))
                    actions.append(.audit(action: "blocked", revision: rev, reason: reason))
                }
                hold(message: message)
                return
            }
            if record.targetRevision == nil {
                if facts.serving {
                    // Adopted (or back to stable): the record is written anyway, so the watch starts with it.
                    let changing = input.record == nil || record.stableRevision != d.revision || (record.phase != .stable && record.phase != .degraded)
                    record.stableRevision = d.revision
                    if record.phase != .stable && record.phase != .degraded { record.phase = .stable; record.message = nil }
                    holdOn(d.revision, pinned: false)
                    watchCrashLoop(d.revision, start: changing)
                    return
                }
                begin()
            }
            advance()
        }

        /// A serving revision restarting repeatedly outside a rollout (nothing to roll back to): one
        /// `crash-loop` entry when `crashLoopRestarts` restarts fall within `crashLoopWindowMs`, none
        /// while it keeps crashing, and `crash-loop-recovered` once every replica is ready and quiet
        /// for `crashLoopQuietMs`.
        mutating func watchCrashLoop(_ rev: String, start: Bool) {
            let restarts = input.problems[rev]?.restarts ?? 0
            guard var w = record.crashWatch, w.revision == rev, restarts >= w.restarts else {
                // No watch (a record from before it), another revision's, or counts reset (instances
                // replaced): watch afresh from the current count. Only when there is something to
                // remember: a quiet server's record is not rewritten for it (a write per server, and on
                // Kubernetes a request, for nothing).
                if start || restarts > 0 || record.crashWatch != nil {
                    record.crashWatch = CrashLoopWatch(revision: rev, baseline: restarts, since: now, restarts: restarts, lastRestartAt: now)
                }
                return
            }
            if restarts > w.restarts {
                if !w.looping && now - w.since > RolloutMachine.crashLoopWindowMs {
                    // The first restart after a quiet window opens a new one (windows move only when
                    // something restarts, so a quiet record is never rewritten to age them).
                    w.baseline = w.restarts
                    w.since = now
                }
                w.restarts = restarts
                w.lastRestartAt = now
            }
            if w.looping {
                let ready = group(rev).map { $0.ready >= d.replicas } ?? false
                if ready && now - w.lastRestartAt >= RolloutMachine.crashLoopQuietMs {
                    actions.append(.audit(action: "crash-loop-recovered", revision: rev,
                                          reason: "\(d.replicas)/\(d.replicas) ready, no restart for \((now - w.lastRestartAt) / 1000) s (\(restarts - w.baseline) restarts in the episode)"))
                    w = CrashLoopWatch(revision: rev, baseline: restarts, since: now, restarts: restarts, lastRestartAt: w.lastRestartAt)
                } else {
                    wakeAt = min(wakeAt ?? .max, w.lastRestartAt + RolloutMachine.crashLoopQuietMs)
                }
            } else if restarts - w.baseline >= RolloutMachine.crashLoopRestarts {
                let seconds = max(1, (now - w.since) / 1000)
                actions.append(.audit(action: "crash-loop", revision: rev, reason: "\(restarts - w.baseline) restarts in \(seconds) s while serving" + why(rev)))
                w.looping = true
                wakeAt = min(wakeAt ?? .max, now + RolloutMachine.crashLoopQuietMs)
            }
            record.crashWatch = w
        }

        func isOnlyRevision(_ rev: String) -> Bool {
            groups.contains { $0.revision == rev && $0.replicas > 0 } && !groups.contains { $0.revision != rev && $0.replicas > 0 }
        }

        mutating func resetStep() {
            record.step = 0
            record.stepStartedAt = now
            record.progressReady = 0
            record.promoted = false
            record.measurements = []
        }

        /// Why the revision's instances are not ready, on one line (empty when nothing is known).
        func why(_ rev: String) -> String {
            guard let p = input.problems[rev] else { return "" }
            let parts = [p.unstartable.map { "cannot start: \($0)" }, p.summary].compactMap { $0 }
            return parts.isEmpty ? "" : " — " + parts.joined(separator: "; ")
        }

        /// Stays on the stable revision (or nothing) while the desired one may not be rolled out.
        mutating func hold(message: String) {
            if let stable = record.stableRevision {
                holdOn(stable, pinned: false)
            } else {
                settled = true
            }
            record.message = message
        }

        /// Converges on one revision at full count (pins, steady state, after a rollback), then tidies:
        /// failed revision groups are removed, other groups are kept at zero for a quick rollback.
        /// A manual rollback ends the rollout in progress. The revision did not fail (an operator chose
        /// to leave it): it is recorded as abandoned and rolls out again once the pin is released.
        mutating func abandonTarget(for rev: String) {
            guard let t = record.targetRevision, t != rev else { return }
            actions.append(.recordRevision(revision: t, outcome: .abandoned, reason: "pinned to \(rev) by an operator before its rollout finished"))
            actions.append(.audit(action: "rollout-abandoned", revision: t, reason: "pinned to \(rev) by an operator"))
            record.targetRevision = nil
            resetStep()
        }

        mutating func holdOn(_ rev: String, pinned: Bool) {
            if pinned { abandonTarget(for: rev) }
            let reached = converge(to: rev, goal: d.replicas)
            if pinned {
                // Until the pin is reached, say how far it is and what holds it up (a forced pin may not start).
                let progress = reached ? "" : "; \(group(rev)?.ready ?? 0)/\(d.replicas) ready on \(rev)" + why(rev)
                record.message = RolloutRules.message(.pinned(revision: rev), facts: facts) + progress
                record.phase = reached ? .stable : .progressing
                if reached { record.stableRevision = rev }
            } else if record.phase != .rolledBack && record.phase != .failed {
                // Stable, or degraded while the serving revision has all its instances but not all ready.
                let g = group(rev)
                if !reached, let g, g.replicas >= d.replicas, g.ready < d.replicas, g.fullyProbed || g.driverReady < g.replicas {
                    record.phase = .degraded
                    record.message = "\(g.ready)/\(d.replicas) replicas ready on \(rev)" + why(rev)
                } else {
                    record.phase = .stable
                    record.message = nil
                }
            }
            if reached {
                for g in groups where g.revision != rev && g.replicas == 0 && record.failedRevisions.contains(g.revision) {
                    actions.append(.removeRevision(g.revision))
                }
                settled = actions.isEmpty
            }
        }

        mutating func begin() {
            let from = record.stableRevision
            record.targetRevision = d.revision
            record.phase = .progressing
            record.message = nil
            resetStep()
            record.restartBaseline = input.problems[d.revision]?.restarts ?? 0
            let stageList = RolloutMachine.stages(d)
            // A first deployment (nothing serving) goes straight to full count: there is no traffic to protect.
            let initial = from == nil || group(from).map { $0.replicas == 0 } ?? true
            if initial { record.step = stageList.count - 1 }
            let reason = from.map { "rollout from \($0) to \(d.revision) by \(d.rollout.strategy.rawValue) strategy" } ?? "first deployment of revision \(d.revision)"
            actions.append(.recordRevision(revision: d.revision, outcome: .pending, reason: reason))
            actions.append(.audit(action: "rollout-start", revision: d.revision, reason: reason))
        }

        mutating func advance() {
            let t = d.revision
            let stageList = RolloutMachine.stages(d)
            let index = min(max(0, record.step), stageList.count - 1)
            let stage = stageList[index]
            let isFinal = index == stageList.count - 1
            if record.phase != .failed, let p = input.problems[t] {
                // Failures retrying will not change end the rollout now, not at the deadline.
                if let why = p.unstartable {
                    actions = []
                    return rollback(reason: "revision \(t) cannot start: \(why)")
                }
                if let why = p.contractDrift {
                    actions = []
                    return rollback(reason: why)
                }
                let restarts = p.restarts - record.restartBaseline
                if restarts >= RolloutMachine.crashLoopRestarts {
                    // Its own audit entry (and notification) before the rollback it causes.
                    actions = [.audit(action: "crash-loop", revision: t, reason: "\(restarts) restarts since its rollout began" + why(t))]
                    return rollback(reason: "revision \(t) is crash-looping: \(restarts) restarts since its rollout began" + why(t))
                }
            }
            switch record.phase {
            case .analyzing:
                guard stage.analysis else { return stageDone(stage, isFinal: isFinal) }
                guard let a = input.analysis, a.revision == t, a.step == index, a.startedAt >= record.stepStartedAt else {
                    actions.append(.runAnalysis(revision: t, step: index, notBefore: record.stepStartedAt))
                    return
                }
                record.measurements = a.measurements.filter { $0.result != .inconclusive }.map { $0.result == .pass }
                switch a.verdict {
                case .running:
                    actions.append(.runAnalysis(revision: t, step: index, notBefore: record.stepStartedAt))
                case .fail:
                    let last = a.measurements.last { $0.result == .fail }?.detail ?? "failure limit exceeded"
                    rollback(reason: "analysis of revision \(t) failed at \(RolloutMachine.stageLabel(d, index)): \(last)")
                case .inconclusive:
                    if record.promoted {
                        actions.append(.audit(action: "analysis-overridden", revision: t, reason: "inconclusive analysis promoted by an operator"))
                        record.promoted = false
                        pauseOrNext(stage, isFinal: isFinal)
                    } else {
                        // Too little data to promote on: hold for a person (promote continues, rollback ends it).
                        // Say why (too few calls, no data, no provider): the person deciding needs it.
                        let why = a.measurements.last { $0.result == .inconclusive }?.detail.map { " (\($0))" } ?? ""
                        record.pause(at: now, message: "analysis of revision \(t) was inconclusive at \(RolloutMachine.stageLabel(d, index))\(why); `mcpfleet promote \(d.name)` continues, `mcpfleet rollback \(d.name)` ends it")
                        actions.append(.audit(action: "analysis-inconclusive", revision: t, reason: record.message ?? ""))
                        settled = true
                    }
                case .pass:
                    actions.append(.audit(action: "analysis-passed", revision: t, reason: RolloutMachine.stageLabel(d, index)))
                    pauseOrNext(stage, isFinal: isFinal)
                }
            case .paused:
                if stage.untilPromoted && !record.promoted {
                    record.message = "waiting at \(RolloutMachine.stageLabel(d, index)) for `mcpfleet promote \(d.name)`"
                    settled = true
                    return
                }
                if let ms = stage.pauseMs, !record.promoted, now < record.stepStartedAt + ms {
                    wakeAt = record.stepStartedAt + ms
                    record.message = "pausing at \(RolloutMachine.stageLabel(d, index))"
                    return
                }
                next(isFinal: isFinal)
            case .failed:
                // Rollback disabled (or nothing to go back to): an operator decides.
                settled = true
            default:
                record.phase = .progressing
                let reached = converge(to: t, goal: stage.goal)
                if reached {
                    record.message = nil
                    // Every step, analysed or not, is an event (`step`, with its index and weight).
                    let label = RolloutMachine.stageLabel(d, index)
                    actions.append(.audit(action: "step", revision: t, reason: "\(label): \(stage.goal)/\(d.replicas) replicas (\(stage.weight) %) on \(t)",
                                          step: RolloutStep(index: index + 1, of: stageList.count, weight: stage.weight, replicas: stage.goal, label: label)))
                    stageDone(stage, isFinal: isFinal)
                    return
                }
                let ready = group(t)?.ready ?? 0
                if ready > record.progressReady {
                    // Progress: more instances of the target ready than ever in this step. Only that
                    // moves the deadline on; a scale planned again (a retry) never does.
                    record.progressReady = ready
                    record.stepStartedAt = now
                } else if now >= record.stepStartedAt + d.rollout.progressDeadlineMs {
                    actions = []
                    rollback(reason: "revision \(t) did not become healthy within the progress deadline (\(ready)/\(stage.goal) ready)" + why(t))
                    return
                }
                record.message = "\(RolloutMachine.stageLabel(d, index)): \(ready)/\(stage.goal) ready on \(t)" + why(t)
                wakeAt = record.stepStartedAt + d.rollout.progressDeadlineMs
            }
        }

        mutating func stageDone(_ stage: Stage, isFinal: Bool) {
            if stage.analysis && record.phase != .analyzing {
                record.phase = .analyzing
                record.stepStartedAt = now
                record.measurements = []
                actions.append(.runAnalysis(revision: d.revision, step: min(record.step, RolloutMachine.stages(d).count - 1), notBefore: now))
                actions.append(.audit(action: "analysis-start", revision: d.revision, reason: RolloutMachine.stageLabel(d, min(record.step, RolloutMachine.stages(d).count - 1))))
                return
            }
            pauseOrNext(stage, isFinal: isFinal)
        }

        mutating func pauseOrNext(_ stage: Stage, isFinal: Bool) {
            if (stage.pauseMs != nil || stage.untilPromoted) && record.phase != .paused && !isFinal {
                record.phase = .paused
                record.stepStartedAt = now
                again = true
                return
            }
            next(isFinal: isFinal)
        }

        mutating func next(isFinal: Bool) {
            if isFinal { return complete() }
            record.step += 1
            record.phase = .progressing
            record.stepStartedAt = now
            record.progressReady = group(d.revision)?.ready ?? 0
            record.promoted = false
            record.measurements = []
            record.message = nil
            again = true
        }

        mutating func complete() {
            let t = d.revision
            let previous = record.stableRevision
            for g in groups where g.revision != t && g.revision != previous {
                actions.append(.removeRevision(g.revision))
            }
            if let previous, previous != t {
                actions.append(.recordRevision(revision: previous, outcome: .superseded, reason: "replaced by \(t)"))
            }
            actions.append(.recordRevision(revision: t, outcome: .promoted, reason: "rolled out to \(d.replicas) replica(s)"))
            actions.append(.audit(action: "rollout-complete", revision: t, reason: previous.map { "replaced \($0)" } ?? "first deployment"))
            record.stableRevision = t
            record.targetRevision = nil
            record.phase = .stable
            record.message = nil
            // The crash-loop watch of the new stable revision starts with this write, not one of its own.
            let restarts = input.problems[t]?.restarts ?? 0
            record.crashWatch = CrashLoopWatch(revision: t, baseline: restarts, since: now, restarts: restarts, lastRestartAt: now)
            resetStep()
        }

        mutating func rollback(reason: String) {
            let t = record.targetRevision ?? d.revision
            let rollingBack = d.rollout.autoRollback && record.stableRevision != nil
            // The outcome first, then the audit entry: whoever sees the entry finds the history written.
            actions.append(.recordRevision(revision: t, outcome: rollingBack ? .rolledBack : .failed, reason: reason))
            actions.append(.audit(action: rollingBack ? "rollback" : "rollout-failed", revision: t, reason: reason))
            guard rollingBack, let stable = record.stableRevision else {
                // Nothing to go back to (a first deployment) or rollback disabled: stop here, keep what runs.
                record.phase = .failed
                record.message = reason
                if record.stableRevision == nil {
                    remember(failed: t, reason: reason)
                    record.targetRevision = nil
                }
                settled = true
                return
            }
            remember(failed: t, reason: reason)
            record.targetRevision = nil
            record.phase = .rolledBack
            record.message = reason
            resetStep()
            actions.append(.audit(action: "rollback-start", revision: stable, reason: "back to the last good revision \(stable)"))
            again = true
        }

        mutating func remember(failed rev: String, reason: String) {
            if !record.failedRevisions.contains(rev) { record.failedRevisions.append(rev) }
            record.failureReasons[rev] = reason
            if record.failedRevisions.count > RolloutMachine.failedRevisionLimit {
                record.failedRevisions.removeFirst(record.failedRevisions.count - RolloutMachine.failedRevisionLimit)
            }
            let kept = Set(record.failedRevisions)
            record.failureReasons = record.failureReasons.filter { kept.contains($0.key) }
        }

        /// One bounded move towards `goal` instances of `rev` and `replicas − goal` of the others
        /// (the stable revision kept, others drained first). Returns whether the observed state is
        /// already there (with every instance of `rev` ready).
        mutating func converge(to rev: String, goal: Int) -> Bool {
            let n = d.replicas
            let surge = d.rollout.maxSurge
            let unavailable = d.rollout.maxUnavailable
            let maxTotal = n + surge
            let minReady = max(0, n - unavailable)
            let existing = groups.reduce(0) { $0 + $1.replicas }
            let totalReady = groups.reduce(0) { $0 + $1.ready }
            let cur = group(rev) ?? Group(revision: rev, replicas: 0, ready: 0, driverReady: 0, fullyProbed: true)
            let oldGoal = max(0, n - goal)
            let stable = record.stableRevision
            // Drain order: anything that is neither the target nor the stable revision first, failed ones first of all.
            let olds = groups.filter { $0.revision != rev && $0.replicas > 0 }.sorted { a, b in
                func rank(_ g: Group) -> Int { record.failedRevisions.contains(g.revision) ? 0 : g.revision == stable ? 2 : 1 }
                return rank(a) != rank(b) ? rank(a) < rank(b) : a.revision < b.revision
            }
            let oldTotal = olds.reduce(0) { $0 + $1.replicas }
            let reached = cur.replicas == goal && cur.ready >= goal && oldTotal == oldGoal
            if reached { return true }

            var total = existing
            if cur.replicas < goal {
                let room = maxTotal - existing
                if room > 0 {
                    let to = min(goal, cur.replicas + room)
                    actions.append(.scale(revision: rev, replicas: to))
                    total += to - cur.replicas
                }
            } else if cur.replicas > goal {
                actions.append(.scale(revision: rev, replicas: goal))
                total -= cur.replicas - goal
            }
            if oldTotal > oldGoal {
                var excess = oldTotal - oldGoal
                // Ready instances we may lose and still have `minReady` ready. Instances that are not
                // ready can go freely only when their whole group is known to be down (a driver may stop any
                // instance; and "not probed yet", after a restart, must never count as "down").
                // Instances not known either way (never probed: no endpoint yet, or a restarted controller)
                // may go only while the instances known ready already give `minReady` on their own — then
                // even if the unknown ones were serving, what stays is enough. Without this a failed
                // revision whose instance never got a probe result could never be removed (maxUnavailable 0).
                var removable = max(0, totalReady - minReady)
                let knownAvailable = totalReady >= minReady
                for g in olds where excess > 0 {
                    let drop: Int
                    if g.allDown || (knownAvailable && g.ready <= removable) {
                        drop = min(excess, g.replicas)  // at worst costs its `ready` instances, which we may lose
                    } else {
                        drop = min(excess, g.replicas, removable)
                    }
                    guard drop > 0 else { continue }
                    actions.append(.scale(revision: g.revision, replicas: g.replicas - drop))
                    excess -= drop
                    if !g.allDown { removable -= min(drop, g.ready) }
                }
            } else if oldTotal < oldGoal, let s = stable, s != rev, group(s) != nil {
                // A canary step smaller than the last one (or lost instances): the stable revision makes up the rest.
                let room = maxTotal - total
                if room > 0, let g = group(s) {
                    actions.append(.scale(revision: s, replicas: g.replicas + min(room, oldGoal - oldTotal)))
                }
            }
            return false
        }
    }
}
