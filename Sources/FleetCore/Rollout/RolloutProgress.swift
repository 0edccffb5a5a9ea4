/// Where a rollout in progress stands, for people: the step it is on (worded as the rollout machine
/// words it), the steps of the strategy, and how long a timed canary pause has left. Pure: the caller
/// passes the time. `status`, `status --watch` and the dashboard all show this one computation.
public struct RolloutProgress: Codable, Hashable, Sendable {
    public enum StepState: String, Codable, Hashable, Sendable {
        case done, current, pending
    }

    /// One stage of the rollout: a canary step of the manifest, or the move to every replica after them.
    public struct Step: Codable, Hashable, Sendable {
        public var label: String
        /// `steps[].weight` as written (percent of the replicas), when the step sets one.
        public var weight: Int?
        /// Instances of the new revision this step brings up.
        public var goal: Int
        /// `2m` for a timed pause, `untilPromoted`, or nil.
        public var pause: String?
        public var analysis: Bool
        public var state: StepState
    }

    public var revision: String
    public var strategy: String
    /// The stage index reached (0-based).
    public var step: Int
    /// "step 1 of 2", "final step", or the strategy's name for a rolling or recreate rollout.
    public var stepLabel: String
    public var steps: [Step]
    /// The rollout phase of the record (`progressing`, `paused` at a canary pause, `analyzing`, ...).
    public var phase: String
    /// An operator's `mcpfleet pause` holds it (timers stand still).
    public var heldByOperator: Bool
    /// The current step pauses until `mcpfleet promote`.
    public var waitingForPromotion: Bool
    /// The current step's timed pause, its length and what is left of it (frozen while held).
    public var pauseMs: Int64?
    public var pauseRemainingMs: Int64?
    /// Unix epoch ms when the timed pause ends, while it is running (nil while held).
    public var pauseEndsAt: Int64?
    /// Unix epoch ms by which the current step must make progress, while progressing.
    public var progressDeadlineAt: Int64?

    /// The progress of `record`'s rollout of `desired`, or nil when none is under way.
    public static func of(_ desired: DesiredServer, record: RolloutRecord, now: Int64) -> RolloutProgress? {
        guard let target = record.targetRevision, [.progressing, .paused, .analyzing].contains(record.phase) else { return nil }
        let stages = RolloutMachine.stages(desired)
        let index = min(max(0, record.step), stages.count - 1)
        let canary = desired.rollout.strategy == .canary && !desired.rollout.steps.isEmpty
        let steps = stages.enumerated().map { i, stage -> Step in
            let manifestStep = canary && i < desired.rollout.steps.count ? desired.rollout.steps[i] : nil
            return Step(label: RolloutMachine.stageLabel(desired, i), weight: manifestStep?.weight, goal: stage.goal,
                        pause: stage.untilPromoted ? "untilPromoted" : stage.pauseMs.map(Self.duration),
                        analysis: stage.analysis, state: i < index ? .done : i == index ? .current : .pending)
        }
        var out = RolloutProgress(revision: target, strategy: desired.rollout.strategy.rawValue, step: index,
                                  stepLabel: RolloutMachine.stageLabel(desired, index), steps: steps, phase: record.phase.rawValue,
                                  heldByOperator: record.paused, waitingForPromotion: false)
        let stage = stages[index]
        // The clock the machine reads: while held, time stands at the moment of the pause.
        let clock = record.paused ? (record.pausedAt ?? now) : now
        if record.phase == .paused && !record.promoted {
            if stage.untilPromoted {
                out.waitingForPromotion = true
            } else if let ms = stage.pauseMs {
                out.pauseMs = ms
                out.pauseRemainingMs = max(0, record.stepStartedAt + ms - clock)
                if !record.paused { out.pauseEndsAt = record.stepStartedAt + ms }
            }
        }
        if record.phase == .progressing && !record.paused {
            out.progressDeadlineAt = record.stepStartedAt + desired.rollout.progressDeadlineMs
        }
        return out
    }

    /// Milliseconds as a manifest would write them: `2m`, `90s`, `1h30m`, `500ms`.
    public static func duration(_ ms: Int64) -> String {
        if ms < 1000 || ms % 1000 != 0 { return "\(ms)ms" }
        var s = ms / 1000
        var out = ""
        if s >= 3600 { out += "\(s / 3600)h"; s %= 3600 }
        if s >= 60 { out += "\(s / 60)m"; s %= 60 }
        if s > 0 || out.isEmpty { out += "\(s)s" }
        return out
    }
}
