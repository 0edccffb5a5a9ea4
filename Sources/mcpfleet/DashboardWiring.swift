import FleetApp
import FleetController
import FleetCore
import FleetDashboard
import Foundation

/// How `run` feeds the dashboard (docs/designs/0011-dashboard.md): the controller's last observation
/// with the store's records folded in fresh, its catalog snapshot and analysis runs, the store's
/// history and audit. The commands it shows name the manifest directory as an absolute path and the
/// environment, so they can be pasted on the controller's machine as they are.
enum DashboardWiring {
    static func dashboard(controller: Controller, driver: any RuntimeDriver, store: any RolloutStore, changes: FleetChanges,
                          target: FleetTarget, gateway: String?) -> Dashboard {
        let context = OperatorCommand.Context(directory: GatewayWiring.absolute(target.path, against: FileManager.default.currentDirectoryPath),
                                              environment: target.environment.name)
        let environment = target.environment
        @Sendable func live() async throws -> LiveState {
            var live: LiveState
            if let last = await controller.lastLive() {
                live = last
            } else {
                live = try await driver.observe()
            }
            live.environment = environment.name
            live.driver = environment.driver.rawValue
            return live.merging(try await store.records())
        }
        let feed = DashboardFeed(
            fleet: {
                let snapshot = await controller.snapshot()
                var view = FleetStatusView.make(live: try await live(), desired: snapshot?.desired, records: try await store.records(),
                                                controller: try await ControllerPresence.read(store).status, gateway: gateway, now: StatusCommand.nowMs())
                view.syncedCommit = snapshot?.commit
                view.setEvents(fromAudit: try await store.audit(server: nil, limit: 12))
                return view
            },
            server: { name in
                let snapshot = await controller.snapshot()
                return ServerStatusDetail.make(
                    name: name, live: try await live(), desired: snapshot?.desired, record: try await store.record(server: name),
                    analysis: await controller.analysisStatus(server: name), history: try await store.revisions(server: name),
                    audit: try await store.audit(server: name, limit: 50), commands: context,
                    controller: try await ControllerPresence.read(store).status, gateway: gateway, now: StatusCommand.nowMs())
            },
            changes: changes)
        return Dashboard(feed: feed)
    }
}
