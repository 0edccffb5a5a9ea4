import FleetCore
import Foundation
import Logging
import NIOConcurrencyHelpers

/// A runtime driver that drains a replica through the gateway before the runtime stops it (design
/// 0009): the replicas a scale-down (or a revision's removal) will stop are marked draining — no new
/// sessions, their open ones still routed — and the stop waits until their sessions have ended or
/// `rollout.drainTimeout` passed (`TrafficRules.drain` decides). Used where the gateway runs in the
/// controller's process (`mcpfleet run`); everything else is passed through unchanged.
///
/// Which replicas a scale-down stops: host drivers stop the highest-numbered instances of the revision,
/// the order in which they list endpoints, so the last ones are drained. A runtime that picks itself
/// (`ScaleDownTargeting`: Kubernetes) is told to remove those with the fewest open sessions (design 0018).
///
/// Where the gateways run: `DrainSignals` — the gateway in this process (`GatewayState`), or gateways in
/// other processes through the state database (`SQLiteDrainBoard`, design 0016).
public final class DrainingDriver: RuntimeDriver {
    public let inner: any RuntimeDriver
    let signals: any DrainSignals
    let logger: Logger
    let pollInterval: Duration
    let nowMs: @Sendable () -> Int64
    /// The last drain timeout seen per server (a revision's removal does not carry the spec).
    private let timeouts = NIOLockedValueBox<[String: Int64]>([:])

    public init(_ inner: any RuntimeDriver, signals: any DrainSignals, logger: Logger, pollInterval: Duration = .milliseconds(100),
                nowMs: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.inner = inner
        self.signals = signals
        self.logger = logger
        self.pollInterval = pollInterval
        self.nowMs = nowMs
    }

    /// The gateway in this process.
    public convenience init(_ inner: any RuntimeDriver, state: GatewayState, logger: Logger, pollInterval: Duration = .milliseconds(100),
                            nowMs: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.init(inner, signals: InProcessDrainSignals(state: state), logger: logger, pollInterval: pollInterval, nowMs: nowMs)
    }

    public var kind: DriverKind { inner.kind }
    public func observe() async throws -> LiveState { try await inner.observe() }
    public func observe(_ scope: ObserveScope) async throws -> LiveState { try await inner.observe(scope) }
    public func ensureTenant(_ tenant: DesiredTenant) async throws { try await inner.ensureTenant(tenant) }
    public func removeTenant(named name: String) async throws { try await inner.removeTenant(named: name) }
    public func removeServer(named name: String) async throws { try await inner.removeServer(named: name) }
    public func endpoints(server: String, revision: String) async throws -> [Endpoint] { try await inner.endpoints(server: server, revision: revision) }
    public func start() async throws { try await inner.start() }
    public func stop() async { await inner.stop() }
    public func liveChanges() -> AsyncStream<ObserveScope>? { inner.liveChanges() }
    public func liveGeneration() async -> UInt64? { await inner.liveGeneration() }

    public func scale(_ server: DesiredServer, replicas: Int) async throws {
        let timeout = TrafficRules.drainTimeoutMs(server)
        timeouts.withLockedValue { $0[server.name] = timeout }
        let victims = await victims(server: server.name, revision: server.revision, tenant: server.tenant, keeping: replicas)
        try await drained(server: server.name, revision: server.revision, victims, timeoutMs: timeout) {
            try await self.inner.scale(server, replicas: replicas)
        }
    }

    /// Drains what a rescale-down stops, as `scale` does (with the server's last known drain timeout).
    public func rescale(server: String, revision: String, tenant: String, replicas: Int) async throws {
        let victims = await victims(server: server, revision: revision, tenant: tenant, keeping: replicas)
        try await drained(server: server, revision: revision, victims, timeoutMs: timeouts.withLockedValue { $0[server] } ?? TrafficRules.defaultDrainTimeoutMs) {
            try await self.inner.rescale(server: server, revision: revision, tenant: tenant, replicas: replicas)
        }
    }

    public func removeRevision(server: String, revision: String) async throws {
        let victims = ((try? await inner.endpoints(server: server, revision: revision)) ?? []).map(\.instance)
        try await drained(server: server, revision: revision, victims, timeoutMs: timeouts.withLockedValue { $0[server] } ?? TrafficRules.defaultDrainTimeoutMs) {
            try await self.inner.removeRevision(server: server, revision: revision)
        }
    }

    /// The replicas a scale-down to `keeping` stops: the last ones listed, or — where the runtime can be told
    /// (`ScaleDownTargeting`) — those with the fewest open sessions (ties: the last listed), which it is
    /// then told to remove first. Told nothing (the call failed), the runtime picks: logged, and the chosen
    /// ones are drained all the same.
    func victims(server: String, revision: String, tenant: String, keeping: Int) async -> [String] {
        let running = ((try? await inner.endpoints(server: server, revision: revision)) ?? []).map(\.instance)
        guard running.count > keeping else { return [] }
        guard let targeting = inner as? any ScaleDownTargeting else { return Array(running.suffix(running.count - keeping)) }
        var sessions: [String: Int] = [:]
        do { sessions = try await signals.sessions(server: server) } catch {
            logger.warning("cannot read open sessions per replica; removing the last listed", metadata: ["server": "\(server)", "error": "\(error)"])
        }
        let ranked = running.enumerated().sorted { a, b in
            let (x, y) = (sessions[a.element] ?? 0, sessions[b.element] ?? 0)
            return x != y ? x < y : a.offset > b.offset
        }.map(\.element)
        let removing = Array(ranked.prefix(running.count - keeping)), removed = Set(removing)
        do {
            try await targeting.targetScaleDown(server: server, revision: revision, tenant: tenant, removing: removing,
                                                keeping: running.filter { !removed.contains($0) })
        } catch {
            logger.warning("cannot tell the runtime which replicas to remove; it picks them itself (those drained may not be the ones that stop)",
                           metadata: ["server": "\(server)", "revision": "\(revision)", "replicas": "\(removing.joined(separator: ","))", "error": "\(error)"])
        }
        return removing
    }

    /// Drains `victims`, then runs `stop`; the marks are lifted afterwards (gone, or routable again if the stop failed).
    /// Marks that cannot be set (the state database unwritable) are logged and the stop goes ahead undrained.
    func drained(server: String, revision: String, _ victims: [String], timeoutMs: Int64, stop: () async throws -> Void) async throws {
        guard !victims.isEmpty else { return try await stop() }
        let mark: DrainMark
        do { mark = try await signals.mark(server: server, replicas: victims) } catch {
            logger.warning("cannot mark replicas draining; stopping them without draining",
                           metadata: ["server": "\(server)", "replicas": "\(victims.joined(separator: ","))", "error": "\(error)"])
            return try await stop()
        }
        let since = nowMs()
        var failure: (any Error)?
        do {
            try await wait(server: server, revision: revision, victims, mark: mark, since: since, timeoutMs: timeoutMs)
            try await stop()
        } catch {
            failure = error  // the stop failed, or cancelled while waiting
        }
        await signals.unmark(server: server, replicas: victims, logger: logger)
        if let failure { throw failure }
    }

    /// Waits until `TrafficRules.drain` says the marked replicas are drained (the reason is logged: at
    /// warning level when the timeout ended the wait, with the last error reading the sessions, if any).
    func wait(server: String, revision: String, _ victims: [String], mark: DrainMark, since: Int64, timeoutMs: Int64) async throws {
        var readError: String?
        while true {
            let open: DrainCount
            do {
                open = try await signals.openSessions(server: server, replicas: victims, mark: mark)
                readError = nil
            } catch {
                if readError == nil { logger.warning("cannot read open sessions", metadata: ["server": "\(server)", "error": "\(error)"]) }
                readError = "\(error)"
                open = DrainCount(open: 0, confirmed: false)
            }
            switch TrafficRules.drain(openSessions: open.open, since: since, now: nowMs(), timeoutMs: timeoutMs, confirmed: open.confirmed) {
            case .done(let reason):
                let timedOut = open.open > 0 || !open.confirmed
                logger.log(level: timedOut ? .warning : .info, "replicas drained",
                           metadata: ["server": "\(server)", "revision": "\(revision)", "replicas": "\(victims.joined(separator: ","))",
                                      "waited_ms": "\(nowMs() - since)", "reason": "\(reason + (readError.map { "; open sessions unreadable: \($0)" } ?? ""))"])
                return
            case .wait:
                try await Task.sleep(for: pollInterval)
            }
        }
    }
}

/// What a mark returns and the wait passes back (the board's generation; 0 in process).
public struct DrainMark: Sendable, Hashable {
    public var generation: Int64
    public init(generation: Int64) { self.generation = generation }
}

/// Open sessions on the replicas being drained, and whether every gateway has applied the marks yet.
public struct DrainCount: Sendable, Hashable {
    public var open: Int
    public var confirmed: Bool
    public init(open: Int, confirmed: Bool) {
        self.open = open
        self.confirmed = confirmed
    }
}

/// Where the draining driver marks replicas and reads their open sessions.
public protocol DrainSignals: Sendable {
    func mark(server: String, replicas: [String]) async throws -> DrainMark
    /// Lifts the marks (errors are logged: a stale mark only keeps new sessions off a replica that is gone).
    func unmark(server: String, replicas: [String], logger: Logger) async
    func openSessions(server: String, replicas: [String], mark: DrainMark) async throws -> DrainCount
    /// Open sessions per replica of a server (which replicas a scale-down removes where the runtime can be told).
    func sessions(server: String) async throws -> [String: Int]
}

extension DrainSignals {
    public func sessions(server: String) async throws -> [String: Int] { [:] }
}

/// The gateway in the controller's process: marks apply at once.
public struct InProcessDrainSignals: DrainSignals {
    let state: GatewayState
    public init(state: GatewayState) { self.state = state }

    public func mark(server: String, replicas: [String]) async throws -> DrainMark {
        state.setDraining(server: server, replicas: replicas, true)
        return DrainMark(generation: 0)
    }

    public func unmark(server: String, replicas: [String], logger: Logger) async { state.setDraining(server: server, replicas: replicas, false) }

    public func openSessions(server: String, replicas: [String], mark: DrainMark) async throws -> DrainCount {
        DrainCount(open: replicas.reduce(0) { $0 + state.openSessions(server: server, replica: $1) }, confirmed: true)
    }

    public func sessions(server: String) async throws -> [String: Int] {
        Dictionary(state.replicaStatus().filter { $0.server == server && $0.sessions > 0 }.map { ($0.replica, $0.sessions) }, uniquingKeysWith: +)
    }
}
