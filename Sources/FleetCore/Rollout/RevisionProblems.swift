/// What keeps a revision's instances from being ready, as the controller gathered it from the driver
/// (instance states, exit statuses, port holders, log tails) and its own probes (failure messages).
/// The rollout machine reads it to fail fast and to say why.
public struct RevisionProblems: Hashable, Sendable {
    /// A failure retrying will not change (no such executable, a missing secret, an invalid port).
    public var unstartable: String?
    /// Restarts the runtime counted, summed over the revision's instances.
    public var restarts: Int
    /// One line per instance that is not ready: `<instance>: <why>`.
    public var reasons: [String]
    /// Set when the revision's surface differs from the committed contract and the contracts policy
    /// enforces it (`ContractGate.rollbackReason`): the rollout fails at once.
    public var contractDrift: String?

    public init(unstartable: String? = nil, restarts: Int = 0, reasons: [String] = []) {
        self.unstartable = unstartable
        self.restarts = restarts
        self.reasons = reasons
    }

    /// The reasons on one line, bounded (they go into records, the audit log and status).
    public var summary: String? {
        guard !reasons.isEmpty else { return nil }
        var out = ""
        for (i, r) in reasons.enumerated() {
            let next = (i == 0 ? "" : "; ") + r
            if out.count + next.count > Self.summaryLimit {
                out += "; … (\(reasons.count - i) more)"
                break
            }
            out += next
        }
        return out
    }

    static let summaryLimit = 1_200

    /// One instance's line: why, then its last log lines (already bounded by the driver).
    public static func line(instance: String, why: String, logTail: [String]?) -> String {
        var s = "\(instance): \(why)"
        if let tail = logTail?.filter({ !$0.isEmpty }), !tail.isEmpty {
            s += " — log: " + tail.joined(separator: " | ")
        }
        return s
    }
}
