public import FleetCore
#if canImport(Glibc)
internal import Glibc
#elseif canImport(Musl)
internal import Musl
#elseif canImport(Darwin)
internal import Darwin
#endif

/// One manifest file as loaded: its display path, its text (for caret rendering) and its documents.
public struct ManifestFile: Sendable, Hashable {
    /// As shown in diagnostics: the root as given by the user joined with `relativePath`.
    public var path: String
    public var relativePath: String
    public var text: String
    public var documents: [SourceDocument]

    public init(path: String, relativePath: String, text: String, documents: [SourceDocument]) {
        self.path = path
        self.relativePath = relativePath
        self.text = text
        self.documents = documents
    }
}

/// Every manifest file under a root, in a deterministic order, with all problems found loading them.
public struct ManifestSet: Sendable, Hashable {
    public var root: String
    public var files: [ManifestFile]
    public var diagnostics: [Diagnostic]

    public init(root: String, files: [ManifestFile] = [], diagnostics: [Diagnostic] = []) {
        self.root = root
        self.files = files
        self.diagnostics = diagnostics
    }

    /// Appends per-file results (a file, or nil when it could not be read, and its diagnostics) in order.
    mutating func add(_ loaded: [(ManifestFile?, [Diagnostic])]) {
        files.reserveCapacity(files.count + loaded.count)
        for (file, diagnostics) in loaded {
            if let file { files.append(file) }
            self.diagnostics.append(contentsOf: diagnostics)
        }
    }

    /// All documents of all files, in file order.
    public var documents: [SourceDocument] { files.flatMap(\.documents) }
}

public enum ManifestLoader {
    static let ignoreFileName = ".mcpfleetignore"

    /// `path` is a directory (read recursively) or a single file. Reads `*.yaml` and `*.yml`, sorted
    /// by relative path (byte order), skipping hidden entries (names starting with ".") and anything
    /// matched by `.mcpfleetignore` at the root. Unreadable files become `io` diagnostics.
    /// Symbolic links are followed while they stay inside the manifest root (the directory, or a single
    /// file's directory); one that leaves it is an error naming the link, and its target is never read
    /// (a pull request adding `x.yaml -> /proc/self/environ` must not get the CI runner's environment
    /// printed in diagnostics). A directory reached twice (e.g. through a link cycle) is read once.
    public static func load(path: String, limits: YAMLLimits = .default) -> ManifestSet {
        var set = ManifestSet(root: path)
        var info = stat()
        guard stat(path, &info) == 0 else {
            set.diagnostics.append(ioError("cannot read '\(path)': \(errnoText())"))
            return set
        }
        if !isDirectory(info) {
            let name = path.split(separator: "/").last.map(String.init) ?? path
            let directory = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
            if let escape = RootConfinement(root: directory.isEmpty ? "/" : directory)?.escape(path) {
                set.diagnostics.append(escape)
                return set
            }
            switch readFile(path, limit: limits.maxBytes) {
            case .success(let bytes):
                set.files.append(makeFile(path: path, relativePath: name, bytes: bytes, limits: limits, diagnostics: &set.diagnostics))
            case .failure(let message):
                set.diagnostics.append(ioError(message))
            }
            return set
        }

        guard let confinement = RootConfinement(root: path) else {
            set.diagnostics.append(ioError("cannot resolve '\(path)': \(errnoText())"))
            return set
        }
        var rules = IgnoreRules()
        let ignorePath = join(path, ignoreFileName)
        if let escape = confinement.escape(ignorePath) {
            set.diagnostics.append(escape)
        } else if access(ignorePath, F_OK) == 0 {
            switch readFile(ignorePath, limit: 1 << 20) {
            case .success(let bytes): rules = IgnoreRules(String(decoding: bytes, as: UTF8.self))
            case .failure(let message): set.diagnostics.append(ioError(message))
            }
        }

        var found: [String] = []
        var visited: Set<FileID> = [FileID(info)]
        walk(directory: path, relative: "", rules: rules, confinement: confinement, visited: &visited, found: &found, diagnostics: &set.diagnostics)
        found.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        // Files are read and parsed on every core; results are merged in file order, so files and
        // diagnostics come out exactly as a sequential loop would give them.
        let loaded = Parallel.map(found.count, minimumChunk: 2) { i -> (ManifestFile?, [Diagnostic]) in
            let full = join(path, found[i])
            switch readFile(full, limit: limits.maxBytes) {
            case .success(let bytes):
                var diagnostics: [Diagnostic] = []
                let file = makeFile(path: full, relativePath: found[i], bytes: bytes, limits: limits, diagnostics: &diagnostics)
                return (file, diagnostics)
            case .failure(let message):
                return (nil, [ioError(message)])
            }
        }
        set.add(loaded)
        return set
    }

    /// Same, from in-memory files (relativePath -> bytes), used for `plan --against GIT-REF` which
    /// reads files from git. A `.mcpfleetignore` among the files applies as it would on disk.
    public static func load(root: String, files: [(relativePath: String, bytes: [UInt8])], limits: YAMLLimits = .default) -> ManifestSet {
        var set = ManifestSet(root: root)
        var rules = IgnoreRules()
        if let ignore = files.first(where: { normalize($0.relativePath) == ignoreFileName }) {
            rules = IgnoreRules(String(decoding: ignore.bytes, as: UTF8.self))
        }
        var selected: [(relativePath: String, bytes: [UInt8])] = []
        for file in files {
            let relativePath = normalize(file.relativePath)
            if selects(relativePath, rules) { selected.append((relativePath, file.bytes)) }
        }
        selected.sort { $0.relativePath.utf8.lexicographicallyPrecedes($1.relativePath.utf8) }
        let loaded = Parallel.map(selected.count, minimumChunk: 2) { i -> (ManifestFile?, [Diagnostic]) in
            var diagnostics: [Diagnostic] = []
            let file = makeFile(path: join(root, selected[i].relativePath), relativePath: selected[i].relativePath,
                                bytes: selected[i].bytes, limits: limits, diagnostics: &diagnostics)
            return (file, diagnostics)
        }
        set.add(loaded)
        return set
    }

    /// Of `paths` (relative to a root), the ones a load would read: manifest names, not hidden, not
    /// matched by the root's `.mcpfleetignore` (its text, when there is one).
    public static func selected(_ paths: [String], ignoreText: String?) -> [String] {
        let rules = ignoreText.map(IgnoreRules.init) ?? IgnoreRules()
        return paths.filter { selects(normalize($0), rules) }
    }

    private static func selects(_ relativePath: String, _ rules: IgnoreRules) -> Bool {
        let components = relativePath.split(separator: "/")
        guard let name = components.last, isManifestName(name), !components.contains(where: { $0.hasPrefix(".") }) else { return false }
        var prefix = ""
        for (i, component) in components.enumerated() {
            prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
            if rules.ignores(prefix, isDirectory: i < components.count - 1) { return false }
        }
        return true
    }

    // MARK: - Helpers

    private static func makeFile(path: String, relativePath: String, bytes: [UInt8], limits: YAMLLimits, diagnostics: inout [Diagnostic]) -> ManifestFile {
        let result = YAMLLoader.parse(bytes, file: path, limits: limits)
        diagnostics.append(contentsOf: result.diagnostics)
        let text = bytes.count > limits.maxBytes ? "" : String(decoding: bytes, as: UTF8.self)
        return ManifestFile(path: path, relativePath: relativePath, text: text, documents: result.documents)
    }

    private static func isManifestName<S: StringProtocol>(_ name: S) -> Bool {
        name.hasSuffix(".yaml") || name.hasSuffix(".yml")
    }

    private static func normalize(_ relativePath: String) -> String {
        var p = Substring(relativePath)
        while p.hasPrefix("./") { p = p.dropFirst(2) }
        while p.hasPrefix("/") { p = p.dropFirst() }
        return String(p)
    }

    /// A file under the root as diagnostics show it.
    public static func displayPath(root: String, relative: String) -> String { join(root, relative) }

    static func join(_ root: String, _ relative: String) -> String {
        if root.isEmpty { return relative }
        return root.hasSuffix("/") ? root + relative : root + "/" + relative
    }

    private static func ioError(_ message: String) -> Diagnostic {
        .error("io", message, at: nil)
    }

    private struct FileID: Hashable {
        var device: UInt64
        var inode: UInt64
        init(_ s: stat) {
            device = UInt64(truncatingIfNeeded: s.st_dev)
            inode = UInt64(truncatingIfNeeded: s.st_ino)
        }
    }

    private static func isDirectory(_ s: stat) -> Bool { (s.st_mode & S_IFMT) == S_IFDIR }
    private static func isRegular(_ s: stat) -> Bool { (s.st_mode & S_IFMT) == S_IFREG }

    private static func errnoText() -> String { String(cString: strerror(errno)) }

    private static func walk(
        directory: String, relative: String, rules: IgnoreRules, confinement: RootConfinement,
        visited: inout Set<FileID>, found: inout [String], diagnostics: inout [Diagnostic]
    ) {
        guard let dir = opendir(directory) else {
            diagnostics.append(ioError("cannot read directory '\(directory)': \(errnoText())"))
            return
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name.hasPrefix(".") { continue }
            names.append(name)
        }
        closedir(dir)
        names.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }

        for name in names {
            let full = join(directory, name)
            let rel = relative.isEmpty ? name : relative + "/" + name
            var info = stat()
            if lstat(full, &info) == 0, (info.st_mode & S_IFMT) == S_IFLNK, let escape = confinement.escape(full) {
                // Reported only where it would have been read: ignored paths stay quiet.
                if !rules.ignores(rel, isDirectory: false) && !rules.ignores(rel, isDirectory: true) { diagnostics.append(escape) }
                continue
            }
            guard stat(full, &info) == 0 else {
                // A dangling link or a racing delete: only worth reporting if it looked like a manifest.
                if isManifestName(name) && !rules.ignores(rel, isDirectory: false) {
                    diagnostics.append(ioError("cannot read '\(full)': \(errnoText())"))
                }
                continue
            }
            if isDirectory(info) {
                guard !rules.ignores(rel, isDirectory: true) else { continue }
                guard visited.insert(FileID(info)).inserted else { continue }
                walk(directory: full, relative: rel, rules: rules, confinement: confinement, visited: &visited, found: &found, diagnostics: &diagnostics)
            } else if isRegular(info), isManifestName(name), !rules.ignores(rel, isDirectory: false) {
                found.append(rel)
            }
        }
    }

    private enum ReadResult {
        case success([UInt8])
        case failure(String)
    }

    /// Reads at most `limit + 1` bytes, so an oversized file is detected without reading all of it.
    private static func readFile(_ path: String, limit: Int) -> ReadResult {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return .failure("cannot read '\(path)': \(errnoText())") }
        defer { close(fd) }
        var info = stat()
        if fstat(fd, &info) == 0, isDirectory(info) {
            return .failure("cannot read '\(path)': is a directory")
        }
        let cap = limit < Int.max ? limit + 1 : limit
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(max(Int(info.st_size), 0) + 1, cap))
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while bytes.count < cap {
            let want = min(chunk.count, cap - bytes.count)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure("cannot read '\(path)': \(errnoText())")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return .success(bytes)
    }
}

/// The manifest root as the file system resolves it, and the check that a path stays inside it once
/// every symbolic link on the way is followed.
public struct RootConfinement: Sendable {
    /// `realpath` of the root.
    public let resolvedRoot: String

    public init?(root: String) {
        guard let r = RootConfinement.resolve(root) else { return nil }
        resolvedRoot = r
    }

    /// The path with every link followed, or nil when it does not exist (or cannot be resolved).
    public static func resolve(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// Whether `path` (existing) resolves to the root or below it; nil when it does not exist.
    public func contains(_ path: String) -> Bool? {
        guard let r = Self.resolve(path) else { return nil }
        return r == resolvedRoot || r.hasPrefix(resolvedRoot == "/" ? "/" : resolvedRoot + "/")
    }

    /// An error naming `path` when it resolves outside the root; nil when it stays inside or does not
    /// exist. The target is never named or read: it may be anything on the machine.
    public func escape(_ path: String) -> Diagnostic? {
        guard contains(path) == false else { return nil }
        return .error("link-outside-root", "'\(path)' is a symbolic link (or under one) that leads out of the manifest root; it is not read",
                      at: SourceLocation(file: path, line: 1, column: 1),
                      hint: "manifests, evidence and keys must live under the manifest root; copy the file in instead of linking to it")
    }
}
