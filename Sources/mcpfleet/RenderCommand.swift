import FleetApp
import ArgumentParser
import FleetCore
import FleetKubernetes
import FleetSystemd
import FleetYAML
import Foundation

struct RenderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Print the runtime objects an environment renders to: Kubernetes objects or systemd units.",
        discussion: """
        Nothing is applied. Kubernetes output is a YAML stream `kubectl apply -f -` accepts (`-o json`: JSON \
        documents); systemd output is one unit per section (or one file each with --out-dir). A server's \
        sensitive inline env values go into a Secret its pods read; that Secret is left out (named on \
        stderr) unless --include-secrets, so the output can be shared or committed.
        """
    )

    enum Driver: String, ExpressibleByArgument, CaseIterable { case kubernetes, systemd }
    enum Format: String, ExpressibleByArgument, CaseIterable { case yaml, json }

    @Option(name: .shortAndLong, help: "Kubernetes output: yaml or json.")
    var output: Format = .yaml

    @Flag(name: .long, help: "Also print the Secrets holding sensitive inline env values (their values base64-encoded).")
    var includeSecrets = false

    @Argument(help: "The manifest directory.")
    var path: String

    @Option(name: .long, help: "Environment to render; may be omitted when the catalog has exactly one, or when --driver picks the only one of that driver.")
    var env: String?

    @Option(name: .long, help: "Renderer: kubernetes or systemd (default: the environment's driver).")
    var driver: Driver?

    @Option(name: .long, help: "Write one file per object or unit into this directory instead of printing.")
    var outDir: String?

    @Option(name: .customLong("mcpfleet-binary"), help: "systemd: the mcpfleet executable the gateway unit runs (environments with spec.gateway).")
    var mcpfleetBinary: String = "/usr/local/bin/mcpfleet"

    @Option(name: .customLong("gateway-image"), help: "Kubernetes: also render the MCP gateway (Deployment, PodDisruptionBudget, Service, read-only RBAC) running this mcpfleet image.")
    var gatewayImage: String?

    @Option(name: .customLong("catalog-repo"), help: "With --gateway-image: the git repository of the manifests the gateway pods read (git-sync).")
    var catalogRepo: String?

    @Option(name: .customLong("catalog-ref"), help: "With --gateway-image: the branch or tag to follow.")
    var catalogRef: String = "main"

    @Option(name: .customLong("catalog-path"), help: "With --gateway-image: the manifest directory inside the repository.")
    var catalogPath: String = "Manifests"

    func run() throws {
        let loaded = CatalogLoader.load(path: path)
        if loaded.diagnostics.hasErrors || loaded.hasIOErrors {
            writeStderr(loaded.renderDiagnostics(color: OutputOptions.stderrColor(false)))
            throw CommandFailure(message: "the catalog in \(path) is invalid; nothing was rendered")
        }
        let environment: Environment
        if env == nil, let driver, let only = loaded.catalog.environments.filter({ $0.driver.rawValue == driver.rawValue }).first,
           loaded.catalog.environments.filter({ $0.driver.rawValue == driver.rawValue }).count == 1 {
            environment = only
        } else {
            environment = try PlanCommand.selectEnvironment(loaded.catalog, env)
        }
        let renderer = driver ?? (environment.driver == .kubernetes ? .kubernetes : .systemd)
        let desired = Renderer.desiredState(loaded.catalog, environment: environment)
        var files: [(name: String, text: String)] = []
        do {
            switch renderer {
            case .kubernetes:
                let options = KubernetesRenderOptions(environment: environment, manifestCommit: GitSource.headCommit(path))
                var objects = try KubernetesRenderer.render(desired, options: options)
                if let gatewayImage {
                    guard let catalogRepo else { throw CommandFailure(message: "--gateway-image needs --catalog-repo: the gateway pods read the manifests from it") }
                    let tokens = loaded.catalog.tenants.flatMap { $0.gateway?.tokens ?? [] }
                    objects += try KubernetesRenderer.gatewayObjects(environment: environment, tokens: tokens, options: options, gateway: GatewayRenderOptions(
                        image: gatewayImage, catalogRepository: catalogRepo, catalogRef: catalogRef, catalogPath: catalogPath))
                }
                if !includeSecrets {
                    for secret in objects where secret.kind == "Secret" {
                        let keys = secret.json["data"]?.members?.map(\.key).joined(separator: ", ") ?? ""
                        writeStderr("not printed: Secret \(secret.namespace ?? "")/\(secret.name) (sensitive env values \(keys)); "
                                    + "`--include-secrets` prints it, or create it yourself with `kubectl create secret generic \(secret.name) -n \(secret.namespace ?? "")`\n")
                    }
                    objects.removeAll { $0.kind == "Secret" }
                }
                if outDir == nil {
                    writeStdout(output == .json ? KubernetesRenderer.jsonStream(objects) : KubernetesRenderer.yamlStream(objects))
                    return
                }
                files = objects.map { o in
                    let name = "\(o.namespace.map { "\($0)-" } ?? "")\(o.kind.lowercased())-\(o.name)"
                    return output == .json ? (name + ".json", o.json.prettyPrinted()) : (name + ".yaml", o.json.yaml())
                }
            case .systemd:
                let root = (loaded.baseDirectory as NSString).standardizingPath
                let absoluteRoot = root.hasPrefix("/") ? root : FileManager.default.currentDirectoryPath + "/" + root
                var units = try SystemdRenderer.render(desired: desired, environment: environment, manifestRoot: absoluteRoot)
                if environment.gateway != nil {
                    // The gateway as its own hardened unit, routing from the same state (design 0009).
                    let secrets = environment.secretsDir.map { GatewayWiring.absolute($0, against: absoluteRoot) }
                    units.append(try SystemdRenderer(environment: environment, manifestRoot: absoluteRoot).gatewayUnit(
                        binary: mcpfleetBinary, address: environment.gateway?.address ?? GatewayWiring.defaultLocalAddress, secretsDirectory: secrets))
                }
                if outDir == nil {
                    writeStdout(units.map { "# \($0.name)\n\($0.text)" }.joined(separator: "\n"))
                    return
                }
                files = units.map { ($0.name, $0.text) }
            }
        } catch {
            throw CommandFailure(message: "cannot render environment \(environment.name): \(error)")
        }
        guard let outDir else { return }
        do {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            for f in files { try AtomicFile.write(Data(f.text.utf8), to: outDir + "/" + f.name) }
        } catch {
            throw CommandFailure(message: "cannot write into \(outDir): \(error)")
        }
        writeStdout("wrote \(files.count) files to \(outDir)\n")
    }
}
