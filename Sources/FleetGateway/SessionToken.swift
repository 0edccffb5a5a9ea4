import Crypto
import Foundation

/// The session id a client sees: an opaque token that names the replica and carries the upstream
/// session id, signed with HMAC-SHA256 so any gateway replica with the same key can route it and
/// nothing else can forge one. `mf1.<base64url(route \n replica \n upstream-session)>.<base64url(mac)>`.
public struct SessionSigner: Sendable {
    private let key: SymmetricKey

    /// A key shorter than 16 bytes is refused: it would make tokens guessable.
    public init(key: [UInt8]) throws {
        guard key.count >= 16 else { throw GatewayError("the session signing key must have at least 16 bytes (it has \(key.count))") }
        self.key = SymmetricKey(data: key)
    }

    public struct Claims: Sendable, Hashable {
        public var route: String
        public var replica: String
        public var upstreamSession: String
    }

    public func sign(_ claims: Claims) -> String {
        let payload = Array("\(claims.route)\n\(claims.replica)\n\(claims.upstreamSession)".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        return "mf1." + Self.base64url(payload) + "." + Self.base64url(Array(mac))
    }

    /// The claims of a token this key signed; nil for anything else (malformed, forged, other key).
    public func verify(_ token: String) -> Claims? {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "mf1", let payload = Self.unbase64url(parts[1]), let mac = Self.unbase64url(parts[2]),
              HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: payload, using: key) else { return nil }
        let fields = String(decoding: payload, as: UTF8.self).split(separator: "\n", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count == 3 else { return nil }
        return Claims(route: String(fields[0]), replica: String(fields[1]), upstreamSession: String(fields[2]))
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let values: [UInt8] = {
        var v = [UInt8](repeating: 0xff, count: 256)
        for (i, c) in alphabet.enumerated() { v[Int(c)] = UInt8(i) }
        return v
    }()

    /// Base64url without padding (RFC 4648 §5), on bytes: this runs for every proxied response.
    static func base64url<D: Collection>(_ d: D) -> String where D.Element == UInt8 {
        let bytes = Array(d)
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var i = 0
        while i + 2 < bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)], alphabet[Int(n & 63)]]
            i += 3
        }
        if bytes.count - i == 1 {
            let n = UInt32(bytes[i]) << 16
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)]]
        } else if bytes.count - i == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out += [alphabet[Int(n >> 18 & 63)], alphabet[Int(n >> 12 & 63)], alphabet[Int(n >> 6 & 63)]]
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The inverse; nil for any character outside the alphabet or an impossible length.
    static func unbase64url<S: StringProtocol>(_ s: S) -> [UInt8]? {
        let chars = Array(s.utf8)
        guard chars.count % 4 != 1 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var acc: UInt32 = 0, bits = 0
        for c in chars {
            let v = values[Int(c)]
            guard v != 0xff else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(acc >> UInt32(bits) & 0xff))
            }
        }
        return out
    }
}

public struct GatewayError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Bearer tokens compared in constant time: the presented token is hashed and the digest compared
/// byte by byte against every accepted digest without an early exit, so neither the position of a
/// mismatch nor which token matched shows in the timing. Tokens are held only as digests.
public struct BearerTokens: Sendable, Hashable {
    private var digests: [[UInt8]]

    public init(tokens: [String]) {
        digests = tokens.map { Array(SHA256.hash(data: Data($0.utf8))) }
    }

    public var isEmpty: Bool { digests.isEmpty }

    public func accepts(authorization: String?) -> Bool {
        guard let authorization, authorization.count > 7, authorization.prefix(7).lowercased() == "bearer " else { return false }
        let presented = Array(SHA256.hash(data: Data(authorization.dropFirst(7).trimmingCharacters(in: .whitespaces).utf8)))
        var matched: UInt8 = 0
        for d in digests {
            var diff: UInt8 = 0
            for i in 0..<32 { diff |= d[i] ^ presented[i] }
            matched |= diff == 0 ? 1 : 0
        }
        return matched == 1
    }
}
