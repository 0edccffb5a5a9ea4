import FleetCore
import FleetKubernetes
import FleetLocal
import FleetState
import FleetSystemd
import FleetYAML
import Foundation

/// The composition root's choice of driver and rollout store for an environment.
public enum DriverFactory {
    /// `resyncInterval`: the controller's (`run --resync`); a Kubernetes watch that says nothing for that
    /// long (at least 10 s) is taken for dead and relisted.
    public static func make(environment: Environment, manifestRoot root: String, resyncInterval: Duration? = nil) throws -> (driver: any RuntimeDriver, store: any RolloutStore) {
        do {
            return try open(environment: environment, manifestRoot: root, resyncInterval: resyncInterval)
        } catch let e as StateDamage {
            throw FleetFailure(message: "\(e); nothing was changed. Restore the last backup (`mcpfleet state restore FILE -C \(root) --env \(environment.name)`), "
                + "or move the file aside (with its -wal and -shm files) to start from empty state; running instances are then not adopted")
        } catch let e as LocalStateLost {
            throw FleetFailure(message: "\(e). Their revisions, rollout history and audit log went with the database. "
                + "Restore it (`mcpfleet state restore FILE -C \(root) --env \(environment.name)`; the next `run` adopts them), "
                + "or stop them (`kill -TERM -- \(e.processes.map { "-\($0.pid)" }.joined(separator: " "))`) and run again to start from empty state")
        }
    }

    /// The state database of a host environment (absolute), nil for Kubernetes (state in the cluster).
    public static func stateDatabase(environment: Environment) -> String? {
        guard environment.driver.isHost else { return nil }
        let dir = environment.effectiveStateDir
        let absolute = dir.hasPrefix("/") ? dir : FileManager.default.currentDirectoryPath + "/" + dir
        return URL(fileURLWithPath: absolute).standardizedFileURL.path + "/state.db"
    }

    private static func open(environment: Environment, manifestRoot root: String, resyncInterval: Duration?) throws -> (driver: any RuntimeDriver, store: any RolloutStore) {
        // Drivers write the root into units and command lines: always hand them an absolute path.
        let manifestRoot = URL(fileURLWithPath: root, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
        switch environment.driver {
        case .local:
            // Sensitive plain values are never in the driver's state: a revision it reloads is made whole
            // from the manifests as they are when it needs them (their digests must still match).
            let name = environment.name
            let driver = try LocalDriver(environment: environment, manifestRoot: manifestRoot, sensitiveValues: {
                let loaded = CatalogLoader.load(path: manifestRoot)
                guard !loaded.diagnostics.hasErrors, let e = loaded.catalog.environment(name) else { return [:] }
                return Renderer.sensitiveValues(Renderer.desiredState(loaded.catalog, environment: e))
            })
            return (driver, try driver.rolloutStore())
        case .systemd:
            // Units live in the runtime; the rollout bookkeeping in SQLite beside the driver's own files.
            let stateDirectory = environment.effectiveStateDir
            let driver = try SystemdDriver(environment: environment, manifestRoot: manifestRoot, stateDirectory: stateDirectory)
            let store = try SQLiteRolloutStore(path: stateDirectory + "/state.db")
            // An empty store beside units mcpfleet wrote: the database was lost (history, failures, pins).
            let servers = try store.holdsNothing() ? driver.managedServersOnDisk() : []
            if !servers.isEmpty {
                throw FleetFailure(message: "the state database \(store.database.path) is missing or empty, but mcpfleet's units for \(servers.count) server(s) "
                    + "(\(servers.prefix(5).joined(separator: ", "))\(servers.count > 5 ? ", …" : "")) are in \(driver.unitDirectory): their rollout history, "
                    + "failure records and pins went with the database. Restore it (`mcpfleet state restore FILE -C \(root) --env \(environment.name)`), "
                    + "or, without a backup, `mcpfleet state adopt -C \(root) --env \(environment.name)` to start from empty state and adopt the running units")
            }
            return (driver, store)
        case .kubernetes:
            let config: ClusterConfig
            do {
                config = try ClusterConfig.resolve(settings: environment.kubernetes, kubeconfig: ProcessInfo.processInfo.environment["MCPFLEET_KUBECONFIG"])
            } catch {
                throw FleetFailure(message: "environment \(environment.name): \(error)")
            }
            var options = KubernetesDriverOptions()
            if let ns = ProcessInfo.processInfo.environment["MCPFLEET_NAMESPACE"], !ns.isEmpty { options.controllerNamespace = ns }
            // The client-side rate limit (default 50 requests per second, burst 100), for clusters that allow more.
            if let qps = try Self.positive("MCPFLEET_KUBE_QPS", { Double($0) }) { options.qps = qps }
            if let burst = try Self.positive("MCPFLEET_KUBE_BURST", { Int($0) }) { options.burst = burst }
            if let resyncInterval { options.cache.stallTimeout = max(resyncInterval, .seconds(10)) }
            let driver = try KubernetesDriver(environment: environment, config: config, options: options)
            // The bookkeeping lives in the cluster too, so any controller replica (after a leader hand-over) sees it.
            // Its cache (a watch of the rollout records) starts and stops with the driver's.
            return (driver, driver.rolloutStore())
        }
    }

    /// A positive number from an environment variable (nil when unset); anything else is an error naming it.
    static func positive<T: Comparable & Numeric>(_ name: String, _ parse: (String) -> T?) throws -> T? {
        guard let text = ProcessInfo.processInfo.environment[name], !text.isEmpty else { return nil }
        guard let value = parse(text), value > 0 else { throw FleetFailure(message: "\(name)=\(text): expected a positive number") }
        return value
    }
}
