import FleetCore
import FleetHTTP
import Foundation

/// Takes one SLO measurement of a revision.
public protocol AnalysisProvider: Sendable {
    func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement
    /// An analysis run of `revision` begins: the first interval is measured from now.
    func begin(server: DesiredServer, revision: String) async
}

extension AnalysisProvider {
    public func begin(server: DesiredServer, revision: String) async {}
}

/// The controller's own probe results: success ratio and p95 latency since the last measurement.
public struct ProbeAnalysisProvider: AnalysisProvider {
    let tracker: HealthTracker

    public init(tracker: HealthTracker) { self.tracker = tracker }

    public func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement {
        let w = await tracker.takeWindow(server: server.name, revision: revision)
        var m = SLOMath.judge(successRate: w.successRate, latencyP95Ms: w.p95Ms, slo: slo, time: now)
        if w.samples == 0 { m.detail = "no probe results for \(revision) in this interval" }
        return m
    }
}

/// PromQL through the Prometheus HTTP API (`GET /api/v1/query`), with `{{server}}`, `{{tenant}}` and
/// `{{revision}}` substituted into the queries. A vector result uses its first sample; an empty vector
/// is no data.
public struct PrometheusAnalysisProvider: AnalysisProvider {
    let transport: any HTTPTransport
    let timeoutMs: Int64

    public init(transport: any HTTPTransport, timeoutMs: Int64 = 10_000) {
        self.transport = transport
        self.timeoutMs = timeoutMs
    }

    public struct QueryError: Error, CustomStringConvertible {
        public var description: String
    }

    public static func render(_ query: String, server: DesiredServer, revision: String) -> String {
        // Label values are quoted by the query author; escape what would end the string.
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") }
        return query.replacingOccurrences(of: "{{server}}", with: esc(server.name))
            .replacingOccurrences(of: "{{tenant}}", with: esc(server.tenant))
            .replacingOccurrences(of: "{{revision}}", with: esc(revision))
    }

    /// The value of a query, nil for an empty result.
    public func query(address: String, _ promql: String) async throws -> Double? {
        var components = URLComponents(string: address.hasSuffix("/") ? String(address.dropLast()) + "/api/v1/query" : address + "/api/v1/query")
        components?.queryItems = [URLQueryItem(name: "query", value: promql)]
        // `+` is a space in query strings: encode it so PromQL arithmetic survives.
        let encoded = components?.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
        components?.percentEncodedQuery = encoded
        guard let url = components?.string else { throw QueryError(description: "bad Prometheus address \(address)") }
        let response = try await transport.send(HTTPRequest(method: "GET", url: url, headers: ["Accept": "application/json"], timeout: .milliseconds(timeoutMs)))
        guard let json = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] else {
            throw QueryError(description: "Prometheus at \(address) answered HTTP \(response.status) without JSON")
        }
        guard json["status"] as? String == "success", let data = json["data"] as? [String: Any] else {
            throw QueryError(description: "Prometheus query failed (HTTP \(response.status)): \(json["errorType"] ?? "") \(json["error"] ?? "")")
        }
        return try Self.value(of: data)
    }

    static func value(of data: [String: Any]) throws -> Double? {
        func number(_ pair: Any?) -> Double? {
            guard let p = pair as? [Any], p.count == 2 else { return nil }
            if let s = p[1] as? String { return Double(s) }
            return (p[1] as? NSNumber)?.doubleValue
        }
        switch data["resultType"] as? String {
        case "scalar":
            return number(data["result"])
        case "vector":
            guard let result = data["result"] as? [[String: Any]] else { return nil }
            return result.first.flatMap { number($0["value"]) }
        case let other:
            throw QueryError(description: "unsupported Prometheus result type \(other ?? "none")")
        }
    }

    public func measure(server: DesiredServer, revision: String, slo: DesiredSLO, now: Int64) async -> SLOMeasurement {
        guard let address = slo.prometheusAddress else {
            return SLOMeasurement(result: .inconclusive, detail: "SLO \(slo.name) has no Prometheus address", time: now)
        }
        do {
            var success: Double?, p95: Double?
            if let q = slo.successRateQuery { success = try await query(address: address, Self.render(q, server: server, revision: revision)) }
            if let q = slo.latencyP95Query {
                // Queries answer in seconds (Prometheus convention); objectives are milliseconds.
                p95 = try await query(address: address, Self.render(q, server: server, revision: revision)).map { $0 * 1000 }
            }
            return SLOMath.judge(successRate: success, latencyP95Ms: p95, slo: slo, time: now)
        } catch {
            return SLOMeasurement(result: .inconclusive, detail: "\(error)", time: now)
        }
    }
}
