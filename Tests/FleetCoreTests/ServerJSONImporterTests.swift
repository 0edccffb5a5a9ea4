import FleetCore
import FleetYAML
import Foundation
import Testing

@Suite struct ServerJSONImporterTests {
    let json = FileManager.default.contents(atPath: packageRoot + "/Tests/Fixtures/server-json/with-package.json") ?? Data()

    func validate(_ manifest: String) -> LoadedCatalog {
        loadText(minimalTenantAndEnv + "---\n" + manifest)
    }

    @Test func ociPackageIsPreferredAndValidates() throws {
        let yaml = try ServerJSONImporter.importServer(json, options: .init(tenant: "t1", port: 20100))
        #expect(yaml.contains("image: \"ghcr.io/example/weather:1.0.0\""))
        #expect(yaml.contains("pin the image by digest"))
        let c = validate(yaml)
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)\n\(yaml)")
        #expect(c.catalog.servers.first?.name == "local-weather")
        #expect(c.catalog.servers.first?.transport.path == "/mcp")
    }

    @Test func npmPackageSecretsBecomeReferences() throws {
        let yaml = try ServerJSONImporter.importServer(json, options: .init(tenant: "t1", port: 20100, registryType: "npm"))
        #expect(yaml.contains("    type: stdio\n    port: 20100\n"), "\(yaml)")
        let c = validate(yaml)
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)\n\(yaml)")
        let s = try #require(c.catalog.servers.first)
        #expect(s.artifact.command == ["npx", "-y", "@modelcontextprotocol/server-weather@1.0.0", "--port", "8080"])
        #expect(s.env.first { $0.name == "API_KEY" }?.source == .secret(SecretReference(name: "local-weather-secrets", key: "api-key")))
        #expect(s.env.first { $0.name == "UNITS" }?.source == .value("metric"))
        #expect(yaml.contains("argument config_path has no value"))
    }

    @Test func rejectsWhatCannotRun() {
        let remoteOnly = Data(#"{"name": "io.x/remote", "version": "1.0.0", "remotes": [{"type": "streamable-http", "url": "https://x/mcp"}]}"#.utf8)
        #expect(throws: ServerJSONImporter.ImportError.self) { try ServerJSONImporter.importServer(remoteOnly, options: .init(tenant: "t1")) }
        let latest = Data(#"{"name": "io.x/y", "packages": [{"registryType": "npm", "identifier": "y", "version": "latest"}]}"#.utf8)
        #expect(throws: ServerJSONImporter.ImportError.self) { try ServerJSONImporter.importServer(latest, options: .init(tenant: "t1")) }
        #expect(throws: ServerJSONImporter.ImportError.self) { try ServerJSONImporter.importServer(Data("nope".utf8), options: .init(tenant: "t1")) }
    }

    /// Issue 19: server.json's `{port}` placeholder stayed literal; it is mcpfleet's `${PORT}`.
    @Test func registryPortPlaceholderBecomesPORT() throws {
        let doc = Data(#"""
        {"name": "io.x/ported", "version": "2.0.0", "packages": [{"registryType": "npm", "identifier": "ported", "version": "2.0.0",
          "transport": {"type": "streamable-http", "url": "http://localhost:{port}/mcp"},
          "packageArguments": [{"type": "named", "name": "--port", "value": "{port}"}, {"type": "named", "name": "--listen", "default": "0.0.0.0:{port}"}],
          "environmentVariables": [{"name": "BASE_URL", "default": "http://127.0.0.1:{port}/"}]}]}
        """#.utf8)
        let yaml = try ServerJSONImporter.importServer(doc, options: .init(tenant: "t1", port: 20100))
        let c = validate(yaml)
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)\n\(yaml)")
        let s = try #require(c.catalog.servers.first)
        #expect(s.artifact.command == ["npx", "-y", "ported@2.0.0", "--port", "${PORT}", "--listen", "0.0.0.0:${PORT}"])
        #expect(s.env.first { $0.name == "BASE_URL" }?.source == .value("http://127.0.0.1:${PORT}/"))
        #expect(s.transport.path == "/mcp" && s.transport.port == 20100)
        // Without --port a stdio import gets the default block and validate says where it does not fit,
        // instead of the local driver refusing it at run time.
        let stdio = try ServerJSONImporter.importServer(json, options: .init(tenant: "t1", registryType: "npm"))
        #expect(stdio.contains("the local driver's stdio bridge listens there"), "\(stdio)")
        let refused = validate(stdio)
        #expect(refused.codes == ["port-collision"] && refused.errorsText.contains("outside environment `dev`'s portRange 20000-20999"), "\(refused.errorsText)")
    }

    @Test func hostileTextIsQuoted() throws {
        let hostile = Data(#"{"name": "io.x/evil", "description": "a\"\nkind: Tenant", "packages": [{"registryType": "npm", "identifier": "evil", "version": "1.0.0"}]}"#.utf8)
        let yaml = try ServerJSONImporter.importServer(hostile, options: .init(tenant: "t1", port: 20100))
        let c = validate(yaml)
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)")
        #expect(c.catalog.servers.first?.description == "a\"\nkind: Tenant")
    }
}
