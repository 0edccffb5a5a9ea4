import FleetYAML
import Foundation

/// Reads a manifest directory as it was at a git revision, without touching the work tree.
enum GitSource {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Runs git with an argv (never a shell string) and returns stdout.
    static func git(_ args: [String], in directory: String) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-C", directory] + args
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch { throw Failure(description: "cannot run git: \(error)") }
        // Read both pipes to the end before waiting, so a large output cannot deadlock the child.
        let stderrBox = DataBox()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrBox.set(err.fileHandleForReading.readDataToEndOfFile())
            group.leave()
        }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let stderrData = stderrBox.get()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: stderrData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Failure(description: "git \(args.joined(separator: " ")) failed: \(message)")
        }
        return data
    }

    /// Loads `directory` (a path inside a git work tree) as of `ref`.
    static func load(directory: String, ref: String) throws -> ManifestSet {
        _ = try git(["rev-parse", "--verify", "--quiet", "\(ref)^{commit}"], in: directory)
        // Paths relative to `directory` (ls-tree shows them relative to the current directory).
        let listing = try git(["ls-tree", "-r", "-z", "--name-only", ref, "--", "."], in: directory)
        let paths = listing.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        var files: [(relativePath: String, bytes: [UInt8])] = []
        for path in paths where path.hasSuffix(".yaml") || path.hasSuffix(".yml") || path.hasSuffix(".mcpfleetignore") {
            let blob = try git(["show", "\(ref):./\(path)"], in: directory)
            files.append((path, Array(blob)))
        }
        return ManifestLoader.load(root: directory, files: files)
    }

    static func headCommit(_ directory: String) -> String? {
        guard let data = try? git(["rev-parse", "HEAD"], in: directory) else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// A lock-protected buffer handed between the pipe-reading thread and the caller.
final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
