import FleetCore
import FleetLocal
import FleetTesting
import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func makeTemporaryDirectory(_ label: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fleetlocal-\(label)-\(UUID().uuidString.prefix(8))").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The SDK's `mcp-everything-server` (FleetTesting finds it). Missing is a failure.
func everythingServer() throws -> String { try TestEnvironment.everythingServer() }

func testEnvironment(_ name: String = "test", secretsDir: String? = nil, maxLogBytes: Int? = nil) -> Environment {
    let location = SourceLocation(file: "environment.yaml", line: 1, column: 1)
    var environment = Environment(metadata: ObjectMeta(name: name), driver: .local,
                                  source: DocumentSource(file: "environment.yaml", relativePath: "environment.yaml", index: 0),
                                  locations: FieldLocations(document: location))
    environment.secretsDir = secretsDir
    var local = LocalSettings()
    local.maxLogBytes = maxLogBytes
    environment.local = local
    return environment
}

func desiredServer(_ name: String, command: [String], port: Int, transport: TransportType = .streamableHTTP, version: String = "1.0",
                   env: [EnvVar] = [], manifestDirectory: String = "") -> DesiredServer {
    let location = SourceLocation(file: "server.yaml", line: 1, column: 1)
    var server = Server(metadata: ObjectMeta(name: name), version: version, tenant: "default", artifact: Artifact(command: command),
                        transport: Transport(type: transport, port: port),
                        source: DocumentSource(file: "server.yaml", relativePath: manifestDirectory.isEmpty ? "server.yaml" : manifestDirectory + "/server.yaml", index: 0),
                        locations: FieldLocations(document: location))
    server.env = env
    return Renderer.desiredServer(server, catalog: Catalog())
}

func instances(_ state: LiveState, _ server: String) -> [LiveInstance] {
    (state.server(server)?.revisions ?? []).flatMap { $0.instances ?? [] }
}

func isAlive(_ pid: Int) -> Bool {
    guard kill(pid_t(pid), 0) == 0 else { return false }
    // A zombie still answers kill(0); it is not running.
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/stat") else { return false }
    let stat = String(decoding: data, as: UTF8.self)
    guard let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}

/// Live processes whose command line contains every string of `parts`.
func processes(matching parts: [String]) -> [Int] {
    let entries: [String]
    do { entries = try FileManager.default.contentsOfDirectory(atPath: "/proc") } catch { return [] }
    return entries.compactMap(Int.init).filter { pid in
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), isAlive(pid) else { return false }
        let args = String(decoding: data, as: UTF8.self).split(separator: "\0").map(String.init)
        return parts.allSatisfy { part in args.contains(part) }
    }.sorted()
}

/// What an MCP client does first: POST `initialize`; the answer may be JSON or an SSE stream. Returns serverInfo.name.
func mcpInitialize(port: Int, path: String = "/mcp") async throws -> String {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.httpMethod = "POST"
    request.timeoutInterval = 10
    request.setValue("application/json, text/event-stream", forHTTPHeaderField: "Accept")
    request.setValue("application/json", forHTTPHeaderField: "Content-Type")
    request.setValue("2025-06-18", forHTTPHeaderField: "MCP-Protocol-Version")
    request.httpBody = Data("""
    {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fleetlocal-tests","version":"1"}}}
    """.utf8)
    // A session of its own, closed by the client right after: a pooled connection that the server's end
    // closes first (when a test kills it) would hold its port in TIME_WAIT and block the restart's bind.
    let session = URLSession(configuration: .ephemeral)
    defer { session.invalidateAndCancel() }
    let (data, response) = try await session.data(for: request)
    guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
        throw TestFailure("initialize on port \(port): HTTP \((response as? HTTPURLResponse)?.statusCode ?? -1)")
    }
    let text = String(decoding: data, as: UTF8.self)
    let json: String
    if (http.value(forHTTPHeaderField: "Content-Type") ?? "").contains("text/event-stream") {
        guard let line = text.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("data:") && $0.contains("\"result\"") }) else {
            throw TestFailure("initialize on port \(port): no result event in \(text.prefix(200))")
        }
        json = String(line.dropFirst(5))
    } else {
        json = text
    }
    guard let object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
          let result = object["result"] as? [String: Any], let info = result["serverInfo"] as? [String: Any], let name = info["name"] as? String else {
        throw TestFailure("initialize on port \(port): unexpected answer \(json.prefix(200))")
    }
    return name
}

/// Removes a test's directory; a failure to clean up is not the test's failure.
func removeTree(_ path: String) {
    do { try FileManager.default.removeItem(atPath: path) } catch {}
}

/// The Python interpreter `python3` on PATH runs, as an absolute path.
func realPython() throws -> String {
    let process = Process()
    let pipe = Pipe()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", "import sys; print(sys.executable)"]
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let path = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    guard process.terminationStatus == 0, path.hasPrefix("/") else { throw TestFailure("cannot find the python3 interpreter") }
    return path
}

/// Clock ticks (1/100 s) since boot, the unit of a process's start time in /proc/<pid>/stat.
func uptimeTicks() -> Int64 {
    let text = String(decoding: FileManager.default.contents(atPath: "/proc/uptime") ?? Data(), as: UTF8.self)
    let seconds = Double(text.split(separator: " ").first ?? "0") ?? 0
    return Int64(seconds * 100)
}
