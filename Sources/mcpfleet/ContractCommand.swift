import ArgumentParser
import FleetController
import FleetApp
import FleetCore
import FleetHTTP
import FleetLocal
import FleetYAML
import Foundation

struct ContractCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contract",
        abstract: "A server's MCP surface as a reviewed file in git (tools, prompts, resource templates).",
        subcommands: [ContractPullCommand.self, ContractDiffCommand.self]
    )
}

struct ContractPullCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Write a server's contract (contracts/SERVER.json, or its spec.contract) from its running revision.",
        discussion: """
        Reads the surface of the revision that serves (the MCP Swift SDK's client: initialize, then every \
        page of tools/list, prompts/list and resources/templates/list) and writes it in canonical form: \
        the same surface gives the same bytes. When nothing of the server runs, the artifact is started \
        for the read with the local driver (its sandboxing and a scratch state directory) and stopped after. \
        --url reads any MCP endpoint instead.
        """
    )

    @Argument(help: "The server.")
    var server: String

    @Option(name: [.customShort("C"), .customLong("dir")], help: "The manifest directory.")
    var dir: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "Write here instead (default: spec.contract, else contracts/SERVER.json under the manifest root).")
    var out: String?

    @Option(name: .long, help: "Read the surface from this MCP endpoint URL instead of the runtime.")
    var url: String?

    @Option(name: .long, help: "Per-request timeout in milliseconds.")
    var timeoutMs: Int64 = 5_000

    @Flag(name: .long, help: "Never start the artifact locally: fail when nothing runs.")
    var noStart = false

    func run() async throws {
        let target = try FleetTarget.load(path: dir, env: env)
        guard let spec = target.loaded.catalog.servers.first(where: { $0.name == server }) else {
            throw CommandFailure(message: "no server `\(server)` in the catalog")
        }
        let http = try CurlTransport(CurlTransportConfiguration(connectTimeout: .seconds(2), proxy: .none))
        let contract: ServerContract
        let from: String
        if let url {
            contract = try await Self.read(url: url, http: http, timeoutMs: timeoutMs)
            from = url
        } else {
            guard let desired = target.desired.server(server) else {
                throw CommandFailure(message: "server `\(server)` does not run in environment \(target.environment.name)")
            }
            guard desired.transport != .stdio else {
                throw CommandFailure(message: "server `\(server)` speaks stdio; its surface is read over HTTP (pass --url of an endpoint that serves it)")
            }
            let (driver, _) = try target.runtime()
            let live: LiveState
            do { live = try await driver.observe() } catch {
                throw CommandFailure(message: "cannot observe environment \(target.environment.name): \(error)")
            }
            if let serving = live.server(server)?.servingRevision, serving.replicas > 0,
               let endpoint = try await driver.endpoints(server: server, revision: serving.revision).first {
                contract = try await Self.read(url: endpoint.url, http: http, timeoutMs: timeoutMs)
                from = "revision \(serving.revision) (\(endpoint.instance))"
            } else if noStart {
                throw CommandFailure(message: "nothing of server `\(server)` runs in environment \(target.environment.name) (and --no-start was given)")
            } else {
                (contract, from) = try await Self.startAndRead(desired, target: target, http: http, timeoutMs: timeoutMs)
            }
        }
        let file = out ?? (target.loaded.baseDirectory as NSString).appendingPathComponent(ContractWiring.defaultFile(spec))
        do {
            try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try AtomicFile.write(Data(contract.canonicalJSON.utf8), to: file)
        } catch {
            throw CommandFailure(message: "cannot write the contract to \(file): \(error)")
        }
        writeStdout("wrote \(file) from \(from): \(contract.tools.count) tools, \(contract.prompts.count) prompts, \(contract.resourceTemplates.count) resource templates (\(contract.digest))\n")
        if spec.contract == nil && out == nil {
            writeStderr("mcpfleet: note: server \(server) names no contract yet; add `contract: \(ContractWiring.defaultFile(spec))` to its spec (relative to its manifest) so plans and rollouts check it\n")
        }
    }

    static func read(url: String, http: any HTTPTransport, timeoutMs: Int64) async throws -> ServerContract {
        do {
            return try await ProbeSurface.read(url: url, http: http, timeoutMs: timeoutMs)
        } catch {
            throw CommandFailure(message: "cannot read the MCP surface of \(url): \(error)")
        }
    }

    /// Starts one instance with the local driver in a scratch state directory, reads its surface once it
    /// answers (within the server's progress deadline), and stops it.
    static func startAndRead(_ desired: DesiredServer, target: FleetTarget, http: any HTTPTransport, timeoutMs: Int64) async throws -> (ServerContract, String) {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-contract-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var environment = target.environment
        environment.driver = .local
        environment.stateDir = scratch
        let root = PlanCommand.absolute(target.loaded.root)
        let driver: LocalDriver
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            driver = try LocalDriver(environment: environment, manifestRoot: root)
            try await driver.start()
        } catch {
            throw CommandFailure(message: "cannot start the local driver to read \(desired.name): \(error)")
        }
        do {
            if let tenant = target.desired.tenants.first(where: { $0.name == desired.tenant }) { try await driver.ensureTenant(tenant) }
            try await driver.scale(desired, replicas: 1)
            let deadline = ContinuousClock.now + .milliseconds(max(desired.rollout.progressDeadlineMs, 10_000))
            var lastError = "it did not start"
            while ContinuousClock.now < deadline {
                if let e = try await driver.endpoints(server: desired.name, revision: desired.revision).first {
                    do {
                        let c = try await ProbeSurface.read(url: e.url, http: http, timeoutMs: timeoutMs)
                        await driver.shutdown(stopInstances: true)
                        return (c, "revision \(desired.revision) started locally")
                    } catch {
                        lastError = "\(error)"
                    }
                }
                let live = try await driver.observe().server(desired.name)
                if let i = live?.revisions.flatMap({ $0.instances ?? [] }).first(where: { $0.unstartable == true }) {
                    lastError = i.reason ?? "it cannot start"
                    break
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            await driver.shutdown(stopInstances: true)
            throw CommandFailure(message: "started \(desired.name) (revision \(desired.revision)) locally but could not read its surface: \(lastError)")
        } catch let e as CommandFailure {
            throw e
        } catch {
            await driver.shutdown(stopInstances: true)
            throw CommandFailure(message: "cannot start \(desired.name) locally to read its surface: \(error)")
        }
    }
}

struct ContractDiffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two contract files: tools added and removed, breaking and compatible changes, text to review.",
        discussion: "Exit status: 0 the surfaces agree, 1 they differ, 2 error."
    )

    @Argument(help: "The old contract file.")
    var old: String

    @Argument(help: "The new contract file.")
    var new: String

    @Option(name: .shortAndLong, help: "Output format: text, json or markdown.")
    var output: OutputFormat = .text

    func run() async throws {
        func load(_ path: String) throws -> ServerContract {
            guard let data = FileManager.default.contents(atPath: path) else { throw CommandFailure(message: "cannot read \(path)") }
            do { return try ServerContract.decode(data, file: path) } catch { throw CommandFailure(message: "\(error)") }
        }
        let diff = ContractFileDiff(server: (new as NSString).lastPathComponent, file: new, old: try load(old), new: try load(new))
        let formatter = ContractFormatter()
        switch output {
        case .json: writeStdout(try encodeJSON(diff))
        case .markdown: writeStdout(formatter.markdown([diff]))
        case .text: writeStdout(formatter.text([diff]))
        }
        if !diff.changes.isEmpty { throw ExitCode(1) }
    }
}
