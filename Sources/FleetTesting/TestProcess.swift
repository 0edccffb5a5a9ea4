import Foundation

/// A child process for tests (real MCP servers, the mcpfleet binary), killed when the test is done.
public final class TestProcess: @unchecked Sendable {
    public let process: Process
    public let outputPath: String

    /// Starts `executable` with `arguments`; stdout and stderr go to a temporary log file.
    public init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, b in b } }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        outputPath = NSTemporaryDirectory() + "mcpfleet-test-\(UUID().uuidString).log"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }
    public var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    public func signal(_ sig: Int32) { if process.isRunning { kill(process.processIdentifier, sig) } }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    public func stop(grace: Duration = .seconds(5)) async {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now.advanced(by: grace)
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Waits for exit (bounded) and returns the status.
    public func wait(timeout: Duration = .seconds(60)) async throws -> Int32 {
        try await waitUntil("exit of \(process.executableURL?.lastPathComponent ?? "process")", timeout: timeout) { !process.isRunning }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

public enum TestEnvironment {
    /// A TCP port that was free a moment ago on 127.0.0.1.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// True once something accepts TCP connections on 127.0.0.1:`port`.
    public static func isListening(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } } == 0
    }

    public struct Missing: Error, CustomStringConvertible {
        public var description: String
    }

    /// The directory holding the test bundle (the build products directory).
    public static var buildProductsDirectory: String? {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        while url.path != "/" {
            if url.lastPathComponent.hasSuffix(".xctest") { return url.deletingLastPathComponent().path }
            url = url.deletingLastPathComponent()
        }
        // swift-testing on Linux may run a `*PackageTests.xctest` binary directly: its directory then.
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
        return FileManager.default.fileExists(atPath: bin) ? bin : nil
    }

    /// `MCP_EVERYTHING_SERVER`, else `mcp-everything-server` beside the test bundle. Throws (the test
    /// fails) when it cannot be found: a test that needs a real MCP server never passes without one.
    public static func everythingServer() throws -> String {
        if let path = ProcessInfo.processInfo.environment["MCP_EVERYTHING_SERVER"], FileManager.default.isExecutableFile(atPath: path) { return path }
        if let dir = buildProductsDirectory {
            let path = dir + "/mcp-everything-server"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw Missing(description: "mcp-everything-server not found: set MCP_EVERYTHING_SERVER or build it (`swift build --product mcp-everything-server`)")
    }

    /// `mcpfleet` beside the test bundle (or `MCPFLEET_BINARY`).
    public static func mcpfleetBinary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["MCPFLEET_BINARY"], FileManager.default.isExecutableFile(atPath: path) { return path }
        if let dir = buildProductsDirectory, FileManager.default.isExecutableFile(atPath: dir + "/mcpfleet") { return dir + "/mcpfleet" }
        throw Missing(description: "mcpfleet binary not found beside the test bundle: build the package first")
    }

    /// The repository root (walking up from this source file to Package.swift).
    public static func repositoryRoot(file: String = #filePath) -> String {
        if let root = ProcessInfo.processInfo.environment["MCPFLEET_REPO_ROOT"] { return root }
        var url = URL(fileURLWithPath: file).resolvingSymlinksInPath().deletingLastPathComponent()
        while url.path != "/" {
            if FileManager.default.fileExists(atPath: url.path + "/Package.swift") { return url.path }
            url = url.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath
    }

    /// Starts a real MCP server and waits until it listens. `kind`: `everything` or `time`.
    public static func startMCPServer(_ kind: String, port: Int) async throws -> TestProcess {
        let p: TestProcess
        switch kind {
        case "everything":
            p = try TestProcess(try everythingServer(), ["--port", String(port)])
        default:
            p = try TestProcess("/usr/bin/env", ["python3", repositoryRoot() + "/Manifests/servers/time/server.py", "--port", String(port)])
        }
        try await waitUntil("\(kind) MCP server on port \(port)", timeout: .seconds(30), every: .milliseconds(50)) {
            if !p.isRunning { throw Missing(description: "\(kind) server exited: \(p.output)") }
            return isListening(port)
        }
        return p
    }
}
