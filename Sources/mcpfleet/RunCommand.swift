import FleetApp
import ArgumentParser
import FleetController
import FleetDashboard
import FleetCore
import FleetGateway
import FleetKubernetes
import FleetHTTP
import FleetLocal
import FleetYAML
import Foundation
import Logging
import ServiceLifecycle

extension FleetTarget {
    /// Loads the catalog; invalid, its diagnostics go to stderr (in colour on a terminal) before the error.
    static func load(path: String, env: String?) throws -> FleetTarget {
        try load(path: path, env: env, color: OutputOptions.stderrColor(false))
    }

    /// What runs, as the driver sees it, with the controller's bookkeeping folded in (its probe verdicts
    /// only while a controller is alive to have made them).
    func observe(_ driver: any RuntimeDriver, _ store: any RolloutStore) async throws -> LiveState {
        do {
            var observed = try await driver.observe(.all)
            observed.environment = environment.name
            observed.driver = environment.driver.rawValue
            return observed.merging(try await store.records(), probes: try await ControllerPresence.read(store).alive)
        } catch {
            throw CommandFailure(message: "cannot observe environment \(environment.name) (\(environment.driver.rawValue)): \(error)")
        }
    }
}

enum DurationArgument {
    static func ms(_ s: String, option: String) throws -> Int64 {
        guard let d = Syntax.duration(s) else { throw ValidationError("\(option): `\(s)` is not a duration (e.g. 500ms, 2s, 1m)") }
        return d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
    }
}

enum LogFormat: String, ExpressibleByArgument {
    case json, text
}

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the controller: converge the runtime on the catalog, roll out changes, watch health and SLOs.",
        discussion: """
        Watches DIR (and, with --git-pull, pulls it) and reconciles every server: new revisions roll out by \
        their strategy, gated by MCP probes and SLO analysis, and are rolled back automatically when they \
        fail. SIGTERM or Ctrl-C finishes the step in hand and exits.
        """
    )

    @Argument(help: "The manifest directory.")
    var path: String

    @Option(name: .long, help: "Environment to run; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "How often to check the manifests for changes.")
    var poll: String = "2s"

    @Option(name: .customLong("git-pull"), help: "Run `git pull --ff-only` in DIR at this interval.")
    var gitPull: String?

    @Option(name: .long, help: "Reconcile everything at this interval even without changes.")
    var resync: String = "30s"

    @Option(name: .customLong("metrics-address"), help: "Serve /metrics, /healthz, /readyz and /health/detailed here (HOST:PORT; empty: off).")
    var metricsAddress: String = "127.0.0.1:9464"

    @Option(name: .customLong("gateway-address"), help: ArgumentHelp(
        "Serve the MCP gateway here: http://ADDRESS/{server}/mcp (HOST:PORT; empty: off).",
        discussion: "Default: the environment's spec.gateway.address, else \(GatewayWiring.defaultLocalAddress) for local environments (not with --once)."))
    var gatewayAddress: String?

    @Option(name: .customLong("access-log"), help: "Gateway access log, JSON lines: a file, - for stderr, empty for off (default: <stateDir>/gateway-access.log).")
    var accessLog: String?

    @Flag(name: .long, help: "Converge once (until every server is settled), then exit.")
    var once = false

    @Option(name: .long, help: "With --once: give up after this long (exit 1).")
    var timeout: String = "10m"

    @Flag(inversion: .prefixedNo, help: "Stop the instances when the controller exits (default: on for the local driver, except with --once).")
    var stopOnExit: Bool?

    @Option(name: .customLong("log-format"), help: "Logs on stderr: json (one object per line) or text.")
    var logFormat: LogFormat = .json

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Flag(inversion: .prefixedNo, help: "Act only while holding a coordination.k8s.io Lease, so several replicas can run and one acts (default: on for the Kubernetes driver).")
    var leaderElect: Bool?

    @Option(name: .customLong("lease-name"), help: "Name of the leader-election Lease (in the controller namespace, $MCPFLEET_NAMESPACE or mcpfleet-system).")
    var leaseName: String = "mcpfleet-controller"

    @Option(name: .long, help: "Keys reconciled concurrently (default 4; \(KubernetesRolloutStore.suggestedWorkers) for the Kubernetes driver, whose rollout-store writes of concurrent servers share one request).")
    var workers: Int?

    func run() async throws {
        var target = try FleetTarget.load(path: path, env: env)
        let interactive = isatty(STDOUT_FILENO) == 1 && !once
        let level = logLevel.flatMap { Logger.Level(rawValue: $0) } ?? (isatty(STDERR_FILENO) == 1 ? .warning : .info)
        let format = logFormat
        LoggingSystem.bootstrap { label in
            var h: any LogHandler = format == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "mcpfleet.controller")
        var configuration = ControllerConfiguration()
        configuration.pollIntervalMs = try DurationArgument.ms(poll, option: "--poll")
        configuration.resyncIntervalMs = try DurationArgument.ms(resync, option: "--resync")
        configuration.workers = max(1, workers ?? (target.environment.driver == .kubernetes ? KubernetesRolloutStore.suggestedWorkers : 4))
        let path = self.path
        let gateway = GatewayWiring.address(flag: gatewayAddress, environment: target.environment, once: once)
        // With the gateway in this process: replicas drain before they stop, tool calls feed the `gateway`
        // analysis provider, saved records push canary weights to it (design 0009).
        let traffic = GatewayWiring.Traffic(environment: target.environment, serving: gateway != nil, logger: logger)
        // Writes to the store wake the dashboard's event streams; rollout events go out from the audit log
        // as it is written (docs/designs/0012).
        let metrics = traffic.controllerMetrics
        let notifier = try NotificationWiring.notifier(target.environment, manifestRoot: target.loaded.root, logger: logger, registry: metrics.registry)
        let changes = FleetChanges()
        let convergence = try Convergence(
            watching: target, configuration: configuration, logger: logger, metrics: metrics, extraProviders: traffic.providers,
            wrappingDriver: { traffic.driver($0) },
            wrappingStore: { raw, driver in
                let signalled = ChangeSignallingStore(raw, changes: changes)
                let notifying: any RolloutStore = notifier.map { NotifyingRolloutStore(signalled, notifier: $0) } ?? signalled
                // Watched here too, so a save writes the route object only when the server's weights change.
                let routes = (driver as? KubernetesDriver).map { GatewayRouteObject(client: $0.client, namespace: $0.options.controllerNamespace, configuration: $0.options.cache) }
                routes?.start()
                return traffic.store(notifying, raw: raw, routeObject: routes)
            })
        let (driver, store, controller) = (convergence.driver, convergence.store, convergence.controller)
        traffic.desired.value = { await controller.snapshot()?.desired }
        if convergence.source?.watching == false {
            logger.notice("inotify is not available; the manifests are checked by reading them every --poll", metadata: ["path": "\(path)"])
        }

        // Supervision (adoption of running instances, restarts) lasts as long as the controller runs.
        try await convergence.start()
        // Draining marks a previous controller left (design 0018) are lifted as this one starts acting.
        let acting = BeforeRunning(inner: controller) { await traffic.clearStaleMarks() }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: acting)]
        var elector: LeaderElector?
        if leaderElect ?? (target.environment.driver == .kubernetes) {
            let e = try convergence.leaderElector(leaseName: leaseName)
            services = [.init(service: LeaderElectedService(elector: e, inner: acting, logger: logger))]
            elector = e
        }
        let leaderElector = elector
        if let notifier { services.append(.init(service: notifier)) }
        if !metricsAddress.isEmpty || gateway != nil {
            // One HTTP stack (docs/designs/0005-gateway.md): the metrics address serves the operational
            // endpoints, the gateway address the MCP routes and the same operational endpoints.
            let environment = target.environment
            var ops = OpsEndpoints(
                // A standby replica (not holding the Lease) is healthy and ready: it is waiting, not failing.
                ready: {
                    if await controller.readiness().ready { return true }
                    guard let elector = leaderElector else { return false }
                    return await !elector.isLeader
                },
                notReady: { await controller.readiness().reason },
                metrics: { controller.metrics.exposition() },
                servers: {
                    guard let live = await controller.lastLive() else { return [] }
                    return GatewayWiring.serverHealth(live: live, desired: await controller.snapshot()?.desired, gateway: gateway)
                })
            ops.routes = DashboardWiring.dashboard(controller: controller, driver: driver, store: store, changes: changes, target: target, gateway: gateway).routes
            // The manifest source's fingerprint (an inotify watch) says when the files changed; no walk of them per refresh.
            let source = convergence.source
            let filesFingerprint = source.map { source in { @Sendable in source.fingerprint() } }
            let policies = GatewayPolicies(path: path, environment: environment, manifestRoot: target.loaded.root, fingerprint: filesFingerprint)
            // A missing token file stops here, naming the secret reference (never opening the route).
            if gateway != nil { _ = try await policies.current() }
            let http = try GatewayWiring.server(environment: environment, manifestRoot: target.loaded.root, traffic: traffic,
                                                ops: ops, accessLog: accessLog, logger: logger)
            do {
                if !metricsAddress.isEmpty { try await http.listen(metricsAddress, mcp: metricsAddress == gateway) }
                if let gateway, gateway != metricsAddress { try await http.listen(gateway, mcp: true) }
            } catch {
                await http.shutdown()
                throw CommandFailure(message: "\(error)")
            }
            let refresh: Duration = environment.driver == .kubernetes ? .seconds(2) : .milliseconds(500)
            let routes: @Sendable () async throws -> RouteTable = {
                let live = try await driver.observe(.all)
                let table = await GatewayWiring.routes(driver: driver, live: live, policies: try await policies.current())
                return GatewayWiring.weighted(table, desired: await controller.snapshot()?.desired, records: try await store.records())
            }
            // What the table is built from, cheaply: rebuilt when the driver's live state, the rollout records
            // (written through `changes`' store), the manifests or the desired state changed, else every 15 s.
            // A driver that cannot tell (nil generation) rebuilds every `refresh`, as before.
            let inputs: @Sendable () async -> String? = {
                guard let live = await driver.liveGeneration() else { return nil }
                return "\(live)|\(changes.generation)|\(source?.fingerprint() ?? "")|\(await controller.snapshot()?.fingerprint ?? "")"
            }
            let service = GatewayService(server: http, refresh: refresh, logger: logger, routes: gateway == nil ? nil : routes, inputs: inputs)
            await service.refreshOnce()
            services.append(.init(service: service))
        }
        if let gitPull {
            services.append(.init(service: GitPuller(directory: path, intervalMs: try DurationArgument.ms(gitPull, option: "--git-pull"),
                                                     clock: SystemClock(), logger: logger)))
        }
        let timeoutMs = try DurationArgument.ms(timeout, option: "--timeout")
        let progress = ProgressReporter(controller: controller, interactive: interactive, once: once, timeoutMs: timeoutMs, gateway: gateway)
        services.append(.init(service: progress, successTerminationBehavior: once ? .gracefullyShutdownGroup : .ignore))

        // Everything is wired: the start-up catalog is not read again (the controller's source renders the files).
        target.dropCatalog()
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        try await group.run()

        if once {
            // Read back what runs and the final bookkeeping (the controller's last observation may predate its last step).
            let live = try await target.observe(driver, store)
            writeStdout(StatusCommand.table(live, desired: await controller.snapshot()?.desired, gateway: gateway))
        }
        let stop = stopOnExit ?? (target.environment.driver == .local && !once)
        // Supervision ends with the controller; instances stay recorded either way.
        try await convergence.finish(stoppingInstances: stop)
        if stop && interactive { writeStdout("Stopped the fleet's instances (--no-stop-on-exit keeps them running).\n") }
        if once, let failure = try await convergence.outcome(settled: await controller.isSettled(), timeout: timeout) {
            throw failure
        }
    }
}

/// Live progress on a terminal (replicas ready per server while anything moves, then a status table),
/// and the end condition of `--once`.
struct ProgressReporter: Service {
    let controller: Controller
    let interactive: Bool
    let once: Bool
    let timeoutMs: Int64
    var gateway: String?

    func run() async throws {
        // A daemon (`run` without a terminal, not `--once`) shows nothing and never ends on its own: no
        // look at the fleet four times a second (O(servers) each).
        if !interactive && !once {
            try? await gracefulShutdown()
            return
        }
        let start = ContinuousClock.now
        var last = ""
        var printedTable = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let settled = await controller.isSettled()
            if interactive, let live = await controller.lastLive() {
                let desired = await controller.snapshot()?.desired
                let line = Self.progressLine(live, desired: desired)
                if !settled && line != last {
                    writeStdout(line + "\n")
                    last = line
                    printedTable = false
                } else if settled && !printedTable {
                    writeStdout(StatusCommand.table(live, desired: desired, gateway: gateway))
                    printedTable = true
                    last = ""
                }
            }
            if once && settled { return }
            if once && ContinuousClock.now - start > .milliseconds(timeoutMs) { return }
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(250)) } } catch { return }
        }
    }

    static func progressLine(_ live: LiveState, desired: DesiredState?) -> String {
        let parts = live.servers.sorted { $0.name < $1.name }.compactMap { s -> String? in
            let want = desired?.server(s.name)?.replicas ?? s.totalReplicas
            let target = s.targetRevision.map { " → \($0)" } ?? ""
            let revs = s.revisions.filter { $0.replicas > 0 }.map { "\($0.revision) \($0.ready)/\($0.replicas)" }.joined(separator: ", ")
            guard s.phase != .stable || s.readyReplicas != want || s.revisions.filter({ $0.replicas > 0 }).count > 1 else { return nil }
            return "\(s.name) [\(s.phase.rawValue)\(target)] \(revs) (want \(want))"
        }
        return parts.isEmpty ? "converging…" : parts.joined(separator: " · ")
    }
}

/// Runs `before`, then the service (e.g. clean-up a controller does once it leads).
struct BeforeRunning: Service {
    let inner: any Service
    let before: @Sendable () async -> Void

    func run() async throws {
        await before()
        try await inner.run()
    }
}
