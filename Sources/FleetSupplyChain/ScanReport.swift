import Foundation

/// Parses Grype JSON (`grype -o json`) and Trivy JSON (`trivy image -f json`, SchemaVersion 2)
/// vulnerability reports into a `ScanSummary`.
public enum ScanReportParser {
    public static func parse(_ data: Data, path: String = "scan report") throws(SupplyChainError) -> ScanSummary {
        let o = try EvidenceFile.jsonObject(data, what: "scan report", path: path)
        if o["matches"] != nil { return try parseGrype(o, path: path) }
        if o["SchemaVersion"] != nil || o["Results"] != nil { return try parseTrivy(o, path: path) }
        throw SupplyChainError("scan report \(path) is neither Grype JSON (no matches) nor Trivy JSON (no SchemaVersion/Results)")
    }

    static func parseGrype(_ o: [String: Any], path: String) throws(SupplyChainError) -> ScanSummary {
        if let d = o["descriptor"] as? [String: Any], let n = d["name"] as? String, n != "grype" {
            throw SupplyChainError("scan report \(path): descriptor.name is \(n), expected grype")
        }
        guard let matches = o["matches"] as? [[String: Any]] else {
            throw SupplyChainError("scan report \(path): Grype matches is not a list of objects")
        }
        var counts: [String: Int] = [:]
        for (i, m) in matches.enumerated() {
            guard let v = m["vulnerability"] as? [String: Any] else {
                throw SupplyChainError("scan report \(path): Grype matches[\(i)] has no vulnerability")
            }
            let raw = (v["severity"] as? String) ?? "Unknown"
            guard let sev = VulnerabilitySeverity(scannerValue: raw), sev != .none else {
                throw SupplyChainError("scan report \(path): Grype matches[\(i)] (\(v["id"] as? String ?? "?")) has unknown severity \(raw)")
            }
            counts[sev.rawValue, default: 0] += 1
        }
        return summary("grype", counts)
    }

    static func parseTrivy(_ o: [String: Any], path: String) throws(SupplyChainError) -> ScanSummary {
        guard let sv = o["SchemaVersion"] as? Int else {
            throw SupplyChainError("scan report \(path): Trivy SchemaVersion is missing")
        }
        guard sv == 2 else {
            throw SupplyChainError("scan report \(path): Trivy SchemaVersion \(sv) is not supported (2)")
        }
        var counts: [String: Int] = [:]
        let resultsAny = o["Results"] ?? [Any]()
        if resultsAny is NSNull { return summary("trivy", counts) }
        guard let results = resultsAny as? [[String: Any]] else {
            throw SupplyChainError("scan report \(path): Trivy Results is not a list of objects")
        }
        for (r, result) in results.enumerated() {
            guard let vulnsAny = result["Vulnerabilities"], !(vulnsAny is NSNull) else { continue }
            guard let vulns = vulnsAny as? [[String: Any]] else {
                throw SupplyChainError("scan report \(path): Trivy Results[\(r)].Vulnerabilities is not a list of objects")
            }
            for (i, v) in vulns.enumerated() {
                let raw = (v["Severity"] as? String) ?? "UNKNOWN"
                guard let sev = VulnerabilitySeverity(scannerValue: raw), sev != .none, sev != .negligible else {
                    throw SupplyChainError("scan report \(path): Trivy Results[\(r)].Vulnerabilities[\(i)] (\(v["VulnerabilityID"] as? String ?? "?")) has unknown severity \(raw)")
                }
                counts[sev.rawValue, default: 0] += 1
            }
        }
        return summary("trivy", counts)
    }

    static func summary(_ scanner: String, _ counts: [String: Int]) -> ScanSummary {
        let highest = counts.keys.compactMap(VulnerabilitySeverity.init(rawValue:)).max() ?? .none
        return ScanSummary(scanner: scanner, counts: counts, highest: highest)
    }

    /// Nil when `scan` is within `ceiling`; else a reason such as
    /// "scan report (grype) has 2 critical vulnerabilities, above the ceiling high".
    public static func ceilingViolation(_ scan: ScanSummary, ceiling: VulnerabilitySeverity) -> String? {
        let over = VulnerabilitySeverity.allCases.reversed().filter { $0 > ceiling && scan.count($0) > 0 }
        guard !over.isEmpty else { return nil }
        let total = over.reduce(0) { $0 + scan.count($1) }
        let parts = over.map { "\(scan.count($0)) \($0.rawValue)" }.joined(separator: ", ")
        return "scan report (\(scan.scanner)) has \(parts) \(total == 1 ? "vulnerability" : "vulnerabilities"), above the ceiling \(ceiling.rawValue)"
    }
}
