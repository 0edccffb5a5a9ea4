import FleetCore
import FleetTesting
import Foundation
import Testing

/// Issue 19: rollout events reach webhooks, Slack-compatible webhooks and GitHub commit statuses, from
/// the built binary, through a real HTTP receiver (Python's http.server), signed, in order, retried.
@Suite(.serialized) struct NotificationEndToEndTests {
    /// Records every request as a JSON line `{path, headers, body}`; the first request to each path
    /// that contains `flaky` is answered 503 (the notifier must retry it, keeping the order).
    func startReceiver(port: Int, log: String) async throws -> TestProcess {
        let script = """
        import json, sys
        from http.server import BaseHTTPRequestHandler, HTTPServer
        seen = set()
        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                first = self.path not in seen
                seen.add(self.path)
                code = 503 if ("flaky" in self.path and first) else 201
                with open(sys.argv[2], "a") as f:
                    f.write(json.dumps({"path": self.path, "status": code, "headers": {k.lower(): v for k, v in self.headers.items()},
                                        "body": body.decode()}) + "\\n")
                self.send_response(code); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{}")
            def log_message(self, *a): pass
        HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
        """
        let p = try TestProcess("/usr/bin/env", ["python3", "-c", script, String(port), log])
        try await waitUntil("webhook receiver", timeout: .seconds(10)) { TestEnvironment.isListening(port) }
        return p
    }

    struct Received {
        var path: String
        var status: Int
        var headers: [String: String]
        var body: String
        var json: [String: Any]
    }

    func received(_ log: String) throws -> [Received] {
        guard let text = FileManager.default.contents(atPath: log) else { return [] }
        return try String(decoding: text, as: UTF8.self).split(separator: "\n").map { line in
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let body = o["body"] as? String ?? ""
            let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "not a JSON object: \(body)")
            return Received(path: o["path"] as? String ?? "", status: o["status"] as? Int ?? 0,
                            headers: o["headers"] as? [String: String] ?? [:], body: body, json: json)
        }
    }

    /// The signature as openssl computes it from the same key and body bytes.
    func opensslSignature(body: String, keyFile: String, dir: String) async throws -> String {
        let bodyFile = dir + "/body-\(UUID().uuidString.prefix(6))"
        try body.write(toFile: bodyFile, atomically: true, encoding: .utf8)
        let key = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .newlines)
        let p = try TestProcess("/usr/bin/env", ["openssl", "dgst", "-sha256", "-hmac", key, "-r", bodyFile])
        guard try await p.wait() == 0 else { throw TestFailure("openssl failed: \(p.output)") }
        return "sha256=" + String(p.output.split(separator: " ").first ?? "")
    }

    func git(_ args: [String], in dir: String) async throws {
        let p = try TestProcess("/usr/bin/env", ["git", "-C", dir, "-c", "user.email=t@example.com", "-c", "user.name=t"] + args)
        guard try await p.wait() == 0 else { throw TestFailure("git \(args) failed: \(p.output)") }
    }

    @Test func aFailedRolloutReachesEveryReceiverSignedAndInOrder() async throws {
        let f = try FleetFixture("notify")
        defer { f.cleanUp() }
        let port = TestEnvironment.freePort()
        let closed = TestEnvironment.freePort()
        let log = f.root + "/received.jsonl"
        let receiver = try await startReceiver(port: port, log: log)
        defer { receiver.signal(SIGKILL) }
        // Secrets by reference: the HMAC key, the Slack URL (it carries a token) and the GitHub token.
        for (name, key, value) in [("hooks", "hmac", "s3cret-hmac-key-for-tests"), ("slack", "url", "http://127.0.0.1:\(port)/slack/flaky/T0KEN-IN-URL"),
                                   ("slack-down", "url", "http://127.0.0.1:\(closed)/slack/DOWN-T0KEN"), ("github", "token", "ghp_testtoken")] {
            try FileManager.default.createDirectory(atPath: "\(f.root)/secrets/\(name)", withIntermediateDirectories: true)
            try value.write(toFile: "\(f.root)/secrets/\(name)/\(key)", atomically: true, encoding: .utf8)
        }
        let notifications = """
          notifications:
            - name: ops
              type: webhook
              url: http://127.0.0.1:\(port)/hook/flaky
              signingKey: {name: hooks, key: hmac}
            - name: chat
              type: slack
              urlSecretRef: {name: slack, key: url}
              events: [failed, rolled-back, succeeded]
            - name: chat-down
              type: slack
              urlSecretRef: {name: slack-down, key: url}
            - name: commits
              type: github
              repository: example/catalog
              apiURL: http://127.0.0.1:\(port)/gh
              token: {name: github, key: token}
        """
        let good = ServerManifest(version: "1", deadline: "20s")
        try f.write([good], environment: notifications)
        try await git(["init", "-q"], in: f.dir)
        try await git(["add", "-A"], in: f.dir)
        try await git(["commit", "-q", "-m", "v1"], in: f.dir)
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await waitUntil("first release stable", timeout: .seconds(90), every: .milliseconds(200)) {
            if !controller.isRunning { throw TestFailure("controller exited: \(controller.output.suffix(2000))") }
            return try await f.server()?.phase == .stable
        }
        let v1 = try await f.revision()

        var broken = good
        broken.version = "2"
        broken.command = #"["${MANIFEST_DIR}/time/not-executable.sh"]"#
        try f.write([broken], environment: notifications)
        try await git(["commit", "-q", "-am", "v2"], in: f.dir)
        let v2 = try await f.revision()
        try await waitUntil("the failed rollout's events at every receiver", timeout: .seconds(60), every: .milliseconds(200)) {
            let r = try received(log)
            return r.contains { $0.path == "/hook/flaky" && $0.status == 201 && $0.json["kind"] as? String == "rolled-back" }
                && r.contains { $0.path.hasPrefix("/slack") && $0.body.contains("rolled-back") }
                && r.filter { $0.path.hasPrefix("/gh") && $0.body.contains("failure") }.count >= 2
        }
        // A receiver that is down (chat-down) held up nothing: the rollback came as fast as without notifications.
        let history = try await f.history()
        let start = try #require(history.audit.first { $0.action == "rollout-start" && $0.revision == v2 })
        let rollback = try #require(history.audit.first { $0.action == "rollback" && $0.revision == v2 })
        #expect(rollback.time - start.time < 2_000, "rolled back \(rollback.time - start.time) ms after it began")

        let all = try received(log)
        // The generic webhook: the first delivery was refused (503) and retried; then every event once, in order.
        let hook = all.filter { $0.path == "/hook/flaky" }
        #expect(hook.first?.status == 503)
        let delivered = hook.filter { $0.status == 201 }
        let kinds = delivered.map { "\($0.json["kind"] as? String ?? "?") \($0.json["revision"] as? String ?? "-")" }
        let expected = ["started \(v1)", "succeeded \(v1)", "started \(v2)", "failed \(v2)", "rolled-back \(v1)"]
        #expect(kinds.filter { expected.contains($0) } == expected, "\(kinds)")
        #expect(hook.first?.headers["x-mcpfleet-delivery"] == delivered.first?.headers["x-mcpfleet-delivery"], "a retry carries the same delivery id")
        let failed = try #require(delivered.first { $0.json["kind"] as? String == "failed" })
        #expect((failed.json["reason"] as? String)?.contains("is not an executable file") == true, "\(failed.body)")
        #expect(failed.json["environment"] as? String == "dev" && failed.json["server"] as? String == "time")
        #expect((failed.json["commit"] as? String)?.count == 40, "\(failed.body)")
        for d in delivered {
            #expect(d.headers["content-type"] == "application/json")
            #expect(d.headers["x-mcpfleet-event"] == d.json["kind"] as? String)
            let expectedSignature = try await opensslSignature(body: d.body, keyFile: "\(f.root)/secrets/hooks/hmac", dir: f.root)
            #expect(d.headers["x-mcpfleet-signature-256"] == expectedSignature, "\(d.body)")
        }
        // Slack: only the kinds asked for, as {"text": …}.
        let slack = all.filter { $0.path == "/slack/flaky/T0KEN-IN-URL" && $0.status == 201 }.compactMap { $0.json["text"] as? String }
        #expect(slack.count >= 3 && slack.allSatisfy { !$0.contains(" started ") }, "\(slack)")
        #expect(slack.contains { $0.contains("failed") && $0.contains("is not an executable file") }, "\(slack)")
        // GitHub: statuses on the commit each revision came from, authenticated with the token.
        let gh = all.filter { $0.path.hasPrefix("/gh/repos/example/catalog/statuses/") }
        #expect(gh.allSatisfy { $0.headers["authorization"] == "Bearer ghp_testtoken" })
        #expect(gh.contains { $0.json["state"] as? String == "success" && $0.json["context"] as? String == "mcpfleet/dev/time" })
        #expect(gh.contains { $0.json["state"] as? String == "failure" })
        // The down receiver is reported by name with its URL redacted; no secret appears in the logs.
        try await waitUntil("the down receiver's retries are logged", timeout: .seconds(20)) {
            controller.output.contains("notification failed; retrying") && controller.output.contains("chat-down")
        }
        for secret in ["T0KEN-IN-URL", "DOWN-T0KEN", "ghp_testtoken", "s3cret-hmac-key"] {
            #expect(!controller.output.contains(secret), "the controller's log shows \(secret)")
        }
        #expect(controller.output.contains("<url from slack-down/url>"))
        // Metrics count the deliveries.
        controller.signal(SIGTERM)
        _ = try await controller.wait(timeout: .seconds(30))
    }

    /// A secret file that is missing stops the controller at start, naming the reference and the file.
    @Test func aMissingNotificationSecretStopsTheControllerNamingIt() async throws {
        let f = try FleetFixture("notify-secret")
        defer { f.cleanUp() }
        try f.write([ServerManifest(version: "1", replicas: 1)], environment: """
          notifications:
            - name: ops
              type: webhook
              url: http://127.0.0.1:9/hook
              signingKey: {name: hooks, key: hmac}
        """)
        let r = try await f.fleet(["run", f.dir, "--once", "--metrics-address", ""], timeout: .seconds(60))
        #expect(r.status != 0)
        #expect(r.out.contains("hooks/hmac for notification ops: cannot read \(f.root)/secrets/hooks/hmac"), "\(r.out)")
        #expect(f.serverProcesses().isEmpty, "nothing was started")
    }

    @Test func anOperatorPauseIsAnnouncedWithWhoAndWhy() async throws {
        let f = try FleetFixture("notify-op")
        defer { f.cleanUp() }
        let port = TestEnvironment.freePort()
        let log = f.root + "/received.jsonl"
        let receiver = try await startReceiver(port: port, log: log)
        defer { receiver.signal(SIGKILL) }
        let notifications = """
          notifications:
            - name: ops
              type: webhook
              url: http://127.0.0.1:\(port)/hook
              events: [paused]
        """
        try f.write([ServerManifest(version: "1", replicas: 1)], environment: notifications)
        let controller = try f.controller()
        defer { controller.signal(SIGKILL) }
        try await waitUntil("stable", timeout: .seconds(90), every: .milliseconds(200)) { try await f.server()?.phase == .stable }

        let r = try await f.fleet(["pause", "time", "-C", f.dir, "--reason", "INC-42 investigating latency"])
        #expect(r.status == 0, "\(r.out)")
        // Delivered before the command returned.
        let all = try received(log)
        let paused = try #require(all.first { $0.json["kind"] as? String == "paused" })
        #expect((paused.json["reason"] as? String)?.contains("INC-42 investigating latency") == true, "\(paused.body)")
        let actor = try #require(paused.json["actor"] as? String)
        #expect(!actor.isEmpty && actor.contains("@"), "\(actor)")
        // The audit log records the same who and why.
        let entry = try #require(try await f.history().audit.last { $0.action == "pause" })
        #expect(entry.actor == actor && entry.reason.contains("INC-42"))
        let text = try await f.fleet(["history", "time", "-C", f.dir])
        #expect(text.out.contains(actor), "\(text.out)")
    }
}
