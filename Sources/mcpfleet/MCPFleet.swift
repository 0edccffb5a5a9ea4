import FleetApp
import ArgumentParser
import FleetController
import Foundation

@main
struct MCPFleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mcpfleet",
        abstract: "Declarative controller for fleets of MCP servers.",
        version: MCPFleetVersion.current,
        subcommands: [ValidateCommand.self, PlanCommand.self, VerifyCommand.self, ImportCommand.self, RenderCommand.self, StopCommand.self, BenchCommand.self, RunCommand.self, GatewayCommand.self, ApplyCommand.self, StatusCommand.self, HistoryCommand.self, ContractCommand.self, RollbackCommand.self, PauseCommand.self, ResumeCommand.self, PromoteCommand.self, StateCommand.self]
    )

    /// Exit codes follow `kubectl diff`: 0 ok, 1 findings, 2 usage or I/O error, 3 blocked by policy.
    /// ArgumentParser's own usage errors (EX_USAGE 64) are mapped to 2 so CI sees one error code.
    static func main() async {
        // Two malloc arenas, not up to 16: the controller's heap no longer spreads over a dozen
        // per-thread arenas whose free space the others cannot use (issue 14, memory).
        ProcessMemory.limitArenas(2)
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
        } catch let exit as ExitCode {
            Foundation.exit(exit.rawValue)
        } catch let failure as CommandFailure {
            if let details = failure.details { FileHandle.standardError.write(Data(details.utf8)) }
            FileHandle.standardError.write(Data("mcpfleet: \(failure.message)\n".utf8))
            Foundation.exit(failure.exitCode)
        } catch {
            let code = exitCode(for: error).rawValue
            let message = fullMessage(for: error)
            if code == 0 {
                print(message)
                Foundation.exit(0)
            }
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            Foundation.exit(2)
        }
    }
}

enum MCPFleetVersion {
    static let current = "0.1.0-dev"
}

/// A runtime failure the CLI reports as one line and an exit code (2 unless stated); the libraries'
/// `FleetFailure`, so the converge path's failures read the same.
typealias CommandFailure = FleetFailure

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json, markdown
}

struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(name: .long, help: "Never colour the output (colour is used only on a terminal; NO_COLOR is honoured).")
    var noColor = false

    var useColor: Bool {
        !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil && isatty(STDOUT_FILENO) == 1
    }
}

func writeStdout(_ s: String) {
    FileHandle.standardOutput.write(Data(s.utf8))
}

func writeStderr(_ s: String) {
    FileHandle.standardError.write(Data(s.utf8))
}
