import FleetController
import FleetCore
import FleetYAML
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The controller's source for a manifest directory: `fingerprint()` says cheaply whether anything
/// changed (an inotify watch of the directory tree; without inotify, a walk of the files — the
/// polling fallback), and `snapshot()` renders the catalog, re-rendering only the servers whose
/// documents (or SLO) changed since the last snapshot (`Renderer.desiredState(_:environment:reuse:)`).
/// Supply-chain verdicts and the manifest commit are taken afresh on every snapshot.
public final class ManifestSource: @unchecked Sendable {
    public let path: String
    public let environmentName: String
    private let lock = NSLock()
    /// One server's last rendering and what it was rendered from. Boxed: a dictionary stores its values
    /// inline in every bucket, and these structs are kilobytes (issue 14: ~6 MiB of mostly empty buckets
    /// at 1,000 servers, held for the life of `run`).
    private final class Rendered {
        let server: Server
        let slo: DesiredSLO?
        let desired: DesiredServer
        init(_ server: Server, _ slo: DesiredSLO?, _ desired: DesiredServer) {
            self.server = server
            self.slo = slo
            self.desired = desired
        }
    }
    private var rendered: [String: Rendered] = [:]
    private var watcher: DirectoryWatcher?
    private var cachedFingerprint: String?
    private var fingerprintedAt: ContinuousClock.Instant?
    /// How long a fingerprint stands without a walk of the files even when inotify reports nothing
    /// (files reached through symbolic links, a watch limit hit): the same bound as a resync.
    public var rewalkInterval: Duration = .seconds(30)
    /// Servers rendered by the last `snapshot()` (the rest were reused); for tests and logs.
    public private(set) var lastRendered = 0
    /// Whether changes are noticed through inotify (false: every `fingerprint()` walks the files).
    public var watching: Bool { lock.withLock { watcher != nil } }

    /// `watch`: use inotify when the platform has it (the controller's source); one-shot renders pass false.
    public init(path: String, environmentName: String, watch: Bool = false) {
        self.path = path
        self.environmentName = environmentName
        if watch { watcher = DirectoryWatcher(root: path) }
    }

    /// A content fingerprint of the manifest files (`DirectoryFingerprint`), computed again only when
    /// the watch saw a change (or `rewalkInterval` passed); without a watch, every call walks the files.
    public func fingerprint() -> String {
        lock.lock()
        defer { lock.unlock() }
        let now = ContinuousClock.now
        if let watcher, let cached = cachedFingerprint, let at = fingerprintedAt, now - at < rewalkInterval, !watcher.changed() {
            return cached
        }
        let fp = DirectoryFingerprint.compute(path)
        cachedFingerprint = fp
        fingerprintedAt = now
        return fp
    }

    /// Loads and renders the catalog as it is on disk now; servers whose documents did not change keep
    /// their previous rendering. An invalid catalog fails naming its first error (secrets redacted).
    public func snapshot() throws -> DesiredStateSnapshot {
        let fingerprint = self.fingerprint()
        return try snapshot(CatalogLoader.load(path: path), fingerprint: fingerprint)
    }

    /// The same from a catalog loaded already (whose files had `fingerprint`).
    public func snapshot(_ loaded: LoadedCatalog, fingerprint: String) throws -> DesiredStateSnapshot {
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            let first = loaded.diagnostics.items.first { $0.severity == .error }
            throw FleetFailure(message: "the catalog in \(path) is invalid (\(first.map { DiagnosticFormatter.redact($0.message, loaded.catalog.sensitiveValues) } ?? "see `mcpfleet validate`")); keeping the last good state")
        }
        guard let environment = loaded.catalog.environment(environmentName) else {
            throw FleetFailure(message: "environment \(environmentName) is no longer in the catalog")
        }
        let desired = render(loaded.catalog, environment: environment)
        let verdicts = try SupplyChainWiring(catalog: loaded.catalog, baseDirectory: loaded.baseDirectory).verdicts(for: desired, environment: environment)
        let contracts = try ContractWiring.expectations(loaded.catalog, environment: environment, baseDirectory: loaded.baseDirectory)
        return DesiredStateSnapshot(desired: desired, fingerprint: fingerprint, commit: GitSource.manifestCommit(path), verdicts: verdicts,
                                    contracts: contracts)
    }

    /// The incremental render: the previous rendering of a server is reused while its document and SLO
    /// are what they were.
    func render(_ catalog: Catalog, environment: Environment) -> DesiredState {
        lock.lock()
        let previous = rendered
        lock.unlock()
        var count = 0
        let desired = Renderer.desiredState(catalog, environment: environment) { server, slo in
            if let p = previous[server.name], p.slo == slo, p.server == server { return p.desired }
            count += 1
            return nil
        }
        var next: [String: Rendered] = [:]
        next.reserveCapacity(desired.servers.count)
        var byName: [String: Int] = [:]
        byName.reserveCapacity(catalog.servers.count)
        for (i, s) in catalog.servers.enumerated() { byName[s.name] = i }
        for d in desired.servers {
            if let i = byName[d.name] { next[d.name] = Rendered(catalog.servers[i], d.slo, d) }
        }
        lock.lock()
        rendered = next
        lastRendered = count
        lock.unlock()
        return desired
    }
}

/// Notices changes under a directory tree through inotify (Linux): every directory but hidden ones
/// (`.git`, state directories) is watched; `changed()` drains the events without blocking. Nil where
/// inotify is not available (the caller then walks the files on every check).
final class DirectoryWatcher: @unchecked Sendable {
    private let fd: Int32
    private let root: String
    private var watched: Set<String> = []

    init?(root: String) {
        #if os(Linux)
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.root = root
        guard addWatches() else {
            close(fd)
            return nil
        }
        #else
        return nil
        #endif
    }

    deinit {
        #if os(Linux)
        close(fd)
        #endif
    }

    /// Watches every directory of the tree not yet watched; false when the root cannot be watched.
    @discardableResult
    private func addWatches() -> Bool {
        #if os(Linux)
        let mask = UInt32(IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF)
        var directories = [root]
        let fm = FileManager.default
        if let walker = fm.enumerator(atPath: root) {
            while let rel = walker.nextObject() as? String {
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), isDir.boolValue else { continue }
                if (rel as NSString).lastPathComponent.hasPrefix(".") {
                    walker.skipDescendants()
                    continue
                }
                directories.append(root + "/" + rel)
            }
        }
        for d in directories where !watched.contains(d) {
            if inotify_add_watch(fd, d, mask) >= 0 {
                watched.insert(d)
            } else if d == root {
                return false
            }
        }
        return true
        #else
        return false
        #endif
    }

    /// True when anything happened in the tree since the last call (new directories are watched from now on).
    func changed() -> Bool {
        #if os(Linux)
        var any = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            any = true
        }
        if any {
            // Directories created, moved in or re-created since: watched from now on (adding a watch to a
            // directory already watched only returns its watch again).
            watched = []
            addWatches()
        }
        return any
        #else
        return true
        #endif
    }
}
