import FleetController
import FleetCore
import FleetHTTP
import FleetKubernetes
import Foundation
import Logging

/// The one converge path `run`, `run --once`, `apply DIR` and `apply plan.json` share: a controller
/// over an environment's driver and rollout store, the driver's lifecycle (`start`, `shutdown`)
/// through `RuntimeDriver`, and what "converged" means at the end.
public final class Convergence: Sendable {
    public let environment: Environment
    public let driver: any RuntimeDriver
    public let store: any RolloutStore
    public let controller: Controller
    /// The watched manifest directory (`run`); nil for a fixed desired state (`apply`).
    public let source: ManifestSource?

    /// `run DIR`: the directory is watched (inotify, polling as the fallback) and rendered
    /// incrementally; a changed server is reconciled ahead of the rest.
    /// `wrappingStore` decorates the rollout store every part of the run uses (the dashboard's change
    /// signal, notifications).
    public convenience init(watching target: FleetTarget, configuration: ControllerConfiguration, logger: Logger,
                            metrics: ControllerMetrics = ControllerMetrics(),
                            extraProviders: [AnalysisProviderKind: any AnalysisProvider] = [:],
                            wrappingDriver: (any RuntimeDriver) -> any RuntimeDriver = { $0 },
                            wrappingStore: (any RolloutStore, _ driver: any RuntimeDriver) throws -> any RolloutStore = { store, _ in store }) throws {
        let (driver, rawStore) = try target.runtime(resyncInterval: .milliseconds(configuration.resyncIntervalMs))
        let store = try wrappingStore(rawStore, driver)
        let source = ManifestSource(path: target.path, environmentName: target.environment.name, watch: true)
        try self.init(environment: target.environment, driver: driver, store: store, source: source,
                      snapshot: { try source.snapshot() }, fingerprint: { source.fingerprint() },
                      configuration: configuration, logger: logger, metrics: metrics, extraProviders: extraProviders, acting: wrappingDriver(driver))
    }

    /// `apply DIR`, `apply plan.json`: one desired state, fixed for the run. Its fingerprint never
    /// changes, so the controller loads it once and syncs again only at the resync interval (not at
    /// every poll, which queued every server again each second).
    public convenience init(environment: Environment, driver: any RuntimeDriver, store: any RolloutStore, fixed snapshot: DesiredStateSnapshot,
                            configuration: ControllerConfiguration, logger: Logger) throws {
        let fingerprint = snapshot.fingerprint
        // No `/metrics` is served: the per-server series would cost O(N²) to build for nothing.
        try self.init(environment: environment, driver: driver, store: store, source: nil, snapshot: { snapshot }, fingerprint: { fingerprint },
                      configuration: configuration, logger: logger, metrics: ControllerMetrics(perServerSeries: false))
    }

    init(environment: Environment, driver: any RuntimeDriver, store: any RolloutStore, source: ManifestSource?,
         snapshot: @escaping Controller.Source, fingerprint: @escaping @Sendable () async throws -> String,
         configuration: ControllerConfiguration, logger: Logger, metrics: ControllerMetrics = ControllerMetrics(),
         extraProviders: [AnalysisProviderKind: any AnalysisProvider] = [:], acting: (any RuntimeDriver)? = nil) throws {
        self.environment = environment
        self.driver = driver
        self.store = store
        self.source = source
        let transport = try CurlTransport(CurlTransportConfiguration(connectTimeout: .seconds(2), proxy: .none))
        // The controller acts through `acting` (e.g. a draining wrapper); the lifecycle is the driver's own.
        controller = Controller(source: snapshot, sourceFingerprint: fingerprint, driver: acting ?? driver, store: store, clock: SystemClock(),
                                logger: logger, configuration: configuration, transport: transport, metrics: metrics, extraProviders: extraProviders)
    }

    /// Begins keeping live state current before the controller runs (the local driver adopts what a
    /// previous controller left running; Kubernetes lists and watches). A failure names the environment
    /// (e.g. another process supervising the same state directory). The controller's own `start` is then a no-op.
    public func start() async throws {
        do { try await driver.start() } catch {
            throw FleetFailure(message: "environment \(environment.name): \(error)")
        }
    }

    /// `apply`: runs the controller until every server is settled or `timeoutMs` passes; true when settled.
    public func runUntilSettled(timeoutMs: Int64) async throws -> Bool {
        let controller = self.controller
        let task = Task { try await controller.run() }
        let start = ContinuousClock.now
        var settled = false
        while ContinuousClock.now - start < .milliseconds(timeoutMs) {
            if await controller.isReady(), await controller.isSettled() { settled = true; break }
            try await Task.sleep(for: .milliseconds(200))
        }
        task.cancel()
        _ = await task.result
        return settled
    }

    /// After the controller stopped: ends the driver's background work; with `stoppingInstances`, the
    /// instances too (they stay defined, so the next `run` brings the same revisions back).
    public func finish(stoppingInstances: Bool) async throws {
        try await driver.shutdown(stoppingInstances: stoppingInstances, desired: await controller.snapshot()?.desired)
    }

    /// Why a settled converge did not converge: not settled within `timeout`, or a server's revision
    /// failed with nothing to roll back to (settled, not converged). Nil when converged.
    public func outcome(settled: Bool, timeout: String, failedCounts: Bool = true) async throws -> FleetFailure? {
        if !settled { return FleetFailure(message: "not converged within \(timeout)", exitCode: 1) }
        guard failedCounts else { return nil }
        let desiredNames = Set(await controller.snapshot()?.desired.servers.map(\.name) ?? [])
        let failed = try await store.records().filter { $0.phase == .failed && desiredNames.contains($0.server) }
        if failed.isEmpty { return nil }
        return FleetFailure(message: failed.map { "\($0.server): \($0.message ?? "failed")" }.joined(separator: "; "), exitCode: 1)
    }

    /// The Lease elector for `--leader-elect` (the Kubernetes driver only: the Lease lives in its cluster).
    public func leaderElector(leaseName: String) throws -> LeaderElector {
        guard let kube = driver as? KubernetesDriver else {
            throw FleetFailure(message: "--leader-elect needs the Kubernetes driver (environment \(environment.name) uses \(environment.driver.rawValue))")
        }
        let identity = ProcessInfo.processInfo.environment["POD_NAME"].flatMap { $0.isEmpty ? nil : $0 }
        return LeaderElector(client: kube.client, namespace: kube.options.controllerNamespace, name: leaseName, identity: identity)
    }
}
