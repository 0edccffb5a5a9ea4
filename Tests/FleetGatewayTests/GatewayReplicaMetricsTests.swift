@testable import FleetGateway
import Testing

/// The replica gauges are made once per replica and then only set (issue 14: making them at every
/// route refresh cost O(replicas²)); a later refresh must still show the values it was given.
@Suite struct GatewayReplicaMetricsTests {
    func row(_ replica: String, sessions: Int, outstanding: Int, circuit: CircuitBreaker.State) -> ReplicaStatus {
        ReplicaStatus(server: "s", revision: "r1", replica: replica, address: "127.0.0.1:1", healthy: true, draining: false, circuit: circuit,
                      consecutiveFailures: 0, outstanding: outstanding, sessions: sessions)
    }

    func value(_ text: String, _ metric: String, replica: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix(metric + "{") && $0.contains("replica=\"\(replica)\"") }
            .map { String($0.split(separator: " ").last!) }
    }

    @Test func aLaterRefreshUpdatesTheSameSeries() {
        let metrics = GatewayMetrics()
        metrics.replicas([row("0", sessions: 1, outstanding: 2, circuit: .closed), row("1", sessions: 0, outstanding: 0, circuit: .closed)])
        metrics.replicas([row("0", sessions: 5, outstanding: 0, circuit: .open), row("1", sessions: 3, outstanding: 1, circuit: .halfOpen)])
        let text = metrics.exposition()
        #expect(value(text, "mcpfleet_gateway_sessions", replica: "0") == "5.0")
        #expect(value(text, "mcpfleet_gateway_outstanding_requests", replica: "0") == "0.0")
        #expect(value(text, "mcpfleet_gateway_circuit_state", replica: "0") == "1.0")
        #expect(value(text, "mcpfleet_gateway_sessions", replica: "1") == "3.0")
        #expect(value(text, "mcpfleet_gateway_circuit_state", replica: "1") == "2.0")
        // One series per replica and gauge, not one per refresh.
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("mcpfleet_gateway_sessions{") }.count == 2)
    }
}
