import FleetCore

extension GateVerdict {
    /// The verdict's findings as FleetCore diagnostics, for `mcpfleet validate`/`plan` output:
    /// findings of enforcing policies are errors, of warn-mode policies warnings. Codes are
    /// `supply-chain-<check>` (`supply-chain-signature`, `supply-chain-sbom`, ...); `location` is
    /// typically the server document's `spec.supplyChain` (or `metadata.name`) position.
    public func diagnostics(at location: SourceLocation?) -> Diagnostics {
        var out = Diagnostics()
        for f in findings {
            let message = "server \(server): \(f.message)"
            let hint = "policy \(f.policy) (\(f.mode.rawValue))"
            out.append(f.mode == .enforce
                ? .error("supply-chain-\(f.check)", message, at: location, hint: hint)
                : .warning("supply-chain-\(f.check)", message, at: location, hint: hint))
        }
        return out
    }
}
