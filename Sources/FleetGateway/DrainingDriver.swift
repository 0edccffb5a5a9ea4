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
/// the order in which they list endpoints, so the last ones are drained.
public final class DrainingDriver: RuntimeDriver {
    public let inner: any RuntimeDriver
    let state: GatewayState
    let logger: Logger
    let pollInterval: Duration
    let nowMs: @Sendable () -> Int64
    /// The last drain timeout seen per server (a revision's removal does not carry the spec).
    private let timeouts = NIOLockedValueBox<[String: Int64]>([:])

    public init(_ inner: any RuntimeDriver, state: GatewayState, logger: Logger, pollInterval: Duration = .milliseconds(100),
                nowMs: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970 * 1000) }) {
        self.inner = inner
        self.state = state
        self.logger = logger
        self.pollInterval = pollInterval
        self.nowMs = nowMs
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

    public func scale(_ server: DesiredServer, replicas: Int) async throws {
        let timeout = TrafficRules.drainTimeoutMs(server)
        timeouts.withLockedValue { $0[server.name] = timeout }
        let running = (try? await inner.endpoints(server: server.name, revision: server.revision)) ?? []
        let victims = running.count > replicas ? running.suffix(running.count - replicas).map(\.instance) : []
        try await drained(server: server.name, revision: server.revision, victims, timeoutMs: timeout) {
            try await self.inner.scale(server, replicas: replicas)
        }
    }

    public func removeRevision(server: String, revision: String) async throws {
        let victims = ((try? await inner.endpoints(server: server, revision: revision)) ?? []).map(\.instance)
        try await drained(server: server, revision: revision, victims, timeoutMs: timeouts.withLockedValue { $0[server] } ?? TrafficRules.defaultDrainTimeoutMs) {
            try await self.inner.removeRevision(server: server, revision: revision)
        }
    }

    /// Drains `victims`, then runs `stop`; the marks are lifted afterwards (gone, or routable again if the stop failed).
    func drained(server: String, revision: String, _ victims: [String], timeoutMs: Int64, stop: () async throws -> Void) async throws {
        guard !victims.isEmpty else { return try await stop() }
        state.setDraining(server: server, replicas: victims, true)
        defer { state.setDraining(server: server, replicas: victims, false) }
        let since = nowMs()
        while true {
            let open = victims.reduce(0) { $0 + state.openSessions(server: server, replica: $1) }
            switch TrafficRules.drain(openSessions: open, since: since, now: nowMs(), timeoutMs: timeoutMs) {
            case .done(let reason):
                logger.info("replicas drained", metadata: ["server": "\(server)", "revision": "\(revision)", "replicas": "\(victims.joined(separator: ","))",
                                                        "waited_ms": "\(nowMs() - since)", "reason": "\(reason)"])
                return try await stop()
            case .wait:
                try await Task.sleep(for: pollInterval)
            }
        }
    }
}
