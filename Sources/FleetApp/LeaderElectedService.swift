import FleetKubernetes
import Foundation
import Logging
import ServiceLifecycle

/// Runs a service only while this replica holds the Lease, as controller-runtime does: wait to
/// acquire, run, and fail when leadership is lost, so the process exits and its pod restarts and
/// campaigns again (a controller that may have missed renewals must not keep acting). On graceful
/// shutdown the inner service finishes its step and the elector releases the Lease, so a standby
/// replica takes over at once instead of after the lease duration.
public struct LeaderElectedService: Service {
    struct LeadershipLost: Error, CustomStringConvertible {
        var description: String { "lost the leader Lease; exiting so a fresh process campaigns again" }
    }

    public let elector: LeaderElector
    let inner: any Service
    let logger: Logger

    public init(elector: LeaderElector, inner: any Service, logger: Logger) {
        self.elector = elector
        self.inner = inner
        self.logger = logger
    }

    public func run() async throws {
        let acquisitions = await elector.changes()
        let losses = await elector.changes()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await elector.run() }
            logger.info("campaigning for leadership", metadata: ["lease": "\(elector.namespace)/\(elector.name)", "identity": "\(elector.identity)"])
            // Standby until this replica leads; a shutdown while waiting just ends the wait.
            let acquired = await cancelWhenGracefulShutdown {
                for await event in acquisitions where event == .acquired { return true }
                return false
            }
            guard acquired, !Task.isCancelled, !Task.isShuttingDownGracefully else {
                group.cancelAll()
                return
            }
            logger.info("acquired leadership", metadata: ["identity": "\(elector.identity)"])
            group.addTask { try await inner.run() }
            group.addTask {
                for await event in losses where event == .lost { throw LeadershipLost() }
            }
            // The inner service returning (graceful shutdown) or leadership lost (throws) ends both.
            defer { group.cancelAll() }
            _ = try await group.next()
        }
    }
}
