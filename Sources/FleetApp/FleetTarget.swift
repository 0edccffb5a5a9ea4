import FleetController
import FleetCore
import FleetYAML
import Foundation

/// A catalog directory, the environment chosen in it and the runtime behind it: what every
/// controller-facing command starts from.
public struct FleetTarget: Sendable {
    public var path: String
    public var loaded: LoadedCatalog
    public var environment: Environment

    /// Loads and validates the catalog; invalid, it fails with its diagnostics (file:line:col) as details.
    public static func load(path: String, env: String?, color: Bool = false) throws -> FleetTarget {
        let loaded = CatalogLoader.load(path: path)
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            throw FleetFailure(message: "the catalog in \(path) is invalid", details: loaded.renderDiagnostics(color: color))
        }
        return FleetTarget(path: path, loaded: loaded, environment: try selectEnvironment(loaded.catalog, env))
    }

    /// The environment named, or the only one.
    public static func selectEnvironment(_ catalog: Catalog, _ name: String?) throws -> Environment {
        if let name {
            guard let e = catalog.environment(name) else {
                throw FleetFailure(message: "no environment `\(name)` in the catalog (defined: \(catalog.environments.map(\.name).joined(separator: ", ")))")
            }
            return e
        }
        guard catalog.environments.count == 1, let only = catalog.environments.first else {
            let names = catalog.environments.map(\.name).joined(separator: ", ")
            throw FleetFailure(message: catalog.environments.isEmpty
                ? "the catalog defines no Environment"
                : "the catalog defines several environments (\(names)); choose one with --env")
        }
        return only
    }

    /// Lets go of the loaded catalog (every file's text, the parsed documents, the diagnostics), keeping
    /// the path, the root and the environment: what a long-running command needs once it is wired up (the
    /// controller's `ManifestSource` reads and renders the files itself). About 2 MiB at 1,000 servers.
    public mutating func dropCatalog() {
        loaded.set = ManifestSet(root: loaded.set.root)
        loaded.catalog = Catalog()
        loaded.diagnostics = Diagnostics()
    }

    public func runtime(resyncInterval: Duration? = nil) throws -> (driver: any RuntimeDriver, store: any RolloutStore) {
        try DriverFactory.make(environment: environment, manifestRoot: loaded.root, resyncInterval: resyncInterval)
    }

    public var desired: DesiredState { Renderer.desiredState(loaded.catalog, environment: environment) }

    /// Renders the catalog as it is on disk now, from scratch (one-shot commands; the controller's
    /// source is a `ManifestSource`, which re-renders only what changed).
    public static func snapshot(path: String, environmentName: String) throws -> DesiredStateSnapshot {
        try ManifestSource(path: path, environmentName: environmentName).snapshot()
    }

    /// The same from the catalog this target loaded (no second read of the files).
    public func snapshot() throws -> DesiredStateSnapshot {
        try ManifestSource(path: path, environmentName: environment.name).snapshot(loaded, fingerprint: DirectoryFingerprint.compute(path))
    }
}
