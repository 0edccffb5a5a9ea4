import FleetApp
import ArgumentParser
import FleetController
import FleetCore
import Foundation

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show what runs: per server desired/ready replicas, revisions, rollout phase and SLO analysis.",
        discussion: """
        READY counts instances the runtime runs *and* the controller's probes pass (while a controller \
        runs). NOTES say why a server is held, failed or not ready. `-o json` prints a live-state snapshot \
        that `mcpfleet plan --live FILE` accepts, with each instance's reason and last log lines. \
        `--watch` redraws the table with each rollout's step, pause countdown and analysis every second \
        on a terminal, and appends a line per changed server otherwise.
        """
    )

    @Argument(help: "The manifest directory.")
    var path: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    @Option(name: .shortAndLong, help: "Output format: text, json or markdown (a table for a PR comment or a chat message).")
    var output: OutputFormat = .text

    @Flag(name: .shortAndLong, help: "Keep watching: redraw on a terminal, append a line per change otherwise (Ctrl-C ends).")
    var watch = false

    @Option(name: .long, help: ArgumentHelp("With --watch: how often to look.", visibility: .hidden))
    var interval: String = "1s"

    func run() async throws {
        let target = try FleetTarget.load(path: path, env: env)
        let (driver, store) = try target.runtime()
        if watch {
            guard output == .text else { throw ValidationError("--watch shows text; use `-o json` without --watch for a snapshot") }
            return try await watchLoop(target, driver, store)
        }
        let live = try await target.observe(driver, store)
        switch output {
        case .json: writeStdout(try encodeJSON(try await ContractWiring.withContracts(live, store: store)))
        case .text, .markdown:
            let view = try await view(target, live: live, store: store)
            let sync = FleetSync.summary(live, desired: target.desired, catalogCommit: GitSource.manifestCommit(path))
            if output == .markdown {
                let notes = view.notes + (view.controller.note.map { ["⚠️ \($0)"] } ?? [])
                writeStdout(FleetSync.markdown(title: "mcpfleet" + (live.environment.map { ": \($0)" } ?? ""), sync: sync, rows: view.tableRows(), notes: notes))
                return
            }
            // The sync line, the table and its notes, then the tool contracts' digests (design 0010).
            writeStdout("\(sync.line)\n\n" + view.text() + (try await ContractWiring.statusLines(live, store: store)))
        }
    }

    func view(_ target: FleetTarget, live: LiveState, store: any RolloutStore) async throws -> FleetStatusView {
        FleetStatusView.make(live: live, desired: target.desired, records: try await store.records(), controller: try await ControllerPresence.read(store).status,
                             gateway: GatewayWiring.address(flag: nil, environment: target.environment, once: false), now: Self.nowMs())
    }

    /// Redraws (terminal) or appends changed servers' lines (pipe, file) until interrupted. A failed
    /// observation is shown and retried, never fatal: a watch outlives a controller restart.
    func watchLoop(_ target: FleetTarget, _ driver: any RuntimeDriver, _ store: any RolloutStore) async throws {
        let every = try DurationArgument.ms(interval, option: "--interval")
        let terminal = isatty(STDOUT_FILENO) == 1
        let context = OperatorCommand.Context(directory: path, environment: env)
        var last: [String: String] = [:]
        var lastError: String?
        while !Task.isCancelled {
            do {
                let live = try await target.observe(driver, store)
                var view = try await view(target, live: live, store: store)
                if lastError != nil { writeStderr("mcpfleet status --watch: reading the environment again\n") }
                lastError = nil
                if terminal {
                    view.setEvents(fromAudit: try await store.audit(server: nil, limit: 8))
                    writeStdout("\u{1B}[H\u{1B}[2J" + StatusScreen.screen(view, context: context, now: view.generatedAt))
                } else {
                    for row in view.servers {
                        let key = StatusScreen.changeKey(row)
                        if last[row.name] != key { writeStdout(StatusScreen.line(row, now: view.generatedAt) + "\n") }
                        last[row.name] = key
                    }
                }
            } catch {
                let text = (error as? CommandFailure)?.message ?? "\(error)"
                if text != lastError { writeStderr("mcpfleet status --watch: \(text) (retrying)\n") }
                lastError = text
            }
            try await Task.sleep(for: .milliseconds(every))
        }
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// The status table of `live` against `desired` (what `run` prints when it settles).
    static func table(_ live: LiveState, desired: DesiredState?, gateway: String? = nil) -> String {
        FleetStatusView.make(live: live, desired: desired, records: [], gateway: gateway, now: nowMs()).table()
    }
}
