import FleetCore
import FleetGateway
import FleetState
import Foundation
import Logging

/// Draining with the gateway in another process (design 0016): the controller and every `mcpfleet
/// gateway` of a host environment meet in the state database (`SQLiteDrainBoard`).
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

    /// The controller's side: marks and session counts through the board.
    struct BoardDrainSignals: DrainSignals {
        let board: SQLiteDrainBoard

        func mark(server: String, replicas: [String]) async throws -> DrainMark {
            DrainMark(generation: try board.mark(server: server, replicas: replicas, draining: true, now: GatewayWiring.nowMs()))
        }

        func unmark(server: String, replicas: [String], logger: Logger) {
            do { try board.mark(server: server, replicas: replicas, draining: false, now: GatewayWiring.nowMs()) } catch {
                logger.warning("cannot lift the draining marks", metadata: ["server": "\(server)", "error": "\(error)"])
            }
        }

        func openSessions(server: String, replicas: [String], mark: DrainMark) async throws -> DrainCount {
            let r = try board.openSessions(server: server, replicas: replicas, generation: mark.generation, now: GatewayWiring.nowMs())
            return DrainCount(open: r.open, confirmed: r.confirmed)
        }
    }

    /// The gateway's side, once per route refresh: report the open sessions per replica of the routes
    /// installed now (and the marks they carry), then mark the new table's draining replicas.
    final class DrainPublisher: Sendable {
        let board: SQLiteDrainBoard
        let state: GatewayState
        let id: String
        /// The marks generation the previous refresh's table carries (installed since).
        private let installed = Locked<Int64>(0)
        /// The last report written, and when: an unchanged report is written again only as a heartbeat.
        private let published = Locked<(report: [String], generation: Int64, at: Int64)?>(nil)
        static let heartbeatMs: Int64 = 2_000

        init(board: SQLiteDrainBoard, state: GatewayState, address: String) {
            self.board = board
            self.state = state
            id = "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(address)"
        }

        func refresh(_ table: RouteTable) throws -> RouteTable {
            let open = state.replicaStatus().filter { $0.sessions > 0 }.map { (server: $0.server, replica: $0.replica, sessions: $0.sessions) }
            let report = open.map { "\($0.server)\u{0}\($0.replica)\u{0}\($0.sessions)" }.sorted(), seen = installed.value, now = GatewayWiring.nowMs()
            if let last = published.value, last.report == report, last.generation == seen, now - last.at < Self.heartbeatMs {
                // Unchanged since the last report, which is fresh: no write.
            } else {
                try board.publish(gateway: id, seenGeneration: seen, open: open, now: now)
                published.value = (report, seen, now)
            }
            let marks = try board.marks()
            var marked = table
            for (server, replicas) in marks.replicas {
                guard let route = marked.routes[server] else { continue }
                marked.routes[server]!.backends = route.backends.map { b in
                    var b = b
                    if replicas.contains(b.id) { b.draining = true }
                    return b
                }
            }
            installed.value = marks.generation
            return marked
        }

        func withdraw(logger: Logger) {
            do { try board.withdraw(gateway: id) } catch { logger.warning("cannot withdraw the gateway's session report", metadata: ["error": "\(error)"]) }
        }
    }
}
