import FleetCore
import FleetYAML
import Foundation
import Testing

/// The `gateway` blocks of Environment, Tenant and Server: decoded with positions, tokens only as
/// secretRefs, and not part of a server's revision.
@Suite struct GatewaySettingsTests {
    func load(_ text: String) -> LoadedCatalog {
        let set = ManifestLoader.load(root: "mem", files: [("test.yaml", Array(text.utf8))])
        return CatalogLoader.from(set: set, baseDirectory: "mem") { _ in true }
    }

    func catalog(env: String = "", tenant: String = "", server: String = "") -> String {
        """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: dev}
        spec:
          driver: local
          portRange: 20000-20999
        \(env)
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t1}
        spec:
          isolation: shared
        \(tenant)
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata: {name: s1}
        spec:
          version: "1.0"
          tenant: t1
          artifact: {command: ["/bin/true"]}
          transport: {type: streamable-http, port: 20100}
        \(server)

        """
    }

    @Test func decodesEveryGatewaySetting() {
        let loaded = load(catalog(
            env: """
              gateway:
                address: 127.0.0.1:9999
                signingKey: {name: gateway, key: signing-key}
                maxConnections: 100
                maxBodyBytes: 65536
                headerTimeout: 5s
                idleTimeout: 30s
                upstreamTimeout: 20s
                circuitBreaker: {consecutiveFailures: 3, ejectionTime: 15s}
            """,
            tenant: """
              gateway:
                tokens: [{name: t1-gateway, key: token}, {name: t1-gateway, key: next}]
                rateLimit: {requestsPerSecond: 50, burst: 100}
            """,
            server: """
              gateway:
                rateLimit: {requestsPerSecond: 10}
            """))
        #expect(!loaded.diagnostics.hasErrors, "\(loaded.diagnostics.items)")
        let g = loaded.catalog.environments.first?.gateway
        #expect(g?.address == "127.0.0.1:9999" && g?.signingKey == SecretReference(name: "gateway", key: "signing-key"))
        #expect(g?.maxConnections == 100 && g?.maxBodyBytes == 65536 && g?.headerTimeout == .seconds(5) && g?.idleTimeout == .seconds(30))
        #expect(g?.upstreamTimeout == .seconds(20) && g?.consecutiveFailures == 3 && g?.ejectionTime == .seconds(15))
        let t = loaded.catalog.tenants.first?.gateway
        #expect(t?.tokens == [SecretReference(name: "t1-gateway", key: "token"), SecretReference(name: "t1-gateway", key: "next")])
        #expect(t?.rateLimit == GatewayRateLimit(requestsPerSecond: 50, burst: 100))
        #expect(loaded.catalog.servers.first?.gateway?.rateLimit == GatewayRateLimit(requestsPerSecond: 10))
    }

    @Test func gatewaySettingsAreNotPartOfTheRevision() {
        let plain = load(catalog())
        let limited = load(catalog(server: "  gateway:\n    rateLimit: {requestsPerSecond: 10}"))
        let env = plain.catalog.environments[0]
        #expect(Renderer.desiredState(plain.catalog, environment: env).servers[0].revision
                == Renderer.desiredState(limited.catalog, environment: limited.catalog.environments[0]).servers[0].revision)
    }

    @Test func rejectsInlineTokensBadAddressesAndUnknownFields() {
        let inline = load(catalog(tenant: "  gateway:\n    tokens: [\"s3cret-value\"]"))
        #expect(inline.diagnostics.items.contains { $0.severity == .error && $0.message.contains("spec.gateway.tokens[0]") }, "\(inline.diagnostics.items)")
        let scalar = load(catalog(tenant: "  gateway:\n    tokens: s3cret-value"))
        #expect(scalar.diagnostics.items.contains { $0.message.contains("spec.gateway.tokens") && $0.hint?.contains("never inline") == true })
        let address = load(catalog(env: "  gateway:\n    address: localhost"))
        #expect(address.diagnostics.items.contains { $0.message.contains("spec.gateway.address") && $0.location?.line == 8 && $0.location?.column == 14 }, "\(address.diagnostics.items)")
        let unknown = load(catalog(server: "  gateway:\n    ratelimit: {requestsPerSecond: 1}"))
        #expect(unknown.diagnostics.items.contains { $0.message.contains("unknown field `ratelimit`") && $0.hint?.contains("rateLimit") == true })
        let zero = load(catalog(server: "  gateway:\n    rateLimit: {requestsPerSecond: 0}"))
        #expect(zero.diagnostics.hasErrors)
    }
}
