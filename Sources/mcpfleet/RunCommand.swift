import ArgumentParser
import FleetController
import FleetCore
import FleetGateway
import FleetKubernetes
import FleetHTTP
import FleetLocal
import FleetYAML
import Foundation
import Logging
import ServiceLifecycle

/// A catalog directory, the environment chosen in it and the runtime behind it: what every
/// controller-facing command starts from.
struct FleetTarget {
    var path: String
    var loaded: LoadedCatalog
    var environment: Environment

    static func load(path: String, env: String?) throws -> FleetTarget {
        let loaded = LoadedCatalog.load(path: path)
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            writeStderr(loaded.renderDiagnostics(color: OutputOptions.stderrColor(false)))
            throw CommandFailure(message: "the catalog in \(path) is invalid")
        }
        return FleetTarget(path: path, loaded: loaded, environment: try PlanCommand.selectEnvironment(loaded.catalog, env))
    }

    func runtime() throws -> (driver: any RuntimeDriver, store: any RolloutStore) {
        try DriverFactory.make(environment: environment, manifestRoot: loaded.root)
    }

    var desired: DesiredState { Renderer.desiredState(loaded.catalog, environment: environment) }

    /// What runs, as the driver sees it, with the controller's bookkeeping folded in (its probe verdicts
    /// only while a controller is alive to have made them).
    func observe(_ driver: any RuntimeDriver, _ store: any RolloutStore) async throws -> LiveState {
        do {
            var observed = try await driver.observe()
            observed.environment = environment.name
            observed.driver = environment.driver.rawValue
            return observed.merging(try await store.records(), probes: try await ControllerPresence.read(store).alive)
        } catch {
            throw CommandFailure(message: "cannot observe environment \(environment.name) (\(environment.driver.rawValue)): \(error)")
        }
    }

    /// Renders the catalog as it is on disk now (the controller's source calls this on every change).
    static func snapshot(path: String, environmentName: String) throws -> DesiredStateSnapshot {
        let loaded = LoadedCatalog.load(path: path)
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            let first = loaded.diagnostics.items.first { $0.severity == .error }
            throw CommandFailure(message: "the catalog in \(path) is invalid (\(first.map { DiagnosticFormatter.redact($0.message, loaded.catalog.sensitiveValues) } ?? "see `mcpfleet validate`")); keeping the last good state")
        }
        guard let environment = loaded.catalog.environment(environmentName) else {
            throw CommandFailure(message: "environment \(environmentName) is no longer in the catalog")
        }
        let desired = Renderer.desiredState(loaded.catalog, environment: environment)
        let verdicts = try SupplyChainWiring(catalog: loaded.catalog, baseDirectory: loaded.baseDirectory).verdicts(for: desired, environment: environment)
        return DesiredStateSnapshot(desired: desired, fingerprint: DirectoryFingerprint.compute(path), commit: GitSource.manifestCommit(path), verdicts: verdicts)
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

    @Option(name: .long, help: "Keys reconciled concurrently.")
    var workers: Int = 4

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        let environmentName = target.environment.name
        let (driver, store) = try target.runtime()
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
        configuration.workers = max(1, workers)
        let path = self.path
        let transport = try CurlTransport(CurlTransportConfiguration(connectTimeout: .seconds(2), proxy: .none))
        let gateway = GatewayWiring.address(flag: gatewayAddress, environment: target.environment, once: once)
        // With the gateway in this process: replicas drain before they stop, tool calls feed the `gateway` analysis provider (design 0009).
        let traffic = GatewayWiring.Traffic(environment: target.environment, serving: gateway != nil, logger: logger)
        let controller = Controller(
            source: { try FleetTarget.snapshot(path: path, environmentName: environmentName) },
            sourceFingerprint: { DirectoryFingerprint.compute(path) },
            driver: traffic.driver(driver), store: traffic.store(store, routeObject: (driver as? KubernetesDriver).map { GatewayRouteObject(client: $0.client, namespace: $0.options.controllerNamespace) }), clock: SystemClock(), logger: logger, configuration: configuration, transport: transport,
            metrics: traffic.controllerMetrics, extraProviders: traffic.providers)
        traffic.desired.value = { await controller.snapshot()?.desired }

        // Supervision (adoption of running instances, restarts) lasts as long as the controller runs.
        if let local = driver as? LocalDriver {
            do { try await local.start() } catch { throw CommandFailure(message: "environment \(environmentName): \(error)") }
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: controller)]
        var elector: LeaderElector?
        if leaderElect ?? (target.environment.driver == .kubernetes) {
            guard let kube = driver as? KubernetesDriver else {
                throw CommandFailure(message: "--leader-elect needs the Kubernetes driver (environment \(environmentName) uses \(target.environment.driver.rawValue))")
            }
            let identity = ProcessInfo.processInfo.environment["POD_NAME"].flatMap { $0.isEmpty ? nil : $0 }
            let e = LeaderElector(client: kube.client, namespace: kube.options.controllerNamespace, name: leaseName, identity: identity)
            services = [.init(service: LeaderElectedService(elector: e, inner: controller, logger: logger))]
            elector = e
        }
        let leaderElector = elector
        if !metricsAddress.isEmpty || gateway != nil {
            // One HTTP stack (docs/designs/0005-gateway.md): the metrics address serves the operational
            // endpoints, the gateway address the MCP routes and the same operational endpoints.
            let environment = target.environment
            let ops = OpsEndpoints(
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
            let policies = GatewayPolicies(path: path, environment: environment, manifestRoot: target.loaded.root)
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
                let live = try await driver.observe()
                let table = await GatewayWiring.routes(driver: driver, live: live, policies: try await policies.current())
                return GatewayWiring.weighted(table, desired: await controller.snapshot()?.desired, records: try await store.records())
            }
            let service = GatewayService(server: http, refresh: refresh, logger: logger, routes: gateway == nil ? nil : routes)
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

        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger))
        try await group.run()

        if once {
            // Read back what runs and the final bookkeeping (the controller's last observation may predate its last step).
            let live = try await target.observe(driver, store)
            writeStdout(StatusCommand.table(live, desired: await controller.snapshot()?.desired, gateway: gateway))
        }
        let stop = stopOnExit ?? (target.environment.driver == .local && !once)
        if let local = driver as? LocalDriver {
            // Supervision ends with the controller; instances stay recorded either way.
            await local.shutdown(stopInstances: stop)
        } else if stop {
            try await Self.stopInstances(driver: driver, desired: target.desired)
        }
        if stop && interactive { writeStdout("Stopped the fleet's instances (--no-stop-on-exit keeps them running).\n") }
        if once {
            if !(await controller.isSettled()) {
                throw CommandFailure(message: "not converged within \(timeout)", exitCode: 1)
            }
            // Settled is not converged when a revision failed with nothing to roll back to: say why, exit 1.
            let desiredNames = Set(await controller.snapshot()?.desired.servers.map(\.name) ?? [])
            let failed = try await store.records().filter { $0.phase == .failed && desiredNames.contains($0.server) }
            if !failed.isEmpty {
                throw CommandFailure(message: failed.map { "\($0.server): \($0.message ?? "failed")" }.joined(separator: "; "), exitCode: 1)
            }
        }
    }

    /// Scales every revision of every managed server to zero (definitions and bookkeeping stay, so the next
    /// `run` brings the same revisions back).
    static func stopInstances(driver: any RuntimeDriver, desired: DesiredState) async throws {
        let live = try await driver.observe()
        for s in live.servers where s.managed {
            for r in s.revisions where r.replicas > 0 {
                var spec = desired.server(s.name) ?? DesiredServer(name: s.name, tenant: s.tenant ?? "default", version: r.version ?? "?")
                spec.revision = r.revision
                try await driver.scale(spec, replicas: 0)
            }
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
