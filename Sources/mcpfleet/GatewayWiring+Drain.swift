import FleetApp
import FleetCore
import FleetGateway
import FleetState
import Foundation
import Logging

/// Draining with the gateway in another process (design 0016): the controller and every `mcpfleet
/// gateway` of a host environment meet in the state database (`SQLiteDrainBoard`).
extension GatewayWiring {
    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The board of a host environment's state database (nil on Kubernetes, or when it cannot be opened: said in the log).
    static func drainBoard(_ environment: Environment, logger: Logger) -> SQLiteDrainBoard? {
        guard let path = DriverFactory.stateDatabase(environment: environment) else { return nil }
        do { return try SQLiteDrainBoard(path: path) } catch {
            logger.warning("cannot open the state database for draining through separate gateways; replicas stop undrained",
                           metadata: ["path": "\(path)", "error": "\(error)"])
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
        /// The table and marks generation installed by the previous refresh.
        private let installed = Locked<(table: RouteTable?, generation: Int64)>((nil, 0))

        init(board: SQLiteDrainBoard, state: GatewayState, address: String) {
            self.board = board
            self.state = state
            id = "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(address)"
        }

        func refresh(_ table: RouteTable) throws -> RouteTable {
            let (previous, seen) = installed.value
            var open: [(server: String, replica: String, sessions: Int)] = []
            for r in previous.map({ Array($0.routes.values) }) ?? [] {
                for b in r.backends { open.append((r.server, b.id, state.openSessions(server: r.server, replica: b.id))) }
            }
            try board.publish(gateway: id, seenGeneration: seen, open: open, now: GatewayWiring.nowMs())
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
            installed.value = (marked, marks.generation)
            return marked
        }

        func withdraw() { try? board.withdraw(gateway: id) }
    }
}
