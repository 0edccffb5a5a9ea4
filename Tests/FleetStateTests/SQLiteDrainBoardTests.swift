import FleetCore
import FleetState
import Foundation
import Testing

/// Draining between a controller and gateways in other processes (design 0016): marks one way, open
/// sessions and the marks each gateway has installed the other, through the shared state database.
@Suite struct SQLiteDrainBoardTests {
    @Test func marksTravelAndTheWaitNeedsEveryLiveGatewaysConfirmation() throws {
        let dir = try makeTemporaryDirectory("drain")
        defer { removeTree(dir) }
        // Two connections, as two processes hold them (the controller's, a gateway's) on the same file.
        let controller = try SQLiteDrainBoard(path: dir + "/state.db")
        let gateway = try SQLiteDrainBoard(path: dir + "/state.db")
        let now: Int64 = 1_000_000
        try gateway.publish(gateway: "gw-a", seenGeneration: 0, open: [("echo", "echo-r1-1", 2), ("echo", "echo-r1-0", 1)], now: now)

        let g = try controller.mark(server: "echo", replicas: ["echo-r1-1"], draining: true, now: now)
        let marks = try gateway.marks()
        #expect(marks.generation == g && marks.replicas == ["echo": ["echo-r1-1"]])
        // The gateway has not installed the marks yet: not confirmed, whatever the count.
        var r = try controller.openSessions(server: "echo", replicas: ["echo-r1-1"], generation: g, now: now + 100)
        #expect(r.open == 2 && !r.confirmed && r.gateways == 1)
        // Installed (reported at its next refresh), its sessions end: drained.
        try gateway.publish(gateway: "gw-a", seenGeneration: g, open: [("echo", "echo-r1-0", 1)], now: now + 200)
        r = try controller.openSessions(server: "echo", replicas: ["echo-r1-1"], generation: g, now: now + 300)
        #expect(r.open == 0 && r.confirmed)
        #expect(TrafficRules.drain(openSessions: r.open, since: now, now: now + 300, timeoutMs: 30_000, confirmed: r.confirmed) == .done(reason: "no open sessions"))

        // A second gateway counts too; one silent for longer than `freshMs` is gone and not waited for.
        try gateway.publish(gateway: "gw-b", seenGeneration: 0, open: [("echo", "echo-r1-1", 4)], now: now + 300)
        r = try controller.openSessions(server: "echo", replicas: ["echo-r1-1"], generation: g, now: now + 400)
        #expect(r.open == 4 && !r.confirmed && r.gateways == 2)
        r = try controller.openSessions(server: "echo", replicas: ["echo-r1-1"], generation: g, now: now + 300 + controller.freshMs + 1)
        #expect(r.gateways == 0 && r.open == 0 && r.confirmed)
        // Unconfirmed at the timeout: the stop goes ahead, saying why.
        #expect(TrafficRules.drain(openSessions: 0, since: now, now: now + 30_000, timeoutMs: 30_000, confirmed: false)
                == .done(reason: "drain timeout 30000ms reached with 0 open sessions (not every gateway had applied the draining marks)"))

        // Unmarking bumps the generation; a restarted controller lifts what a dead one left; a gateway withdraws.
        let g2 = try controller.mark(server: "echo", replicas: ["echo-r1-1"], draining: false, now: now)
        let lifted = try gateway.marks().replicas
        #expect(g2 > g && lifted.isEmpty)
        try controller.mark(server: "echo", replicas: ["echo-r1-0"], draining: true, now: now)
        try controller.clearMarks()
        #expect(try gateway.marks().replicas.isEmpty)
        try gateway.withdraw(gateway: "gw-b")
        r = try controller.openSessions(server: "echo", replicas: ["echo-r1-1"], generation: 0, now: now + 400)
        #expect(r.gateways == 1 && r.open == 0)
    }

    @Test func aGatewayGoneForAnHourIsPruned() throws {
        let dir = try makeTemporaryDirectory("drain-prune")
        defer { removeTree(dir) }
        let board = try SQLiteDrainBoard(path: dir + "/state.db")
        try board.publish(gateway: "old", seenGeneration: 0, open: [("echo", "r-0", 3)], now: 0)
        try board.publish(gateway: "new", seenGeneration: 0, open: [], now: 3_600_001)
        #expect(try board.database.query("SELECT COUNT(*) FROM gateway_sessions").first?[0].int == 0)
        #expect(try board.database.query("SELECT gateway FROM gateway_heartbeats").map { $0[0].string } == ["new"])
    }
}
