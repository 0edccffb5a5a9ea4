/// What is known about one server when deciding whether its desired revision may move: the operator's
/// pins and pauses, the revisions that failed, and the supply-chain verdict.
public struct RolloutFacts: Hashable, Sendable {
    public var server: String
    public var desiredRevision: String
    /// The desired revision is the one serving (nothing to roll out).
    public var serving: Bool
    /// The desired revision is the target of the rollout in progress.
    public var inProgress: Bool
    public var pinnedRevision: String?
    public var pinForced: Bool
    public var paused: Bool
    /// Why it is paused, when something other than an operator's `pause` paused it.
    public var pauseMessage: String?
    public var failedRevisions: [String]
    /// Why the last failed revision failed, when known.
    public var failure: String?
    /// Set when policy blocks the desired revision.
    public var blockedReason: String?

    public init(server: String, desiredRevision: String, serving: Bool = false, inProgress: Bool = false, pinnedRevision: String? = nil,
                pinForced: Bool = false, paused: Bool = false, pauseMessage: String? = nil, failedRevisions: [String] = [],
                failure: String? = nil, blockedReason: String? = nil) {
        self.server = server
        self.desiredRevision = desiredRevision
        self.serving = serving
        self.inProgress = inProgress
        self.pinnedRevision = pinnedRevision
        self.pinForced = pinForced
        self.paused = paused
        self.pauseMessage = pauseMessage
        self.failedRevisions = failedRevisions
        self.failure = failure
        self.blockedReason = blockedReason
    }
}

/// Why a server's desired revision may not (or not yet) be rolled out.
public enum RolloutHold: Hashable, Sendable {
    /// Paused: nothing moves until `mcpfleet resume`.
    case paused(message: String)
    /// Pinned by a manual rollback: the pin is converged on and held.
    case pinned(revision: String)
    /// The desired revision failed a rollout before; not retried until the manifests change it.
    case failed(revision: String)
    /// Policy blocks the revision (the desired one, or a pin to it): it is never rolled out.
    case blocked(revision: String, reason: String, pinned: Bool)

    public var message: String { RolloutRules.message(self, facts: nil) }
}

/// The one rule set for what may happen to a server's rollout. Pure: the planner (holds in a plan),
/// the rollout machine (what the controller does) and `mcpfleet rollback` (which pins it accepts) all
/// ask it, so they cannot disagree, and each hold is worded once.
public enum RolloutRules {
    /// The hold on a server, if any, in order of precedence: a pause freezes everything (even a pin's
    /// convergence); a pin is held unless policy blocks the pinned revision and the pin was not forced;
    /// a serving revision keeps serving; a revision that failed is not retried; a blocked one never starts.
    public static func hold(_ f: RolloutFacts) -> RolloutHold? {
        if f.paused { return .paused(message: message(forPause: f)) }
        if let pin = f.pinnedRevision {
            if pin == f.desiredRevision, let reason = f.blockedReason, !f.pinForced {
                return .blocked(revision: pin, reason: reason, pinned: true)
            }
            return .pinned(revision: pin)
        }
        if f.serving { return nil }
        if !f.inProgress, f.failedRevisions.contains(f.desiredRevision) { return .failed(revision: f.desiredRevision) }
        if let reason = f.blockedReason { return .blocked(revision: f.desiredRevision, reason: reason, pinned: false) }
        return nil
    }

    /// The hold's text, as status, plans and the audit log show it.
    public static func message(_ hold: RolloutHold, facts f: RolloutFacts?) -> String {
        let server = f?.server ?? "SERVER"
        switch hold {
        case .paused(let m):
            return m
        case .pinned(let pin):
            guard let f, f.desiredRevision != pin else { return "pinned to revision \(pin) by a manual rollback (`mcpfleet resume \(server)` releases it)" }
            return "pinned to revision \(pin) by a manual rollback; desired revision \(f.desiredRevision) waits until the pin is released (`mcpfleet resume \(server)`)"
        case .failed(let rev):
            let cause = f?.failure.map { ": \($0)" } ?? ""
            return "revision \(rev) failed its rollout and was rolled back\(cause); it is not retried until the manifests change it again"
        case .blocked(let rev, let reason, let pinned):
            if pinned {
                return "pinned revision \(rev) is blocked by policy: \(reason); it is not deployed (`mcpfleet rollback \(server) --to \(rev) --force` overrides, `mcpfleet resume \(server)` releases the pin)"
            }
            return "revision \(rev) is blocked by policy: \(reason)"
        }
    }

    public static func message(_ hold: RolloutHold, facts: RolloutFacts) -> String { message(hold, facts: Optional(facts)) }

    static func message(forPause f: RolloutFacts) -> String {
        f.pauseMessage ?? "paused by an operator (`mcpfleet resume \(f.server)` continues)"
    }

    /// What an operator may pin (`mcpfleet rollback --to`): nil when the pin is allowed, else why not.
    /// A revision that policy blocks, or that failed a rollout (probes, SLO analysis, progress
    /// deadline, a crash loop), is refused unless forced — a forced pin is audited with this reason.
    public static func pinRefusal(revision: String, blockedReason: String?, failedRevisions: [String], history: [RevisionRecord]) -> String? {
        if let reason = blockedReason { return "revision \(revision) is blocked by policy: \(reason)" }
        let record = history.last { $0.revision == revision }
        if record?.outcome == .blocked { return "revision \(revision) was blocked by policy" + (record?.reason.map { ": \($0)" } ?? "") }
        if record?.outcome == .rolledBack || failedRevisions.contains(revision) {
            return "revision \(revision) failed its rollout" + (record?.reason.map { ": \($0)" } ?? "")
        }
        return nil
    }
}

extension RolloutHold {
    /// A plan lists this as held back. A blocked desired revision is not a hold there but a change
    /// marked blocked (exit code 3); a pin to a blocked revision is a hold.
    public var isPlanHold: Bool {
        if case .blocked(_, _, let pinned) = self { return pinned }
        return true
    }

    /// The revision the hold is about (the serving one for a pause).
    public var heldRevision: String? {
        switch self {
        case .paused: return nil
        case .pinned(let r), .failed(let r): return r
        case .blocked(let r, _, _): return r
        }
    }
}
