import FleetCore
import FleetGateway
import FleetTesting
import Foundation
import Logging
import Testing

/// Drain signals the test reads: which replicas were marked, and open sessions that end after a few polls.
final class CountingDrainSignals: DrainSignals, @unchecked Sendable {
    private let lock = NSLock()
    private var marks: [[String]] = []
    private var polls = 0
    let openForPolls: Int

    init(openForPolls: Int) { self.openForPolls = openForPolls }

    var marked: [[String]] { lock.withLock { marks } }
    var pollCount: Int { lock.withLock { polls } }

    func mark(server: String, replicas: [String]) async throws -> DrainMark {
        lock.withLock { marks.append(replicas) }
        return DrainMark(generation: 0)
    }

    func unmark(server: String, replicas: [String], logger: Logger) {}

    func openSessions(server: String, replicas: [String], mark: DrainMark) async throws -> DrainCount {
        let n = lock.withLock { polls += 1; return polls }
        return DrainCount(open: n <= openForPolls ? 1 : 0, confirmed: true)
    }
}

@Suite struct DrainingRescaleTests {
    @Test func aRescaleDownDrainsTheReplicasItStopsAndIsForwarded() async throws {
        let inner = InMemoryDriver(readyAfterObserves: 0)
        await inner.setPorts([1, 2], revision: "r1")
        let spec = DesiredServer(name: "time", version: "1", revision: "r1", replicas: 2, command: ["/srv/time", "--v1"])
        try await inner.scale(spec, replicas: 2)
        let ids = try await inner.endpoints(server: "time", revision: "r1").map(\.instance)
        let signals = CountingDrainSignals(openForPolls: 2)
        var logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }
        logger.logLevel = .critical
        let driver = DrainingDriver(inner, signals: signals, logger: logger, pollInterval: .milliseconds(5))

        try await driver.rescale(server: "time", revision: "r1", tenant: "default", replicas: 1)
        #expect(signals.marked == [[ids[1]]])
        #expect(signals.pollCount == 3) // waited while the session was open
        #expect(await inner.rescales == 1)
        #expect(await inner.snapshot().server("time")?.revisions.first?.replicas == 1)
        #expect(await inner.spec(server: "time", revision: "r1")?.command == ["/srv/time", "--v1"])

        // Up: nothing to drain.
        try await driver.rescale(server: "time", revision: "r1", tenant: "default", replicas: 2)
        #expect(signals.marked.count == 1)
        #expect(await inner.rescales == 2)
    }
}
