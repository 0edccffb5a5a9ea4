import Foundation
import Testing

let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

/// The built `mcpfleet`: $MCPFLEET_BIN, else beside the test bundle in the build directory.
let mcpfleetBinary: String = {
    if let bin = ProcessInfo.processInfo.environment["MCPFLEET_BIN"], !bin.isEmpty { return bin }
    var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    while url.path != "/" && !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
    return url.deletingLastPathComponent().appendingPathComponent("mcpfleet").path
}()

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
    var all: String { stdout + stderr }
}

/// Runs a program with an argv (no shell), collecting both outputs.
func run(_ program: String, _ args: [String], cwd: String? = nil, environment: [String: String] = [:]) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    var env = ProcessInfo.processInfo.environment
    env["NO_COLOR"] = "1"
    for (k, v) in environment { env[k] = v }
    p.environment = env
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-run-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
    FileManager.default.createFile(atPath: outURL.path, contents: nil)
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    p.standardOutput = try FileHandle(forWritingTo: outURL)
    p.standardError = try FileHandle(forWritingTo: errURL)
    p.standardInput = FileHandle.nullDevice
    try p.run()
    p.waitUntilExit()
    return RunResult(status: p.terminationStatus,
                     stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                     stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
}

func mcpfleet(_ args: String..., cwd: String? = nil) throws -> RunResult {
    try run(mcpfleetBinary, args, cwd: cwd)
}

func makeTempDirectory(_ name: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func git(_ args: String..., in dir: String) throws {
    let r = try run("/usr/bin/git", ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"] + args, cwd: dir)
    if r.status != 0 { throw CLIError("git \(args.joined(separator: " ")) failed: \(r.all)") }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
