import Foundation
import Testing

/// Smoke test of the benchmark harness (Benchmarks/): the generator writes a catalog that
/// `mcpfleet validate` accepts, and `mcpfleet bench` prints its JSON lines. No timing is asserted.
@Suite struct BenchmarkHarnessTests {
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static let python: String? = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }
        ?? (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
            .map { "\($0)/python3" }.first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The `mcpfleet` executable: $MCPFLEET_BIN, else the one built beside the test bundle, if any.
    static let binary: String? = {
        if let bin = ProcessInfo.processInfo.environment["MCPFLEET_BIN"], !bin.isEmpty { return bin }
        var dirs = [Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent()]
        if let argv0 = CommandLine.arguments.first {
            var url = URL(fileURLWithPath: argv0).resolvingSymlinksInPath()
            dirs.append(url.deletingLastPathComponent())
            while url.path != "/" && !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
            dirs.append(url.deletingLastPathComponent())
        }
        return dirs.map { $0.appendingPathComponent("mcpfleet").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program with an argv, collecting both outputs through files (no pipe can fill up).
    static func run(_ executable: String, _ arguments: [String]) throws -> Output {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-bench-run-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("out"), errURL = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return Output(status: process.terminationStatus,
                      stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    static func jsonObject(_ line: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(object as? [String: Any])
    }

    @Test(.enabled(if: python != nil, "needs python3"))
    func generatedCatalogValidatesAndBenchPrintsJSON() throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("mcpfleet-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let script = Self.repoRoot.appendingPathComponent("Benchmarks/gen_catalog.py").path
        let gen = try Self.run(Self.python!, [script, "12", dir, "--files", "3"])
        #expect(gen.status == 0, "\(gen.stderr)")
        for file in ["tenants.yaml", "slo.yaml", "policy.yaml", "environments/local.yaml",
                     "servers/servers-0000.yaml", "servers/servers-0001.yaml", "servers/servers-0002.yaml"] {
            #expect(FileManager.default.fileExists(atPath: dir + "/" + file), "missing \(file)")
        }
        var servers = 0
        for k in 0..<3 {
            let text = try String(contentsOfFile: dir + "/servers/servers-000\(k).yaml", encoding: .utf8)
            servers += text.components(separatedBy: "\nkind: Server\n").count - 1
        }
        #expect(servers == 12)

        guard let binary = Self.binary else { return }  // Built without the executable: generator only.
        let validate = try Self.run(binary, ["validate", dir])
        #expect(validate.status == 0, "\(validate.stderr)")

        let load = try Self.run(binary, ["bench", "load", dir, "--iterations", "1", "--warmup", "0"])
        #expect(load.status == 0, "\(load.stderr)")
        let loadJSON = try Self.jsonObject(load.stdout)
        #expect(loadJSON["bench"] as? String == "load")
        #expect((loadJSON["servers"] as? NSNumber)?.intValue == 12)
        #expect((loadJSON["errors"] as? NSNumber)?.intValue == 0)
        #expect(loadJSON["median_ms"] != nil && loadJSON["peak_rss_kib"] != nil)

        let raw = try Self.run(binary, ["bench", "raw-parse", dir, "--iterations", "1"])
        #expect(raw.status == 0, "\(raw.stderr)")
        let rawJSON = try Self.jsonObject(raw.stdout)
        #expect(rawJSON["bench"] as? String == "raw-parse")
        #expect(((rawJSON["events"] as? NSNumber)?.intValue ?? 0) > 0)
    }
}
