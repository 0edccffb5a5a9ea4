import FleetCore
import FleetTesting
import Foundation
import Testing

/// The built `mcpfleet` with the real local driver: a controller killed mid-rollout, then a rollback by a
/// new controller. The stable revision's new instance must run the stable revision's command line, not
/// the rolled-out one's (each version names itself in its command: `--name time-vX`).
@Suite(.serialized) struct RescaleEndToEndTests {
    func write(_ c: TestCatalog, version: String) throws {
        try c.write(version: version, strategy: "canary", deadline: "60s", pause: "untilPromoted", arguments: ["--name", "time-v\(version)"])
    }

    /// The `--name` each running server process of the catalog was started with.
    func names(_ c: TestCatalog) -> [String] {
        c.serverProcesses().compactMap { p in
            guard let data = FileManager.default.contents(atPath: "/proc/\(p.pid)/cmdline") else { return nil }
            let args = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return args.firstIndex(of: "--name").flatMap { $0 + 1 < args.count ? args[$0 + 1] : nil }
        }.sorted()
    }

    @Test func rollbackAfterAControllerRestartRunsTheStableRevisionsOwnCommand() async throws {
        let c = try TestCatalog()
        defer { c.cleanUp() }
        try write(c, version: "1")
        var r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        #expect(r.status == 0, "\(r.out)")
        #expect(names(c) == ["time-v1", "time-v1"])

        // Roll out v2 to its first canary step (1 of 2), where it waits for promotion; kill the controller there.
        try write(c, version: "2")
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--no-stop-on-exit", "--metrics-address", "", "--poll", "100ms"])
        do {
            try await waitUntil("v2 canary waiting for promotion", timeout: .seconds(60), every: .milliseconds(200)) {
                let s = try await c.live()
                let counts = s?.revisions.map { "\($0.version ?? "?"):\($0.replicas)" }.sorted()
                return s?.phase == .paused && counts == ["1:1", "2:1"]
            }
        } catch {
            controller.signal(SIGKILL)
            _ = try await controller.wait(timeout: .seconds(10))
            throw error
        }
        controller.signal(SIGKILL)
        _ = try await controller.wait(timeout: .seconds(10))
        #expect(names(c) == ["time-v1", "time-v2"])

        // A new controller process (which never rendered v1) rolls back: v1 grows to 2 again.
        r = try await c.fleet(["rollback", "time", "-C", c.dir])
        #expect(r.status == 0, "\(r.out)")
        r = try await c.fleet(["run", c.dir, "--once", "--metrics-address", "", "--timeout", "60s"])
        #expect(r.status == 0, "\(r.out)")
        let s = try await c.live()
        #expect(s?.revisions.filter { $0.replicas > 0 }.map(\.version) == ["1"])
        #expect(names(c) == ["time-v1", "time-v1"], "the stable revision's instances run: \(names(c))")
    }
}
