import Foundation

/// A position in a manifest file. Lines and columns are 1-based, columns count Unicode scalars.
///
/// Every YAML node carries one, so it is kept small and free of reference counting: the file name is
/// an index into a process-wide table of interned names (copying a location retains nothing), and
/// line and column are stored in 32 bits. `file`, `line` and `column` read and write as before.
public struct SourceLocation: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    /// An interned file name: equal names have equal ids within a process.
    public struct FileID: Sendable, Hashable {
        fileprivate let index: UInt32

        public init(_ file: String) { index = InternedStrings.files.intern(file) }

        public var name: String { InternedStrings.files.string(at: index) }
    }

    public var fileID: FileID
    private var line32: Int32
    private var column32: Int32

    public var file: String {
        get { fileID.name }
        set { fileID = FileID(newValue) }
    }

    public var line: Int {
        get { Int(line32) }
        set { line32 = Int32(clamping: newValue) }
    }

    public var column: Int {
        get { Int(column32) }
        set { column32 = Int32(clamping: newValue) }
    }

    public init(file: String, line: Int, column: Int) {
        self.init(fileID: FileID(file), line: line, column: column)
    }

    /// For producers of many locations in one file: intern the name once, not per location.
    public init(fileID: FileID, line: Int, column: Int) {
        self.fileID = fileID
        self.line32 = Int32(clamping: line)
        self.column32 = Int32(clamping: column)
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        if a.fileID != b.fileID { return a.file < b.file }
        return (a.line32, a.column32) < (b.line32, b.column32)
    }

    private enum CodingKeys: String, CodingKey { case file, line, column }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(file: try c.decode(String.self, forKey: .file), line: try c.decode(Int.self, forKey: .line),
                  column: try c.decode(Int.self, forKey: .column))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(file, forKey: .file)
        try c.encode(line, forKey: .line)
        try c.encode(column, forKey: .column)
    }
}

/// Append-only tables of interned strings (file names, YAML tags): few distinct values, referred to
/// by millions of nodes. Index 0 is reserved so that 0 can mean "none".
final class InternedStrings: @unchecked Sendable {
    static let files = InternedStrings()
    static let tags = InternedStrings()

    // Guarded by `lock`.
    private var strings: [String] = [""]
    private var indices: [String: UInt32] = [:]
    private let lock = NSLock()

    func intern(_ s: String) -> UInt32 {
        lock.lock()
        defer { lock.unlock() }
        if let i = indices[s] { return i }
        let i = UInt32(strings.count)
        strings.append(s)
        indices[s] = i
        return i
    }

    func string(at index: UInt32) -> String {
        lock.lock()
        defer { lock.unlock() }
        return strings[Int(index)]
    }
}

public enum Severity: String, Sendable, Hashable, Codable, Comparable {
    case error, warning, note

    private var rank: Int { self == .error ? 0 : self == .warning ? 1 : 2 }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One problem found in the input, in the manner of a compiler diagnostic.
/// `code` is a stable rule identifier (e.g. `unknown-field`) that tests and editors can key on.
public struct Diagnostic: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var severity: Severity
    public var code: String
    public var message: String
    public var location: SourceLocation?
    public var hint: String?

    public init(_ severity: Severity = .error, code: String, _ message: String, at location: SourceLocation?, hint: String? = nil) {
        self.severity = severity
        self.code = code
        self.message = message
        self.location = location
        self.hint = hint
    }

    public static func error(_ code: String, _ message: String, at location: SourceLocation?, hint: String? = nil) -> Diagnostic {
        Diagnostic(.error, code: code, message, at: location, hint: hint)
    }

    public static func warning(_ code: String, _ message: String, at location: SourceLocation?, hint: String? = nil) -> Diagnostic {
        Diagnostic(.warning, code: code, message, at: location, hint: hint)
    }

    /// `file:line:col: error: message` — the one-line form.
    public var description: String {
        let prefix = location.map { "\($0): " } ?? ""
        return "\(prefix)\(severity.rawValue): \(message)"
    }
}

/// An ordered collection of diagnostics; everything found in one run, never just the first.
public struct Diagnostics: Sendable, Hashable, Codable {
    public private(set) var items: [Diagnostic] = []

    public init(_ items: [Diagnostic] = []) { self.items = items }

    public mutating func append(_ d: Diagnostic) { items.append(d) }
    public mutating func append(contentsOf ds: [Diagnostic]) { items.append(contentsOf: ds) }
    public mutating func append(contentsOf ds: Diagnostics) { items.append(contentsOf: ds.items) }
    public mutating func error(_ code: String, _ message: String, at location: SourceLocation?, hint: String? = nil) {
        items.append(.error(code, message, at: location, hint: hint))
    }

    public var hasErrors: Bool { items.contains { $0.severity == .error } }
    public var errorCount: Int { items.lazy.filter { $0.severity == .error }.count }
    public var warningCount: Int { items.lazy.filter { $0.severity == .warning }.count }
    public var isEmpty: Bool { items.isEmpty }

    /// Sorted by file, line, column; diagnostics without a location come first. Stable for equal keys.
    public var sorted: [Diagnostic] {
        items.enumerated().sorted { l, r in
            switch (l.element.location, r.element.location) {
            case (nil, nil): return l.offset < r.offset
            case (nil, _): return true
            case (_, nil): return false
            case let (a?, b?): return a == b ? l.offset < r.offset : a < b
            }
        }.map(\.element)
    }
}
