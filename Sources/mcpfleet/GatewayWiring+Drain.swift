import FleetCore
import FleetGateway
import FleetKubernetes
import FleetState
import Foundation
import Logging

/// Draining with the gateway in other processes: on hosts the controller and every `mcpfleet gateway`
/// meet in the state database (`SQLiteDrainBoard`, design 0016); on Kubernetes in the route object and a
/// Lease per gateway pod (`KubernetesDrainBoard`, design 0018). The rules are FleetGateway's
/// (`BoardDrainSignals`, `DrainPublisher`).
extension SQLiteDrainBoard: DrainBoard {
    /// Tool calls are not reported through the state database: on hosts the `gateway` provider reads the
    /// gateway in the controller's process.
    public func publish(gateway: String, seenGeneration: Int64, open: [(server: String, replica: String, sessions: Int)],
                        tools: [String: [String: ToolCallWindow]], now: Int64) throws {
        try publish(gateway: gateway, seenGeneration: seenGeneration, open: open, now: now)
    }
}
extension KubernetesDrainBoard: DrainBoard {}

extension GatewayWiring {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The board in a host environment's state database, on the rollout store's own connection: a second
    /// `SQLiteDatabase(path:)` in the same process would open and close the file outside SQLite, which
    /// drops the POSIX locks of the connection already open (and with them the WAL's), so writes of both
    /// processes vanished for new readers. Nil on Kubernetes, or when it cannot be set up (said in the log).
    /// `controller`: marks a previous controller may have left behind are lifted.
    static func drainBoard(store: any RolloutStore, logger: Logger, controller: Bool = false) -> SQLiteDrainBoard? {
        guard let sqlite = store as? SQLiteRolloutStore else { return nil }
        do {
            let board = try SQLiteDrainBoard(database: sqlite.database)
            if controller { try board.clearMarks() }
            return board
        } catch {
            logger.warning("cannot set up draining through separate gateways in the state database; replicas stop undrained",
                           metadata: ["path": "\(sqlite.database.path)", "error": "\(error)"])
            return nil
        }
    }

    /// A gateway's name in its reports: the pod's name on Kubernetes (`MCPFLEET_POD_NAME`, set by the
    /// rendered Deployment; else the host name, which is the pod's name too), else host/pid/address.
    static func gatewayIdentity(kubernetes: Bool, address: String) -> String {
        if kubernetes {
            if let pod = ProcessInfo.processInfo.environment["MCPFLEET_POD_NAME"], !pod.isEmpty { return pod }
            return ProcessInfo.processInfo.hostName
        }
        return "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(address)"
    }
}
