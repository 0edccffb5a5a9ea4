import Logging
import ServiceLifecycle

/// Keeps the gateway's routes current and stops its listeners on shutdown. `routes` builds the table
/// (the driver's view: local supervisor state, systemd units, Kubernetes pods); a failed refresh keeps
/// the last table, so a flaky runtime API never empties the routes.
///
/// Every `refresh` the service asks `inputs` — a cheap token of what the table is built from (the
/// driver's live generation, the rollout store's changes, the desired state's fingerprint) — and
/// rebuilds only when the token changed, when `inputs` cannot tell (nil), or when `fullRefresh` passed
/// since the last rebuild (a safety net for changes no token covers, such as another process editing
/// the store). Without `inputs` the table is rebuilt every `refresh`. Building the table reads the whole
/// live state and every rollout record: at 3,000 servers, twice a second, a fifth of an idle
/// controller's CPU.
public struct GatewayService: Service {
    let server: GatewayServer
    let refreshNanos: Int64
    let fullRefreshNanos: Int64
    let routes: (@Sendable () async throws -> RouteTable)?
    let inputs: (@Sendable () async -> String?)?
    let logger: Logger

    /// `routes` nil: no MCP routes (only the operational endpoints are served); nothing is refreshed.
    public init(server: GatewayServer, refresh: Duration, fullRefresh: Duration = .seconds(15), logger: Logger,
                routes: (@Sendable () async throws -> RouteTable)?, inputs: (@Sendable () async -> String?)? = nil) {
        self.server = server
        refreshNanos = refresh.nanoseconds
        fullRefreshNanos = fullRefresh.nanoseconds
        self.routes = routes
        self.inputs = inputs
        self.logger = logger
    }

    /// One refresh now (also the first one, before serving); false when the routes could not be built.
    @discardableResult
    public func refreshOnce() async -> Bool {
        guard let routes else { return false }
        var built = true
        do {
            server.state.publish(try await routes())
        } catch {
            built = false
            logger.warning("gateway routes not refreshed; keeping the last ones", metadata: ["error": "\(error)"])
        }
        server.metrics.replicas(server.state.replicaStatus())
        return built
    }

    /// How often the replica gauges are set while the table stays the same.
    static let gaugeInterval: Duration = .seconds(2)

    public func run() async throws {
        if routes == nil {
            try? await gracefulShutdown()
            await server.shutdown()
            return
        }
        let clock = ContinuousClock()
        await withGracefulShutdownHandler {
            // The first table was built before serving (`refreshOnce`); its inputs are read on the first turn.
            var last: String?
            var builtAt: ContinuousClock.Instant?
            var gaugesAt = clock.now
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                // Read before building: a change made while the table is built is seen at the next turn.
                let token = await inputs?()
                let now = clock.now
                let due = builtAt.map { now - $0 >= .nanoseconds(fullRefreshNanos) } ?? true
                if token == nil || token != last || due {
                    let built = await refreshOnce()
                    last = built ? token : nil
                    builtAt = now
                    gaugesAt = now
                } else if now - gaugesAt >= Self.gaugeInterval {
                    // Circuit states, open sessions and in-flight counts move with traffic, not with the
                    // table: their gauges are set every `gaugeInterval` (O(replicas) each time).
                    server.metrics.replicas(server.state.replicaStatus())
                    gaugesAt = now
                }
                do { try await Task.sleep(for: .nanoseconds(refreshNanos)) } catch { break }
            }
        } onGracefulShutdown: {
        }
        await server.shutdown()
    }
}
