import FleetCore
import FleetTesting
import Foundation
import Testing

/// Issue 19's leftovers, through the built binary and a real receiver: a `step` event for every rollout
/// step (with its index and weight), and a serving revision that starts crash-looping outside any
/// rollout announced once per episode, with its exit status, then its recovery.
extension NotificationEndToEndTests {
    /// Runs the repository's time server, but exits with status 3 whenever `crash` exists beside it.
    static let crashy = """
    import os, runpy, sys, threading, time
    here = os.path.dirname(os.path.abspath(__file__))
    def watch():
        while True:
            if os.path.exists(os.path.join(here, "crash")):
                os._exit(3)
            time.sleep(0.05)
    threading.Thread(target=watch, daemon=True).start()
    sys.argv = [os.path.join(here, "server.py")] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """

    @Test func everyStepAndASteadyStateCrashLoopAreAnnouncedOncePerEpisode() async throws {
        let f = try FleetFixture("notify-steps")
        defer { f.cleanUp() }
        let port = TestEnvironment.freePort()
        let log = f.root + "/received.jsonl"
        let receiver = try await startReceiver(port: port, log: log)
        defer { receiver.signal(SIGKILL) }
        try Self.crashy.write(toFile: f.dir + "/time/crashy.py", atomically: true, encoding: .utf8)
        let notifications = """
          notifications:
            - name: ops
              type: webhook
              url: http://127.0.0.1:\(port)/hook
              events: [started, step, succeeded, crash-looping, recovered]
        """
        let canary = "strategy: canary\n    steps:\n      - weight: 50"
        var release = ServerManifest(version: "1", command: #"["python3", "${MANIFEST_DIR}/time/crashy.py", "--port", "${PORT}"]"#, rollout: canary)
        try f.write([release], environment: notifications)
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await f.waitStable("release 1 stable", controller: controller)
        release.version = "2"
        try f.write([release], environment: notifications)
        let v2 = try await f.revision()
        func events(_ kind: String) throws -> [Received] { try received(log).filter { $0.json["kind"] as? String == kind } }
        try await waitUntil("release 2 rolled out", timeout: .seconds(90), every: .milliseconds(200)) {
            try events("succeeded").contains { $0.json["revision"] as? String == v2 }
        }
        // Every step of the canary, not only analysed ones: index, count, weight and replicas.
        let steps = try events("step").filter { $0.json["revision"] as? String == v2 }.map { r -> String in
            let s = r.json["step"] as? [String: Any] ?? [:]
            return "\(s["index"] ?? "?")/\(s["of"] ?? "?") \(s["weight"] ?? "?")% \(s["replicas"] ?? "?")"
        }
        #expect(steps == ["1/2 50% 1", "2/2 100% 2"], "\(steps)")

        // The serving revision starts crashing, with no rollout to roll back: one event for the episode.
        try Data().write(to: URL(fileURLWithPath: f.dir + "/time/crash"))
        try await waitUntil("crash-looping announced", timeout: .seconds(90), every: .milliseconds(200)) { try !events("crash-looping").isEmpty }
        let first = try #require(try events("crash-looping").first)
        #expect(first.json["revision"] as? String == v2)
        let reason = first.json["reason"] as? String ?? ""
        #expect(reason.contains("restarts in") && reason.contains("while serving") && reason.contains("status 3"), "\(reason)")
        // It keeps crashing: restarts go on, announcements do not.
        let restartsThen = try await f.server()?.revisions.flatMap { $0.instances ?? [] }.reduce(0) { $0 + ($1.restarts ?? 0) } ?? 0
        try await waitUntil("more restarts", timeout: .seconds(60), every: .milliseconds(200)) {
            let now = try await f.server()?.revisions.flatMap { $0.instances ?? [] }.reduce(0) { $0 + ($1.restarts ?? 0) } ?? 0
            return now >= restartsThen + 4
        }
        #expect(try events("crash-looping").count == 1)
        // Fixed: once every replica is ready and quiet for a minute, the episode ends, announced once.
        try FileManager.default.removeItem(atPath: f.dir + "/time/crash")
        try await waitUntil("recovered", timeout: .seconds(150), every: .milliseconds(500)) { try !events("recovered").isEmpty }
        #expect(try events("recovered").count == 1)
        #expect(try events("crash-looping").count == 1)
        let history = try await f.history()
        #expect(history.audit.filter { $0.action == "crash-loop" && $0.revision == v2 }.count == 1)
        #expect(try await f.server()?.servingRevision?.revision == v2)
    }
}
