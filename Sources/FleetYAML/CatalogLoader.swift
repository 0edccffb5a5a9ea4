public import FleetCore
import Foundation

/// A manifest directory loaded, decoded and validated, with the texts needed to render diagnostics.
public struct LoadedCatalog: Sendable {
    public var root: String
    /// The directory that relative paths in the catalog resolve against (the root, or a file's directory).
    public var baseDirectory: String
    public var set: ManifestSet
    public var catalog: Catalog
    public var diagnostics: Diagnostics

    public var hasIOErrors: Bool { diagnostics.items.contains { $0.code == "io" } }

    public func sourceText(_ file: String) -> String? { set.files.first { $0.path == file }?.text }

    /// Diagnostics as people read them: excerpts, messages and hints never show a sensitive value.
    public func renderDiagnostics(color: Bool) -> String {
        DiagnosticFormatter(color: color, sensitive: catalog.sensitiveValues).format(diagnostics, source: sourceText)
    }

    /// The JSON form, as safe as the text form.
    public var report: DiagnosticReport { DiagnosticReport(diagnostics, sensitive: catalog.sensitiveValues) }
}

public enum CatalogLoader {
    /// Loads `path` (a directory or one file), decodes every document and runs every validation rule.
    public static func load(path: String, limits: YAMLLimits = .default) -> LoadedCatalog {
        let set = ManifestLoader.load(path: path, limits: limits)
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        var base = exists && !isDir.boolValue ? (path as NSString).deletingLastPathComponent : path
        if base.isEmpty { base = "." }
        return from(set: set, baseDirectory: base, files: fileCheck(root: base))
    }

    /// Answers for paths relative to `root`: missing, present, or leading out of it through a link.
    public static func fileCheck(root: String) -> @Sendable (String) -> FileCheck {
        let confinement = RootConfinement(root: root)
        return { relative in
            let full = ManifestLoader.join(root, relative)
            guard FileManager.default.fileExists(atPath: full) else { return .missing }
            return confinement?.contains(full) == false ? .outsideRoot : .exists
        }
    }

    /// Decodes and validates an already loaded set (from disk or from git).
    public static func from(set: ManifestSet, baseDirectory: String, fileExists: (String) -> Bool) -> LoadedCatalog {
        from(set: set, baseDirectory: baseDirectory, files: { fileExists($0) ? .exists : .missing })
    }

    public static func from(set: ManifestSet, baseDirectory: String, files: (String) -> FileCheck) -> LoadedCatalog {
        var diagnostics = Diagnostics(set.diagnostics)
        let inputs = set.files.map { ManifestFileInput(file: $0.path, relativePath: $0.relativePath, documents: $0.documents) }
        let (catalog, decodeDiagnostics) = ManifestDecoder.decode(inputs)
        diagnostics.append(contentsOf: decodeDiagnostics)
        diagnostics.append(contentsOf: CatalogValidator.validate(catalog, files: files))
        return LoadedCatalog(root: set.root, baseDirectory: baseDirectory, set: set, catalog: catalog, diagnostics: diagnostics)
    }
}
