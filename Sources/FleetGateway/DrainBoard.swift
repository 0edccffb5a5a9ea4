import FleetCore
import Foundation
import Logging
import NIOConcurrencyHelpers

/// Where a controller and gateways in other processes meet to drain replicas (designs 0016, 0018): the
/// host's state database (`SQLiteDrainBoard`) or, on Kubernetes, the route object and one Lease per
/// gateway (`KubernetesDrainBoard`). Both follow the same rules: marks carry a generation; each gateway
/// reports the open sessions it routes per replica and the generation its routes carry; gateways silent
/// for the board's freshness window are not waited for. (Conformances are declared where both modules meet.)
public protocol DrainBoard: Sendable {
    // The controller's side.
    func mark(server: String, replicas: [String], draining: Bool, now: Int64) async throws -> Int64
    func openSessions(server: String, replicas: [String], generation: Int64, now: Int64) async throws -> (open: Int, confirmed: Bool, gateways: Int)
    /// Open sessions per replica of a server over the live gateways.
    func sessions(server: String, now: Int64) async throws -> [String: Int]
    // The gateway's side.
    /// `tools`: cumulative tool calls per server and revision (boards that carry them: Kubernetes, for the `gateway` provider).
    func publish(gateway: String, seenGeneration: Int64, open: [(server: String, replica: String, sessions: Int)],
                 tools: [String: [String: ToolCallWindow]], now: Int64) async throws
    func marks() async throws -> (generation: Int64, replicas: [String: Set<String>])
    func withdraw(gateway: String) async throws
}

extension DrainBoard {
    public func sessions(server: String, now: Int64) async throws -> [String: Int] { [:] }
}

func epochMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

/// The controller's side of a board: marks and session counts.
public struct BoardDrainSignals: DrainSignals {
    let board: any DrainBoard
    let nowMs: @Sendable () -> Int64

    public init(board: any DrainBoard, nowMs: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.board = board
        self.nowMs = nowMs
    }

    public func mark(server: String, replicas: [String]) async throws -> DrainMark {
        DrainMark(generation: try await board.mark(server: server, replicas: replicas, draining: true, now: nowMs()))
    }

    public func unmark(server: String, replicas: [String], logger: Logger) async {
        do { _ = try await board.mark(server: server, replicas: replicas, draining: false, now: nowMs()) } catch {
            logger.warning("cannot lift the draining marks", metadata: ["server": "\(server)", "error": "\(error)"])
        }
    }

    public func openSessions(server: String, replicas: [String], mark: DrainMark) async throws -> DrainCount {
        let r = try await board.openSessions(server: server, replicas: replicas, generation: mark.generation, now: nowMs())
        return DrainCount(open: r.open, confirmed: r.confirmed)
    }

    public func sessions(server: String) async throws -> [String: Int] { try await board.sessions(server: server, now: nowMs()) }
}

/// The gateway's side of a board, once per route refresh: report the open sessions per replica of the
/// routes installed now (and the marks they carry, and — given `tools` — the cumulative tool calls per
/// revision), then mark the new table's draining replicas.
/// A report that cannot be written is logged (once per distinct error) and the marks still apply:
/// the controller then waits for this gateway up to its drain timeout, saying so.
public final class DrainPublisher: Sendable {
    let board: any DrainBoard
    let state: GatewayState
    public let id: String
    let logger: Logger
    /// Cumulative tool calls of the given servers, per revision (nil: not reported).
    let tools: (@Sendable ([String]) -> [String: [String: ToolCallWindow]])?
    /// The marks generation the previous refresh's table carries (installed since).
    private let installed = NIOLockedValueBox<Int64>(0)
    /// The last report written, and when: an unchanged report is written again only as a heartbeat.
    private let published = NIOLockedValueBox<(report: [String], generation: Int64, at: Int64)?>(nil)
    private let lastError = NIOLockedValueBox<String?>(nil)
    public static let heartbeatMs: Int64 = 2_000

    public init(board: any DrainBoard, state: GatewayState, id: String, logger: Logger,
                tools: (@Sendable ([String]) -> [String: [String: ToolCallWindow]])? = nil) {
        self.board = board
        self.tools = tools
        self.state = state
        self.id = id
        self.logger = logger
    }

    public func refresh(_ table: RouteTable) async throws -> RouteTable {
        let open = state.replicaStatus().filter { $0.sessions > 0 }.map { (server: $0.server, replica: $0.replica, sessions: $0.sessions) }
        let calls = tools?(table.routes.keys.sorted()) ?? [:]
        let report = (open.map { "\($0.server)\u{0}\($0.replica)\u{0}\($0.sessions)" }
            + calls.flatMap { s in s.value.map { "\(s.key)\u{0}\($0.key)\u{0}\($0.value.calls)\u{0}\($0.value.errors)" } }).sorted()
        let seen = installed.withLockedValue { $0 }, now = epochMs()
        if let last = published.withLockedValue({ $0 }), last.report == report, last.generation == seen, now - last.at < Self.heartbeatMs {
            // Unchanged since the last report, which is fresh: no write.
        } else {
            do {
                try await board.publish(gateway: id, seenGeneration: seen, open: open, tools: calls, now: now)
                published.withLockedValue { $0 = (report, seen, now) }
                if lastError.withLockedValue({ $0 }) != nil {
                    lastError.withLockedValue { $0 = nil }
                    logger.info("the gateway's session report is written again", metadata: ["gateway": "\(id)"])
                }
            } catch {
                let text = "\(error)"
                if lastError.withLockedValue({ $0 }) != text {
                    lastError.withLockedValue { $0 = text }
                    logger.warning("cannot write the gateway's session report; the controller waits for this gateway's draining replicas up to their drain timeout",
                                   metadata: ["gateway": "\(id)", "error": "\(text)"])
                }
            }
        }
        let marks = try await board.marks()
        var marked = table
        for (server, replicas) in marks.replicas {
            guard let route = marked.routes[server] else { continue }
            marked.routes[server]!.backends = route.backends.map { b in
                var b = b
                if replicas.contains(b.id) { b.draining = true }
                return b
            }
        }
        installed.withLockedValue { $0 = marks.generation }
        return marked
    }

    public func withdraw() async {
        do { try await board.withdraw(gateway: id) } catch { logger.warning("cannot withdraw the gateway's session report", metadata: ["error": "\(error)"]) }
    }
}
