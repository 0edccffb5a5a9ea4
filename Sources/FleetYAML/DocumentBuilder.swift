import FleetCore
internal import CYAML

/// Turns libyaml events into `SourceDocument`s.
///
/// Children accumulate on one shared `values` stack; a collection's children are moved off into
/// an exactly-sized array when it ends, so building costs one allocation per collection.
struct DocumentBuilder: ~Copyable {
    private struct Frame {
        var isMapping: Bool
        /// Index of the collection's first child on `values`.
        var start: Int
        var location: SourceLocation
        var anchor: String?
        /// Nodes in the subtree below this collection, counting aliased subtrees at full size.
        var size = 0
        /// A plain `<<` key was seen: entries are merged when the mapping ends.
        var hasMerge = false
        /// The key just completed is `<<`: the next value's size counts towards alias expansion.
        var valueIsMergeSource = false
    }

    private struct Anchored {
        var node: Node
        var size: Int
    }

    let file: String
    /// Interned once: every node's location refers to it without copying the name.
    let fileID: SourceLocation.FileID
    let limits: YAMLLimits
    private(set) var documents: [SourceDocument] = []
    private(set) var diagnostics: [Diagnostic] = []

    private var frames: [Frame] = []
    private var values = NodeStack()
    private var anchors: [String: Anchored] = [:]
    private var root: Node?
    private var expansion = 0
    private var documentIndex = 0
    private var documentLocation: SourceLocation
    /// Set after an alias-limit error: the rest of the document is read but not built.
    private var skippingDocument = false
    private var skipDepth = 0
    private var stopFile = false

    init(file: String, limits: YAMLLimits) {
        self.file = file
        let id = SourceLocation.FileID(file)
        self.fileID = id
        self.limits = limits
        self.documentLocation = SourceLocation(fileID: id, line: 1, column: 1)
    }

    // MARK: - Driving libyaml

    mutating func run(_ input: UnsafeBufferPointer<UInt8>) {
        guard let stream = EventStream(input: input) else {
            diagnostics.append(.error("yaml-syntax", "cannot initialise the YAML parser", at: location(line: 1, column: 1)))
            return
        }
        defer { stream.close() }
        while true {
            guard yaml_parser_parse(stream.parser, stream.event) == 1 else {
                reportParserError(stream.parser.pointee, input: input)
                return
            }
            let end = stream.event.pointee.type == YAML_STREAM_END_EVENT
            if skippingDocument {
                skip(stream.event)
            } else {
                handle(stream.event)
            }
            yaml_event_delete(stream.event)
            if end || stopFile { return }
        }
    }

    private mutating func handle(_ e: UnsafeMutablePointer<yaml_event_t>) {
        switch e.pointee.type {
        case YAML_SCALAR_EVENT:
            scalar(e)
        case YAML_SEQUENCE_START_EVENT:
            let data = e.pointee.data.sequence_start
            startCollection(isMapping: false, mark: e.pointee.start_mark, anchor: data.anchor, tag: data.tag)
        case YAML_MAPPING_START_EVENT:
            let data = e.pointee.data.mapping_start
            startCollection(isMapping: true, mark: e.pointee.start_mark, anchor: data.anchor, tag: data.tag)
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            endCollection()
        case YAML_ALIAS_EVENT:
            alias(e)
        case YAML_DOCUMENT_START_EVENT:
            startDocument(mark: e.pointee.start_mark)
        case YAML_DOCUMENT_END_EVENT:
            endDocument()
        case YAML_STREAM_END_EVENT:
            if documentIndex == 0 && diagnostics.isEmpty {
                // A file of only comments is one empty document.
                documents.append(SourceDocument(file: file, index: 0, root: nil, location: location(line: 1, column: 1)))
            }
        default:
            break
        }
    }

    /// After an alias-limit error, drains the document, still guarding depth so a deep tail can't
    /// make libyaml grow its stacks without bound.
    private mutating func skip(_ e: UnsafeMutablePointer<yaml_event_t>) {
        switch e.pointee.type {
        case YAML_SEQUENCE_START_EVENT, YAML_MAPPING_START_EVENT:
            skipDepth += 1
            if skipDepth > limits.maxDepth {
                depthExceeded(at: e.pointee.start_mark)
            }
        case YAML_SEQUENCE_END_EVENT, YAML_MAPPING_END_EVENT:
            skipDepth -= 1
        case YAML_DOCUMENT_END_EVENT:
            skippingDocument = false
            documentIndex += 1
        default:
            break
        }
    }

    // MARK: - Documents

    private mutating func startDocument(mark: yaml_mark_t) {
        if documentIndex >= limits.maxDocumentsPerFile {
            diagnostics.append(.error(
                "yaml-size-limit",
                "file has more than \(limits.maxDocumentsPerFile) documents",
                at: location(mark)))
            stopFile = true
            return
        }
        documentLocation = location(mark)
        frames.removeAll(keepingCapacity: true)
        values.removeAll()
        anchors.removeAll(keepingCapacity: true)
        root = nil
        expansion = 0
    }

    private mutating func endDocument() {
        var documentRoot = root
        // `---` followed by nothing parses as an empty plain scalar: that is an empty document.
        if let r = documentRoot, case .scalar(let s) = r.value, s.text.isEmpty, s.style == .plain, s.tag == nil {
            documentRoot = nil
        }
        documents.append(SourceDocument(file: file, index: documentIndex, root: documentRoot, location: documentLocation))
        documentIndex += 1
        root = nil
    }

    private mutating func abortDocument() {
        skippingDocument = true
        skipDepth = frames.count
        frames.removeAll(keepingCapacity: true)
        values.removeAll()
        anchors.removeAll(keepingCapacity: true)
        root = nil
    }

    // MARK: - Nodes

    private mutating func scalar(_ e: UnsafeMutablePointer<yaml_event_t>) {
        let data = e.pointee.data.scalar
        let loc = location(e.pointee.start_mark)
        let count = Int(data.length)
        let text: String
        var isMergeKey = false
        if let value = data.value, count > 0 {
            let bytes = UnsafeBufferPointer(start: UnsafePointer(value), count: count)
            text = String(decoding: bytes, as: UTF8.self)
            isMergeKey = count == 2 && bytes[0] == 0x3C && bytes[1] == 0x3C
        } else {
            text = ""
        }
        let style: Scalar.Style
        switch data.style {
        case YAML_SINGLE_QUOTED_SCALAR_STYLE: style = .singleQuoted
        case YAML_DOUBLE_QUOTED_SCALAR_STYLE: style = .doubleQuoted
        case YAML_LITERAL_SCALAR_STYLE: style = .literal
        case YAML_FOLDED_SCALAR_STYLE: style = .folded
        default: style = .plain
        }
        var tag: String?
        if let t = data.tag {
            let name = String(cString: t)
            tag = name
            checkTag(name, allowed: Self.scalarTags, kind: "a scalar", at: loc)
        }
        isMergeKey = isMergeKey && style == .plain && tag == nil
        let node = Node(.scalar(Scalar(text, style: style, tag: tag)), at: loc)
        if let a = data.anchor {
            anchors[String(cString: a)] = Anchored(node: node, size: 1)
        }
        complete(node, size: 1, isMergeKey: isMergeKey)
    }

    private mutating func alias(_ e: UnsafeMutablePointer<yaml_event_t>) {
        let loc = location(e.pointee.start_mark)
        let name = e.pointee.data.alias.anchor.map { String(cString: $0) } ?? ""
        guard let target = anchors[name] else {
            diagnostics.append(.error(
                "yaml-syntax", "undefined alias '*\(name)'", at: loc,
                hint: "an alias must follow its anchor '&\(name)' in the same document, outside the anchored node"))
            complete(Node(.scalar(Scalar("")), at: loc), size: 1, isMergeKey: false)
            return
        }
        expansion += target.size
        if expansion > limits.maxAliasExpansion {
            aliasLimitExceeded(at: loc, what: "alias '*\(name)'")
            return
        }
        // The alias shares the anchored subtree; only the top node moves to the alias position.
        var node = target.node
        node.location = loc
        complete(node, size: target.size, isMergeKey: false)
    }

    private mutating func startCollection(
        isMapping: Bool, mark: yaml_mark_t,
        anchor: UnsafeMutablePointer<yaml_char_t>?, tag: UnsafeMutablePointer<yaml_char_t>?
    ) {
        if frames.count >= limits.maxDepth {
            depthExceeded(at: mark)
            return
        }
        let loc = location(mark)
        if let t = tag {
            checkTag(String(cString: t), allowed: isMapping ? Self.mappingTags : Self.sequenceTags,
                     kind: isMapping ? "a mapping" : "a list", at: loc)
        }
        frames.append(Frame(
            isMapping: isMapping, start: values.count, location: loc,
            anchor: anchor.map { String(cString: $0) }))
    }

    private mutating func endCollection() {
        guard let frame = frames.popLast() else { return }
        let node: Node
        if frame.isMapping {
            node = Node(.mapping(mappingEntries(frame)), at: frame.location)
        } else {
            node = Node(.sequence(values.popSequence(from: frame.start)), at: frame.location)
        }
        let size = frame.size + 1
        if let a = frame.anchor {
            anchors[a] = Anchored(node: node, size: size)
        }
        complete(node, size: size, isMergeKey: false)
    }

    /// Hands a finished node to its parent collection, or makes it the document root.
    private mutating func complete(_ node: consuming Node, size: Int, isMergeKey: Bool) {
        guard !frames.isEmpty else {
            root = node
            return
        }
        let top = frames.count - 1
        frames[top].size += size
        if frames[top].isMapping {
            if (values.count - frames[top].start) & 1 == 0 {
                if isMergeKey {
                    frames[top].hasMerge = true
                    frames[top].valueIsMergeSource = true
                }
            } else if frames[top].valueIsMergeSource {
                frames[top].valueIsMergeSource = false
                // Merged entries are copies of the source's entries: count them like an alias.
                expansion += size
                if expansion > limits.maxAliasExpansion {
                    aliasLimitExceeded(at: node.location, what: "merge key '<<'")
                    return
                }
            }
        }
        values.push(node)
    }

    // MARK: - Mappings

    private mutating func mappingEntries(_ frame: Frame) -> [MappingEntry] {
        var rejected: [Node] = []
        var entries = values.popEntries(from: frame.start, rejected: &rejected)
        for key in rejected {
            diagnostics.append(.error(
                "yaml-complex-key", "mapping key is \(key.kindDescription); keys must be scalars", at: key.location))
        }
        guard frame.hasMerge else {
            removeDuplicates(&entries)
            return entries
        }
        var explicit: [MappingEntry] = []
        explicit.reserveCapacity(entries.count)
        var mergeSources: [(before: Int, value: Node)] = []
        for e in entries {
            if let k = e.key.scalar, k.style == .plain, k.tag == nil, k.text == "<<" {
                mergeSources.append((explicit.count, e.value))
            } else {
                explicit.append(e)
            }
        }
        removeDuplicates(&explicit)
        return merged(explicit, sources: mergeSources)
    }

    /// Reports each repeated key against its first occurrence and keeps only the first.
    private mutating func removeDuplicates(_ entries: inout [MappingEntry]) {
        guard entries.count > 1 else { return }
        var duplicates: [Int] = []
        func report(_ e: MappingEntry, first: MappingEntry) {
            diagnostics.append(.error(
                "yaml-duplicate-key",
                "duplicate key '\(e.keyText ?? "")' (first defined at line \(first.key.location.line))",
                at: e.key.location))
        }
        if entries.count <= 16 {
            // Keys compared in place (reading `entries[i].keyText` copied each entry), lengths first.
            let found = entries.withUnsafeBufferPointer { es -> [(Int, Int)] in
                var found: [(Int, Int)] = []
                let base = es.baseAddress!
                for i in 1..<es.count {
                    guard case .scalar(let a) = (base + i).pointee.key.value else { continue }
                    for j in 0..<i {
                        guard case .scalar(let b) = (base + j).pointee.key.value else { continue }
                        if a.text.utf8.count == b.text.utf8.count && a.text == b.text {
                            found.append((i, j))
                            break
                        }
                    }
                }
                return found
            }
            for (i, j) in found {
                report(entries[i], first: entries[j])
                duplicates.append(i)
            }
        } else {
            var first: [String: Int] = [:]
            first.reserveCapacity(entries.count)
            for (i, e) in entries.enumerated() {
                let text = e.keyText ?? ""
                if let j = first[text] {
                    report(e, first: entries[j])
                    duplicates.append(i)
                } else {
                    first[text] = i
                }
            }
        }
        for i in duplicates.reversed() {
            entries.remove(at: i)
        }
    }

    /// YAML merge keys: explicit keys win; among merged sources the earlier one wins. Merged entries
    /// are inserted where the `<<` key stood.
    private mutating func merged(_ explicit: [MappingEntry], sources: [(before: Int, value: Node)]) -> [MappingEntry] {
        var seen = Set<String>(minimumCapacity: explicit.count)
        for e in explicit {
            if let t = e.keyText { seen.insert(t) }
        }
        var result: [MappingEntry] = []
        result.reserveCapacity(explicit.count)
        var next = 0
        for index in 0...explicit.count {
            while next < sources.count, sources[next].before == index {
                mergeEntries(from: sources[next].value, into: &result, seen: &seen)
                next += 1
            }
            if index < explicit.count {
                result.append(explicit[index])
            }
        }
        return result
    }

    private mutating func mergeEntries(from source: Node, into result: inout [MappingEntry], seen: inout Set<String>) {
        func add(_ entries: [MappingEntry]) {
            for e in entries {
                if let t = e.keyText, seen.insert(t).inserted {
                    result.append(e)
                }
            }
        }
        switch source.value {
        case .mapping(let entries):
            add(entries)
        case .sequence(let items):
            for item in items {
                if case .mapping(let entries) = item.value {
                    add(entries)
                } else {
                    invalidMerge(item)
                }
            }
        case .scalar:
            invalidMerge(source)
        }
    }

    private mutating func invalidMerge(_ node: Node) {
        diagnostics.append(.error(
            "yaml-syntax", "merge key '<<' needs a mapping or a list of mappings, found \(node.kindDescription)",
            at: node.location))
    }

    // MARK: - Tags

    private static let core = "tag:yaml.org,2002:"
    private static let scalarTags: Set<String> = Set(["str", "int", "bool", "float", "null"].map { core + $0 })
    private static let mappingTags: Set<String> = [core + "map"]
    private static let sequenceTags: Set<String> = [core + "seq"]

    private mutating func checkTag(_ tag: String, allowed: Set<String>, kind: String, at loc: SourceLocation) {
        guard !allowed.contains(tag) else { return }
        let shown = tag.hasPrefix(Self.core) ? "!!" + tag.dropFirst(Self.core.count) : tag
        let isCore = tag.hasPrefix(Self.core)
            && (Self.scalarTags.contains(tag) || Self.mappingTags.contains(tag) || Self.sequenceTags.contains(tag))
        diagnostics.append(.error(
            "yaml-tag",
            isCore ? "tag '\(shown)' cannot be applied to \(kind)" : "unsupported tag '\(shown)'",
            at: loc,
            hint: "only the YAML core tags !!str, !!int, !!bool, !!float, !!null, !!map and !!seq are allowed"))
    }

    // MARK: - Limits and errors

    private mutating func depthExceeded(at mark: yaml_mark_t) {
        diagnostics.append(.error(
            "yaml-depth-limit", "collections nested deeper than the limit of \(limits.maxDepth)", at: location(mark)))
        // Stop reading: libyaml's own stacks grow with depth, so the rest of the file is not consumed.
        stopFile = true
    }

    private mutating func aliasLimitExceeded(at loc: SourceLocation, what: String) {
        diagnostics.append(.error(
            "yaml-alias-limit",
            "\(what) expands the document past the limit of \(limits.maxAliasExpansion) nodes",
            at: loc, hint: "this looks like an alias bomb; the rest of the document was not read"))
        abortDocument()
    }

    private mutating func reportParserError(_ p: yaml_parser_t, input: UnsafeBufferPointer<UInt8>) {
        let problem = p.problem.map { String(cString: $0) } ?? "unknown error"
        switch p.error {
        case YAML_READER_ERROR:
            let (line, column) = Self.lineColumn(ofByte: Int(p.problem_offset), in: input)
            let loc = location(line: line, column: column)
            if problem.contains("control character") {
                diagnostics.append(.error("yaml-syntax", "control characters are not allowed", at: loc))
            } else {
                let byte = p.problem_value >= 0 ? " (byte 0x\(String(p.problem_value, radix: 16, uppercase: true)))" : ""
                diagnostics.append(.error("yaml-invalid-utf8", "input is not valid UTF-8: \(problem)\(byte)", at: loc))
            }
        case YAML_MEMORY_ERROR:
            diagnostics.append(.error("yaml-syntax", "out of memory while parsing", at: nil))
        default:
            var message = problem
            if let c = p.context {
                let cm = p.context_mark
                message += " (\(String(cString: c)) at line \(cm.line + 1), column \(cm.column + 1))"
            }
            diagnostics.append(.error("yaml-syntax", message, at: location(p.problem_mark)))
        }
    }

    /// 1-based line and column (in Unicode scalars) of a byte offset, counting line breaks the way
    /// libyaml does (LF, CR, CRLF, NEL, LS, PS). An offset inside a multi-byte sequence (libyaml
    /// points at the bad trailing octet) is reported at the sequence's first byte.
    static func lineColumn(ofByte offset: Int, in input: UnsafeBufferPointer<UInt8>) -> (Int, Int) {
        var line = 1
        var column = 1
        var i = 0
        let end = min(offset, input.count)
        while i < end {
            let b = input[i]
            let length = b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4
            if i + length > end { break }
            if b == 0x0A {
                line += 1; column = 1
            } else if b == 0x0D {
                if i + 1 < end, input[i + 1] == 0x0A { i += 1 }
                line += 1; column = 1
            } else if length == 2, b == 0xC2, input[i + 1] == 0x85 {
                line += 1; column = 1
            } else if length == 3, b == 0xE2, input[i + 1] == 0x80, input[i + 2] == 0xA8 || input[i + 2] == 0xA9 {
                line += 1; column = 1
            } else {
                column += 1
            }
            i += length
        }
        return (line, column)
    }

    private func location(_ mark: yaml_mark_t) -> SourceLocation {
        SourceLocation(fileID: fileID, line: Int(mark.line) + 1, column: Int(mark.column) + 1)
    }

    private func location(line: Int, column: Int) -> SourceLocation {
        SourceLocation(fileID: fileID, line: line, column: column)
    }
}
