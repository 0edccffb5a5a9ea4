/// The `gateway` blocks of Server, Tenant and Environment (docs/designs/0005-gateway.md).
extension ManifestDecoder {
    enum GatewayKeys {
        static let server = ["rateLimit"]
        static let tenant = ["tokens", "rateLimit"]
        static let environment = ["address", "signingKey", "maxConnections", "maxBodyBytes", "headerTimeout", "idleTimeout", "upstreamTimeout", "circuitBreaker"]
        static let rateLimit = ["requestsPerSecond", "burst"]
        static let rateLimitRequired = ["requestsPerSecond"]
        static let circuitBreaker = ["consecutiveFailures", "ejectionTime"]
    }

    static func serverGateway(_ node: Node, _ r: FieldReader) -> ServerGatewaySettings? {
        guard let f = r.mapping(node, path: "spec.gateway", allowed: GatewayKeys.server) else { return nil }
        var g = ServerGatewaySettings()
        g.rateLimit = f.value("rateLimit").flatMap { rateLimit($0, path: "spec.gateway.rateLimit", r) }
        return g
    }

    static func tenantGateway(_ node: Node, _ r: FieldReader) -> TenantGatewaySettings? {
        guard let f = r.mapping(node, path: "spec.gateway", allowed: GatewayKeys.tenant) else { return nil }
        var g = TenantGatewaySettings()
        if let list = f.value("tokens") {
            if let items = list.sequence {
                for (i, item) in items.enumerated() {
                    if let ref = secretReference(item, path: FieldPath("spec.gateway.tokens", index: i), r) { g.tokens.append(ref) }
                }
            } else {
                r.error("type-mismatch", "expected a list of secretRefs for `spec.gateway.tokens`, found \(list.kindDescription)", at: list.location,
                        hint: "tokens are never inline: `tokens: [{name: SECRET, key: KEY}]`")
            }
        }
        g.rateLimit = f.value("rateLimit").flatMap { rateLimit($0, path: "spec.gateway.rateLimit", r) }
        return g
    }

    static func environmentGateway(_ node: Node, _ r: FieldReader) -> EnvironmentGatewaySettings? {
        guard let f = r.mapping(node, path: "spec.gateway", allowed: GatewayKeys.environment) else { return nil }
        var g = EnvironmentGatewaySettings()
        if let n = f.value("address"), let text = r.string(n, path: "spec.gateway.address") {
            if let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port), colon != text.startIndex,
               !text.contains(where: { $0 == " " || $0 == "/" }) {
                g.address = text
            } else {
                r.error("invalid-value", "`spec.gateway.address` must be `HOST:PORT` with a port between 1 and 65535, found `\(FieldReader.printable(text))`", at: n.location)
            }
        }
        if let n = f.value("signingKey") { g.signingKey = secretReference(n, path: "spec.gateway.signingKey", r) }
        g.maxConnections = r.int(f, "maxConnections", range: 1...1_000_000)
        g.maxBodyBytes = r.int(f, "maxBodyBytes", range: 1024...(1 << 30))
        g.headerTimeout = r.duration(f, "headerTimeout")
        g.idleTimeout = r.duration(f, "idleTimeout")
        g.upstreamTimeout = r.duration(f, "upstreamTimeout")
        if let n = f.value("circuitBreaker"), let cb = r.mapping(n, path: "spec.gateway.circuitBreaker", allowed: GatewayKeys.circuitBreaker) {
            g.consecutiveFailures = r.int(cb, "consecutiveFailures", range: 1...1000)
            g.ejectionTime = r.duration(cb, "ejectionTime")
        }
        return g
    }

    static func rateLimit(_ node: Node, path: FieldPath, _ r: FieldReader) -> GatewayRateLimit? {
        guard let f = r.mapping(node, path: path, allowed: GatewayKeys.rateLimit, required: GatewayKeys.rateLimitRequired),
              let rps = r.int(f, "requestsPerSecond", range: 1...10_000_000) else { return nil }
        return GatewayRateLimit(requestsPerSecond: rps, burst: r.int(f, "burst", range: 1...10_000_000))
    }

    /// `{name, key}` naming a file under the environment's secrets directory; the value is never in a manifest.
    static func secretReference(_ node: Node, path: FieldPath, _ r: FieldReader) -> SecretReference? {
        guard let rf = r.mapping(node, path: path, allowed: Keys.secretRef, required: Keys.secretRefRequired),
              let name = r.name(rf, "name"), let kn = rf.value("key"), let key = r.string(kn, path: "\(path).key") else { return nil }
        if key.isEmpty || !key.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d || $0 == 0x2e || $0 == 0x5f }) {
            r.error("invalid-value", "`\(path).key` must match [-._a-zA-Z0-9]+, found `\(FieldReader.printable(key))`", at: kn.location)
            return nil
        }
        return SecretReference(name: name, key: key)
    }
}
