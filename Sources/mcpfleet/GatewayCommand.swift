import FleetApp
import ArgumentParser
import FleetController
import FleetCore
import FleetGateway
import FleetKubernetes
import Foundation
import Logging
import Prometheus
import ServiceLifecycle

/// The gateway alone, for hosts where the controller runs elsewhere or as its own unit: routes come
/// from the driver's view of the environment (the state the controller writes: local and systemd
/// state, Kubernetes pods), refreshed every `--refresh`.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Serve the MCP gateway alone: one stable endpoint per server, http://ADDRESS/{server}/mcp.",
        discussion: """
        Routes follow what the runtime reports (replicas of every running revision), sessions stay on \
        their replica through signed session ids (any gateway replica with the same signing key routes \
        them), and tenants' tokens, rate limits and limits come from the catalog. /metrics, /healthz, \
        /readyz and /health/detailed are served on the same address.
        """
    )

    @Argument(help: "The manifest directory.")
    var path: String

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "Listen here (HOST:PORT). Default: the environment's spec.gateway.address, else \(GatewayWiring.defaultLocalAddress).")
    var address: String?

    @Option(name: .long, help: "How often to re-read the routes from the runtime.")
    var refresh: String = "1s"

    @Option(name: .customLong("access-log"), help: "Access log, JSON lines: a file, - for stderr (default), empty for off.")
    var accessLog: String = "-"

    @Option(name: .customLong("log-format"), help: "Logs on stderr: json (one object per line) or text.")
    var logFormat: LogFormat = .json

    @Option(name: .long, help: "Event-loop threads (0: one per core).")
    var threads: Int = 0

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        let environment = target.environment
        let (driver, store) = try target.runtime()
        // On Kubernetes: pods from the driver's watched cache, weights from the route object the controller publishes (watched).
        var routeObject: GatewayRouteObject?
        if let kube = driver as? KubernetesDriver {
            do { try await driver.start() } catch { throw CommandFailure(message: "environment \(environment.name): \(error)") }
            routeObject = GatewayRouteObject(client: kube.client, namespace: kube.options.controllerNamespace)
            routeObject?.start()
        }
        let routeWeights = routeObject
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var h: any LogHandler = format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            h.logLevel = .info
            return h
        }
        let logger = Logger(label: "mcpfleet.gateway")
        let listen = address ?? environment.gateway?.address ?? GatewayWiring.defaultLocalAddress
        let refreshMs = try DurationArgument.ms(refresh, option: "--refresh")

        let registry = PrometheusCollectorRegistry()
        let firstRefresh = Locked(false)
        let lastLive = Locked<LiveState?>(nil)
        let ops = OpsEndpoints(ready: { firstRefresh.value }, metrics: { registry.emitToString() }, servers: {
            GatewayWiring.serverHealth(live: lastLive.value ?? LiveState(), desired: target.desired, gateway: listen)
        })
        let policies = GatewayPolicies(path: path, environment: environment, manifestRoot: target.loaded.root)
        _ = try await policies.current()
        var configuration = GatewayWiring.configuration(environment)
        configuration.threads = threads
        let state = GatewayState(configuration: configuration)
        let metrics = GatewayMetrics(registry: registry)
        let server = GatewayServer(state: state, metrics: metrics,
                                   signer: try GatewayWiring.signer(environment, manifestRoot: target.loaded.root), ops: ops,
                                   accessLog: try GatewayWiring.accessLog(flag: accessLog, environment: environment), logger: logger)
        // Draining marks from the controller and open sessions back: through the route object and this pod's
        // report Lease on Kubernetes (design 0018), else through the state database (design 0016).
        let board: (any DrainBoard)? = routeObject.map { KubernetesDrainBoard(routes: $0) } ?? GatewayWiring.drainBoard(store: store, logger: logger)
        // On Kubernetes the reports also carry the cumulative tool calls per revision: the controller's `gateway` provider sums them.
        var tools: (@Sendable ([String]) -> [String: [String: ToolCallWindow]])?
        if routeObject != nil {
            tools = { servers in
                var out: [String: [String: ToolCallWindow]] = [:]
                for s in servers { out[s] = metrics.toolWindows(server: s) }
                return out
            }
        }
        let reportedTools = tools
        let drain = board.map {
            DrainPublisher(board: $0, state: state, id: GatewayWiring.gatewayIdentity(kubernetes: routeObject != nil, address: listen), logger: logger, tools: reportedTools)
        }
        let service = GatewayService(server: server, refresh: .milliseconds(max(100, refreshMs)), logger: logger) {
            let live = try await driver.observe()
            lastLive.value = live
            var table = await GatewayWiring.routes(driver: driver, live: live, policies: try await policies.current())
            // Canary weights (design 0009): the route object on Kubernetes, else the rollout records the controller writes.
            if let routeWeights {
                let weights = routeWeights.current?.weights ?? [:]
                table = table.weighted { weights[$0] }
            } else {
                table = GatewayWiring.weighted(table, desired: target.desired, records: try await store.records())
            }
            if let drain { table = try await drain.refresh(table) }
            firstRefresh.value = true
            return table
        }
        await service.refreshOnce()
        do {
            try await server.listen(listen, mcp: true)
        } catch {
            await server.shutdown()
            throw CommandFailure(message: "\(error)")
        }
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        try await group.run()
        await drain?.withdraw()
    }
}

/// A value shared between the refresh loop and the HTTP endpoints.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var v: Value

    init(_ value: Value) { v = value }

    var value: Value {
        get { lock.withLock { v } }
        set { lock.withLock { v = newValue } }
    }
}
