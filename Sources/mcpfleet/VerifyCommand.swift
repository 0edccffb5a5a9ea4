import FleetApp
import ArgumentParser
import FleetCore
import FleetSupplyChain
import FleetYAML
import Foundation

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Run only the supply-chain gate: signatures, SBOMs, scan ceilings, provenance, digests.",
        discussion: "Exit status: 0 every server admitted (warnings allowed), 3 a server is blocked by an enforcing policy, 2 error."
    )

    @Argument(help: "The manifest directory.")
    var path: String

    @Option(name: .long, help: "Verify for this environment only (default: every environment, each under its own policies).")
    var env: String?

    @Option(name: .shortAndLong, help: "Output format: text or json.")
    var output: OutputFormat = .text

    @Flag(name: .long, help: "Never colour the output.")
    var noColor = false

    @Option(name: .long, help: "Cache verification results by digest in this file, so unchanged artifacts are not re-verified.")
    var cache: String?

    struct Report: Codable {
        var environment: String
        var verdicts: [PolicyVerdict]
    }

    func run() throws {
        let loaded = CatalogLoader.load(path: path)
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            writeStderr(loaded.renderDiagnostics(color: OutputOptions.stderrColor(noColor)))
            throw CommandFailure(message: "the catalog in \(path) is invalid; nothing was verified")
        }
        let environments = try env.map { [try PlanCommand.selectEnvironment(loaded.catalog, $0)] } ?? loaded.catalog.environments
        guard !environments.isEmpty else { throw CommandFailure(message: "the catalog defines no Environment") }
        let wiring = SupplyChainWiring(catalog: loaded.catalog, baseDirectory: loaded.baseDirectory, cache: cache.map { VerificationCache(path: $0) })
        var reports: [Report] = []
        for environment in environments {
            let desired = Renderer.desiredState(loaded.catalog, environment: environment)
            let verdicts: [String: PolicyVerdict]
            do { verdicts = try wiring.verdicts(for: desired, environment: environment) } catch {
                throw CommandFailure(message: "\(error)")
            }
            reports.append(Report(environment: environment.name, verdicts: verdicts.values.sorted { $0.server < $1.server }))
        }
        if let c = wiring.cache {
            do { try c.save() } catch { writeStderr("mcpfleet: warning: cannot save the verification cache: \(error)\n") }
        }
        switch output {
        case .json: writeStdout(try encodeJSON(reports))
        default:
            let color = !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil && isatty(STDOUT_FILENO) == 1
            let formatter = PlanFormatter(color: color)
            var text = ""
            for r in reports {
                text += "environment \(r.environment):\n"
                text += r.verdicts.isEmpty ? "  (no servers)\n" : r.verdicts.map(formatter.verdictLine).joined()
            }
            let blocked = reports.flatMap(\.verdicts).filter { $0.decision == .blocked }
            text += blocked.isEmpty ? "\nAll servers admitted.\n" : "\n\(blocked.count) blocked: \(blocked.map(\.server).joined(separator: ", ")).\n"
            writeStdout(text)
        }
        if reports.contains(where: { $0.verdicts.contains { $0.decision == .blocked } }) { throw ExitCode(3) }
    }
}
