import FleetController
import FleetCore
import FleetDashboard
import FleetGateway
import FleetTesting
import Foundation
import Logging
import Testing

/// The status view model (shared by `status`, `status --watch` and the dashboard) and the dashboard's
/// routes, without a process: a canary in the middle of its first step, paused, with analysis results.
@Suite struct DashboardTests {
    static let now: Int64 = 1_800_000_000_000

    static func canary() -> DesiredServer {
        DesiredServer(name: "time", tenant: "research", version: "1.11", revision: "new111", replicas: 2,
                      rollout: DesiredRollout(strategy: .canary, steps: [DesiredCanaryStep(replicas: 1, pauseMs: 120_000),
                                                                        DesiredCanaryStep(weight: 50, untilPromoted: true, analysis: true)]),
                      slo: DesiredSLO(name: "interactive", successRate: 0.995, intervalMs: 1000, count: 5, failureLimit: 1))
    }

    static func live(phase: RolloutPhase = .paused) -> LiveState {
        LiveState(environment: "local", driver: "local", servers: [
            LiveServer(name: "time", tenant: "research", revisions: [
                LiveRevision(revision: "old110", version: "1.10", replicas: 2, ready: 2, instances: [
                    LiveInstance(id: "time-old110-0", revision: "old110", port: 18200, state: .running, healthy: true),
                    LiveInstance(id: "time-old110-1", revision: "old110", port: 18201, state: .running, healthy: true),
                ]),
                LiveRevision(revision: "new111", version: "1.11", replicas: 1, ready: 1, instances: [
                    LiveInstance(id: "time-new111-0", revision: "new111", port: 18202, state: .running, healthy: true, restarts: 0, logTail: ["line with detail"]),
                ]),
            ], phase: phase, targetRevision: "new111", lastGoodRevision: "old110"),
        ])
    }

    static func record(step: Int = 0, phase: RolloutPhase = .paused, paused: Bool = false, startedAgoMs: Int64 = 30_000) -> RolloutRecord {
        RolloutRecord(server: "time", phase: phase, stableRevision: "old110", targetRevision: "new111", paused: paused,
                      pausedAt: paused ? now - 10_000 : nil, step: step, stepStartedAt: now - startedAgoMs, measurements: step == 1 ? [true, true] : [])
    }

    @Test func canaryPauseCountsDownAndFreezesWhileHeld() throws {
        let running = try #require(RolloutProgress.of(Self.canary(), record: Self.record(), now: Self.now))
        #expect(running.stepLabel == "step 1 of 2")
        #expect(running.steps.map(\.state) == [.current, .pending, .pending])
        #expect(running.steps.map(\.pause) == ["2m", "untilPromoted", nil])
        #expect(running.pauseMs == 120_000)
        #expect(running.pauseRemainingMs == 90_000)
        #expect(running.pauseEndsAt == Self.now + 90_000)

        // Held by an operator 10 s ago: what was left then stays left, and there is no end time.
        let held = try #require(RolloutProgress.of(Self.canary(), record: Self.record(paused: true), now: Self.now))
        #expect(held.heldByOperator)
        #expect(held.pauseRemainingMs == 100_000)
        #expect(held.pauseEndsAt == nil)

        let waiting = try #require(RolloutProgress.of(Self.canary(), record: Self.record(step: 1), now: Self.now))
        #expect(waiting.waitingForPromotion && waiting.pauseEndsAt == nil && waiting.stepLabel == "step 2 of 2")
        #expect(waiting.steps.map(\.state) == [.done, .current, .pending])

        // No rollout: nothing to show.
        #expect(RolloutProgress.of(Self.canary(), record: RolloutRecord(server: "time", stableRevision: "old110"), now: Self.now) == nil)
    }

    @Test func durationsAreWrittenAsInManifests() {
        #expect(RolloutProgress.duration(120_000) == "2m")
        #expect(RolloutProgress.duration(5_400_000) == "1h30m")
        #expect(RolloutProgress.duration(300) == "300ms")
        #expect(RolloutProgress.duration(90_000) == "1m30s")
    }

    @Test func statusTableAndNotesKeepTheirFormat() {
        let desired = DesiredState(environment: "local", driver: .local, servers: [Self.canary(), DesiredServer(name: "zeta", version: "1", revision: "zz", replicas: 1)])
        var record = Self.record(step: 1, phase: .analyzing)
        record.message = "analysis running"
        let view = FleetStatusView.make(live: Self.live(phase: .analyzing), desired: desired, records: [record],
                                        controller: ControllerPresence(kept: true, lastHeartbeat: nil, now: Self.now).status, gateway: "127.0.0.1:9470", now: Self.now)
        #expect(view.table() == """
            SERVER  TENANT    DESIRED  READY  REVISION  TARGET  PHASE      ENDPOINT                        NOTES
            time    research  2        3/3    old110    new111  analyzing  http://127.0.0.1:9470/time/mcp
            zeta    default   1        0/0    -         -       -          http://127.0.0.1:9470/zeta/mcp  not running

            """)
        #expect(view.notesText() == """

              time: analysis running
              time: analysis: 2 of 5 measurements taken, 2 passed (more than 1 failed fails the rollout), by probe
              no controller is running; READY is the runtime's view, not probed

            """)
        let time = view.server("time")
        #expect(time?.revisions.map(\.sharePercent) == [67, 33])
        #expect(time?.revisions.map(\.role) == [.serving, .target])
        #expect(time?.analysis?.taken == 2 && time?.analysis?.count == 5)
    }

    @Test func serverDetailShowsMeasurementsCommandsAndNoLogTails() throws {
        let desired = DesiredState(environment: "local", driver: .local, servers: [Self.canary()])
        let analysis = AnalysisStatus(revision: "new111", step: 1, startedAt: Self.now - 3000, verdict: .running, measurements: [
            SLOMeasurement(result: .pass, successRate: 1.0, latencyP95Ms: 12, detail: "probe: 10 of 10 passed", time: Self.now - 2000),
            SLOMeasurement(result: .fail, successRate: 0.9, latencyP95Ms: 40, detail: "probe: 9 of 10 passed", time: Self.now - 1000),
        ])
        let detail = try #require(ServerStatusDetail.make(
            name: "time", live: Self.live(phase: .analyzing), desired: desired, record: Self.record(step: 1, phase: .analyzing), analysis: analysis,
            history: [RevisionRecord(server: "time", revision: "old110", version: "1.10", fields: [], createdAt: 1, outcome: .promoted)],
            audit: [AuditEntry(time: 1, server: "time", action: "rollout-start", reason: "first", outcome: "ok"), AuditEntry(time: 2, server: "time", action: "analysis-start", reason: "second", outcome: "ok")],
            commands: OperatorCommand.Context(directory: "/srv/my manifests", environment: "local"), now: Self.now))
        #expect(detail.analysis?.measurements.map(\.result) == ["pass", "fail"])
        #expect(detail.analysis?.measurements.last?.successRate == 0.9)
        #expect(detail.analysis?.successRateObjective == 0.995)
        #expect(detail.audit.map(\.action) == ["analysis-start", "rollout-start"], "newest first")
        #expect(detail.instances.count == 3)
        #expect(detail.commands.first { $0.action == "promote" }?.command == "mcpfleet promote time -C '/srv/my manifests' --env local")
        #expect(detail.commands.first { $0.action == "promote" }?.applies == false, "analysing: nothing to promote yet")
        #expect(detail.contract == nil)
        let json = String(decoding: try JSONEncoder().encode(detail), as: UTF8.self)
        #expect(!json.contains("line with detail"), "instance log tails stay out of the dashboard")

        // Without the controller's run (another process), the record's results are shown.
        let fromRecord = try #require(ServerStatusDetail.make(
            name: "time", live: Self.live(phase: .analyzing), desired: desired, record: Self.record(step: 1, phase: .analyzing), analysis: nil,
            history: [], audit: [], commands: OperatorCommand.Context(directory: ".", environment: nil), now: Self.now))
        #expect(fromRecord.analysis?.measurements.map(\.result) == ["pass", "pass"])
        #expect(fromRecord.analysis?.verdict == nil)
        #expect(ServerStatusDetail.make(name: "nope", live: Self.live(), desired: desired, record: nil, analysis: nil, history: [], audit: [],
                                        commands: OperatorCommand.Context(directory: ".", environment: nil), now: Self.now) == nil)
    }

    @Test func watchScreenShowsStepCountdownAndNextCommand() {
        let desired = DesiredState(environment: "local", driver: .local, servers: [Self.canary()])
        var view = FleetStatusView.make(live: Self.live(), desired: desired, records: [Self.record()], now: Self.now)
        view.setEvents(fromAudit: [AuditEntry(time: Self.now - 5_000, server: "time", action: "scale", revision: "new111", reason: "0 → 1 replicas", outcome: "ok"),
                                   AuditEntry(time: Self.now, server: "time", action: "rollout-start", revision: "new111", reason: "1.10 → 1.11", outcome: "ok")])
        #expect(view.events.map(\.action) == ["rollout-start", "scale"], "newest first")
        let context = OperatorCommand.Context(directory: "Manifests", environment: "local")
        let screen = StatusScreen.screen(view, context: context, now: Self.now + 1_000)
        #expect(screen.contains("time  canary → new111  step 1 of 2 · paused, 1m29s left"), "\(screen)")
        #expect(screen.contains("revisions: old110 2/2 ready (67%) serving · new111 1/1 ready (33%) new"), "\(screen)")
        #expect(screen.contains("promote: mcpfleet promote time -C Manifests --env local"), "\(screen)")
        #expect(screen.contains("LAST EVENTS"))
        // An appended line changes with the state, not with the countdown.
        let row = view.servers[0]
        var later = row
        later.rollout?.pauseRemainingMs = 1_000
        #expect(StatusScreen.changeKey(row) == StatusScreen.changeKey(later))
        var moved = row
        moved.phase = "progressing"
        #expect(StatusScreen.changeKey(row) != StatusScreen.changeKey(moved))
    }

    // MARK: routes

    static func dashboard(changes: FleetChanges = FleetChanges(), phase: @escaping @Sendable () -> RolloutPhase = { .paused }) -> Dashboard {
        let desired = DesiredState(environment: "local", driver: .local, servers: [canary()])
        var d = Dashboard(feed: DashboardFeed(
            fleet: { FleetStatusView.make(live: live(phase: phase()), desired: desired, records: [record(phase: phase())], now: now) },
            server: { name in
                ServerStatusDetail.make(name: name, live: live(phase: phase()), desired: desired, record: record(phase: phase()), analysis: nil, history: [], audit: [],
                                        commands: OperatorCommand.Context(directory: ".", environment: "local"), now: now)
            },
            changes: changes))
        d.refreshMs = 50
        return d
    }

    static func body(_ reply: OpsRoutes.Reply) -> (status: Int, type: String, text: String, headers: [(String, String)])? {
        guard case .body(let status, let type, let body, let headers) = reply else { return nil }
        return (status, type, String(decoding: body, as: UTF8.self), headers)
    }

    @Test func routesServePagesAndJSON() async throws {
        let d = Self.dashboard()
        #expect(Dashboard.handles("/ui") && Dashboard.handles("/ui/servers/time") && Dashboard.handles("/api/v1/fleet"))
        #expect(!Dashboard.handles("/time/mcp") && !Dashboard.handles("/metrics") && !Dashboard.handles("/uix"))

        let page = try #require(Self.body(await d.respond(path: "/ui", query: nil)))
        #expect(page.status == 200 && page.type.hasPrefix("text/html") && page.text.contains("/ui/assets/dashboard.js"))
        #expect(page.headers.contains { $0.0 == "Content-Security-Policy" && $0.1.contains("script-src 'self'") })
        let script = try #require(Self.body(await d.respond(path: "/ui/assets/dashboard.js", query: nil)))
        #expect(script.type.hasPrefix("text/javascript") && script.text.contains("EventSource"))
        #expect(try #require(Self.body(await d.respond(path: "/ui/servers/time", query: nil))).status == 200)

        let fleet = try #require(Self.body(await d.respond(path: "/api/v1/fleet", query: nil)))
        let decoded = try JSONDecoder().decode(FleetStatusView.self, from: Data(fleet.text.utf8))
        #expect(decoded.servers.first?.rollout?.stepLabel == "step 1 of 2")
        let server = try #require(Self.body(await d.respond(path: "/api/v1/servers/time", query: nil)))
        #expect(server.status == 200 && server.text.contains("\"stepLabel\":\"step 1 of 2\""))

        let missing = try #require(Self.body(await d.respond(path: "/api/v1/servers/nope", query: nil)))
        #expect(missing.status == 404 && missing.text.contains("no server `nope` is desired or running"))
        let bad = try #require(Self.body(await d.respond(path: "/api/v1/servers/..%2F..%2Fetc", query: nil)))
        #expect(bad.status == 404)
        let badQuery = try #require(Self.body(await d.respond(path: "/api/v1/events", query: "server=%3Cscript%3E")))
        #expect(badQuery.status == 400)
        #expect(try #require(Self.body(await d.respond(path: "/ui/assets/other.js", query: nil))).status == 404)
    }

    /// The store cannot be read (locked, damaged): the API says why with 503, the stream sends a
    /// `problem` event and keeps going (the page shows it and recovers on the next good view).
    @Test func unreadableStateIsReportedNotFatal() async throws {
        struct Locked: Error, CustomStringConvertible { var description: String { "sqlite error 5: database is locked" } }
        let failing = PhaseBox()
        var d = Dashboard(feed: DashboardFeed(
            fleet: {
                if failing.value == .failed { throw Locked() }
                return FleetStatusView.make(live: Self.live(), desired: nil, records: [], now: Self.now)
            },
            server: { _ in throw Locked() }, changes: FleetChanges()))
        d.refreshMs = 20
        failing.value = .failed
        let fleet = try #require(Self.body(await d.respond(path: "/api/v1/fleet", query: nil)))
        #expect(fleet.status == 503 && fleet.text.contains("cannot read the fleet: sqlite error 5: database is locked"))
        let server = try #require(Self.body(await d.respond(path: "/api/v1/servers/time", query: nil)))
        #expect(server.status == 503 && server.text.contains("database is locked"))
        guard case .events(let makeStream, _) = await d.respond(path: "/api/v1/events", query: nil) else {
            Issue.record("not an event stream")
            return
        }
        let stream = makeStream()
        var names: [String] = []
        for await chunk in stream where chunk.hasPrefix("event: ") {
            names.append(String(chunk.dropFirst(7).prefix { $0 != "\n" }))
            if names == ["problem"] { failing.value = .stable }
            if names.count == 2 { break }
        }
        #expect(names == ["problem", "fleet"])
    }

    @Test func eventStreamSendsTheViewThenEachChange() async throws {
        let changes = FleetChanges()
        let phase = PhaseBox()
        let d = Self.dashboard(changes: changes, phase: { phase.value })
        guard case .events(let makeStream, _) = await d.respond(path: "/api/v1/events", query: nil) else {
            Issue.record("not an event stream")
            return
        }
        let stream = makeStream()
        var events: [String] = []
        for await chunk in stream {
            events.append(chunk)
            let data = events.filter { $0.hasPrefix("event: fleet") }
            if data.count == 1 && phase.value == .paused {
                // The same view again sends nothing; a change sends the new one.
                changes.bump()
                phase.value = .progressing
                changes.bump()
            }
            if data.count == 2 { break }
        }
        #expect(events.first == "retry: 2000\n\n")
        let fleets = events.filter { $0.hasPrefix("event: fleet\ndata: {") && $0.hasSuffix("}\n\n") }
        #expect(fleets.count == 2)
        #expect(fleets[0].contains("\"phase\":\"paused\"") && fleets[1].contains("\"phase\":\"progressing\""))
        #expect(!fleets[0].dropFirst("event: fleet\ndata: ".count).dropLast(2).contains("\n"), "one data line per event")
    }
}

final class PhaseBox: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: RolloutPhase = .paused
    var value: RolloutPhase {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// The dashboard on the real HTTP stack (the gateway's NIO server), through curl: pages, JSON, 405 for
/// anything but GET/HEAD, an event stream that ends (and stops computing) when the client goes.
@Suite(.serialized) struct DashboardHTTPTests {
    func curl(_ args: [String]) throws -> (status: Int32, out: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-sS"] + args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test func servedBesideTheOperationalEndpoints() async throws {
        let dashboard = DashboardTests.dashboard()
        var ops = OpsEndpoints(ready: { true }, metrics: { "" })
        ops.routes = dashboard.routes
        let server = GatewayServer(state: GatewayState(configuration: GatewayConfiguration()), metrics: GatewayMetrics(),
                                   signer: try SessionSigner(key: Array(repeating: 1, count: 32)), ops: ops,
                                   logger: Logger(label: "t") { _ in SwiftLogNoOpLogHandler() })
        let port = try await server.listen("127.0.0.1:0", mcp: true).port
        let base = "http://127.0.0.1:\(port)"
        defer { Task { await server.shutdown() } }

        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", base + "/healthz"]).out == "200")
        let page = try curl(["-i", base + "/ui"])
        #expect(page.out.contains("HTTP/1.1 200") && page.out.contains("Content-Security-Policy:") && page.out.contains("<script src=\"/ui/assets/dashboard.js\""))
        let head = try curl(["-I", base + "/ui/assets/dashboard.css"])
        #expect(head.out.contains("HTTP/1.1 200") && head.out.lowercased().contains("content-type: text/css"))
        let fleet = try curl([base + "/api/v1/fleet"])
        #expect(fleet.out.contains("\"stepLabel\":\"step 1 of 2\""))
        let post = try curl(["-i", "-X", "POST", "-d", "{}", base + "/api/v1/fleet"])
        #expect(post.out.contains("HTTP/1.1 405") && post.out.contains("Allow: GET, HEAD"))
        // Not an MCP route: the dashboard's prefix never shadows a server, and an unknown API path is 404 JSON.
        let missing = try curl(["-i", base + "/api/v1/nothing"])
        #expect(missing.out.contains("HTTP/1.1 404") && missing.out.contains("{\"error\":"))

        // HEAD of the stream: headers only, and no stream left producing for nobody.
        let headEvents = try curl(["-I", "-m", "5", base + "/api/v1/events"])
        #expect(headEvents.status == 0 && headEvents.out.contains("text/event-stream"), "\(headEvents.out)")
        #expect(dashboard.openStreams.generation == 0)

        // A server named `ui` keeps its MCP endpoint: the MCP routes are asked first.
        server.state.publish(RouteTable([Route(server: "ui", tenant: "default", backends: [Backend(id: "ui-0", revision: "r", host: "127.0.0.1", port: 9, path: "/mcp")])]))
        let mcp = try curl(["-i", "-X", "POST", "-H", "Content-Type: application/json", "-d", "{}", base + "/ui/mcp"])
        #expect(!mcp.out.contains("HTTP/1.1 405") && !mcp.out.contains("no such page"), "\(mcp.out.prefix(300))")
        #expect(try curl(["-o", "/dev/null", "-w", "%{http_code}", base + "/ui"]).out == "200")

        // An event stream: the fleet at once; curl gives up after 2 s, and the stream ends with it.
        let events = try curl(["-N", "-m", "2", base + "/api/v1/events"])
        #expect(events.status == 28, "curl timed out on an open stream: \(events.out.prefix(200))")
        #expect(events.out.hasPrefix("retry: 2000\n\nevent: fleet\ndata: {"), "\(events.out.prefix(300))")
        try await waitUntil("the stream stopped after the client went", timeout: .seconds(10)) { dashboard.openStreams.generation == 0 }
    }
}
