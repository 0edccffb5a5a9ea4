import FleetApp
import ArgumentParser
import FleetCore
import Foundation

struct StopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop every instance the local driver runs for an environment (they stay recorded; the next `run` starts them again).",
        discussion: "For the local driver, whose instances are child processes of mcpfleet: each gets SIGTERM to its process group, up to 5 s, then SIGKILL. systemd units and Kubernetes Deployments run on their own; scale them with the catalog instead."
    )

    @Argument(help: "The manifest directory.")
    var path: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        guard target.environment.driver == .local else {
            throw CommandFailure(message: "environment \(target.environment.name) uses the \(target.environment.driver.rawValue) driver; `stop` is for the local driver (set replicas to 0 in the catalog instead)")
        }
        let (driver, _) = try target.runtime()
        let before = try await driver.observe()
        let running = before.servers.flatMap { $0.revisions.flatMap { $0.instances ?? [] } }.filter { $0.pid != nil && $0.state != .stopped }
        // Adopt what a previous controller left running, then stop it all cleanly.
        do { try await driver.start() } catch { throw CommandFailure(message: "environment \(target.environment.name): \(error)") }
        try await driver.shutdown(stoppingInstances: true, desired: target.desired)
        let after = try await driver.observe()
        let left = after.servers.flatMap { $0.revisions.flatMap { $0.instances ?? [] } }.filter { $0.state == .running || $0.state == .starting }
        writeStdout("stopped \(running.count) instance\(running.count == 1 ? "" : "s") of environment \(target.environment.name)\n")
        if !left.isEmpty {
            throw CommandFailure(message: "\(left.count) instance(s) still running: \(left.map(\.id).joined(separator: ", "))")
        }
    }
}
