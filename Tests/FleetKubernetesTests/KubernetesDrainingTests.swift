import FleetController
import FleetCore
@testable import FleetGateway
import FleetHTTP
@testable import FleetKubernetes
import FleetTesting
import Foundation
import Logging
import Testing

extension KubernetesDrainBoard: DrainBoard {}

/// Log lines, kept for the assertions (the drain's reason is said there).
final class CapturedLog: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var all: [String] { lock.withLock { lines } }
    func append(_ s: String) { lock.withLock { lines.append(s) } }

    var logger: Logger {
        var l = Logger(label: "drain-test") { _ in CapturingHandler(log: self) }
        l.logLevel = .info
        return l
    }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
            let m = (metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            log.append("\(level) \(message) \(m)")
        }
    }
}

/// One gateway replica as `mcpfleet gateway` runs on Kubernetes, minus HTTP: its own watch of the route
/// object, a `GatewayState` with sessions opened on backend pods, and the real `DrainPublisher`
/// refreshing every 100 ms (reporting to its Lease, applying the marks).
final class FakeGatewayReplica: @unchecked Sendable {
    let routes: GatewayRouteObject
    let board: KubernetesDrainBoard
    let state = GatewayState(configuration: GatewayConfiguration())
    let publisher: DrainPublisher
    let server: String
    let pods: [String]
    private var task: Task<Void, Never>?
    private let lock = NSLock()
    private var toolCalls: [String: ToolCallWindow] = [:]
    /// What this replica's GatewayMetrics would count: cumulative calls per revision.
    var calls: [String: ToolCallWindow] {
        get { lock.withLock { toolCalls } }
        set { lock.withLock { toolCalls = newValue } }
    }

    init(api: KubeAPIServerProcess, id: String, server: String, pods: [String], logger: Logger) throws {
        routes = GatewayRouteObject(client: try api.client(), namespace: "mcpfleet-system")
        board = KubernetesDrainBoard(routes: routes)
        self.server = server
        self.pods = pods
        let calls = Box<FakeGatewayReplica>()
        publisher = DrainPublisher(board: board, state: state, id: id, logger: logger, tools: { servers in
            guard let me = calls.value, servers.contains(me.server) else { return [:] }
            return [me.server: me.calls]
        })
        calls.value = self
        routes.start()
        state.publish(table)  // the replicas sessions are counted on
    }

    var table: RouteTable {
        RouteTable([Route(server: server, tenant: "research", backends: pods.map { Backend(id: $0, revision: "r", host: "10.0.0.1", port: 8080, path: "/mcp") })])
    }

    func open(_ pod: String, _ n: Int = 1) { for _ in 0..<n { state.sessionOpened(server: server, replica: pod) } }
    func close(_ pod: String, _ n: Int = 1) { for _ in 0..<n { state.sessionClosed(server: server, replica: pod) } }
    func draining() -> Set<String> { Set(state.replicaStatus().filter { $0.server == server && $0.draining }.map(\.replica)) }

    func refreshOnce() async throws {
        state.publish(try await publisher.refresh(table))
    }

    func run() async throws {
        try await routes.waitUntilSynced(timeout: .seconds(30))
        try await refreshOnce()
        task = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                do { try await self.refreshOnce() } catch {}
            }
        }
    }

    /// Stops refreshing (a gateway that hung or was killed: no withdraw).
    func halt() async {
        task?.cancel()
        task = nil
        await routes.stop()
    }
}

/// Session draining on Kubernetes (design 0018) against the project's Kubernetes test API server, with
/// the real `KubeClient`, `KubernetesDriver`, `DrainingDriver` and gateway-side `DrainPublisher`.
@Suite(.serialized) struct KubernetesDrainingTests {
    struct Setup {
        let api: KubeAPIServerProcess
        let driver: KubernetesDriver
        let server: DesiredServer
        let routes: GatewayRouteObject
        let board: KubernetesDrainBoard
        let pods: [String]
    }

    func setUp(replicas: Int = 3, drainTimeoutMs: Int64 = 30_000, freshMs: Int64 = 10_000) async throws -> Setup {
        let api = try KubeAPIServerProcess()
        _ = try await api.client().create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        let (env, state) = try exampleCluster()
        let driver = try KubernetesDriver(environment: env, config: api.config, transport: try api.transport(),
                                          options: KubernetesDriverOptions(qps: 500, burst: 1000,
                                                                           retry: RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(500))))
        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        var server = try #require(state.server("time"))
        server.rollout.drainTimeoutMs = drainTimeoutMs
        try await driver.scale(server, replicas: replicas)
        var pods: [String] = []
        try await waitUntil("\(replicas) running pods", timeout: .seconds(30), every: .milliseconds(50)) {
            pods = (try? await driver.endpoints(server: "time", revision: server.revision).map(\.instance)) ?? []
            return pods.count == replicas
        }
        let routes = GatewayRouteObject(client: try api.client(), namespace: "mcpfleet-system")
        routes.start()
        try await routes.waitUntilSynced(timeout: .seconds(30))
        return Setup(api: api, driver: driver, server: server, routes: routes, board: KubernetesDrainBoard(routes: routes, freshMs: freshMs), pods: pods)
    }

    /// Cumulative calls as a gateway counts them (all in the fastest latency bucket).
    func w(_ calls: Int, _ errors: Int) -> ToolCallWindow {
        var buckets = Array(repeating: 0, count: LatencyHistogram.defaultBounds.count + 1)
        buckets[0] = calls
        return ToolCallWindow(calls: calls, errors: errors, bounds: LatencyHistogram.defaultBounds, latencyBuckets: buckets)
    }

    func podCosts(_ s: Setup) async throws -> [String: String] {
        let pods = try await s.api.client().list(.pod, namespace: "mcp-research", labelSelector: "\(KubernetesRenderer.labelInstance)=time").items
        return Dictionary(pods.map { ($0.name, $0.annotations[KubernetesDriver.deletionCostAnnotation] ?? "") }, uniquingKeysWith: { a, _ in a })
    }

    func runningPods(_ s: Setup) async throws -> Set<String> {
        Set(try await s.driver.endpoints(server: "time", revision: s.server.revision).map(\.instance))
    }

    @Test func aScaleDownWaitsForTheSessionsOnThePodsItRemovesAndTheReplicaSetRemovesExactlyThose() async throws {
        let s = try await setUp()
        defer { s.api.stop() }
        let log = CapturedLog()
        let (a, b, c) = (s.pods[0], s.pods[1], s.pods[2])
        // Two gateway replicas; sessions: a has 3, b has 1 (through gateway 2), c has 2. Fewest: b, then c.
        let g1 = try FakeGatewayReplica(api: s.api, id: "gw-1", server: "time", pods: s.pods, logger: log.logger)
        let g2 = try FakeGatewayReplica(api: s.api, id: "gw-2", server: "time", pods: s.pods, logger: log.logger)
        g1.open(a, 3)
        g1.open(c, 2)
        g2.open(b, 1)
        try await g1.run()
        try await g2.run()
        defer { Task { await g1.halt(); await g2.halt() } }
        try await waitUntil("both gateways reported", timeout: .seconds(30), every: .milliseconds(50)) {
            (try? await s.board.sessions(server: "time", now: GatewayWiringClock.now()))?.values.reduce(0, +) == 6
        }

        let driver = DrainingDriver(s.driver, signals: BoardDrainSignals(board: s.board), logger: log.logger, pollInterval: .milliseconds(50))
        let scaled = Task { try await driver.scale(s.server, replicas: 1) }
        // The two pods with the fewest sessions are marked and cost the least; every gateway stops sending them new sessions.
        try await waitUntil("both gateways mark b and c draining", timeout: .seconds(30), every: .milliseconds(50)) {
            g1.draining() == [b, c] && g2.draining() == [b, c]
        }
        let costs = try await podCosts(s)
        #expect(costs[b] == "-1000" && costs[c] == "-1000" && costs[a] == "1000", "\(costs)")
        // Still waiting: their sessions are open, so the Deployment has not been scaled yet.
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await s.api.client().get(.deployment, namespace: "mcp-research", name: KubernetesRenderer.deploymentName(server: "time", revision: s.server.revision))
            .json[["spec", "replicas"]]?.int == 3)
        g2.close(b)
        g1.close(c, 2)
        try await scaled.value
        // The ReplicaSet removed exactly the drained pods; the marks are lifted.
        try await waitUntil("only a left", timeout: .seconds(30), every: .milliseconds(50)) { (try? await runningPods(s)) == [a] }
        try await waitUntil("the marks lifted at the gateways", timeout: .seconds(30), every: .milliseconds(50)) {
            g1.draining().isEmpty && s.routes.drainMarks.replicas.isEmpty
        }
        #expect(log.all.contains { $0.contains("replicas drained") && $0.contains("reason=no open sessions") }, "\(log.all)")
    }

    @Test func theTimeoutEndsTheWaitAndSaysWhyAndASilentGatewayIsNotWaitedFor() async throws {
        let s = try await setUp(replicas: 2, drainTimeoutMs: 1_500, freshMs: 3_000)
        defer { s.api.stop() }
        let log = CapturedLog()
        // A gateway that reported sessions on both pods, then hung (no more heartbeats): not waited for.
        let silent = try FakeGatewayReplica(api: s.api, id: "gw-hung", server: "time", pods: s.pods, logger: log.logger)
        silent.open(s.pods[0], 5)
        silent.open(s.pods[1], 5)
        try await silent.run()
        await silent.halt()
        // A live one holding a session on each pod: the drain waits for it until the timeout.
        let live = try FakeGatewayReplica(api: s.api, id: "gw-live", server: "time", pods: s.pods, logger: log.logger)
        live.open(s.pods[0])
        live.open(s.pods[1])
        try await live.run()
        defer { Task { await live.halt() } }
        // The hung gateway's report ages past freshMs; the live one's heartbeats keep it counted.
        try await waitUntil("only the live gateway counted", timeout: .seconds(15), every: .milliseconds(100)) {
            try await s.board.liveReports(now: GatewayWiringClock.now()).map(\.gateway) == ["gw-live"]
        }

        let driver = DrainingDriver(s.driver, signals: BoardDrainSignals(board: s.board), logger: log.logger, pollInterval: .milliseconds(50))
        let started = ContinuousClock.now
        try await driver.scale(s.server, replicas: 1)
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(1_500), "waited for the live gateway's session until the timeout")
        #expect(log.all.contains { $0.hasPrefix("warning replicas drained") && $0.contains("drain timeout 1500ms reached with 1 open session") }, "\(log.all)")
        try await waitUntil("one pod left", timeout: .seconds(30), every: .milliseconds(50)) { (try? await runningPods(s))?.count == 1 }
    }

    @Test func aGatewayThatCannotWriteItsReportIsWaitedForOnlyUntilTheTimeoutAndTheLogSaysWhy() async throws {
        let s = try await setUp(replicas: 2, drainTimeoutMs: 1_500)
        defer { s.api.stop() }
        let log = CapturedLog()
        let gateway = try FakeGatewayReplica(api: s.api, id: "gw-forbidden", server: "time", pods: s.pods, logger: log.logger)
        try await gateway.run()
        defer { Task { await gateway.halt() } }
        try await waitUntil("the gateway reported once", timeout: .seconds(30), every: .milliseconds(50)) {
            (try? await s.board.liveReports(now: GatewayWiringClock.now()).count) == 1
        }
        // From now on its Lease writes are refused (RBAC), so it can never confirm the marks.
        try await s.api.injectFaults(#"{"status":403,"method":"PATCH","path_regex":"/leases/mcpfleet-gateway-report-","message":"leases.coordination.k8s.io is forbidden: User \"system:serviceaccount:mcpfleet-system:mcpfleet-gateway\" cannot patch resource \"leases\""}"#)
        let driver = DrainingDriver(s.driver, signals: BoardDrainSignals(board: s.board), logger: log.logger, pollInterval: .milliseconds(50))
        let started = ContinuousClock.now
        try await driver.scale(s.server, replicas: 1)
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(1_500) && waited < .seconds(15), "\(waited)")
        #expect(log.all.contains { $0.contains("drain timeout 1500ms reached") && $0.contains("not every gateway had applied the draining marks") }, "\(log.all)")
        #expect(log.all.contains { $0.contains("cannot write the gateway's session report") && $0.contains("forbidden") }, "\(log.all)")
        // The gateway applied the marks all the same while it could not report them.
        #expect(log.all.filter { $0.contains("cannot write the gateway's session report") }.count == 1, "logged once, not at every refresh")
    }

    @Test func aControllerThatMayNotPatchPodsStillDrainsAndSaysTheReplicaSetPicks() async throws {
        let s = try await setUp(replicas: 2)
        defer { s.api.stop() }
        let log = CapturedLog()
        let gateway = try FakeGatewayReplica(api: s.api, id: "gw-1", server: "time", pods: s.pods, logger: log.logger)
        try await gateway.run()
        defer { Task { await gateway.halt() } }
        try await s.api.injectFaults(#"{"status":403,"method":"PATCH","path_regex":"/pods/","message":"pods is forbidden: User \"system:serviceaccount:mcpfleet-system:mcpfleet-controller\" cannot patch resource \"pods\""}"#)
        let driver = DrainingDriver(s.driver, signals: BoardDrainSignals(board: s.board), logger: log.logger, pollInterval: .milliseconds(50))
        try await driver.scale(s.server, replicas: 1)
        #expect(log.all.contains { $0.contains("cannot tell the runtime which replicas to remove") && $0.contains("forbidden") }, "\(log.all)")
        #expect(log.all.contains { $0.contains("replicas drained") && $0.contains("reason=no open sessions") }, "\(log.all)")
        #expect(try await podCosts(s).values.allSatisfy(\.isEmpty), "no pod annotated")
        try await waitUntil("scaled down all the same", timeout: .seconds(30), every: .milliseconds(50)) { (try? await runningPods(s))?.count == 1 }
    }

    @Test func theRouteObjectDeletedMidDrainIsWrittenAgainAndTheDrainCompletes() async throws {
        let s = try await setUp(replicas: 2, drainTimeoutMs: 20_000)
        defer { s.api.stop() }
        let log = CapturedLog()
        let gateway = try FakeGatewayReplica(api: s.api, id: "gw-1", server: "time", pods: s.pods, logger: log.logger)
        gateway.open(s.pods[0])
        gateway.open(s.pods[1], 2)
        try await gateway.run()
        defer { Task { await gateway.halt() } }
        try await waitUntil("the gateway reported", timeout: .seconds(30), every: .milliseconds(50)) {
            (try? await s.board.sessions(server: "time", now: GatewayWiringClock.now()))?[s.pods[1]] == 2
        }
        let driver = DrainingDriver(s.driver, signals: BoardDrainSignals(board: s.board), logger: log.logger, pollInterval: .milliseconds(50))
        let scaled = Task { try await driver.scale(s.server, replicas: 1) }
        try await waitUntil("pod 0 marked", timeout: .seconds(30), every: .milliseconds(50)) { gateway.draining() == [s.pods[0]] }
        // Someone deletes the route object: the gateways lose the marks, the controller writes them again.
        _ = try await s.api.client().delete(.configMap, namespace: "mcpfleet-system", name: GatewayRouteObject.name)
        try await waitUntil("the marks back in a new route object", timeout: .seconds(30), every: .milliseconds(20)) {
            (try? await s.api.client().getIfPresent(.configMap, namespace: "mcpfleet-system", name: GatewayRouteObject.name)) != nil
                && gateway.draining() == [s.pods[0]]
        }
        gateway.close(s.pods[0])
        try await scaled.value
        #expect(log.all.contains { $0.contains("replicas drained") && $0.contains("reason=no open sessions") }, "\(log.all)")
        try await waitUntil("pod 1 (the one with the session) kept", timeout: .seconds(30), every: .milliseconds(50)) { (try? await runningPods(s)) == [s.pods[1]] }
    }

    /// The `gateway` analysis provider's data on Kubernetes: every replica's cumulative tool calls per
    /// revision, summed, and never going backwards when a replica restarts or leaves.
    @Test func toolCallsAreSummedOverTheGatewayReplicasAndNeverGoBackwards() async throws {
        let s = try await setUp(replicas: 1)
        defer { s.api.stop() }
        let log = CapturedLog()
        let (g1, g2) = (try FakeGatewayReplica(api: s.api, id: "gw-1", server: "time", pods: s.pods, logger: log.logger),
                        try FakeGatewayReplica(api: s.api, id: "gw-2", server: "time", pods: s.pods, logger: log.logger))
        g1.calls = ["rev-b": w(10, 1)]
        g2.calls = ["rev-b": w(5, 0), "rev-a": w(20, 0)]
        try await g1.run()
        try await g2.run()
        defer { Task { await g1.halt(); await g2.halt() } }
        s.board.startWatching()
        try await waitUntil("both replicas' calls summed", timeout: .seconds(30), every: .milliseconds(50)) {
            let t = s.board.toolWindows(server: "time")
            return t["rev-b"]?.calls == 15 && t["rev-b"]?.errors == 1 && t["rev-a"]?.calls == 20
        }
        #expect(s.board.toolWindows(server: "time")["rev-b"]?.latencyBuckets.first == 15)
        // gw-1 restarts (counting from zero): its earlier 10 calls stay in the total.
        g1.calls = ["rev-b": w(2, 0)]
        try await waitUntil("the restart seen", timeout: .seconds(30), every: .milliseconds(50)) {
            s.board.toolWindows(server: "time")["rev-b"]?.calls == 17
        }
        #expect(s.board.toolWindows(server: "time")["rev-b"]?.errors == 1)
        // gw-2 shuts down cleanly (its Lease withdrawn): its counts stay too.
        await g2.halt()
        await g2.publisher.withdraw()
        try await waitUntil("gw-2's Lease gone from the watch", timeout: .seconds(30), every: .milliseconds(50)) {
            (try? await s.board.liveReports(now: GatewayWiringClock.now()).map(\.gateway)) == ["gw-1"]
        }
        let t = s.board.toolWindows(server: "time")
        #expect(t["rev-b"]?.calls == 17 && t["rev-a"]?.calls == 20, "\(t)")
    }

    /// The controller's `gateway` provider on Kubernetes: over each interval, the calls of every replica.
    @Test func theGatewayProviderJudgesTheCallsOfEveryReplicaOverEachInterval() async throws {
        let s = try await setUp(replicas: 1)
        defer { s.api.stop() }
        let log = CapturedLog()
        let (g1, g2) = (try FakeGatewayReplica(api: s.api, id: "gw-1", server: "time", pods: s.pods, logger: log.logger),
                        try FakeGatewayReplica(api: s.api, id: "gw-2", server: "time", pods: s.pods, logger: log.logger))
        g1.calls = ["rev-2": w(400, 200)]  // before the run: not this run's business
        try await g1.run()
        try await g2.run()
        defer { Task { await g1.halt(); await g2.halt() } }
        s.board.startWatching()
        let board = s.board
        let provider = GatewayAnalysisProvider(minimumCalls: 10) { board.toolWindows(server: $0) }
        try await waitUntil("the earlier calls seen", timeout: .seconds(30), every: .milliseconds(50)) { board.toolWindows(server: "time")["rev-2"]?.calls == 400 }
        let objective = DesiredSLO(name: "tools", successRate: 0.95, provider: .gateway)
        await provider.begin(server: s.server, revision: "rev-2")
        // 10 % of this interval's calls fail: 10 of 50 on one replica, none of 50 on the other.
        g1.calls = ["rev-2": w(450, 210)]
        g2.calls = ["rev-2": w(50, 0)]
        try await waitUntil("the interval's calls seen", timeout: .seconds(30), every: .milliseconds(50)) { board.toolWindows(server: "time")["rev-2"]?.calls == 500 }
        let first = await provider.measure(server: s.server, revision: "rev-2", slo: objective, now: 1)
        #expect(first.result == .fail && first.successRate == 0.9, "\(first)")
        g1.calls = ["rev-2": w(500, 211)]
        g2.calls = ["rev-2": w(100, 0)]
        try await waitUntil("the next interval's calls seen", timeout: .seconds(30), every: .milliseconds(50)) { board.toolWindows(server: "time")["rev-2"]?.calls == 600 }
        let second = await provider.measure(server: s.server, revision: "rev-2", slo: objective, now: 2)
        #expect(second.result == .pass && second.successRate == 0.99, "\(second)")
    }

    @Test func aControllerStartingClearsMarksAPreviousOneLeft() async throws {
        let s = try await setUp(replicas: 2)
        defer { s.api.stop() }
        // A controller died mid-drain: its marks stay in the route object.
        let generation = try await s.board.mark(server: "time", replicas: [s.pods[0]], draining: true, now: GatewayWiringClock.now())
        try await waitUntil("the mark watched", timeout: .seconds(30), every: .milliseconds(20)) { s.routes.drainMarks.replicas["time"] == [s.pods[0]] }
        try await s.routes.publish(server: "time", weights: ["r": 100])
        // The next controller lifts them as it starts; the weights stay.
        let next = KubernetesDrainBoard(routes: GatewayRouteObject(client: try s.api.client(), namespace: "mcpfleet-system"))
        try await next.clearMarks(now: GatewayWiringClock.now())
        let cm = try await s.api.client().get(.configMap, namespace: "mcpfleet-system", name: GatewayRouteObject.name)
        let routes = GatewayRouteObject.routes(cm)
        #expect(routes.draining == nil && routes.weights["time"] == ["r": 100])
        #expect((routes.drainGeneration ?? 0) > generation, "the generation moves forward, so gateways report having applied the lift")
    }
}

final class Box<T: AnyObject>: @unchecked Sendable { weak var value: T? }

enum GatewayWiringClock {
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
