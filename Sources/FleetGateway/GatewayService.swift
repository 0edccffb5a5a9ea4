import Logging
import ServiceLifecycle

/// Keeps the gateway's routes current and stops its listeners on shutdown. `routes` is asked every
/// `refresh` (the driver's view: local supervisor state, systemd units, Kubernetes pods); a failed
/// refresh keeps the last table, so a flaky runtime API never empties the routes.
public struct GatewayService: Service {
    let server: GatewayServer
    let refreshNanos: Int64
    let routes: (@Sendable () async throws -> RouteTable)?
    let logger: Logger

    /// `routes` nil: no MCP routes (only the operational endpoints are served); nothing is refreshed.
    public init(server: GatewayServer, refresh: Duration, logger: Logger, routes: (@Sendable () async throws -> RouteTable)?) {
        self.server = server
        refreshNanos = refresh.nanoseconds
        self.routes = routes
        self.logger = logger
    }

    /// One refresh now (also the first one, before serving).
    public func refreshOnce() async {
        guard let routes else { return }
        do {
            server.state.publish(try await routes())
        } catch {
            logger.warning("gateway routes not refreshed; keeping the last ones", metadata: ["error": "\(error)"])
        }
        server.metrics.replicas(server.state.replicaStatus())
    }

    public func run() async throws {
        if routes == nil {
            try? await gracefulShutdown()
            await server.shutdown()
            return
        }
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                await refreshOnce()
                do { try await Task.sleep(for: .nanoseconds(refreshNanos)) } catch { break }
            }
        } onGracefulShutdown: {
        }
        await server.shutdown()
    }
}
