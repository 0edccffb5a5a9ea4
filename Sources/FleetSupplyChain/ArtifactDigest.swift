import Crypto
import Foundation

func hex<C: Sequence>(_ bytes: C) -> String where C.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(64)
    for b in bytes {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
}

func sha256Hex<D: DataProtocol>(_ data: D) -> String { hex(SHA256.hash(data: data)) }

/// SHA-256 digests of artifacts, and the `sha256:<hex>` digest syntax.
public enum ArtifactDigest {
    /// Read size used when streaming a file through SHA-256.
    static let chunkSize = 1 << 20

    /// `sha256:<hex>` of the file at `path`, read in 1 MiB chunks (never the whole file at once).
    public static func sha256(ofFile path: String) throws(SupplyChainError) -> String {
        "sha256:" + hex(try SignatureVerifier.streamDigest(path))
    }

    /// `sha256:<hex>` of in-memory bytes.
    public static func sha256<D: DataProtocol>(of data: D) -> String { "sha256:" + sha256Hex(data) }

    /// Normalises `sha256:<64 hex>` (case-insensitive hex) to lower case; nil when malformed.
    public static func normalize(_ digest: String) -> String? {
        let parts = digest.split(separator: ":", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "sha256" else { return nil }
        let h = parts[1].lowercased()
        guard h.utf8.count == 64, h.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        return "sha256:" + h
    }

    /// Shortened form for messages: `sha256:0123456789ab…`.
    public static func short(_ digest: String) -> String {
        digest.count > 19 ? String(digest.prefix(19)) + "…" : digest
    }
}

/// An OCI image reference split into its parts: `registry/path/name[:tag][@sha256:hex]`.
public struct ImageReference: Sendable, Hashable {
    /// Everything before the tag and digest, as written (`registry.example.com/mcp/time`).
    public var repository: String
    public var tag: String?
    /// Normalised `sha256:<hex>` when the reference is pinned by digest.
    public var digest: String?
    /// The `@…` part as written, also when it is not a valid sha256 digest.
    public var rawDigest: String?

    public init(parsing ref: String) {
        var rest = Substring(ref)
        if let at = rest.firstIndex(of: "@") {
            let d = String(rest[rest.index(after: at)...])
            rawDigest = d
            digest = ArtifactDigest.normalize(d)
            rest = rest[..<at]
        }
        // A tag is a ':' after the last '/'; a ':' before it belongs to a registry port.
        let lastSlash = rest.lastIndex(of: "/")
        let searchFrom = lastSlash.map { rest.index(after: $0) } ?? rest.startIndex
        if let colon = rest[searchFrom...].lastIndex(of: ":") {
            tag = String(rest[rest.index(after: colon)...])
            rest = rest[..<colon]
        }
        repository = String(rest)
    }

    /// Docker Hub shorthand expanded (`postgres` → `docker.io/library/postgres`), else `repository`.
    public var fullyQualifiedRepository: String {
        let parts = repository.split(separator: "/", omittingEmptySubsequences: false)
        let first = parts.first.map(String.init) ?? ""
        let hasRegistry = parts.count > 1 && (first.contains(".") || first.contains(":") || first == "localhost")
        if hasRegistry { return repository }
        return parts.count == 1 ? "docker.io/library/\(repository)" : "docker.io/\(repository)"
    }
}
