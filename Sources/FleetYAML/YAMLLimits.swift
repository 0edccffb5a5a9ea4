public import FleetCore

/// Bounds on what one manifest file may cost to load. Every limit is checked while parsing, so a
/// hostile file is rejected after doing at most `limit` units of work, never after materialising it.
public struct YAMLLimits: Sendable, Hashable {
    /// Largest accepted file, checked before parsing (`yaml-size-limit`).
    public var maxBytes: Int = 8 << 20
    /// Deepest accepted nesting of collections (`yaml-depth-limit`).
    public var maxDepth: Int = 64
    /// Total nodes materialised through aliases and merge keys per document (`yaml-alias-limit`).
    public var maxAliasExpansion: Int = 100_000
    /// Most documents accepted in one file (`yaml-size-limit`).
    public var maxDocumentsPerFile: Int = 10_000

    public static let `default` = YAMLLimits()

    public init(
        maxBytes: Int = 8 << 20,
        maxDepth: Int = 64,
        maxAliasExpansion: Int = 100_000,
        maxDocumentsPerFile: Int = 10_000
    ) {
        self.maxBytes = maxBytes
        self.maxDepth = maxDepth
        self.maxAliasExpansion = maxAliasExpansion
        self.maxDocumentsPerFile = maxDocumentsPerFile
    }
}

/// The documents of one file that could be read, and every problem found on the way.
public struct YAMLParseResult: Sendable, Hashable {
    public var documents: [SourceDocument]
    public var diagnostics: [Diagnostic]

    public init(documents: [SourceDocument] = [], diagnostics: [Diagnostic] = []) {
        self.documents = documents
        self.diagnostics = diagnostics
    }
}
