import FleetCore
import Foundation
import Logging
import Prometheus

/// What the controller does with the surfaces its MCP probes read (docs/designs/0010-tool-contracts.md):
/// - the first surface a revision serves healthy is its contract: recorded in its history entry and audited;
/// - the desired revision's surface is checked against the committed contract (`spec.contract`): under
///   `policy.contracts: enforce` a drifted revision fails its rollout (the rollout machine reads the
///   verdict from `RevisionProblems.contractDrift`), under warn it is logged and audited;
/// - every later probe compares the surface with the revision's first one, by digest: a change is
///   counted (`mcpfleet_contract_changes_total`), audited and logged at once; under enforce the probe
///   fails, so the instance goes out of service after the health check's failure threshold.
actor ContractMonitor {
    struct Key: Hashable {
        var server: String
        var revision: String
    }

    /// The digest of the surface each revision first served healthy. Only the digest is held (a
    /// contract per revision of a large fleet is megabytes); the surface itself is in the history entry.
    private var firstDigest: [Key: String] = [:]
    /// A changed surface's verdict against the first one, by the changed digest (read once per change).
    private var changed: [Key: (digest: String, verdict: ContractVerdict?)] = [:]
    /// The desired revision's differences from the committed contract (by that contract's digest and the
    /// mode; nil verdict: it agrees). Judged again when the committed contract or the mode changes.
    private var drift: [Key: (expected: String?, mode: ContractsMode, verdict: ContractVerdict?)] = [:]
    /// Digests of changed surfaces already reported, so one change is reported once.
    private var reported: [Key: Set<String>] = [:]

    let store: any RolloutStore
    let metrics: ControllerMetrics
    let logger: Logger
    let now: @Sendable () -> Int64

    init(store: any RolloutStore, metrics: ControllerMetrics, logger: Logger, now: @escaping @Sendable () -> Int64) {
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.now = now
    }

    /// Looks at one probe's result; returns it, failed when enforce takes a changed instance out of service.
    func check(server: String, revision: String, instance: String, desiredRevision: String, result: ProbeResult,
               expectation: ContractExpectation?) async -> ProbeResult {
        guard let observed = result.contract else { return result }
        let key = Key(server: server, revision: revision)
        let mode = expectation?.mode ?? .warn
        let digest = observed.digest
        var out = result

        if let known = firstDigest[key] {
            if known != digest, let v = await runningVerdict(key, known: known, observed: observed, mode: mode) {
                if reported[key, default: []].insert(digest).inserted {
                    metrics.contractChange(server: server, revision: revision)
                    let reason = "the surface of revision \(revision) changed while it runs (\(instance)): \(v.summary)"
                    logger.warning("contract changed", metadata: ["server": "\(server)", "revision": "\(revision)", "instance": "\(instance)",
                                                                   "mode": "\(mode.rawValue)", "reason": "\(reason)"])
                    await audit(server: server, action: "contract-changed", revision: revision, reason: reason, outcome: mode == .enforce ? "failed" : "warned")
                }
                if ContractGate.takesOutOfService(v) {
                    out.success = false
                    out.message = "contract changed while running: \(v.summary)"
                }
            }
        } else if result.success {
            firstDigest[key] = digest
            await record(server: server, revision: revision, contract: observed)
        }

        let expected = expectation?.contract?.digest
        if revision == desiredRevision, result.success, drift[key].map({ $0.expected != expected || $0.mode != mode }) ?? true {
            let v = ContractGate.check(expected: expectation?.contract, observed: observed, mode: mode)
            drift[key] = (expected, mode, v)
            if let v {
                let reason = "revision \(revision) serves a surface that differs from \(expectation?.file ?? "the committed contract"): \(v.summary)"
                logger.warning("contract drift", metadata: ["server": "\(server)", "revision": "\(revision)", "mode": "\(mode.rawValue)", "reason": "\(reason)"])
                metrics.contractDrift(server: server, revision: revision)
                await audit(server: server, action: "contract-drift", revision: revision, reason: reason, outcome: mode == .enforce ? "failed" : "warned")
            }
        }
        // The surface is consumed here: what the health tracker keeps per instance is the verdict.
        out.contract = nil
        return out
    }

    /// The verdict on a surface that differs (by digest) from the revision's first one: the differences
    /// from the first surface as its history entry recorded it (or, when none was recorded, the digests).
    private func runningVerdict(_ key: Key, known: String, observed: ServerContract, mode: ContractsMode) async -> ContractVerdict? {
        let digest = observed.digest
        if let c = changed[key], c.digest == digest { return c.verdict.map { ContractVerdict(mode: mode, changes: $0.changes) } }
        var verdict: ContractVerdict?
        let recorded = try? await store.revisions(server: key.server).last { $0.revision == key.revision }?.contract
        if let recorded, recorded.digest == known {
            verdict = ContractGate.checkRunning(first: recorded, now: observed, mode: mode)
        } else {
            verdict = ContractVerdict(mode: mode, changes: [ContractChange(kind: .review, subject: "surface",
                                                                           detail: "digest changed from \(known) to \(digest)")])
        }
        changed[key] = (digest, verdict)
        return verdict
    }

    /// The desired revision's drift from the committed contract, when enforce makes it fail the rollout.
    func failingDrift(server: String, revision: String, expectation: ContractExpectation?) -> ContractVerdict? {
        guard let d = drift[Key(server: server, revision: revision)], d.expected == expectation?.contract?.digest,
              d.mode == (expectation?.mode ?? .warn), ContractGate.failsRollout(d.verdict) else { return nil }
        return d.verdict
    }

    func forget(server: String) {
        for k in firstDigest.keys where k.server == server { firstDigest[k] = nil }
        for k in changed.keys where k.server == server { changed[k] = nil }
        for k in drift.keys where k.server == server { drift[k] = nil }
        for k in reported.keys where k.server == server { reported[k] = nil }
    }

    /// Writes the surface into the revision's history entry (once: a restarted controller finds it there
    /// and keeps the recorded one as the revision's first surface).
    private func record(server: String, revision: String, contract: ServerContract) async {
        do {
            let history = try await store.revisions(server: server)
            guard var entry = history.last(where: { $0.revision == revision }) else { return }
            if let recorded = entry.contract {
                firstDigest[Key(server: server, revision: revision)] = recorded.digest
                return
            }
            entry.contract = contract
            try await store.saveRevision(entry)
            await audit(server: server, action: "contract-recorded", revision: revision,
                        reason: "\(contract.tools.count) tools, \(contract.prompts.count) prompts, \(contract.resourceTemplates.count) resource templates (\(contract.digest))",
                        outcome: "ok")
        } catch {
            logger.warning("cannot record contract", metadata: ["server": "\(server)", "revision": "\(revision)", "error": "\(error)"])
        }
    }

    private func audit(server: String, action: String, revision: String, reason: String, outcome: String) async {
        do {
            try await store.appendAudit(AuditEntry(time: now(), server: server, action: action, revision: revision, reason: reason, outcome: outcome))
        } catch {
            logger.warning("cannot write audit entry", metadata: ["server": "\(server)", "action": "\(action)", "error": "\(error)"])
        }
    }
}

extension ControllerMetrics {
    func contractChange(server: String, revision: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "mcpfleet", metricName: "contract_changes", unitName: "total",
                                                              helpText: "MCP surfaces that changed while their revision ran."),
                             labels: [("server", server), ("revision", revision)]).increment()
    }

    func contractDrift(server: String, revision: String) {
        registry.makeCounter(descriptor: MetricNameDescriptor(namespace: "mcpfleet", metricName: "contract_drifts", unitName: "total",
                                                              helpText: "Desired revisions whose surface differs from the committed contract."),
                             labels: [("server", server), ("revision", revision)]).increment()
    }
}
