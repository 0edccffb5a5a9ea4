/// A YAML node with its position, as produced by `FleetYAML` and consumed by the manifest decoder.
/// Scalars stay untyped text: the decoder types them by the field they land in, so `version: 1.10`
/// is the string "1.10" and `on`/`NO` are plain strings where a string is expected (no YAML 1.1 coercion).
public struct Node: Sendable, Hashable {
    public enum Value: Sendable, Hashable {
        case scalar(Scalar)
        case mapping([MappingEntry])
        case sequence([Node])
    }

    public var value: Value
    public var location: SourceLocation

    public init(_ value: Value, at location: SourceLocation) {
        self.value = value
        self.location = location
    }

    public var scalar: Scalar? {
        if case .scalar(let s) = value { return s }
        return nil
    }

    public var mapping: [MappingEntry]? {
        if case .mapping(let m) = value { return m }
        return nil
    }

    public var sequence: [Node]? {
        if case .sequence(let s) = value { return s }
        return nil
    }

    /// True for `~`, `null`, `Null`, `NULL` and the empty plain scalar.
    public var isNull: Bool { scalar?.isNull ?? false }

    /// A short name of the node's kind, for messages: "a mapping", "a list", "a string", "null".
    public var kindDescription: String {
        switch value {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s): return s.isNull ? "null" : "a scalar"
        }
    }

    /// Looks up a key in a mapping node (first match; the parser has already rejected duplicates).
    public subscript(key: String) -> Node? {
        mapping?.first { $0.key.scalar?.text == key }?.value
    }
}

public struct MappingEntry: Sendable, Hashable {
    public var key: Node
    public var value: Node

    public init(key: Node, value: Node) {
        self.key = key
        self.value = value
    }

    /// The key's text when the key is a scalar.
    public var keyText: String? { key.scalar?.text }
}

public struct Scalar: Sendable, Hashable {
    public enum Style: String, Sendable, Hashable, Codable {
        case plain, singleQuoted, doubleQuoted, literal, folded
    }

    public var text: String
    public var style: Style
    /// Interned (`InternedStrings.tags`); 0 when untagged. Tags are rare: keeping them out of line
    /// keeps every `Node` small.
    private var tagIndex: UInt32

    /// An explicit tag such as `!!str`, expanded (`tag:yaml.org,2002:str`); nil when untagged.
    public var tag: String? {
        get { tagIndex == 0 ? nil : InternedStrings.tags.string(at: tagIndex) }
        set { tagIndex = newValue.map { InternedStrings.tags.intern($0) } ?? 0 }
    }

    public init(_ text: String, style: Style = .plain, tag: String? = nil) {
        self.text = text
        self.style = style
        self.tagIndex = tag.map { InternedStrings.tags.intern($0) } ?? 0
    }

    public var isNull: Bool {
        guard style == .plain, tagIndex == 0 || tag == "tag:yaml.org,2002:null" else { return false }
        guard text.utf8.count <= 4 else { return false } // asked of every field: skip the comparisons
        return text.isEmpty || text == "~" || text == "null" || text == "Null" || text == "NULL"
    }
}

/// One YAML document of a manifest file. `root` is nil for an empty document.
public struct SourceDocument: Sendable, Hashable {
    public var file: String
    /// 0-based index of the document within its file.
    public var index: Int
    public var root: Node?
    public var location: SourceLocation

    public init(file: String, index: Int, root: Node?, location: SourceLocation) {
        self.file = file
        self.index = index
        self.root = root
        self.location = location
    }
}
