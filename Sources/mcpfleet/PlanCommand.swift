import FleetApp
import ArgumentParser
import FleetCore
import FleetSupplyChain
import FleetYAML
import Foundation

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what applying the catalog would change (a dry run; secret-safe).",
        discussion: """
        Plans against the environment's runtime (its driver observes what runs), a saved live-state \
        snapshot (--live FILE), or the catalog as it was at a git revision (--against REF: the change a \
        pull request makes, no cluster or host credentials needed).

        Exit status (as kubectl diff / flux diff): 0 in sync, 1 changes pending, 2 error, \
        3 changes include servers blocked by supply-chain policy.
        """
    )

    @Argument(help: "The manifest directory.")
    var path: String

    @Option(name: .long, help: "Environment to plan for; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .long, help: "Plan against this live-state JSON snapshot (Schemas/live-state.schema.json).")
    var live: String?

    @Option(name: .long, help: "Plan against the manifests as they were at this git revision (branch, tag or commit).")
    var against: String?

    @Option(name: .shortAndLong, help: "Output format: text, json or markdown.")
    var output: OutputFormat = .text

    @Flag(name: .long, help: "Never colour the output.")
    var noColor = false

    @Option(name: .long, help: "Also save the plan as JSON to this file, for a later `mcpfleet apply`.")
    var out: String?

    func validate() throws {
        if live != nil && against != nil { throw ValidationError("--live and --against are alternatives; pass one") }
    }

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        let loaded = target.loaded, environment = target.environment
        var desired = Renderer.desiredState(loaded.catalog, environment: environment)
        // The supply chain is verified on every plan: a verdict that changes is a change.
        let wiring = SupplyChainWiring(catalog: loaded.catalog, baseDirectory: loaded.baseDirectory)
        let verdicts: [String: PolicyVerdict]
        let evidence: [FileDigest]
        do {
            verdicts = try wiring.verdicts(for: desired, environment: environment)
            try wiring.recordKeyFingerprints(in: &desired, environment: environment)
            evidence = try wiring.evidenceDigests(for: desired, environment: environment)
        } catch {
            throw CommandFailure(message: "\(error)")
        }

        let liveState: LiveState
        let baseline: String
        var baselineContracts: ContractWiring.Baseline = .none
        if let live {
            liveState = try PlanCommand.readLiveState(live)
            baseline = "live state \(live)"
        } else if let against {
            liveState = try Self.gitBaseline(path: path, ref: against, environment: environment)
            baseline = "git \(against)"
            baselineContracts = .git(ref: against)
        } else {
            let (driver, store) = try target.runtime()
            do { liveState = try await target.observe(driver, store) } catch let failure as CommandFailure {
                throw CommandFailure(message: failure.message + "; pass --live FILE or --against GIT-REF to plan without it")
            }
            baselineContracts = .recorded(store, liveState)
            baseline = "\(environment.driver.rawValue) runtime of environment \(environment.name)"
        }

        var plan = Planner.plan(desired: desired, live: liveState, verdicts: verdicts, baseline: baseline)
        plan.environmentSpec = EnvironmentSpec(environment)
        let contracts = try await ContractWiring.planDiffs(loaded.catalog, environment: environment, root: loaded.baseDirectory, path: path, baseline: baselineContracts)
        if !contracts.diffs.isEmpty { plan.contracts = contracts.diffs }
        if contracts.uncompared { plan.unrecorded.append("contracts (the baseline records no surface)") }
        plan.source = PlanSource(root: Self.absolute(loaded.baseDirectory), commit: GitSource.headCommit(path),
                                 manifests: loaded.set.files.map { FileDigest(path: $0.relativePath, sha256: ArtifactDigest.sha256(of: Array($0.text.utf8))) },
                                 evidence: evidence)

        if let out {
            do {
                try AtomicFile.write(Data(try encodeJSON(plan).utf8), to: out)
            } catch {
                throw CommandFailure(message: "cannot write the plan to \(out): \(error)")
            }
        }
        switch output {
        case .json: writeStdout(try encodeJSON(plan))
        case .markdown: writeStdout(PlanFormatter(color: false).markdown(plan))
        case .text:
            let color = !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil && isatty(STDOUT_FILENO) == 1
            writeStdout(PlanFormatter(color: color).text(plan))
        }
        if plan.exitCode != 0 { throw ExitCode(plan.exitCode) }
    }

    /// The catalog at `ref` as if fully converged: revisions, settings, the environment, its policies and
    /// SLOs, and each server's verdict re-computed from the evidence as it was at `ref`.
    static func gitBaseline(path: String, ref: String, environment: Environment) throws -> LiveState {
        let tree: GitSource.Tree
        let oldSet: ManifestSet
        do {
            tree = try GitSource.Tree(directory: path, ref: ref)
            oldSet = try tree.manifestSet()
        } catch {
            throw CommandFailure(message: "\(error)")
        }
        let old = CatalogLoader.from(set: oldSet, baseDirectory: path) { _ in true }
        if old.diagnostics.hasErrors {
            writeStderr(old.renderDiagnostics(color: false))
            throw CommandFailure(message: "the catalog at \(ref) is invalid, so it cannot serve as the baseline")
        }
        guard let oldEnv = old.catalog.environment(environment.name) else {
            // Nothing of this environment existed: every object and server is new.
            return LiveState(environment: environment.name, driver: environment.driver.rawValue, objects: [])
        }
        var oldDesired = Renderer.desiredState(old.catalog, environment: oldEnv)
        // The evidence as it was: written out of git into a scratch root the gate reads.
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-baseline-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var oldVerdicts: [String: PolicyVerdict] = [:]
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try tree.materialize(SupplyChainWiring.referencedFiles(old.catalog), into: scratch)
            let wiring = SupplyChainWiring(catalog: old.catalog, baseDirectory: scratch)
            oldVerdicts = try wiring.verdicts(for: oldDesired, environment: oldEnv)
            try wiring.recordKeyFingerprints(in: &oldDesired, environment: oldEnv)
        } catch {
            // An old catalog whose keys cannot be read has no verdicts to compare: the plan says so.
            writeStderr("mcpfleet: warning: the supply-chain verdicts at \(ref) cannot be computed (\(error)); evidence is not compared\n")
        }
        return LiveState.converged(oldDesired, verdicts: oldVerdicts)
    }

    static func absolute(_ path: String) -> String {
        URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
    }

    static func selectEnvironment(_ catalog: Catalog, _ name: String?) throws -> Environment {
        try FleetTarget.selectEnvironment(catalog, name)
    }

    static func readLiveState(_ file: String) throws -> LiveState {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw CommandFailure(message: "cannot read live state \(file)")
        }
        do {
            return try JSONDecoder().decode(LiveState.self, from: data)
        } catch let DecodingError.dataCorrupted(ctx) {
            throw CommandFailure(message: "\(file): not valid JSON: \(ctx.debugDescription)")
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw CommandFailure(message: "\(file): missing `\(key.stringValue)` at \(ctx.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw CommandFailure(message: "\(file): wrong type at \(ctx.codingPath.map(\.stringValue).joined(separator: ".")): \(ctx.debugDescription)")
        } catch {
            throw CommandFailure(message: "\(file): \(error)")
        }
    }
}

extension OutputOptions {
    static func stderrColor(_ noColor: Bool) -> Bool {
        !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil && isatty(STDERR_FILENO) == 1
    }
}

/// Write-then-rename so a crash never leaves a half-written file behind.
enum AtomicFile {
    static func write(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let temp = (directory.isEmpty ? "." : directory) + "/.\((path as NSString).lastPathComponent).tmp-\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var ok = data.withUnsafeBytes { buf -> Bool in
            var offset = 0
            while offset < buf.count {
                let n = Foundation.write(fd, buf.baseAddress! + offset, buf.count - offset)
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        ok = ok && fsync(fd) == 0
        close(fd)
        guard ok, rename(temp, path) == 0 else {
            let code = errno
            unlink(temp)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }
}
