import FleetCore
import FleetHTTP
import FleetYAML
@testable import FleetKubernetes
import Foundation
import Testing

/// The package root, found from this file's path (Tests/FleetKubernetesTests/Support.swift).
let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
}()

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// A fresh temporary directory, removed by the caller with `cleanup`.
func makeTempDir(_ tag: String = "k8s") throws -> String {
    let path = NSTemporaryDirectory() + "mcpfleet-\(tag)-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

/// The example catalog and its `cluster` environment.
func exampleCluster() throws -> (Environment, DesiredState) {
    let loaded = CatalogLoader.load(path: packageRoot + "/Manifests")
    let errors = loaded.diagnostics.items.filter { $0.severity == .error }
    guard errors.isEmpty else { throw TestFailure("example catalog has errors: \(errors)") }
    guard let env = loaded.catalog.environment("cluster") else { throw TestFailure("no cluster environment in Manifests/") }
    return (env, Renderer.desiredState(loaded.catalog, environment: env))
}

/// A new revision of `s`: another version, so another content hash.
func nextRevision(_ s: DesiredServer, version: String) -> DesiredServer {
    var n = s
    n.version = version
    n.fields = s.fields.map { $0.path == "version" ? SpecField(path: "version", display: "\"\(version)\"") : $0 }
    n.revision = Renderer.revision(of: n.fields)
    return n
}

/// Runs a process to completion and returns (status, stdout, stderr).
@discardableResult
func run(_ executable: String, _ arguments: [String], input: String? = nil, environment: [String: String]? = nil) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let out = Pipe(), err = Pipe(), inp = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = inp
    try process.run()
    if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
    try inp.fileHandleForWriting.close()
    // Read both pipes concurrently with the process so a full pipe never blocks it.
    final class Box: @unchecked Sendable { var data = Data() }
    let errBox = Box()
    let done = DispatchSemaphore(value: 0)
    let errHandle = err.fileHandleForReading
    DispatchQueue.global().async {
        errBox.data = errHandle.readDataToEndOfFile()
        done.signal()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    done.wait()
    let errData = errBox.data
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Finds an executable on PATH.
func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
        let path = "\(dir)/\(name)"
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return nil
}
