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
        let payload = Data("\(claims.route)\n\(claims.replica)\n\(claims.upstreamSession)".utf8)
        let mac = HMAC<SHA256>.authenticationCode(for: payload, using: key)
        return "mf1." + Self.base64url(payload) + "." + Self.base64url(Data(mac))
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

    static func base64url(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    static func unbase64url<S: StringProtocol>(_ s: S) -> Data? {
        var t = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while t.count % 4 != 0 { t += "=" }
        return Data(base64Encoded: t)
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
