/// Diffs desired against live state. Pure and level-based: the same inputs always give the same plan.
public enum Planner {
    public static func plan(desired: DesiredState, live: LiveState, verdicts: [String: PolicyVerdict] = [:], baseline: String) -> Plan {
        var changes: [Change] = []
        var holds: [Hold] = []
        var summary = PlanSummary()
        // Indices, not copies, of the live servers by name (the first of a name wins).
        var liveServerIndex: [String: Int] = [:]
        liveServerIndex.reserveCapacity(live.servers.count)
        for i in live.servers.indices where liveServerIndex[live.servers[i].name] == nil { liveServerIndex[live.servers[i].name] = i }
        let liveTenants = Dictionary(live.tenants.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let desiredNames = Set(desired.servers.map(\.name))
        let desiredTenantNames = Set(desired.tenants.map(\.name))

        // Tenants first: namespaces, slices and quotas must exist before servers land in them.
        for t in desired.tenants.sorted(by: { $0.name < $1.name }) {
            guard let l = liveTenants[t.name] else {
                changes.append(Change(action: .create, kind: .tenant, name: t.name,
                                      fields: t.fields.map { FieldChange(path: $0.path, old: nil, new: $0.display) },
                                      reason: "tenant `\(t.name)` does not exist yet"))
                continue
            }
            if let lf = l.fields {
                let diff = fieldChanges(old: lf, new: t.fields)
                if !diff.isEmpty {
                    changes.append(Change(action: .update, kind: .tenant, name: t.name, fields: diff,
                                          reason: "tenant settings changed: " + diff.map(\.path).joined(separator: ", ")))
                }
            }
        }

        var verdictsUsed: [PolicyVerdict] = []
        // Usually already in name order; sorting indices keeps the (stable) order without copying servers.
        // Servers are read in place through buffer pointers, field by field: copying each `DesiredServer`
        // and `LiveServer` whole retained and released every field of both, per server.
        desired.servers.withUnsafeBufferPointer { ds in
        live.servers.withUnsafeBufferPointer { ls in
        for di in ds.indices.sorted(by: { ds[$0].name < ds[$1].name }) {
            let verdict = verdicts.isEmpty ? nil : verdicts[ds[di].name]
            let blocked = verdict?.decision == .blocked
            guard let li = liveServerIndex[ds[di].name] else {
                changes.append(Change(action: .create, kind: .server, name: ds[di].name, tenant: ds[di].tenant, toRevision: ds[di].revision, toReplicas: ds[di].replicas,
                                      fields: ds[di].fields.map { FieldChange(path: $0.path, old: nil, new: $0.display) },
                                      reason: "server `\(ds[di].name)` is not running here yet", blocked: blocked))
                if let verdict { verdictsUsed.append(verdict) }
                continue
            }
            let serving = ls[li].servingRevision
            if let pin = ls[li].pinnedRevision {
                summary.held += 1
                holds.append(Hold(server: ds[di].name, reason: "pinned to revision \(pin) by a manual rollback; desired revision \(ds[di].revision) waits until the pin is released (`mcpfleet resume \(ds[di].name)`)", revision: pin))
                continue
            }
            if ls[li].paused {
                summary.held += 1
                holds.append(Hold(server: ds[di].name, reason: "paused (`mcpfleet resume \(ds[di].name)` continues)", revision: serving?.revision))
                continue
            }
            let atDesired = serving?.revision == ds[di].revision || ls[li].targetRevision == ds[di].revision
            if !atDesired, ls[li].failedRevisions.contains(ds[di].revision) {
                summary.held += 1
                holds.append(Hold(server: ds[di].name, reason: "revision \(ds[di].revision) failed its rollout and was rolled back; it is not retried until the manifests change it again", revision: ds[di].revision))
                continue
            }
            if atDesired {
                let current = ls[li].revisions.first { $0.revision == ds[di].revision }?.replicas ?? 0
                let others = ls[li].revisions.filter { $0.revision != ds[di].revision }.reduce(0) { $0 + $1.replicas }
                if ls[li].targetRevision == ds[di].revision, others > 0 || ls[li].phase == .progressing {
                    summary.held += 1
                    holds.append(Hold(server: ds[di].name, reason: "rollout to \(ds[di].revision) in progress (\(current)/\(ds[di].replicas) replicas on it)", revision: ds[di].revision))
                } else if current != ds[di].replicas || others > 0 {
                    changes.append(Change(action: .scale, kind: .server, name: ds[di].name, tenant: ds[di].tenant, fromRevision: ds[di].revision, toRevision: ds[di].revision,
                                          fromReplicas: ls[li].totalReplicas, toReplicas: ds[di].replicas,
                                          fields: [FieldChange(path: "replicas", old: String(ls[li].totalReplicas), new: String(ds[di].replicas))],
                                          reason: "replicas \(ls[li].totalReplicas) → \(ds[di].replicas)"))
                } else {
                    summary.unchanged += 1
                }
                continue
            }
            var diff = serving?.fields.map { fieldChanges(old: $0, new: ds[di].fields) } ?? []
            if ls[li].totalReplicas != ds[di].replicas {
                diff.append(FieldChange(path: "replicas", old: String(ls[li].totalReplicas), new: String(ds[di].replicas)))
            }
            let what = diff.isEmpty ? "revision \(serving?.revision ?? "none") → \(ds[di].revision)" : diff.map(\.path).joined(separator: ", ")
            changes.append(Change(action: .rollout, kind: .server, name: ds[di].name, tenant: ds[di].tenant, fromRevision: serving?.revision, toRevision: ds[di].revision,
                                  fromReplicas: ls[li].totalReplicas, toReplicas: ds[di].replicas, fields: diff,
                                  reason: "new revision (\(what)) rolled out by \(ds[di].rollout.strategy.rawValue) strategy", blocked: blocked))
            if let verdict { verdictsUsed.append(verdict) }
        }
        }
        }

        // Deletions last: servers, then tenants left empty. Only what mcpfleet owns is pruned.
        for l in live.servers.filter({ !desiredNames.contains($0.name) }).sorted(by: { $0.name < $1.name }) {
            guard l.managed else { continue }
            changes.append(Change(action: .delete, kind: .server, name: l.name, tenant: l.tenant, fromRevision: l.servingRevision?.revision,
                                  fromReplicas: l.totalReplicas, reason: "no longer in the catalog for this environment"))
        }
        for t in live.tenants.sorted(by: { $0.name < $1.name }) where !desiredTenantNames.contains(t.name) && t.managed {
            changes.append(Change(action: .delete, kind: .tenant, name: t.name, reason: "no server of this environment belongs to tenant `\(t.name)` any more"))
        }

        for c in changes {
            switch c.action {
            case .create: summary.create += 1
            case .rollout: summary.rollout += 1
            case .scale: summary.scale += 1
            case .update: summary.update += 1
            case .delete: summary.delete += 1
            }
            if c.blocked { summary.blocked += 1 }
        }
        // Verdicts for servers whose revision is not changing are still reported (verify shows all).
        let reported = Set(verdictsUsed.map(\.server))
        let allVerdicts = verdictsUsed + verdicts.values.filter { !reported.contains($0.server) && desiredNames.contains($0.server) }
        return Plan(environment: desired.environment, driver: desired.driver, baseline: baseline, liveFingerprint: live.fingerprint,
                    changes: changes, holds: holds, verdicts: allVerdicts.sorted { $0.server < $1.server }, summary: summary, desired: desired)
    }

    /// Field-level differences, in the new field order, then removed fields.
    static func fieldChanges(old: [SpecField], new: [SpecField]) -> [FieldChange] {
        let oldByPath = Dictionary(old.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        let newPaths = Set(new.map(\.path))
        var out: [FieldChange] = []
        for f in new {
            if let o = oldByPath[f.path] {
                if o.canonical != f.canonical { out.append(FieldChange(path: f.path, old: o.display, new: f.display)) }
            } else {
                out.append(FieldChange(path: f.path, old: nil, new: f.display))
            }
        }
        for o in old where !newPaths.contains(o.path) {
            out.append(FieldChange(path: o.path, old: o.display, new: nil))
        }
        return out
    }
}
