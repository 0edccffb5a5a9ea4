import Foundation
import Testing

/// Loading, decoding and rendering split large catalogs across threads (`Parallel`). Whatever the
/// thread count, the output must be the same bytes: same diagnostics in the same order, same plan.
/// The catalog is large enough for every parallel path (files, documents, servers) and carries errors
/// in several files, so the merge order of diagnostics is exercised too.
@Suite struct ParallelLoadingTests {
    static let python: String? = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    func generate(_ servers: Int, files: Int) throws -> String {
        let dir = try makeTempDirectory("parallel")
        let script = packageRoot + "/Benchmarks/gen_catalog.py"
        let gen = try run(Self.python!, [script, String(servers), dir, "--files", String(files)])
        try #require(gen.status == 0, "\(gen.all)")
        return dir
    }

    func outputs(_ dir: String, threads: Int, _ args: [String]) throws -> RunResult {
        try run(mcpfleetBinary, args, environment: ["MCPFLEET_THREADS": String(threads)])
    }

    @Test(.enabled(if: python != nil, "needs python3"))
    func validCatalogGivesTheSameValidationAndPlanOnAnyThreadCount() throws {
        let dir = try generate(1_200, files: 24)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let live = dir + "-live.json"
        defer { try? FileManager.default.removeItem(atPath: live) }
        try Data(#"{"servers":[],"tenants":[]}"#.utf8).write(to: URL(fileURLWithPath: live))

        var first: [String]?
        for threads in [1, 2, 3, 8] {
            let validate = try outputs(dir, threads: threads, ["validate", dir, "-o", "json"])
            #expect(validate.status == 0, "\(validate.all)")
            let plan = try outputs(dir, threads: threads, ["plan", dir, "--env", "local", "--live", live, "-o", "json"])
            #expect(plan.status == 1, "\(plan.stderr)")
            let render = try outputs(dir, threads: threads, ["render", dir, "--env", "local"])
            let got = [validate.stdout, plan.stdout, render.stdout, render.stderr]
            #expect(plan.stdout.contains("\"create\""))
            if let first {
                #expect(got == first, "output with MCPFLEET_THREADS=\(threads) differs from MCPFLEET_THREADS=1")
            } else {
                first = got
            }
        }
    }

    @Test(.enabled(if: python != nil, "needs python3"))
    func invalidCatalogReportsTheSameDiagnosticsInTheSameOrderOnAnyThreadCount() throws {
        let dir = try generate(1_000, files: 20)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Errors spread over files that land in different chunks: a YAML syntax error, an unknown field,
        // a bad port, a duplicate server name (reported against the first definition) and an
        // unreadable file.
        let serverFiles = try FileManager.default.contentsOfDirectory(atPath: dir + "/servers").sorted()
        func edit(_ name: String, _ change: (String) -> String) throws {
            let path = dir + "/servers/" + name
            let text = try String(contentsOfFile: path, encoding: .utf8)
            try change(text).write(toFile: path, atomically: true, encoding: .utf8)
        }
        try edit(serverFiles[1]) { $0.replacingOccurrences(of: "  replicas: ", with: "  replicaz: ") }
        try edit(serverFiles[6]) { $0.replacingOccurrences(of: "    port: ", with: "    port: 7000", options: [], range: $0.range(of: "    port: ")) }
        try edit(serverFiles[11]) { $0 + "\n---\nkind: [unterminated\n" }
        let firstServer = try String(contentsOfFile: dir + "/servers/" + serverFiles[0], encoding: .utf8)
            .components(separatedBy: "---\n").first { $0.contains("kind: Server") } ?? ""
        try (firstServer).write(toFile: dir + "/servers/zz-duplicate.yaml", atomically: true, encoding: .utf8)
        try "kind: Server\n".write(toFile: dir + "/servers/unreadable.yaml", atomically: true, encoding: .utf8)
        chmod(dir + "/servers/unreadable.yaml", 0)
        let runningAsRoot = getuid() == 0 // root reads it anyway; the other errors still count

        var first: RunResult?
        for threads in [1, 2, 4] {
            let validate = try outputs(dir, threads: threads, ["validate", dir, "-o", "json"])
            #expect(validate.status == 1 || validate.status == 2, "\(validate.all)")
            for code in ["unknown-field", "yaml-syntax", "duplicate-name"] {
                #expect(validate.stdout.contains(code), "expected a \(code) diagnostic")
            }
            if !runningAsRoot { #expect(validate.stdout.contains("\"io\"")) }
            if let first {
                #expect(validate.stdout == first.stdout && validate.status == first.status,
                        "diagnostics with MCPFLEET_THREADS=\(threads) differ from MCPFLEET_THREADS=1")
            } else {
                first = validate
            }
        }
    }
}
