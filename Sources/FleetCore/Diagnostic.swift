/// A position in a manifest file. Lines and columns are 1-based, columns count Unicode scalars.
public struct SourceLocation: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
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
