import Foundation

/// The outcome of one command.
public struct CommandResult: Sendable, Hashable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs a program with an argv, never through a shell, so no argument is ever re-parsed.
public protocol CommandRunner: Sendable {
    func run(_ argv: [String]) async throws -> CommandResult
}

/// Runs commands on this host.
public struct ProcessCommandRunner: CommandRunner {
    public init() {}

    public func run(_ argv: [String]) async throws -> CommandResult {
        guard let program = argv.first else { throw CommandRunnerError.emptyCommand }
        let argv = Array(argv)
        return try await withCheckedThrowingContinuation { continuation in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: program.hasPrefix("/") ? program : "/usr/bin/env")
            process.arguments = program.hasPrefix("/") ? Array(argv.dropFirst()) : argv
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            // Read both pipes while the process runs, so a large output cannot block it on a full pipe.
            let collector = OutputCollector()
            let group = DispatchGroup()
            for (pipe, isOut) in [(out, true), (err, false)] {
                group.enter()
                DispatchQueue.global().async {
                    let data = pipe.fileHandleForReading.readDataToEndOfFile()
                    collector.set(data, stdout: isOut)
                    group.leave()
                }
            }
            process.terminationHandler = { p in
                group.notify(queue: .global()) {
                    let (o, e) = collector.value
                    continuation.resume(returning: CommandResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self)))
                }
            }
            do {
                try process.run()
            } catch {
                continuation.resume(throwing: CommandRunnerError.launchFailed(program, String(describing: error)))
                return
            }
            // Process closes the parent's write ends after spawning, so the readers see EOF at exit.
        }
    }
}

private final class OutputCollector: @unchecked Sendable {
    private let lock = NSLock()
    private var out = Data(), err = Data()

    func set(_ data: Data, stdout: Bool) {
        lock.lock(); defer { lock.unlock() }
        if stdout { out = data } else { err = data }
    }

    var value: (Data, Data) {
        lock.lock(); defer { lock.unlock() }
        return (out, err)
    }
}

/// Runs commands inside the mount and PID namespaces of another process, e.g. a systemd booted as
/// PID 1 of a sandbox: `nsenter -t PID -m -p ARGV…`.
public struct NsenterCommandRunner: CommandRunner {
    public let pid: Int32
    let inner: any CommandRunner

    public init(pid: Int32, inner: any CommandRunner = ProcessCommandRunner()) {
        self.pid = pid
        self.inner = inner
    }

    public func run(_ argv: [String]) async throws -> CommandResult {
        try await inner.run(["/usr/bin/nsenter", "-t", String(pid), "-m", "-p", "--"] + argv)
    }
}

public enum CommandRunnerError: Error, CustomStringConvertible {
    case emptyCommand
    case launchFailed(String, String)

    public var description: String {
        switch self {
        case .emptyCommand: "empty command"
        case .launchFailed(let p, let why): "cannot run \(p): \(why)"
        }
    }
}
