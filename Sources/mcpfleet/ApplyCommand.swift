import FleetApp
import ArgumentParser
import FleetController
import FleetCore
import FleetHTTP
import FleetKubernetes
import FleetLocal
import FleetSupplyChain
import FleetYAML
import Foundation
import Logging

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Converge the runtime on a catalog directory or a saved plan once, then exit.",
        discussion: """
        With a plan.json (from `mcpfleet plan --out`), applies exactly the desired state the plan was made \
        for, and refuses when the live state has changed since (its fingerprint moved): re-plan then. \
        Rollouts run as `mcpfleet run` runs them (strategies, probes, analysis, automatic rollback); \
        apply returns once every server is settled (a canary waiting for `mcpfleet promote` counts as settled).

        Exit status: 0 converged, 1 not converged within --timeout, 2 error (including a stale plan).
        """
    )

    @Argument(help: "A manifest directory or a plan JSON file.")
    var source: String

    @Option(name: .long, help: "Environment (for a directory); may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "Give up after this long.")
    var timeout: String = "10m"

    @Option(name: .customLong("log-level"), help: "Log level for the JSON logs on stderr.")
    var logLevel: String = "warning"

    func run() async throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
            throw CommandFailure(message: "\(source) does not exist")
        }
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var h = JSONLogHandler(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "mcpfleet.apply")
        let driver: any RuntimeDriver, store: any RolloutStore
        let environment: Environment
        let snap: DesiredStateSnapshot
        if isDirectory.boolValue {
            let target = try FleetTarget.load(path: source, env: env)
            (driver, store) = try target.runtime()
            environment = target.environment
            snap = try target.snapshot()
        } else {
            // Everything comes from the plan: the environment's settings, the manifest root, the desired
            // state and the verdicts. Nothing is read from the current directory.
            let plan = try Self.readPlan(source)
            guard let spec = plan.environmentSpec, let origin = plan.source else {
                throw CommandFailure(message: "\(source) does not say which environment and manifests it was made from; run `mcpfleet plan --out` again")
            }
            environment = spec.environment(named: plan.environment, origin: source)
            try Self.checkEvidence(origin)
            var planned = plan.desired
            try Self.unseal(&planned, origin: origin, environment: environment)
            (driver, store) = try DriverFactory.make(environment: environment, manifestRoot: origin.root)
            let live = try await driver.observe(.all).merging(try await store.records())
            guard live.fingerprint == plan.liveFingerprint else {
                throw CommandFailure(message: "the live state changed since the plan was made (fingerprint \(plan.liveFingerprint) → \(live.fingerprint)); run `mcpfleet plan` again")
            }
            snap = DesiredStateSnapshot(desired: planned, fingerprint: "plan:\(plan.liveFingerprint)", commit: origin.commit,
                                        verdicts: Dictionary(plan.verdicts.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a }))
        }
        var configuration = ControllerConfiguration()
        configuration.pollIntervalMs = 1_000
        // Enough servers in flight that their rollout-store writes share shard writes (design 0019).
        if environment.driver == .kubernetes { configuration.workers = KubernetesRolloutStore.suggestedWorkers }
        let convergence = try Convergence(environment: environment, driver: driver, store: store, fixed: snap, configuration: configuration, logger: logger)
        let timeoutMs = try DurationArgument.ms(timeout, option: "--timeout")
        try await convergence.start()
        let settled = try await convergence.runUntilSettled(timeoutMs: timeoutMs)
        // The instances keep running after apply exits; a later `run` adopts them.
        try await convergence.finish(stoppingInstances: false)
        if let live = await convergence.controller.lastLive() { writeStdout(StatusCommand.table(live, desired: snap.desired)) }
        if let failure = try await convergence.outcome(settled: settled, timeout: timeout, failedCounts: false) { throw failure }
    }

    static func readPlan(_ file: String) throws -> Plan {
        guard let data = FileManager.default.contents(atPath: file) else { throw CommandFailure(message: "cannot read \(file)") }
        struct Version: Decodable { var formatVersion: Int? }
        let version = (try? JSONDecoder().decode(Version.self, from: data))?.formatVersion
        guard version == Plan.formatVersion else {
            throw CommandFailure(message: version == nil ? "\(file) is not a saved plan (no formatVersion)"
                                 : "\(file) has plan format \(version!), this mcpfleet applies format \(Plan.formatVersion); run `mcpfleet plan --out` again")
        }
        do { return try JSONDecoder().decode(Plan.self, from: data) } catch {
            throw CommandFailure(message: "\(file) is not a saved plan: \(error)")
        }
    }

    /// Refuses the plan when a file its verdicts rest on is not byte for byte what it was.
    static func checkEvidence(_ origin: PlanSource) throws {
        var moved: [String] = []
        for f in origin.evidence {
            let full = f.path.hasPrefix("/") ? f.path : origin.root + "/" + f.path
            let now = (try? ArtifactDigest.sha256(ofFile: full)) ?? "absent"
            if now != f.sha256 { moved.append(f.path) }
        }
        guard moved.isEmpty else {
            throw CommandFailure(message: "the supply-chain evidence changed since the plan was made (\(moved.joined(separator: ", "))); run `mcpfleet plan` again")
        }
    }

    /// A saved plan seals sensitive plain values (their digests only). They are taken from the manifests
    /// the plan names, and only while every one of those files is what the plan was made from.
    static func unseal(_ desired: inout DesiredState, origin: PlanSource, environment: Environment) throws {
        guard desired.servers.contains(where: { !$0.sealedDigests.isEmpty }) else { return }
        let loaded = CatalogLoader.load(path: origin.root)
        let now = Dictionary(loaded.set.files.map { ($0.relativePath, ArtifactDigest.sha256(of: Array($0.text.utf8))) }, uniquingKeysWith: { a, _ in a })
        let then = Dictionary(origin.manifests.map { ($0.path, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        guard now == then, !loaded.diagnostics.hasErrors else {
            throw CommandFailure(message: "the plan seals sensitive values that only its manifests carry, and the manifests in \(origin.root) changed since the plan was made; run `mcpfleet plan` again")
        }
        let values = Renderer.sensitiveValues(Renderer.desiredState(loaded.catalog, environment: environment))
        for i in desired.servers.indices {
            let missing = desired.servers[i].unseal(values)
            if !missing.isEmpty {
                throw CommandFailure(message: "server \(desired.servers[i].name): \(missing.count) sensitive value(s) of the plan are not in the manifests; run `mcpfleet plan` again")
            }
        }
    }
}
