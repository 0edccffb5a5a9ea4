import FleetCore
import FleetYAML
import Foundation

/// A manifest directory loaded, decoded and validated, with the texts needed to render diagnostics.
struct LoadedCatalog {
    var root: String
    /// The directory relative paths in the catalog resolve against (the root, or a file's directory).
    var baseDirectory: String
    var set: ManifestSet
    var catalog: Catalog
    var diagnostics: Diagnostics

    var hasIOErrors: Bool { diagnostics.items.contains { $0.code == "io" } }

    func sourceText(_ file: String) -> String? { set.files.first { $0.path == file }?.text }

    static func load(path: String) -> LoadedCatalog {
        let set = ManifestLoader.load(path: path)
        var isDir: ObjCBool = false
        let base = FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && !isDir.boolValue
            ? (path as NSString).deletingLastPathComponent : path
        return from(set: set, baseDirectory: base.isEmpty ? "." : base) { relative in
            FileManager.default.fileExists(atPath: (base.isEmpty ? "." : base) + "/" + relative)
        }
    }

    static func from(set: ManifestSet, baseDirectory: String, fileExists: (String) -> Bool) -> LoadedCatalog {
        var diagnostics = Diagnostics(set.diagnostics)
        let inputs = set.files.map { ManifestFileInput(file: $0.path, relativePath: $0.relativePath, documents: $0.documents) }
        let (catalog, decodeDiagnostics) = ManifestDecoder.decode(inputs)
        diagnostics.append(contentsOf: decodeDiagnostics)
        diagnostics.append(contentsOf: CatalogValidator.validate(catalog, fileExists: fileExists))
        return LoadedCatalog(root: set.root, baseDirectory: baseDirectory, set: set, catalog: catalog, diagnostics: diagnostics)
    }

    func renderDiagnostics(color: Bool) -> String {
        DiagnosticFormatter(color: color).format(diagnostics, source: sourceText)
    }
}

func encodeJSON<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
}
