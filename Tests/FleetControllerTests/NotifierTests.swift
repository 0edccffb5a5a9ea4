@testable import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Synchronization
import Testing

/// How delivery breaks (issue 19): a receiver answering 503 then recovering, one refusing for good
/// (4xx), one that never answers; the controller's side (`notify`) never waits on any of them.
@Suite struct NotifierTests {
    /// Answers from a script per URL; records every request.
    final class ScriptedTransport: HTTPTransport {
        let answers: Mutex<[String: [Int]]>
        let log = Mutex<[(url: String, body: String)]>([])
        let hang: Set<String>

        init(_ answers: [String: [Int]], hang: Set<String> = []) {
            self.answers = Mutex(answers)
            self.hang = hang
        }

        func send(_ request: HTTPRequest) async throws -> HTTPResponse {
            log.withLock { $0.append((request.url, String(decoding: request.body ?? [], as: UTF8.self))) }
            if hang.contains(request.url) {
                try await Task.sleep(for: .seconds(3600))
            }
            let status = answers.withLock { a -> Int in
                guard var list = a[request.url], !list.isEmpty else { return 200 }
                let s = list.removeFirst()
                a[request.url] = list
                return s
            }
            return HTTPResponse(status: status)
        }

        func stream(_ request: HTTPRequest) async throws -> HTTPStreamingResponse { throw HTTPError.invalidRequest(url: request.url, reason: "not used") }

        func kinds(_ url: String) throws -> [String] {
            try log.withLock { $0 }.filter { $0.url == url }.map { entry in
                let object = try JSONSerialization.jsonObject(with: Data(entry.body.utf8)) as? [String: Any]
                return object?["kind"] as? String ?? "?"
            }
        }
    }

    func target(_ name: String, _ url: String) -> ResolvedNotificationTarget {
        ResolvedNotificationTarget(target: NotificationTarget(name: name, kind: .webhook), url: url)
    }

    func entry(_ action: String, _ time: Int64) -> AuditEntry {
        AuditEntry(time: time, server: "time", action: action, revision: "r\(time)", reason: "because", outcome: "ok")
    }

    @Test func retriesWithBackoffKeepOrderAndAFailingReceiverHoldsUpOnlyItself() async throws {
        let clock = ManualClock()
        let transport = ScriptedTransport(["http://flaky/": [503, 503], "http://gone/": [404]], hang: ["http://hung/"])
        var policy = NotificationRetryPolicy()
        policy.initialBackoffMs = 1_000
        let notifier = Notifier(environment: "dev", targets: [target("flaky", "http://flaky/"), target("gone", "http://gone/"), target("hung", "http://hung/")],
                                transport: transport, clock: clock, policy: policy)
        let running = Task { await notifier.run() }
        defer { running.cancel() }

        // The controller's side returns at once whatever the receivers do.
        let start = ContinuousClock.now
        for (i, action) in ["rollout-start", "rollback", "rollback-start"].enumerated() { notifier.notify(entry(action, Int64(i + 1))) }
        #expect(ContinuousClock.now - start < .milliseconds(100))

        // flaky: 503 twice, each retried after a backoff (1 s, then 2 s, ±20 %), then everything in order.
        try await waitUntil("first retry waits", timeout: .seconds(10)) { try clock.sleeperCount >= 1 && transport.kinds("http://flaky/").count == 1 }
        clock.advance(byMs: 1_300)
        try await waitUntil("second retry waits", timeout: .seconds(10)) { try transport.kinds("http://flaky/").count == 2 && clock.sleeperCount >= 1 }
        #expect(try transport.kinds("http://flaky/") == ["started", "started"], "nothing overtakes the event being retried")
        clock.advance(byMs: 2_500)
        try await waitUntil("delivered in order", timeout: .seconds(10)) { try transport.kinds("http://flaky/").count == 5 }
        #expect(try transport.kinds("http://flaky/") == ["started", "started", "started", "failed", "rolled-back"])
        // gone: a 404 is not retried; its next events still go.
        try await waitUntil("gone receiver got every event once", timeout: .seconds(10)) { try transport.kinds("http://gone/").count == 3 }
        #expect(try transport.kinds("http://gone/") == ["started", "failed", "rolled-back"])
        // hung: its first request never returns; the others were not held up by it.
        #expect(try transport.kinds("http://hung/") == ["started"])
    }

    @Test func aFullQueueDropsTheOldestAndFinishDrains() async throws {
        let transport = ScriptedTransport([:])
        var policy = NotificationRetryPolicy()
        policy.queueLimit = 2
        let notifier = Notifier(environment: "dev", targets: [target("t", "http://t/")], transport: transport, clock: ManualClock(), policy: policy)
        // Not running yet: three events into a queue of two.
        for (i, action) in ["rollout-start", "rollback", "rollback-start"].enumerated() { notifier.notify(entry(action, Int64(i + 1))) }
        notifier.notify(entry("scale", 9))  // not an event
        notifier.finish()
        await notifier.run()  // drains what is queued, then returns
        #expect(try transport.kinds("http://t/") == ["failed", "rolled-back"])
    }
}
