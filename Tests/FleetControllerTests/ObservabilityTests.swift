import FleetController
import FleetCore
import FleetHTTP
import FleetTesting
import Foundation
import Logging
import Testing

/// A tiny Prometheus: answers /api/v1/query with the real JSON shapes, by query text.
func startFakePrometheus(port: Int) async throws -> TestProcess {
    let script = """
    import json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from urllib.parse import urlparse, parse_qs
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            u = urlparse(self.path)
            if u.path != "/api/v1/query":
                self.send_response(404); self.end_headers(); return
            q = parse_qs(u.query).get("query", [""])[0]
            if "error" in q:
                body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 1"}
                code = 400
            elif "empty" in q:
                body = {"status": "success", "data": {"resultType": "vector", "result": []}}
                code = 200
            elif q.startswith("scalar"):
                body = {"status": "success", "data": {"resultType": "scalar", "result": [1700000000.1, "0.25"]}}
                code = 200
            else:
                good = 'revision="good"' in q
                value = ("0.999" if good else "0.42") if "success" in q else ("0.120" if good else "2.5")
                body = {"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {"server": "time", "echo": q}, "value": [1700000000.123, value]}]}}
                code = 200
            data = json.dumps(body).encode()
            self.send_response(code); self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
        def log_message(self, *a): pass
    HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
    let p = try TestProcess("/usr/bin/env", ["python3", "-c", script, String(port)])
    try await waitUntil("fake Prometheus", timeout: .seconds(10)) { TestEnvironment.isListening(port) }
    return p
}

@Suite struct ObservabilityTests {
    @Test func prometheusProviderQueriesAndJudges() async throws {
        let port = TestEnvironment.freePort()
        let prom = try await startFakePrometheus(port: port)
        defer { prom.signal(SIGKILL) }
        let provider = PrometheusAnalysisProvider(transport: try CurlTransport(CurlTransportConfiguration(proxy: .none)))
        let address = "http://127.0.0.1:\(port)"
        let slo = DesiredSLO(name: "s", successRate: 0.99, latencyP95Ms: 400, provider: .prometheus, prometheusAddress: address,
                             successRateQuery: #"sum(rate(success{server="{{server}}",tenant="{{tenant}}",revision="{{revision}}"}[1m])) / sum(rate(total[1m]))"#,
                             latencyP95Query: #"histogram_quantile(0.95, latency{revision="{{revision}}"} + 0)"#)
        let server = DesiredServer(name: "time", tenant: "research", version: "1")
        let good = await provider.measure(server: server, revision: "good", slo: slo, now: 1)
        #expect(good.result == .pass, "\(good.detail ?? "")")
        #expect(good.successRate == 0.999)
        #expect(good.latencyP95Ms == 120)
        let bad = await provider.measure(server: server, revision: "bad", slo: slo, now: 1)
        #expect(bad.result == .fail)
        #expect(bad.detail?.contains("success rate") == true)
        // Templating, including `+` surviving URL encoding.
        let rendered = PrometheusAnalysisProvider.render(slo.successRateQuery!, server: server, revision: "good")
        #expect(rendered.contains(#"server="time",tenant="research",revision="good""#))
        #expect(try await provider.query(address: address, "scalar(1 + 1)") == 0.25)
        #expect(try await provider.query(address: address, "empty_metric") == nil)
        await #expect(throws: (any Error).self) { try await provider.query(address: address, "error(") }
        // No data is inconclusive, never a pass.
        var emptySLO = slo
        emptySLO.successRateQuery = "empty"
        emptySLO.latencyP95Query = nil
        emptySLO.latencyP95Ms = nil
        #expect(await provider.measure(server: server, revision: "good", slo: emptySLO, now: 1).result == .inconclusive)
    }

    @Test func metricsExposition() async throws {
        let metrics = ControllerMetrics()
        metrics.phase(server: "time", phase: .progressing)
        metrics.change(action: "scale")
        metrics.reconcileDuration(.milliseconds(12), result: "success")
        metrics.probe(server: "time", revision: "r1", result: ProbeResult(success: true, latencyMs: 3))
        metrics.slo(server: "time", revision: "r1", measurement: SLOMeasurement(result: .pass, successRate: 0.999, latencyP95Ms: 120, time: 0))
        metrics.policyDenial(server: "time")
        metrics.queueDepth(3)
        // Served over HTTP by the gateway's stack (FleetGatewayTests.OpsEndpointTests).
        let text = metrics.exposition()
        for name in ["mcpfleet_reconcile_duration_seconds_bucket", "mcpfleet_workqueue_depth", "mcpfleet_changes_total{action=\"scale\"}",
                     "mcpfleet_rollout_phase{server=\"time\",phase=\"progressing\"} 1", "mcpfleet_slo_success_rate", "mcpfleet_probe_duration_seconds",
                     "mcpfleet_policy_denials_total"] {
            #expect(text.contains(name), "\(name) missing from\n\(text)")
        }
    }

    /// A server's phase series: 1 for the phase it is in, 0 for the phases it left, none for phases it
    /// never was in (issue 14: seven gauges per server were 3.5 MiB at 1,000 servers).
    @Test func phaseSeriesExistForThePhasesAServerWasIn() {
        let metrics = ControllerMetrics()
        metrics.phase(server: "time", phase: .progressing)
        metrics.phase(server: "time", phase: .stable)
        metrics.phase(server: "time", phase: .stable)
        metrics.phase(server: "other", phase: .failed)
        let lines = metrics.exposition().split(separator: "\n").filter { $0.hasPrefix("mcpfleet_rollout_phase{") }.map(String.init).sorted()
        #expect(lines == ["mcpfleet_rollout_phase{server=\"other\",phase=\"failed\"} 1.0",
                          "mcpfleet_rollout_phase{server=\"time\",phase=\"progressing\"} 0.0",
                          "mcpfleet_rollout_phase{server=\"time\",phase=\"stable\"} 1.0"], "\(lines)")
        // Back to a phase it was in before: the same series again.
        metrics.phase(server: "time", phase: .progressing)
        let again = metrics.exposition().split(separator: "\n").filter { $0.hasPrefix("mcpfleet_rollout_phase{server=\"time\"") }.map(String.init).sorted()
        #expect(again == ["mcpfleet_rollout_phase{server=\"time\",phase=\"progressing\"} 1.0",
                          "mcpfleet_rollout_phase{server=\"time\",phase=\"stable\"} 0.0"], "\(again)")
    }

    @Test func jsonLogsAreOneObjectPerLine() throws {
        let lines = LineSink()
        var logger = Logger(label: "mcpfleet.test") { label in JSONLogHandler(label: label, sink: { lines.append($0) }) }
        logger[metadataKey: "correlation_id"] = "abc123"
        logger.info("rollout phase", metadata: ["server": "time", "phase": "progressing"])
        logger.warning("multi\nline \"quoted\"")
        #expect(lines.all.count == 2)
        for line in lines.all {
            #expect(!line.contains("\n"))
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object?["correlation_id"] as? String == "abc123")
            #expect(object?["time"] != nil && object?["level"] != nil)
        }
        let first = try JSONSerialization.jsonObject(with: Data(lines.all[0].utf8)) as? [String: Any]
        #expect(first?["server"] as? String == "time")
        #expect(first?["message"] as? String == "rollout phase")
    }
}

final class LineSink: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func append(_ s: String) { lock.withLock { lines.append(s) } }
    var all: [String] { lock.withLock { lines } }
}
