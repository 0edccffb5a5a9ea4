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
                var objects = try KubernetesRenderer.render(desired, options: KubernetesRenderOptions(environment: environment, manifestCommit: GitSource.headCommit(path)))
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
                let units = try SystemdRenderer.render(desired: desired, environment: environment, manifestRoot: absoluteRoot)
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
