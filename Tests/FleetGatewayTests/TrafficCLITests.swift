import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Testing

/// Rollouts that shift traffic through the gateway (design 0009), end to end: `mcpfleet run` (the built
/// binary, local driver), real Python MCP servers, the Python SDK's client.
@Suite(.serialized) struct TrafficCLITests {
    struct Catalog: CatalogDirectory {
        let root = NSTemporaryDirectory() + "mcpfleet-traffic-\(UUID().uuidString.prefix(8))"
        let basePort = 24_000 + Int.random(in: 0..<300) * 10
        let gatewayPort = 9_100 + Int.random(in: 0..<300)
        var dir: String { root + "/cat" }
        var gateway: String { "127.0.0.1:\(gatewayPort)" }
        var url: String { "http://\(gateway)/echo/mcp" }

        init() throws {
            try FileManager.default.createDirectory(atPath: root + "/cat", withIntermediateDirectories: true)
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/py_server.py"
            try FileManager.default.copyItem(atPath: script, toPath: root + "/cat/py_server.py")
        }

        /// `rollout` and `slo`: YAML under `spec.rollout` / the SLO document's `spec`, indented by the caller.
        func write(version: String, failEvery: Int = 0, rollout: String, slo: String? = nil) throws {
            let fail = failEvery > 0 ? #", "--fail-every", "\#(failEvery)""# : ""
            var yaml = """
            apiVersion: mcpfleet.io/v1alpha1
            kind: Environment
            metadata:
              name: dev
            spec:
              driver: local
              portRange: \(basePort)-\(basePort + 9)
              stateDir: \(root)/state
              secretsDir: \(root)/secrets
              gateway:
                address: \(gateway)
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Tenant
            metadata:
              name: research
            spec:
              isolation: shared
            ---
            apiVersion: mcpfleet.io/v1alpha1
            kind: Server
            metadata:
              name: echo
            spec:
              version: "\(version)"
              tenant: research
              artifact:
                command: ["python3", "${MANIFEST_DIR}/py_server.py", "--port", "${PORT}"\(fail)]
              transport:
                type: streamable-http
                port: \(basePort)
                path: /mcp
              replicas: 2
              health:
                probe: mcp
                interval: 300ms
                timeout: 2s
                failureThreshold: 2
                requireTools: [echo]
              rollout:
            \(rollout)
            """
            if let slo {
                yaml += "\n" + """
                  slo: tools
                ---
                apiVersion: mcpfleet.io/v1alpha1
                kind: SLO
                metadata:
                  name: tools
                spec:
                \(slo)
                """
            }
            try (yaml + "\n").write(toFile: dir + "/fleet.yaml", atomically: true, encoding: .utf8)
        }


        /// The audit log, oldest first.
        func audit() async throws -> [(action: String, time: Int64, reason: String, revision: String?)] {
            let r = try await fleet(["history", "echo", "-C", dir, "-o", "json", "--limit", "500"])
            guard let start = r.out.firstIndex(of: "{"),
                  let json = try JSONSerialization.jsonObject(with: Data(r.out[start...].utf8)) as? [String: Any],
                  let entries = json["audit"] as? [[String: Any]] else { return [] }
            return entries.map { ($0["action"] as? String ?? "", ($0["time"] as? NSNumber)?.int64Value ?? 0, $0["reason"] as? String ?? "", $0["revision"] as? String) }
                .sorted { $0.time < $1.time }
        }

        /// The gateway's replicas: (revision, port, healthy, sessions).
        func replicas() async throws -> [(revision: String, port: Int, healthy: Bool, sessions: Int)] {
            let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
            let r = try await http.send(HTTPRequest(url: "http://\(gateway)/health/detailed", timeout: .seconds(5)))
            let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
            return (json?["replicas"] as? [[String: Any]] ?? []).map {
                ($0["revision"] as? String ?? "", Int(($0["address"] as? String ?? "").split(separator: ":").last ?? "") ?? 0,
                 $0["healthy"] as? Bool ?? false, $0["sessions"] as? Int ?? 0)
            }
        }

    }

    static let clientScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/mcp_client.py"

    static func events(_ p: TestProcess) -> [[String: Any]] {
        p.output.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }

    func start(_ c: Catalog) async throws -> TestProcess {
        try await start(c, gatewayArguments: [])
    }

    /// `gatewayArguments` go to `mcpfleet run` (`--gateway-address ""`: the gateway runs elsewhere).
    func start(_ c: Catalog, gatewayArguments: [String]) async throws -> TestProcess {
        let controller = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["run", c.dir, "--metrics-address", "", "--poll", "200ms", "--log-level", "info"] + gatewayArguments)
        try await waitUntil("2 ready replicas of 1.0 behind the gateway", timeout: .seconds(90), every: .milliseconds(300)) {
            guard try await c.live()?.readyReplicas == 2 else { return false }
            return (try? await c.replicas().filter(\.healthy).count) == 2
        }
        return controller
    }

    static let canary20 = """
                strategy: canary
                steps:
                  - {weight: 20, pause: untilPromoted}
            """

    /// `weight: 20`: the canary gets 20 % ± 5 points of 1,000 new sessions (its replica count follows the
    /// weight: one canary replica, one stable).
    @Test func aCanaryStepsWeightIsItsShareOfNewSessions() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        try c.write(version: "1.0", rollout: Self.canary20)
        let controller = try await start(c)
        defer { Task { await controller.stop() } }
        let old = try #require(try await c.live()?.servingRevision?.revision)
        try c.write(version: "1.1", rollout: Self.canary20)
        try await waitUntil("the canary paused at its 20 % step, routed", timeout: .seconds(90), every: .milliseconds(300)) {
            guard let s = try await c.live(), s.phase == .paused, s.revisions.first(where: { $0.revision != old })?.ready == 1 else { return false }
            // The stable replica the step gives up drains first (its record says paused before it stops).
            let replicas = try await c.replicas()
            return replicas.filter { $0.healthy && $0.revision != old }.count == 1 && replicas.filter { $0.revision == old }.count == 1
        }
        let replicas = try await c.replicas()
        #expect(replicas.map(\.revision).filter { $0 == old }.count == 1, "one stable replica beside the one canary replica: \(replicas)")
        let canaryPorts = Set(replicas.filter { $0.revision != old }.map(\.port))
        // 1,000 new sessions, four clients at once, each session one call (answered with the replica's port).
        var clients: [TestProcess] = []
        for _ in 0..<4 {
            clients.append(try TestProcess("/usr/bin/env", ["python3", Self.clientScript, c.url, "--sessions", "250"]))
        }
        var canary = 0, total = 0
        for client in clients {
            _ = try await client.wait(timeout: .seconds(300))
            let events = Self.events(client)
            #expect(events.last?["event"] as? String == "done" && events.last?["failed"] as? Int == 0, "\(client.output.suffix(2000))")
            for e in events where e["event"] as? String == "call" {
                #expect(e["isError"] as? Bool == false)
                guard let port = (e["text"] as? String)?.split(separator: "@").last.flatMap({ Int($0) }) else { continue }
                total += 1
                if canaryPorts.contains(port) { canary += 1 }
            }
        }
        #expect(total == 1000)
        #expect((150...250).contains(canary), "20 % ± 5 points of \(total) new sessions on the canary, got \(canary)")
    }

    /// Sessions opened before a rolling update finish their calls while their replicas drain: no new
    /// sessions reach a draining replica, and it stops when its sessions end or at `drainTimeout`.
    @Test func openSessionsFinishWhileTheirReplicasDrain() async throws {
        try await drainScenario(separateGateway: false)
    }

    /// The same with the gateway in its own process (`mcpfleet gateway`, as the systemd unit runs it) and
    /// the controller without one (design 0016): the draining marks and the open-session counts travel
    /// through the state database.
    @Test func openSessionsFinishWhileTheirReplicasDrainThroughASeparateGateway() async throws {
        try await drainScenario(separateGateway: true)
    }

    /// Two clients calling in a loop and one session never closed, across a rolling update (each old
    /// replica is scaled away): the looping clients' sessions finish without an error, the replica with
    /// the unclosed session stops only at the drain timeout.
    func drainScenario(separateGateway: Bool) async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        let rolling = """
                strategy: rolling
                maxSurge: 1
                maxUnavailable: 0
                drainTimeout: 15s
            """
        try c.write(version: "1.0", rollout: rolling)
        var gateway: TestProcess?
        if separateGateway {
            gateway = try TestProcess(try TestEnvironment.mcpfleetBinary(), ["gateway", c.dir, "--address", c.gateway, "--refresh", "200ms", "--access-log", "", "--log-format", "text"])
        }
        defer { gateway?.signal(SIGKILL) }
        let controller = try await start(c, gatewayArguments: separateGateway ? ["--gateway-address", ""] : [])
        defer { Task { await controller.stop() } }
        var clients: [TestProcess] = []
        for _ in 0..<2 {
            let client = try TestProcess("/usr/bin/env", ["python3", Self.clientScript, c.url, "--loop", #"echo:12:{"text":"t"}"#])
            try await waitUntil("the client's first calls", timeout: .seconds(30), every: .milliseconds(100)) { client.output.contains("\"call\"") }
            clients.append(client)
        }
        // A session a client never closes: its replica waits out the drain timeout.
        let http = try CurlTransport(CurlTransportConfiguration(proxy: .none))
        let opened = try await http.send(HTTPRequest(method: "POST", url: c.url,
                                                     headers: HTTPHeaders([("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream")]),
                                                     body: Array(GatewayHarness.initialize.utf8), timeout: .seconds(10)))
        #expect(opened.status == 200)
        let began = Date()
        try c.write(version: "1.1", rollout: rolling)
        if separateGateway {
            // The separate gateway marks a replica the controller drains: no new session goes there.
            try await waitUntil("a replica marked draining in the separate gateway", timeout: .seconds(60), every: .milliseconds(200)) {
                let r = try await http.send(HTTPRequest(url: "http://\(c.gateway)/health/detailed", timeout: .seconds(5)))
                return String(decoding: r.body, as: UTF8.self).contains(#""draining" : true"#)
            }
        }
        try await waitUntil("the rollout to 1.1", timeout: .seconds(120), every: .milliseconds(500)) {
            guard let s = try await c.live() else { return false }
            return s.revisions.filter { $0.replicas > 0 }.map(\.version) == ["1.1"] && s.readyReplicas == 2 && s.phase == .stable
        }
        let took = Date().timeIntervalSince(began)
        #expect(took >= 15, "the replica holding an open session was stopped only at the drain timeout (took \(took) s)")
        for client in clients {
            _ = try await client.wait(timeout: .seconds(60))
            let events = Self.events(client)
            let calls = events.filter { $0["event"] as? String == "call" }
            #expect(calls.count > 20 && calls.allSatisfy { $0["isError"] as? Bool == false }, "\(client.output.suffix(2000))")
            #expect(!events.contains { $0["event"] as? String == "session-error" }, "no session was cut: \(client.output.suffix(2000))")
            #expect(events.last?["event"] as? String == "done" && events.last?["sessions"] as? Int == 1, "one session, start to end")
        }
        await controller.stop()
        let log = controller.output
        #expect(log.contains("replicas drained"), "\(log.suffix(4000))")
        #expect(log.contains("drain timeout 15000ms reached with 1 open session"), "\(log.suffix(4000))")
        // The other old replica stopped as soon as its client's session ended (closed with DELETE).
        #expect(log.contains("no open sessions"), "\(log.suffix(4000))")
    }

    static let analysed = """
                strategy: canary
                steps:
                  - {weight: 50}
            """

    /// A canary whose tool calls fail 10 % of the time (the test server errs on purpose) is rolled back by
    /// the gateway provider within interval × failureLimit + 5 s; new sessions leave it at once.
    @Test func theGatewayProviderRollsBackACanaryFailingTenPercentOfToolCalls() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        let slo = """
              successRate: "99%"
              analysis: {provider: gateway, interval: 2s, count: 5, failureLimit: 1, minimumCalls: 10}
            """
        try c.write(version: "1.0", rollout: Self.analysed, slo: slo)
        let controller = try await start(c)
        defer { Task { await controller.stop() } }
        let old = try #require(try await c.live()?.servingRevision?.revision)
        // Traffic: clients opening a new session every 4 calls, so the weight spreads them over both revisions.
        var traffic: [TestProcess] = []
        for _ in 0..<4 {
            traffic.append(try TestProcess("/usr/bin/env", ["python3", Self.clientScript, c.url, "--loop", #"echo:120:{"text":"t"}"#, "--per-session", "8"]))
        }
        defer { for t in traffic { t.signal(SIGKILL) } }
        try c.write(version: "1.1", failEvery: 10, rollout: Self.analysed, slo: slo)
        // The canary has one replica: any 10 calls in a row on it include a failing one (≤ 90 % < 99 %).
        try await waitUntil("the analysis to end", timeout: .seconds(120), every: .milliseconds(500)) {
            try await c.audit().contains { ["rollback", "analysis-inconclusive", "analysis-passed"].contains($0.action) }
        }
        let audit = try await c.audit()
        let metrics = String(decoding: try await CurlTransport(CurlTransportConfiguration(proxy: .none))
            .send(HTTPRequest(url: "http://\(c.gateway)/metrics")).body, as: UTF8.self)
        try #require(audit.contains { $0.action == "rollback" }, """
            rolled back, not \(audit.last { $0.action.hasPrefix("analysis-") }?.action ?? "-"); tool calls: \(metrics.split(separator: "\n").filter { $0.hasPrefix("mcpfleet_gateway_tool_") && $0.contains("_total") })
            """)
        let start = try #require(audit.last { $0.action == "analysis-start" })
        let rollback = try #require(audit.first { $0.action == "rollback" })
        #expect(rollback.time - start.time <= 2_000 * 1 + 5_000, "rolled back \(rollback.time - start.time) ms after the analysis began: \(audit.map { "\($0.time) \($0.action) \($0.reason)" })")
        #expect(rollback.reason.contains("success rate") && rollback.reason.contains("calls"), "\(rollback.reason)")
        // New sessions go to the stable revision only, from the rollback on (the record's save pushes the weights).
        let canaryPorts = Set(try await c.replicas().filter { $0.revision != old }.map(\.port))
        #expect(!canaryPorts.isEmpty, "the failed revision is still routed (draining) right after the rollback")
        let after = try await GatewayHarness.pythonClient([c.url, "--sessions", "20"])
        let ports = after.filter { $0["event"] as? String == "call" }.compactMap { ($0["text"] as? String)?.split(separator: "@").last.flatMap { Int($0) } }
        let oldPorts = Set(try await c.replicas().filter { $0.revision == old }.map(\.port))
        #expect(ports.count == 20 && ports.allSatisfy { oldPorts.contains($0) && !canaryPorts.contains($0) },
                "new sessions after the rollback: \(ports), stable ports \(oldPorts), failed revision's \(canaryPorts)")
        try await waitUntil("the failed revision drained and stopped", timeout: .seconds(60), every: .milliseconds(500)) {
            guard let s = try await c.live() else { return false }
            return s.revisions.filter { $0.replicas > 0 }.map(\.revision) == [old] && s.readyReplicas == 2
        }
    }

    /// Too few tool calls through the gateway: each measurement is inconclusive and the rollout pauses
    /// for a person (never promoted on no data). The SLO names no provider: on a local environment the
    /// gateway's is the default (design 0016), and `plan` and `status` say so.
    @Test func aCanaryServingTooFewCallsPausesAsInconclusive() async throws {
        let c = try Catalog()
        defer { c.cleanUp() }
        let slo = """
              successRate: "99%"
              analysis: {interval: 1s, count: 2, failureLimit: 1}
            """
        try c.write(version: "1.0", rollout: Self.analysed, slo: slo)
        let controller = try await start(c)
        defer { Task { await controller.stop() } }
        try c.write(version: "1.1", rollout: Self.analysed, slo: slo)
        try await waitUntil("the pause", timeout: .seconds(120), every: .milliseconds(500)) {
            try await c.live()?.phase == .paused
        }
        let s = try #require(try await c.live())
        #expect(s.message?.contains("inconclusive") == true && s.message?.contains("too few tool calls through the gateway") == true, "\(s.message ?? "")")
        let audit = try await c.audit()
        #expect(audit.contains { $0.action == "analysis-inconclusive" })
        #expect(!audit.contains { $0.action == "analysis-passed" || $0.action == "rollout-complete" && $0.revision == s.targetRevision })
        // Judged by the gateway — the controller's probes (every 300 ms, all answered) would have passed —
        // as `status` and `plan` tell.
        let status = try await c.fleet(["status", c.dir])
        #expect(status.out.contains("by gateway (default here)"), "\(status.out)")
        let plan = try await c.fleet(["plan", c.dir, "-o", "json"])
        #expect(plan.out.contains(#""provider" : "gateway""#) && plan.out.contains(#""providerDefaulted" : true"#), "\(plan.out)")
    }
}

