import FleetCore
import FleetYAML
import Foundation

/// Reads a manifest directory as it was at a git revision, without touching the work tree.
///
/// Symbolic links in the tree are followed only while they stay inside the manifest directory (read
/// lexically, from the link text stored in git); one that leaves it is an error naming the link, and
/// its target is never read — as on disk (`RootConfinement`).
public enum GitSource {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs git with an argv (never a shell string) and returns stdout; `input` is written to its stdin.
    /// A failure carries git's own message.
    public static func git(_ args: [String], in directory: String, input: Data? = nil) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // --no-optional-locks: reads such as `status` must never take the repository's index.lock (git
        // takes it to refresh stat data), or an operator's own `git commit` in the watched repository
        // fails with "index.lock exists" while the controller looks.
        process.arguments = ["git", "--no-optional-locks", "-C", directory] + args
        let out = Pipe(), err = Pipe(), inPipe = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input == nil ? FileHandle.nullDevice : inPipe
        do { try process.run() } catch { throw Failure(description: "cannot run git: \(error)") }
        // Stdin written and stderr read on their own threads, stdout here, so no pipe can fill up and
        // stall the child (cat-file --batch answers while it is still being asked).
        let stderrBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrBox.set(err.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        if let input {
            group.enter()
            DispatchQueue.global().async {
                try? inPipe.fileHandleForWriting.write(contentsOf: input)
                try? inPipe.fileHandleForWriting.close()
                group.leave()
            }
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let stderrData = stderrBox.get()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            var message = String(decoding: stderrData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if message.isEmpty { message = "exit status \(process.terminationStatus)" }
            throw Failure(description: "git \(args.joined(separator: " ")) failed: \(message)")
        }
        return data
    }

    /// The tree of `directory` (a path inside a git work tree) at `ref`.
    public struct Tree {
        public struct Entry {
            var mode: String
            var object: String
        }

        var directory: String
        var ref: String
        /// Paths relative to `directory`.
        var entries: [String: Entry]

        public init(directory: String, ref: String) throws {
            self.directory = directory
            self.ref = ref
            // No --quiet: when the ref does not exist, git's own message says so.
            _ = try git(["rev-parse", "--verify", "\(ref)^{commit}"], in: directory)
            // `<mode> <type> <object>\t<path>` per entry, paths relative to `directory`.
            let listing = try git(["ls-tree", "-r", "-z", ref, "--", "."], in: directory)
            var entries: [String: Entry] = [:]
            for record in listing.split(separator: 0) {
                guard let tab = record.firstIndex(of: 0x09) else { continue }
                let head = String(decoding: record[record.startIndex..<tab], as: UTF8.self).split(separator: " ")
                guard head.count == 3 else { continue }
                entries[String(decoding: record[(tab + 1)...], as: UTF8.self)] = Entry(mode: String(head[0]), object: String(head[2]))
            }
            self.entries = entries
        }

        public static let linkMode = "120000"

        /// `path` with every link on the way followed inside the tree; nil when a link leads out of the
        /// directory (an absolute target, or `..` past the top) or the links go round.
        public func resolve(_ path: String) throws -> String? {
            var parts = path.split(separator: "/").map(String.init)
            var hops = 0
            var i = 0
            while i < parts.count {
                let prefix = parts[...i].joined(separator: "/")
                if let e = entries[prefix], e.mode == Self.linkMode {
                    hops += 1
                    guard hops <= 16 else { return nil }
                    let target = String(decoding: try blobs([e.object]).first ?? Data(), as: UTF8.self)
                    guard !target.hasPrefix("/") else { return nil }
                    var resolved = Array(parts[..<i])
                    for c in target.split(separator: "/") {
                        if c == "." || c.isEmpty { continue }
                        if c == ".." {
                            guard !resolved.isEmpty else { return nil }
                            resolved.removeLast()
                        } else {
                            resolved.append(String(c))
                        }
                    }
                    parts = resolved + parts[(i + 1)...]
                    i = 0
                    continue
                }
                i += 1
            }
            return parts.joined(separator: "/")
        }

        /// Contents of blobs by object id, in order, in one `git cat-file --batch`.
        public func blobs(_ objects: [String]) throws -> [Data] {
            guard !objects.isEmpty else { return [] }
            let out = try git(["cat-file", "--batch"], in: directory, input: Data((objects.joined(separator: "\n") + "\n").utf8))
            var result: [Data] = []
            var at = out.startIndex
            for object in objects {
                // `<object> <type> <size>\n<contents>\n`, or `<object> missing\n`.
                guard let eol = out[at...].firstIndex(of: 0x0a) else { throw Failure(description: "git cat-file: short output for \(object)") }
                let header = String(decoding: out[at..<eol], as: UTF8.self).split(separator: " ")
                guard header.count == 3, let size = Int(header[2]) else { throw Failure(description: "git cat-file: \(object) is missing") }
                let start = eol + 1
                result.append(out[start..<(start + size)])
                at = start + size + 1
            }
            return result
        }

        /// The manifest files (`*.yaml`, `*.yml`, `.mcpfleetignore`), links followed inside the directory.
        public func manifestSet() throws -> ManifestSet {
            var wanted: [(path: String, object: String)] = []
            var escapes: [Diagnostic] = []
            // The root's ignore file first: what it ignores is never read, links included.
            var ignoreText: String?
            if entries[".mcpfleetignore"] != nil {
                guard let resolved = try resolve(".mcpfleetignore"), let e = entries[resolved], e.mode.hasPrefix("100") else {
                    throw Failure(description: "\(ManifestLoader.displayPath(root: directory, relative: ".mcpfleetignore")) at \(ref) is a symbolic link that leads out of the manifest root")
                }
                ignoreText = String(decoding: try blobs([e.object]).first ?? Data(), as: UTF8.self)
                wanted.append((".mcpfleetignore", e.object))
            }
            for path in ManifestLoader.selected(entries.keys.sorted(), ignoreText: ignoreText) {
                guard let entry = entries[path], entry.mode != "160000" else { continue } // a submodule is no file
                guard let resolved = try resolve(path), let target = entries[resolved], target.mode != Self.linkMode, target.mode != "160000" else {
                    let shown = ManifestLoader.displayPath(root: directory, relative: path)
                    escapes.append(.error("link-outside-root", "'\(shown)' at \(ref) is a symbolic link that leads out of the manifest root; it is not read",
                                          at: SourceLocation(file: shown, line: 1, column: 1),
                                          hint: "manifests, evidence and keys must live under the manifest root"))
                    continue
                }
                wanted.append((path, target.object))
            }
            let contents = try blobs(wanted.map(\.object))
            var set = ManifestLoader.load(root: directory, files: zip(wanted, contents).map { ($0.path, Array($1)) })
            set.diagnostics.append(contentsOf: escapes)
            return set
        }

        /// Writes the files at `paths` (relative to the directory) as they were at `ref` under `root`,
        /// links followed inside the directory; paths that do not exist there (or leave it) are skipped.
        public func materialize(_ paths: [String], into root: String) throws {
            var wanted: [(path: String, object: String)] = []
            for path in Set(paths).sorted() {
                guard let resolved = try resolve(path), let e = entries[resolved], e.mode.hasPrefix("100") else { continue }
                wanted.append((path, e.object))
            }
            for (item, data) in zip(wanted, try blobs(wanted.map(\.object))) {
                let full = root + "/" + item.path
                try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                guard FileManager.default.createFile(atPath: full, contents: data) else { throw Failure(description: "cannot write \(full)") }
            }
        }
    }

    /// Loads `directory` (a path inside a git work tree) as of `ref`.
    public static func load(directory: String, ref: String) throws -> ManifestSet {
        try Tree(directory: directory, ref: ref).manifestSet()
    }

    public static func headCommit(_ directory: String) -> String? {
        guard let data = try? git(["rev-parse", "HEAD"], in: directory) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A lock-protected buffer handed between the pipe-reading thread and the caller.
public final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    public func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    public func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
