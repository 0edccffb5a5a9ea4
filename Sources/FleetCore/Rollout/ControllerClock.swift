/// Time as the controller sees it, injected so tests can drive it by hand (FleetTesting's `ManualClock`).
public protocol ControllerClock: Sendable {
    /// Unix epoch milliseconds.
    func nowMs() -> Int64
    /// Suspends for `milliseconds` of this clock's time; throws `CancellationError` when cancelled.
    func sleep(milliseconds: Int64) async throws
}
