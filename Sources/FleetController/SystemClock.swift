import FleetCore
import Foundation

/// Wall-clock time for the controller (epoch milliseconds; sleeps on the continuous clock).
public struct SystemClock: ControllerClock {
    public init() {}

    public func nowMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }

    public func sleep(milliseconds: Int64) async throws {
        try await Task.sleep(for: .milliseconds(max(0, milliseconds)))
    }
}
