import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Verdicts keyed by everything they depend on, so an unchanged artifact with unchanged evidence
/// under unchanged policies is not verified again — in this process, and across runs when a
/// `path` is given.
///
/// The key is SHA-256 over: the artifact digest, the path and SHA-256 of every evidence file
/// (signature, SBOM, scan, provenance), the other evidence fields (server, version, image,
/// command path, declared digest) and every policy's `fingerprint` (which covers its trusted
/// keys' fingerprints). Any change to a signature, SBOM, scan report, key or policy is a new key.
///
/// Thread-safe. Persistence is explicit: call `save()`; it writes a temporary file next to `path`
/// and renames it over `path`, so a crash never leaves a torn cache file.
public final class VerificationCache: @unchecked Sendable {
    /// 2: evidence recorded as FleetCore's `EvidenceSummary` (scan counts by named severity).
    public static let formatVersion = 3

    public let path: String?
    private let lock = NSLock()
    private var entries: [String: GateVerdict] = [:]
    private var used: Set<String> = []
    private var _hits = 0
    private var _misses = 0
    /// Why the file at `path` could not be loaded (the cache then starts empty), if it could not.
    public private(set) var loadError: String?

    private struct File: Codable {
        var version: Int
        var entries: [String: GateVerdict]
    }

    /// An in-memory cache, or one backed by the JSON file at `path` (loaded now if it exists).
    public init(path: String? = nil) {
        self.path = path
        guard let path, FileManager.default.fileExists(atPath: path) else { return }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let file = try JSONDecoder().decode(File.self, from: data)
            if file.version == Self.formatVersion {
                entries = file.entries
            } else {
                loadError = "cache file \(path) has format version \(file.version), expected \(Self.formatVersion); starting empty"
            }
        } catch {
            loadError = "cache file \(path) could not be read (\(error)); starting empty"
        }
    }

    public var hits: Int { lock.withLock { _hits } }
    public var misses: Int { lock.withLock { _misses } }
    public var count: Int { lock.withLock { entries.count } }

    public func lookup(_ key: String) -> GateVerdict? {
        lock.withLock {
            if let v = entries[key] {
                _hits += 1
                used.insert(key)
                return v
            }
            _misses += 1
            return nil
        }
    }

    public func store(_ verdict: GateVerdict, forKey key: String) {
        lock.withLock {
            entries[key] = verdict
            used.insert(key)
        }
    }

    public func removeAll() {
        lock.withLock {
            entries.removeAll()
            used.removeAll()
        }
    }

    /// Write the cache to `path` atomically (temp file + rename). With `pruneUnused`, entries not
    /// looked up or stored since this cache was created are dropped first, which keeps the file from
    /// growing without bound across runs. No-op for an in-memory cache.
    public func save(pruneUnused: Bool = false) throws(SupplyChainError) {
        guard let path else { return }
        let snapshot: [String: GateVerdict] = lock.withLock {
            if pruneUnused { entries = entries.filter { used.contains($0.key) } }
            return entries
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data: Data
        do { data = try encoder.encode(File(version: Self.formatVersion, entries: snapshot)) } catch {
            throw SupplyChainError("cannot encode verification cache: \(error)")
        }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent()
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).\(UInt64.random(in: 0...UInt64.max)).tmp")
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try data.write(to: tmp)
        } catch {
            throw SupplyChainError("cannot write verification cache \(tmp.path): \(error.localizedDescription)")
        }
        if rename(tmp.path, path) != 0 {
            let err = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw SupplyChainError("cannot rename \(tmp.path) to \(path): \(err)")
        }
    }

    /// The cache key for one evaluation (see the type's documentation).
    static func key(evidence e: ArtifactEvidence, artifactDigest: String, evidenceDigests: [String], policies: [GatePolicy]) -> String {
        var parts = ["mcpfleet-supplychain-cache-v\(formatVersion)", e.server, e.version, e.image ?? "-", e.commandPath ?? "-",
                     e.artifactPath ?? "-", e.declaredDigest ?? "-", artifactDigest]
        parts += evidenceDigests
        parts += policies.map(\.fingerprint)
        return sha256Hex(Array(parts.joined(separator: "\u{0}").utf8))
    }
}
