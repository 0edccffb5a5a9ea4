import ArgumentParser
import FleetController
import FleetCore
import FleetHTTP
import FleetLocal
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
        let snapshotSource: Controller.Source
        let desired: DesiredState
        if isDirectory.boolValue {
            let target = try FleetTarget.load(path: source, env: env)
            (driver, store) = try target.runtime()
            let snap = try FleetTarget.snapshot(path: source, environmentName: target.environment.name)
            desired = snap.desired
            snapshotSource = { snap }
        } else {
            let plan = try Self.readPlan(source)
            let target = try Self.environmentForPlan(plan)
            (driver, store) = try target.runtime()
            let live = try await driver.observe().merging(try await store.records())
            guard live.fingerprint == plan.liveFingerprint else {
                throw CommandFailure(message: "the live state changed since the plan was made (fingerprint \(plan.liveFingerprint) → \(live.fingerprint)); run `mcpfleet plan` again")
            }
            desired = plan.desired
            let snap = DesiredStateSnapshot(desired: plan.desired, fingerprint: "plan:\(plan.liveFingerprint)", commit: nil,
                                            verdicts: Dictionary(plan.verdicts.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a }))
            snapshotSource = { snap }
        }
        var configuration = ControllerConfiguration()
        configuration.pollIntervalMs = 1_000
        let controller = Controller(source: snapshotSource, driver: driver, store: store, clock: SystemClock(), logger: logger,
                                    configuration: configuration, transport: try CurlTransport(CurlTransportConfiguration(connectTimeout: .seconds(2), proxy: .none)))
        let timeoutMs = try DurationArgument.ms(timeout, option: "--timeout")
        if let local = driver as? LocalDriver {
            do { try await local.start() } catch { throw CommandFailure(message: "\(error)") }
        }
        let task = Task { try await controller.run() }
        let start = ContinuousClock.now
        var settled = false
        while ContinuousClock.now - start < .milliseconds(timeoutMs) {
            if await controller.isReady(), await controller.isSettled() { settled = true; break }
            try await Task.sleep(for: .milliseconds(200))
        }
        task.cancel()
        _ = await task.result
        // The instances keep running after apply exits; a later `run` adopts them.
        if let local = driver as? LocalDriver { await local.shutdown(stopInstances: false) }
        if let live = await controller.lastLive() { writeStdout(StatusCommand.table(live, desired: desired)) }
        if !settled { throw CommandFailure(message: "not converged within \(timeout)", exitCode: 1) }
    }

    static func readPlan(_ file: String) throws -> Plan {
        guard let data = FileManager.default.contents(atPath: file) else { throw CommandFailure(message: "cannot read \(file)") }
        do { return try JSONDecoder().decode(Plan.self, from: data) } catch {
            throw CommandFailure(message: "\(file) is not a saved plan: \(error)")
        }
    }

    /// A saved plan names its environment; its driver settings come from the catalog in the current directory
    /// when it defines that environment, else from the plan alone (local driver defaults).
    static func environmentForPlan(_ plan: Plan) throws -> FleetTarget {
        do {
            let target = try FleetTarget.load(path: ".", env: plan.environment)
            return target
        } catch {
            throw CommandFailure(message: "applying a plan needs the catalog that defines environment \(plan.environment) in the current directory: \(error)")
        }
    }
}
