import ArgumentParser
import FleetCore
import FleetYAML
import Foundation

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check manifests: syntax, schema, references, ports and quotas.",
        discussion: "Exit status: 0 valid, 1 invalid (every problem is listed), 2 usage or I/O error."
    )

    @Argument(help: "A manifest directory (read recursively) or a single manifest file.")
    var path: String

    @OptionGroup var options: OutputOptions

    func run() throws {
        let loaded = LoadedCatalog.load(path: path)
        switch options.output {
        case .json: writeStdout(try encodeJSON(loaded.report))
        default:
            let text = loaded.renderDiagnostics(color: options.useColor)
            if loaded.diagnostics.isEmpty {
                let c = loaded.catalog
                writeStdout("\(path): valid — \(c.servers.count) servers, \(c.tenants.count) tenants, \(c.policies.count) policies, \(c.slos.count) SLOs, \(c.environments.count) environments\n")
            } else {
                writeStderr(text)
            }
        }
        if loaded.hasIOErrors { throw ExitCode(2) }
        if loaded.diagnostics.hasErrors { throw ExitCode(1) }
    }
}
