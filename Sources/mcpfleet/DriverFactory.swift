import FleetCore
import FleetLocal
import FleetState

/// The composition root's choice of driver and rollout store for an environment.
/// (Local driver only so far; systemd and Kubernetes wiring to follow.)
enum DriverFactory {
    static func make(environment: Environment, manifestRoot: String) throws -> (driver: any RuntimeDriver, store: any RolloutStore) {
        switch environment.driver {
        case .local:
            let driver = try LocalDriver(environment: environment, manifestRoot: manifestRoot)
            return (driver, try driver.rolloutStore())
        default:
            throw CommandFailure(message: "environment \(environment.name): the \(environment.driver.rawValue) driver is not wired into this build yet")
        }
    }
}
