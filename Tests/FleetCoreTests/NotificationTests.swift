import FleetCore
import FleetYAML
import Foundation
import Testing

/// Issue 19: `spec.notifications`, `allowFrom`, the audit → event mapping and what `status` shows.
@Suite struct NotificationTests {
    func environment(_ notifications: String) -> String {
        """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t1}
        ---
        apiVersion: mcpfleet.io/v1alpha1
        kind: Environment
        metadata: {name: dev}
        spec:
          driver: local
          portRange: 20000-20999
          notifications:
        \(notifications)

        """
    }

    @Test func targetsDecode() throws {
        let c = loadText(environment("""
            - name: ops
              type: webhook
              url: https://hooks.example.com/mcpfleet
              signingKey: {name: hooks, key: hmac}
              events: [failed, rolled-back]
            - name: chat
              type: slack
              urlSecretRef: {name: slack, key: url}
              servers: [time]
            - name: commits
              type: github
              repository: acme/catalog
              token: {name: github, key: token}
        """))
        #expect(!c.diagnostics.hasErrors, "\(c.errorsText)")
        let n = try #require(c.catalog.environments.first).notifications
        #expect(n.map(\.name) == ["ops", "chat", "commits"])
        #expect(n[0].kind == .webhook && n[0].url == "https://hooks.example.com/mcpfleet" && n[0].signingKey == SecretReference(name: "hooks", key: "hmac"))
        #expect(n[0].events == [.failed, .rolledBack])
        #expect(n[1].urlSecretRef == SecretReference(name: "slack", key: "url") && n[1].servers == ["time"])
        #expect(n[2].repository == "acme/catalog" && n[2].token == SecretReference(name: "github", key: "token"))
    }

    @Test func mistakesAreNamedWithTheirPlace() {
        let c = loadText(environment("""
            - name: chat
              type: slack
              url: https://hooks.slack.com/services/T000/B000/XXXX
            - name: creds
              type: webhook
              url: https://user:hunter2@hooks.example.com/x
            - name: gh
              type: github
              repository: not-a-repo
            - name: ops
              type: webhook
              url: https://hooks.example.com/x
              events: [exploded]
            - name: ops
              type: pager
        """))
        let text = c.errorsText
        #expect(text.contains("a Slack incoming-webhook URL carries its token; reference it with `urlSecretRef`"), "\(text)")
        #expect(text.contains("carries credentials or a query string"), "\(text)")
        #expect(text.contains("`spec.notifications[2].repository` must be `OWNER/NAME`"), "\(text)")
        #expect(text.contains("missing required field `spec.notifications[2].token` (github)"), "\(text)")
        #expect(text.contains("unknown event `exploded`"), "\(text)")
        #expect(text.contains("notification `ops` is defined twice"), "\(text)")
        #expect(text.contains("mem/test.yaml:"), "\(text)")
        // No secret byte in any message.
        #expect(!text.contains("hunter2") && !text.contains("XXXX"), "\(text)")
    }

    @Test func auditEntriesMapToEvents() {
        func kinds(_ action: String, outcome: String = "ok") -> [RolloutEventKind] {
            RolloutEventKind.kinds(of: AuditEntry(time: 1, server: "s", action: action, reason: "r", outcome: outcome))
        }
        #expect(kinds("rollout-start") == [.started])
        #expect(kinds("analysis-passed") == [.step])
        #expect(kinds("pause") == [.paused] && kinds("analysis-inconclusive") == [.paused])
        #expect(kinds("promote") == [.promoted])
        #expect(kinds("rollout-complete") == [.succeeded])
        #expect(kinds("rollback") == [.failed] && kinds("rollout-failed") == [.failed])
        #expect(kinds("rollback-start") == [.rolledBack] && kinds("pin") == [.rolledBack])
        #expect(kinds("blocked") == [.blocked])
        #expect(kinds("crash-loop") == [.crashLooping])
        #expect(kinds("step") == [.step] && kinds("crash-loop-recovered") == [.recovered])
        // Driver calls (and their failures, retried) are not events.
        #expect(kinds("scale").isEmpty && kinds("rollout-start", outcome: "error: boom").isEmpty)
    }

    @Test func payloadsAreStableAndCommitStatusesNeedACleanCommit() throws {
        let commit = String(repeating: "ab", count: 20)
        let entry = AuditEntry(time: 1_700_000_000_000, server: "time", action: "rollback", revision: "rev2", reason: "crash-looping", manifestCommit: commit, outcome: "ok",
                               correlationId: "c1", actor: nil)
        let event = try #require(RolloutEvent.events(for: entry, environment: "prod").first)
        // Same entry, same id and body (retries and receivers deduplicate by them).
        #expect(event == RolloutEvent.events(for: entry, environment: "prod").first)
        let body = String(decoding: event.webhookBody(), as: UTF8.self)
        #expect(body.hasPrefix(#"{"action":"rollback","commit":""#), "\(body)")
        #expect(RolloutEvent.signature(body: Array("hello".utf8), key: Array("key".utf8))
                == "sha256=9307b3b915efb5171ff14d8cb55fbcc798c6c0ef1456d66ded1a6aa723a58b7b")
        let status = try #require(event.githubStatus())
        #expect(status.state == "failure" && status.context == "mcpfleet/prod/time" && status.sha == commit)
        var dirty = entry
        dirty.manifestCommit = commit + "-dirty"
        #expect(RolloutEvent.events(for: dirty, environment: "prod").first?.githubStatus() == nil)
        let slack = String(decoding: event.slackBody(), as: UTF8.self)
        #expect(slack.contains("time rev2 failed in prod: crash-looping"), "\(slack)")
    }

    @Test func allowFromDecodesAndRefusesAnEmptyPeer() throws {
        let base = """
        apiVersion: mcpfleet.io/v1alpha1
        kind: Tenant
        metadata: {name: t1}
        spec:
          allowFrom:

        """
        let ok = loadText(base + """
            - namespace: clients
            - {namespaceLabels: {team: research}, podLabels: {app: agent}}
        """)
        #expect(!ok.diagnostics.hasErrors, "\(ok.errorsText)")
        let t = try #require(ok.catalog.tenants.first)
        #expect(t.allowFrom == [NetworkPeer(namespace: "clients"), NetworkPeer(namespaceLabels: ["team": "research"], podLabels: ["app": "agent"])])
        let bad = loadText(base + """
            - {}
            - namespace: Not_A_Label
            - podLabels: {"bad key!": x}
        """)
        #expect(bad.errorsText.contains("needs at least one of `namespace`, `namespaceLabels`, `podLabels`"), "\(bad.errorsText)")
        #expect(bad.errorsText.contains("Not_A_Label"), "\(bad.errorsText)")
        #expect(bad.errorsText.contains("bad key!"), "\(bad.errorsText)")
    }

    @Test func statusPhaseAndSync() {
        let d = DesiredServer(name: "time", tenant: "t", version: "1", revision: "r2", replicas: 2)
        var live = LiveServer(name: "time", tenant: "t", revisions: [LiveRevision(revision: "r2", version: "1", replicas: 2, ready: 1)])
        live.phase = .stable
        #expect(FleetSync.phase(live, desired: d) == .degraded)
        live.paused = true
        #expect(FleetSync.phase(live, desired: d) == .paused)
        live.paused = false
        live.revisions[0].ready = 2
        #expect(FleetSync.phase(live, desired: d) == .stable)

        let state = DesiredState(environment: "dev", driver: .local, servers: [d])
        var ls = LiveState(servers: [live], tenants: [])
        let commit = String(repeating: "c", count: 40)
        #expect(FleetSync.summary(ls, desired: state, catalogCommit: commit).line == "Synced to commit cccccccccccc")
        ls.servers[0].targetRevision = "r3"
        let out = FleetSync.summary(ls, desired: state, catalogCommit: commit + "-dirty")
        #expect(out.line == "OutOfSync with commit cccccccccccc + uncommitted changes: 1 of 1 servers not at their desired revision (time)")

        let md = FleetSync.markdown(title: "mcpfleet: dev", sync: out, rows: [["SERVER", "NOTES"], ["time", "a|b\nc"], ["x", ""]], notes: ["time: paused"])
        #expect(md == """
        ### mcpfleet: dev

        🔄 OutOfSync with commit cccccccccccc + uncommitted changes: 1 of 1 servers not at their desired revision (time)

        | SERVER | NOTES |
        |---|---|
        | time | a\\|b c |
        | x |   |

        - time: paused

        """)
    }
}
