import FleetApp
import FleetCore
import FleetTesting
import Foundation
import Testing

/// The controller's manifest source: inotify notices changes (no walk of the files while nothing
/// changes), and a change re-renders only the servers whose documents changed.
@Suite struct ManifestSourceTests {
    func server(_ i: Int, version: String = "1.0.0") -> String {
        """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Server
        metadata:
          name: s\(String(format: "%04d", i))
        spec:
          version: "\(version)"
          tenant: t000
          artifact:
            command: ["/bin/true"]
          transport:
            type: streamable-http
            port: \(20000 + 2 * i)
            path: /mcp
          replicas: 1
        """
    }

    func catalog(_ n: Int, versions: [Int: String] = [:]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-source-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/servers", withIntermediateDirectories: true)
        try write(dir + "/environment.yaml", """
            apiVersion: mcpfleet.io/v1alpha1
            kind: Environment
            metadata:
              name: dev
            spec:
              driver: local
              portRange: 20000-29999
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Tenant
            metadata:
              name: t000
            spec:
              isolation: shared
            """)
        try writeServers(dir, n, versions: versions)
        return dir
    }

    func writeServers(_ dir: String, _ n: Int, versions: [Int: String] = [:]) throws {
        for start in stride(from: 0, to: n, by: 10) {
            let docs = (start..<min(n, start + 10)).map { server($0, version: versions[$0] ?? "1.0.0") }
            try write(dir + "/servers/servers-\(start / 10).yaml", docs.joined(separator: "\n---\n"))
        }
    }

    func write(_ path: String, _ text: String) throws {
        try Data((text + "\n").utf8).write(to: URL(fileURLWithPath: path))
    }

    @Test func aChangeReRendersOnlyTheChangedServersAndMatchesAFullRender() throws {
        let dir = try catalog(30)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = ManifestSource(path: dir, environmentName: "dev", watch: true)
        let first = try source.snapshot()
        #expect(first.desired.servers.count == 30)
        #expect(source.lastRendered == 30)
        // Nothing changed: nothing rendered again.
        let again = try source.snapshot()
        #expect(source.lastRendered == 0)
        #expect(again.desired == first.desired)
        // One server's version changes (its file is rewritten with nine unchanged neighbours).
        try writeServers(dir, 30, versions: [17: "2.0.0"])
        let changed = try source.snapshot()
        #expect(source.lastRendered == 1)
        let full = try ManifestSource(path: dir, environmentName: "dev").snapshot()
        #expect(changed.desired == full.desired)
        #expect(changed.desired.server("s0017")?.version == "2.0.0")
        #expect(changed.desired.server("s0017")?.revision != first.desired.server("s0017")?.revision)
        #expect(changed.fingerprint != first.fingerprint)
        // A server removed and one added.
        try FileManager.default.removeItem(atPath: dir + "/servers/servers-2.yaml")
        try write(dir + "/servers/extra.yaml", server(40))
        let edited = try source.snapshot()
        #expect(edited.desired.servers.count == 21)
        #expect(source.lastRendered == 1)
        #expect(edited.desired == (try ManifestSource(path: dir, environmentName: "dev").snapshot()).desired)
    }

    @Test func inotifyNoticesChangesIncludingInNewDirectories() throws {
        let dir = try catalog(3)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = ManifestSource(path: dir, environmentName: "dev", watch: true)
        #if os(Linux)
        #expect(source.watching)
        #endif
        let a = source.fingerprint()
        #expect(source.fingerprint() == a)
        try write(dir + "/servers/servers-0.yaml", server(0, version: "3.0.0"))
        let b = source.fingerprint()
        #expect(b != a)
        // A directory made after the watch began: a file written in it is noticed too.
        try FileManager.default.createDirectory(atPath: dir + "/more", withIntermediateDirectories: true)
        #expect(source.fingerprint() == b)  // an empty directory changes no fingerprint
        try write(dir + "/more/s9.yaml", server(9))
        #expect(source.fingerprint() != b)
    }

    @Test func anInvalidCatalogFailsNamingTheErrorAndKeepsNothingHalfRendered() throws {
        let dir = try catalog(3)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let source = ManifestSource(path: dir, environmentName: "dev", watch: true)
        _ = try source.snapshot()
        try write(dir + "/servers/servers-0.yaml", "apiVersion: mcpfleet.io/v1alpha1\nkind: Server\nmetadata:\n  name: [oops")
        let error = #expect(throws: FleetFailure.self) { try source.snapshot() }
        #expect(error?.message.contains("is invalid") == true)
        #expect(error?.message.contains("keeping the last good state") == true)
    }
}
