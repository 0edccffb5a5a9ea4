import FleetController
import FleetCore
import FleetGateway
import FleetKubernetes
import FleetState
import Logging

extension GatewayWiring {
    /// What the gateway in `mcpfleet run` shares with the controller (design 0009): its state (the
    /// draining driver marks replicas there and reads their sessions) and its tool-call counts (the
    /// `gateway` analysis provider), on the controller's metrics registry.
    struct Traffic {
        let state: GatewayState
        let controllerMetrics = ControllerMetrics()
        let gatewayMetrics: GatewayMetrics
        /// The gateway serves MCP routes in this process.
        let serving: Bool
        let logger: Logger

        /// Without the gateway in this process: gateways in other processes (`mcpfleet gateway`, the
        /// systemd unit, the gateway Deployment) drain through the state database (design 0016) or, on
        /// Kubernetes, the route object and their report Leases (design 0018). Set by
        /// `store(_:raw:routeObject:)`, which `Convergence` calls before it wraps the driver.
        let board = Locked<(any DrainBoard)?>(nil)

        /// On Kubernetes the gateway replicas' reports feed the `gateway` provider (design 0018).
        let kubernetes: Bool

        init(environment: Environment, serving: Bool, logger: Logger) {
            kubernetes = environment.driver == .kubernetes
            state = GatewayState(configuration: GatewayWiring.configuration(environment))
            gatewayMetrics = GatewayMetrics(registry: controllerMetrics.registry)
            self.serving = serving
            self.logger = logger
        }

        /// The driver the controller acts through: draining first — through the gateway here, else
        /// through the gateways that report to the state database (none reporting: nothing to wait for).
        func driver(_ d: any RuntimeDriver) -> any RuntimeDriver {
            if serving { return DrainingDriver(d, state: state, logger: logger) }
            if let board = board.value { return DrainingDriver(d, signals: BoardDrainSignals(board: board), logger: logger) }
            return d
        }

        /// Lifts draining marks a previous controller left in the route object (it died mid-drain): run as
        /// this controller starts acting (after winning the leader election, so a standby never lifts the
        /// marks of the leader's drain). Host boards are cleared as they are set up.
        func clearStaleMarks() async {
            guard let kube = board.value as? KubernetesDrainBoard else { return }
            do { try await kube.clearMarks(now: GatewayWiring.nowMs()) } catch {
                logger.warning("cannot lift draining marks a previous controller left", metadata: ["error": "\(error)"])
            }
        }

        /// The desired state as the controller holds it (set once the controller exists).
        let desired = Locked<(@Sendable () async -> DesiredState?)?>(nil)

        /// The store the controller writes through: each saved record's weights reach the gateway in this
        /// process at once and, on Kubernetes, the route object the gateway Deployment watches.
        func store(_ store: any RolloutStore, raw: any RolloutStore, routeObject: GatewayRouteObject?) -> any RolloutStore {
            if !serving {
                if let routeObject {
                    let kube = KubernetesDrainBoard(routes: routeObject)
                    kube.startWatching()
                    board.value = kube
                } else {
                    board.value = GatewayWiring.drainBoard(store: raw, logger: logger, controller: true)
                }
            }
            guard serving || routeObject != nil else { return store }
            let state = self.state, desired = self.desired, serving = self.serving, logger = self.logger
            return WeightPublishingStore(store) { record in
                guard let d = await desired.value?()?.server(record.server) else { return }
                let weights = TrafficRules.weights(desired: d, record: record)
                if serving { state.pushWeights(server: record.server, weights) }
                if let routeObject {
                    // The record is saved; a failed publish is retried with the next save (and logged).
                    do { try await routeObject.publish(server: record.server, weights: weights) } catch {
                        logger.warning("cannot publish the gateway's weights", metadata: ["server": "\(record.server)", "error": "\(error)"])
                    }
                }
            }
        }

        /// The `gateway` provider, when the gateway serves here, or on Kubernetes from the gateway replicas'
        /// report Leases (design 0018; the board is set up with the store, after this is read). Elsewhere
        /// none: an SLO naming it is inconclusive, saying why.
        var providers: [AnalysisProviderKind: any AnalysisProvider] {
            if serving {
                let metrics = gatewayMetrics
                return [.gateway: GatewayAnalysisProvider { metrics.toolWindows(server: $0) }]
            }
            guard kubernetes else { return [:] }
            let board = self.board
            return [.gateway: GatewayAnalysisProvider { server in (board.value as? KubernetesDrainBoard)?.toolWindows(server: server) ?? [:] }]
        }
    }

    /// Routes with each server's canary weights, from its desired spec and the rollout record the
    /// controller wrote (`TrafficRules.weights`).
    static func weighted(_ table: RouteTable, desired: DesiredState?, records: [RolloutRecord]) -> RouteTable {
        guard let desired else { return table }
        let byServer = Dictionary(records.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a })
        let index = desired.serverIndex()
        return table.weighted { name in index[name].flatMap { TrafficRules.weights(desired: desired.servers[$0], record: byServer[name]) } }
    }
}
