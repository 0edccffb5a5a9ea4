import ArgumentParser
import FleetCore
import Foundation

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Turn an MCP registry server.json into a Server manifest (printed, or written with --out).",
        discussion: "Secret environment variables (isSecret) become secretRefs; nothing secret is ever written. Review the comments the import leaves before committing."
    )

    @Argument(help: "Path to a server.json (the official MCP registry format).")
    var file: String

    @Option(name: .long, help: "Tenant the server belongs to.")
    var tenant: String

    @Option(name: .long, help: "Server name (default: derived from the registry name).")
    var name: String?

    @Option(name: .long, help: "Port the server listens on (HTTP transports).")
    var port: Int?

    @Option(name: .long, help: "Which package to use when there are several: oci, pypi, npm, …")
    var registryType: String?

    @Option(name: .long, help: "Write the manifest to this file instead of standard output.")
    var out: String?

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CommandFailure(message: "cannot read \(file)") }
        let yaml: String
        do {
            yaml = try ServerJSONImporter.importServer(data, options: .init(tenant: tenant, name: name, port: port, registryType: registryType))
        } catch {
            throw CommandFailure(message: "\(file): \(error)")
        }
        if let out {
            do { try AtomicFile.write(Data(yaml.utf8), to: out) } catch { throw CommandFailure(message: "cannot write \(out): \(error)") }
        } else {
            writeStdout(yaml)
        }
    }
}
