/// Outlier ejection for one replica (pure: the caller passes the time).
///
/// Closed: traffic flows; `threshold` consecutive failures open it for `ejection` (doubling on each
/// re-open, at most 32×). Open: no new sessions. When the ejection ends it is half-open: one trial
/// request may go; its success closes the breaker, its failure opens it again.
public struct CircuitBreaker: Sendable, Hashable {
    public enum State: String, Sendable, Hashable, Codable {
        case closed, open, halfOpen = "half-open"
    }

    public let threshold: Int
    public let ejectionNanos: Int64
    public private(set) var consecutiveFailures = 0
    public private(set) var ejections = 0
    private var openUntil: Int64 = 0
    private var trialInFlight = false
    private var opened = false

    public init(threshold: Int, ejection: Duration) {
        self.threshold = max(1, threshold)
        let c = ejection.components
        ejectionNanos = c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    public func state(nowNanos: Int64) -> State {
        guard opened else { return .closed }
        return nowNanos < openUntil ? .open : .halfOpen
    }

    /// Whether a new session (or a session-less request) may go to this replica now; in half-open, the
    /// first caller takes the single trial.
    public mutating func admit(nowNanos: Int64) -> Bool {
        switch state(nowNanos: nowNanos) {
        case .closed: return true
        case .open: return false
        case .halfOpen:
            if trialInFlight { return false }
            trialInFlight = true
            return true
        }
    }

    /// Whether the replica may be chosen, without taking the half-open trial.
    public func available(nowNanos: Int64) -> Bool {
        switch state(nowNanos: nowNanos) {
        case .closed: return true
        case .open: return false
        case .halfOpen: return !trialInFlight
        }
    }

    /// An exchange ended without a verdict (the client went away): a half-open trial may be taken again.
    public mutating func release() {
        trialInFlight = false
    }

    public mutating func success() {
        consecutiveFailures = 0
        opened = false
        trialInFlight = false
    }

    public mutating func failure(nowNanos: Int64) {
        consecutiveFailures += 1
        if opened && state(nowNanos: nowNanos) == .halfOpen {
            reopen(nowNanos)
        } else if !opened && consecutiveFailures >= threshold {
            reopen(nowNanos)
        }
    }

    private mutating func reopen(_ now: Int64) {
        opened = true
        trialInFlight = false
        ejections += 1
        openUntil = now + ejectionNanos * Int64(1 << min(ejections - 1, 5))
    }
}
