import FleetCore
import FleetGateway
import FleetTesting
import Foundation
import Logging
import NIOConcurrencyHelpers
import Testing

/// The route refresh rebuilds the table only when what it is built from changed (issue 14: at 3,000
/// servers a rebuild twice a second was a fifth of an idle controller's CPU), and a change is still
/// routed at the next turn. No sockets are opened: the service's table is read from its state.
@Suite struct GatewayRefreshTests {
    /// Counts the service's turns (each asks `inputs`) and rebuilds (each calls `routes`).
    final class Probe: Sendable {
        let token = NIOLockedValueBox<String?>("a")
        let turns = NIOLockedValueBox(0)
        let builds = NIOLockedValueBox(0)
        let servers = NIOLockedValueBox(["one"])
        let failNext = NIOLockedValueBox(false)
    }

    struct Failed: Error {}

    func service(_ probe: Probe, fullRefresh: Duration = .seconds(600), withInputs: Bool = true) -> (GatewayService, GatewayState) {
        let state = GatewayState(configuration: GatewayConfiguration())
        let server = GatewayServer(state: state, metrics: GatewayMetrics(), signer: try! SessionSigner(key: Array("test-signing-key-0123456789abcdef".utf8)),
                                   ops: OpsEndpoints(ready: { true }, metrics: { "" }), accessLog: .off,
                                   logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let routes: @Sendable () async throws -> RouteTable = {
            probe.builds.withLockedValue { $0 += 1 }
            if probe.failNext.withLockedValue({ let f = $0; $0 = false; return f }) { throw Failed() }
            return RouteTable(probe.servers.withLockedValue { $0 }.map { Route(server: $0, tenant: "t", backends: [], policy: RoutePolicy()) })
        }
        let inputs: @Sendable () async -> String? = {
            probe.turns.withLockedValue { $0 += 1 }
            return probe.token.withLockedValue { $0 }
        }
        let service = GatewayService(server: server, refresh: .milliseconds(5), fullRefresh: fullRefresh,
                                     logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() },
                                     routes: routes, inputs: withInputs ? inputs : nil)
        return (service, state)
    }

    /// The service running (after the table built before serving) while `body` runs; stopped after.
    func running(_ probe: Probe, fullRefresh: Duration = .seconds(600), withInputs: Bool = true,
                 _ body: (GatewayState) async throws -> Void) async throws {
        let (service, state) = service(probe, fullRefresh: fullRefresh, withInputs: withInputs)
        await service.refreshOnce()
        let task = Task { try await service.run() }
        defer { task.cancel() }
        try await body(state)
    }

    func turns(_ probe: Probe, atLeast n: Int) async throws {
        let start = probe.turns.withLockedValue { $0 }
        try await waitUntil("\(n) turns of the refresh loop", timeout: .seconds(30), every: .milliseconds(5)) {
            probe.turns.withLockedValue { $0 } >= start + n
        }
    }

    @Test func anIdleGatewayDoesNotRebuildItsRoutes() async throws {
        let probe = Probe()
        try await running(probe) { state in
            try await turns(probe, atLeast: 40)
            // The table built before serving, and once more on the first turn (which reads the inputs first).
            #expect(probe.builds.withLockedValue { $0 } <= 2)
            #expect(state.route(forPath: "/one/mcp") != nil)
        }
    }

    @Test func aChangedInputIsRoutedAtTheNextTurn() async throws {
        let probe = Probe()
        try await running(probe) { state in
            try await turns(probe, atLeast: 5)
            let builds = probe.builds.withLockedValue { $0 }
            probe.servers.withLockedValue { $0 = ["one", "two"] }
            probe.token.withLockedValue { $0 = "b" }
            let changedAt = probe.turns.withLockedValue { $0 }
            try await waitUntil("the new route is served", timeout: .seconds(30), every: .milliseconds(5)) {
                state.route(forPath: "/two/mcp") != nil
            }
            // At the turn that saw the change (or the one after, if it raced the turn's read): not later.
            #expect(probe.turns.withLockedValue { $0 } - changedAt <= 2)
            #expect(probe.builds.withLockedValue { $0 } == builds + 1)
        }
    }

    @Test func aFailedBuildIsRetriedAtTheNextTurnWithoutAChange() async throws {
        let probe = Probe()
        try await running(probe) { state in
            try await turns(probe, atLeast: 5)
            probe.failNext.withLockedValue { $0 = true }
            probe.servers.withLockedValue { $0 = ["one", "three"] }
            probe.token.withLockedValue { $0 = "c" }
            // The first build after the change throws (the last table is kept); the next turn builds again.
            try await waitUntil("the route after the failed build", timeout: .seconds(30), every: .milliseconds(5)) {
                state.route(forPath: "/three/mcp") != nil
            }
            #expect(state.route(forPath: "/one/mcp") != nil)
        }
    }

    @Test func theFullRefreshRebuildsEvenWithoutAChange() async throws {
        let probe = Probe()
        try await running(probe, fullRefresh: .milliseconds(50)) { _ in
            try await waitUntil("rebuilds from the full refresh", timeout: .seconds(30), every: .milliseconds(5)) {
                probe.builds.withLockedValue { $0 } >= 5
            }
        }
    }

    @Test func withoutInputsEveryTurnRebuilds() async throws {
        let probe = Probe()
        try await running(probe, withInputs: false) { _ in
            try await waitUntil("a rebuild every turn", timeout: .seconds(30), every: .milliseconds(5)) {
                probe.builds.withLockedValue { $0 } >= 20
            }
        }
    }
}
