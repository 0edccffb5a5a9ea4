/// The result of one SLO measurement of a revision.
public enum MeasurementResult: String, Codable, Hashable, Sendable {
    case pass, fail
    /// No data (no traffic, no probe results, an empty query result): neither pass nor fail.
    case inconclusive
}

/// The outcome of an analysis run (`count` measurements, `failureLimit` failures tolerated).
public enum AnalysisVerdict: String, Codable, Hashable, Sendable {
    case running, pass, fail, inconclusive
}

/// One measurement: the values seen and how they compare with the objective.
public struct SLOMeasurement: Codable, Hashable, Sendable {
    public var result: MeasurementResult
    public var successRate: Double?
    public var latencyP95Ms: Double?
    public var detail: String?
    /// Unix epoch milliseconds.
    public var time: Int64

    public init(result: MeasurementResult, successRate: Double? = nil, latencyP95Ms: Double? = nil, detail: String? = nil, time: Int64) {
        self.result = result
        self.successRate = successRate
        self.latencyP95Ms = latencyP95Ms
        self.detail = detail
        self.time = time
    }
}

/// SLO arithmetic: judging a measurement against an objective and a run of measurements into a verdict.
public enum SLOMath {
    /// Judges observed values against the objective. A value the SLO constrains but the provider could
    /// not produce makes the measurement inconclusive, never a pass.
    public static func judge(successRate: Double?, latencyP95Ms: Double?, slo: DesiredSLO, time: Int64) -> SLOMeasurement {
        var failures: [String] = []
        var missing = false
        if let objective = slo.successRate {
            if let v = successRate {
                if v.isNaN { missing = true } else if v < objective { failures.append("success rate \(format(v)) < \(format(objective))") }
            } else { missing = true }
        }
        if let objective = slo.latencyP95Ms {
            if let v = latencyP95Ms {
                if v.isNaN { missing = true } else if v > Double(objective) { failures.append("p95 \(format(v))ms > \(objective)ms") }
            } else { missing = true }
        }
        let result: MeasurementResult = !failures.isEmpty ? .fail : missing ? .inconclusive : .pass
        let detail = !failures.isEmpty ? failures.joined(separator: ", ") : missing ? "no data" : nil
        return SLOMeasurement(result: result, successRate: successRate, latencyP95Ms: latencyP95Ms, detail: detail, time: time)
    }

    /// Argo-Rollouts-style verdict: fail as soon as failures exceed `failureLimit`; once `count`
    /// measurements are in, pass when at least `count − failureLimit` passed, otherwise inconclusive
    /// (too little data to promote on). Before that: running.
    public static func verdict(_ results: [MeasurementResult], count: Int, failureLimit: Int) -> AnalysisVerdict {
        let failures = results.filter { $0 == .fail }.count
        if failures > failureLimit { return .fail }
        guard results.count >= max(1, count) else { return .running }
        let passes = results.filter { $0 == .pass }.count
        return passes >= max(1, count - failureLimit) ? .pass : .inconclusive
    }

    static func format(_ v: Double) -> String {
        let rounded = (v * 10000).rounded() / 10000
        return rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
    }
}

/// A fixed-bucket latency histogram (milliseconds) with a quantile estimate, as Prometheus'
/// `histogram_quantile` computes it: linear interpolation inside the bucket holding the rank.
public struct LatencyHistogram: Codable, Hashable, Sendable {
    public static let defaultBounds: [Double] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]

    public private(set) var bounds: [Double]
    /// Per bucket (same index as `bounds`, plus one overflow bucket at the end).
    public private(set) var counts: [Int]
    public private(set) var total: Int
    public private(set) var sum: Double

    public init(bounds: [Double] = LatencyHistogram.defaultBounds) {
        self.bounds = bounds.sorted()
        counts = Array(repeating: 0, count: bounds.count + 1)
        total = 0
        sum = 0
    }

    /// A histogram from counts already bucketed (`counts`: one per bound plus the overflow); nil when they do not fit.
    public init?(bounds: [Double], counts: [Int]) {
        guard counts.count == bounds.count + 1, bounds == bounds.sorted() else { return nil }
        self.bounds = bounds
        self.counts = counts
        total = counts.reduce(0, +)
        sum = 0
    }

    public mutating func observe(_ ms: Double) {
        let i = bounds.firstIndex { ms <= $0 } ?? bounds.count
        counts[i] += 1
        total += 1
        sum += ms
    }

    /// nil when empty. Values in the overflow bucket report the largest bound.
    public func quantile(_ q: Double) -> Double? {
        guard total > 0 else { return nil }
        let rank = q * Double(total)
        var cumulative = 0
        for (i, c) in counts.enumerated() {
            let before = cumulative
            cumulative += c
            if Double(cumulative) >= rank && c > 0 {
                guard i < bounds.count else { return bounds.last }
                let lower = i == 0 ? 0 : bounds[i - 1]
                let upper = bounds[i]
                return lower + (upper - lower) * (rank - Double(before)) / Double(c)
            }
        }
        return bounds.last
    }
}
