import FleetCore
import FleetYAML
import Foundation

/// The package root, found from this file's path (Tests/FleetCoreTests/Support.swift).
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// Loads YAML text as a one-file catalog and returns the catalog and every diagnostic.
func loadText(_ text: String, file: String = "test.yaml") -> LoadedCatalog {
    let set = ManifestLoader.load(root: "mem", files: [(file, Array(text.utf8))])
    return CatalogLoader.from(set: set, baseDirectory: "mem") { _ in true }
}

func loadFiles(_ files: [String: String]) -> LoadedCatalog {
    let set = ManifestLoader.load(root: "mem", files: files.sorted { $0.key < $1.key }.map { ($0.key, Array($0.value.utf8)) })
    return CatalogLoader.from(set: set, baseDirectory: "mem") { _ in true }
}

let minimalTenantAndEnv = """
apiVersion: mcpfleet.io/v1alpha1
kind: Tenant
metadata: {name: t1}
---
apiVersion: mcpfleet.io/v1alpha1
kind: Environment
metadata: {name: dev}
spec: {driver: local, portRange: 20000-20999}

"""

func server(_ name: String = "s1", spec extra: String = "", version: String = "\"1.0.0\"", port: Int = 20100) -> String {
    """
    ---
    apiVersion: mcpfleet.io/v1alpha1
    kind: Server
    metadata: {name: \(name)}
    spec:
      version: \(version)
      tenant: t1
      artifact: {command: [/opt/mcp/bin/\(name), --port, "${PORT}"]}
      transport: {type: streamable-http, port: \(port)}
    \(extra)

    """
}

extension LoadedCatalog {
    var codes: [String] { diagnostics.sorted.map(\.code) }
    var errorsText: String { diagnostics.sorted.map(\.description).joined(separator: "\n") }
}
