/// Diffs desired against live state. Pure and level-based: the same inputs always give the same plan.
public enum Planner {
    public static func plan(desired: DesiredState, live: LiveState, verdicts: [String: PolicyVerdict] = [:], baseline: String) -> Plan {
        var changes: [Change] = []
        var holds: [Hold] = []
        var summary = PlanSummary()
        // Desired and live servers matched by name in one merge over both lists in name order (no
        // hashing): the first live server of a name wins; `gone` are the live servers no desired one
        // names, in name order.
        let desiredOrder = desired.servers.withUnsafeBufferPointer { ds in nameOrder(ds.count) { (ds.baseAddress! + $0).pointee.name } }
        let (liveIndex, gone) = matchByName(desired.servers, desiredOrder, live.servers)
        let liveTenants = Dictionary(live.tenants.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let desiredTenantNames = Set(desired.tenants.map(\.name))

        // What the baseline cannot compare is said, never passed over as "no change".
        var unrecorded: [String] = []
        var objectDeletes: [Change] = []
        // The environment first: it says where and how everything else runs.
        if let liveObjects = live.objects {
            objectChanges(desired.objects.filter { $0.kind == .environment }, liveObjects.filter { $0.kind == .environment }, into: &changes, deletes: &objectDeletes)
        } else if !desired.objects.isEmpty {
            unrecorded.append("environment, policy and SLO settings")
        }
        // Tenants next: namespaces, slices and quotas must exist before servers land in them.
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

        // Then the rules servers are admitted and judged by: policies, SLOs.
        if let liveObjects = live.objects {
            objectChanges(desired.objects.filter { $0.kind != .environment }, liveObjects.filter { $0.kind != .environment }, into: &changes, deletes: &objectDeletes)
        }
        let firstServerChange = changes.count

        var verdictsUsed: [PolicyVerdict] = []
        var settingsUnrecorded = false, admissionUnrecorded = false
        // Usually already in name order; sorting indices keeps the (stable) order without copying servers.
        // Servers are read in place through buffer pointers, field by field: copying each `DesiredServer`
        // and `LiveServer` whole retained and released every field of both, per server.
        desired.servers.withUnsafeBufferPointer { ds in
        live.servers.withUnsafeBufferPointer { ls in
        // Through `pointee` (an addressor: a borrow). A buffer subscript copied the whole value to read
        // one field or call a computed property (`servingRevision`).
        guard let dbase = ds.baseAddress else { return }
        let lbase = ls.baseAddress
        for di in desiredOrder {
            let dp = dbase + di
            let verdict = verdicts.isEmpty ? nil : verdicts[dp.pointee.name]
            let blocked = verdict?.decision == .blocked
            guard let li = liveIndex[di], let lbase else {
                changes.append(Change(action: .create, kind: .server, name: dp.pointee.name, tenant: dp.pointee.tenant, toRevision: dp.pointee.revision, toReplicas: dp.pointee.replicas,
                                      fields: dp.pointee.fields.map { FieldChange(path: $0.path, old: nil, new: $0.display) },
                                      reason: "server `\(dp.pointee.name)` is not running here yet", blocked: blocked))
                if let verdict { verdictsUsed.append(verdict) }
                continue
            }
            let lp = lbase + li
            let servingIndex = LiveServer.servingIndex(lp.pointee.revisions, pinned: lp.pointee.pinnedRevision, lastGood: lp.pointee.lastGoodRevision)
            let servingName = servingIndex.map { i in lp.pointee.revisions.withUnsafeBufferPointer { ($0.baseAddress! + i).pointee.revision } }
            // What may happen is the rollout rules' call (the rollout machine asks the same question).
            let facts = RolloutFacts(server: dp.pointee.name, desiredRevision: dp.pointee.revision, serving: servingName == dp.pointee.revision,
                                     inProgress: lp.pointee.targetRevision == dp.pointee.revision, pinnedRevision: lp.pointee.pinnedRevision,
                                     pinForced: lp.pointee.pinForced, paused: lp.pointee.paused, pauseMessage: lp.pointee.message, failedRevisions: lp.pointee.failedRevisions,
                                     blockedReason: blocked ? verdict?.reasons.joined(separator: "; ") : nil)
            if let rule = RolloutRules.hold(facts), rule.isPlanHold {
                summary.held += 1
                holds.append(Hold(server: dp.pointee.name, reason: RolloutRules.message(rule, facts: facts), revision: rule.heldRevision ?? servingName))
                continue
            }
            let atDesired = servingName == dp.pointee.revision || lp.pointee.targetRevision == dp.pointee.revision
            if atDesired {
                let (current, others) = LiveServer.replicaSplit(lp.pointee.revisions, dp.pointee.revision)
                if lp.pointee.targetRevision == dp.pointee.revision, others > 0 || lp.pointee.phase == .progressing {
                    summary.held += 1
                    holds.append(Hold(server: dp.pointee.name, reason: "rollout to \(dp.pointee.revision) in progress (\(current)/\(dp.pointee.replicas) replicas on it)", revision: dp.pointee.revision))
                } else if current != dp.pointee.replicas || others > 0 {
                    var extra = inPlaceChanges(dp, lp, verdict, &settingsUnrecorded, &admissionUnrecorded)
                    addDrift(dp, lp, to: &extra)
                    changes.append(Change(action: .scale, kind: .server, name: dp.pointee.name, tenant: dp.pointee.tenant, fromRevision: dp.pointee.revision, toRevision: dp.pointee.revision,
                                          fromReplicas: lp.pointee.totalReplicas, toReplicas: dp.pointee.replicas,
                                          fields: [FieldChange(path: "replicas", old: String(lp.pointee.totalReplicas), new: String(dp.pointee.replicas))] + extra.fields,
                                          reason: "replicas \(lp.pointee.totalReplicas) → \(dp.pointee.replicas)" + (extra.fields.isEmpty ? "" : "; " + extra.reason),
                                          blocked: extra.blocked))
                    if extra.blocked, let verdict { verdictsUsed.append(verdict) }
                } else {
                    var extra = inPlaceChanges(dp, lp, verdict, &settingsUnrecorded, &admissionUnrecorded)
                    addDrift(dp, lp, to: &extra)
                    if extra.fields.isEmpty {
                        summary.unchanged += 1
                    } else {
                        changes.append(Change(action: .update, kind: .server, name: dp.pointee.name, tenant: dp.pointee.tenant, fromRevision: dp.pointee.revision, toRevision: dp.pointee.revision,
                                              fields: extra.fields, reason: extra.reason, blocked: extra.blocked))
                        if let verdict { verdictsUsed.append(verdict) }
                    }
                }
                continue
            }
            // The whole serving revision (its fields) only where a rollout is planned.
            let serving = servingIndex.map { lp.pointee.revisions[$0] }
            var diff = serving?.fields.map { fieldChanges(old: $0, new: dp.pointee.fields) } ?? []
            if lp.pointee.totalReplicas != dp.pointee.replicas {
                diff.append(FieldChange(path: "replicas", old: String(lp.pointee.totalReplicas), new: String(dp.pointee.replicas)))
            }
            diff += inPlaceChanges(dp, lp, nil, &settingsUnrecorded, &admissionUnrecorded).fields
            let what = diff.isEmpty ? "revision \(serving?.revision ?? "none") → \(dp.pointee.revision)" : diff.map(\.path).joined(separator: ", ")
            changes.append(Change(action: .rollout, kind: .server, name: dp.pointee.name, tenant: dp.pointee.tenant, fromRevision: serving?.revision, toRevision: dp.pointee.revision,
                                  fromReplicas: lp.pointee.totalReplicas, toReplicas: dp.pointee.replicas, fields: diff,
                                  reason: "new revision (\(what)) rolled out by \(dp.pointee.rollout.strategy.rawValue) strategy", blocked: blocked))
            if let verdict { verdictsUsed.append(verdict) }
        }
        }
        }

        // Held servers change no revision, but settings and admission changes reach them all the same
        // (a paused rollout resumes under the new settings). Found after the loop, so the hold rule
        // above stays one block; merged back into name order below.
        if !holds.isEmpty {
            let heldNames = Set(holds.map(\.server))
            desired.servers.withUnsafeBufferPointer { ds in
            live.servers.withUnsafeBufferPointer { ls in
                guard let dbase = ds.baseAddress, let lbase = ls.baseAddress else { return }
                for di in desiredOrder where heldNames.contains((dbase + di).pointee.name) {
                    guard let li = liveIndex[di] else { continue }
                    let dp = dbase + di, lp = lbase + li
                    let verdict = verdicts.isEmpty ? nil : verdicts[dp.pointee.name]
                    let extra = inPlaceChanges(dp, lp, verdict, &settingsUnrecorded, &admissionUnrecorded)
                    guard !extra.fields.isEmpty else { continue }
                    changes.append(Change(action: .update, kind: .server, name: dp.pointee.name, tenant: dp.pointee.tenant,
                                          fields: extra.fields, reason: extra.reason + " (its revision is held back)", blocked: extra.blocked))
                }
            }
            }
            // Stable: one change per server, so name order is the order the loop would have given.
            let servers = changes[firstServerChange...].sorted { $0.name < $1.name }
            changes.replaceSubrange(firstServerChange..., with: servers)
        }
        if settingsUnrecorded { unrecorded.append("server rollout settings, SLOs and labels") }
        if admissionUnrecorded { unrecorded.append("supply-chain evidence digests of running revisions") }

        // Deletions last: servers, then tenants left empty. Only what mcpfleet owns is pruned.
        for l in gone.map({ live.servers[$0] }) {
            guard l.managed else { continue }
            changes.append(Change(action: .delete, kind: .server, name: l.name, tenant: l.tenant, fromRevision: l.servingRevision?.revision,
                                  fromReplicas: l.totalReplicas, reason: "no longer in the catalog for this environment"))
        }
        for t in live.tenants.sorted(by: { $0.name < $1.name }) where !desiredTenantNames.contains(t.name) && t.managed {
            changes.append(Change(action: .delete, kind: .tenant, name: t.name, reason: "no server of this environment belongs to tenant `\(t.name)` any more"))
        }
        changes += objectDeletes

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
        let desiredNames = verdicts.isEmpty ? [] : Set(desired.servers.map(\.name))
        let allVerdicts = verdictsUsed + verdicts.values.filter { !reported.contains($0.server) && desiredNames.contains($0.server) }
        return Plan(environment: desired.environment, driver: desired.driver, baseline: baseline, liveFingerprint: live.fingerprint,
                    changes: changes, holds: holds, verdicts: allVerdicts.sorted { $0.server < $1.server }, summary: summary,
                    unrecorded: unrecorded, desired: desired)
    }

    /// Changes to a running server that make no new revision: its settings (rollout, SLO, labels) and
    /// its admission (verdict, evidence digests). `verdict` nil: admission is not compared (a rollout
    /// change carries its verdict already). A running revision that policy now blocks, with no
    /// recorded verdict to compare against, counts as newly blocked: CI fails closed.
    static func inPlaceChanges(_ dp: UnsafePointer<DesiredServer>, _ lp: UnsafePointer<LiveServer>, _ verdict: PolicyVerdict?,
                               _ settingsUnrecorded: inout Bool, _ admissionUnrecorded: inout Bool) -> (fields: [FieldChange], reason: String, blocked: Bool) {
        var fields: [FieldChange] = []
        var what: [String] = []
        // Read in place: binding the settings copied them (every field retained) for every server.
        switch ServerSettings.match(lp, dp) {
        case true?: break
        case false?:
            let diff = fieldChanges(old: lp.pointee.settings!.fields, new: ServerSettings(dp.pointee).fields)
            if !diff.isEmpty { fields += diff; what.append("settings changed (" + diff.map(\.path).joined(separator: ", ") + ")") }
        case nil:
            settingsUnrecorded = true
        }
        guard verdict != nil || !fields.isEmpty else { return ([], "", false) }
        var blocked = false
        if let verdict {
            let new = verdict.admission
            if let old = lp.pointee.admission {
                if old != new {
                    let diff = fieldChanges(old: old.fields, new: new.fields)
                    if !diff.isEmpty {
                        fields += diff
                        blocked = new.decision == .blocked && old.decision != .blocked
                        what.append(old.decision != new.decision ? "supply-chain verdict \(old.decision.rawValue) → \(new.decision.rawValue)"
                                                                  : "supply-chain evidence changed (" + diff.map(\.path).joined(separator: ", ") + ")")
                    }
                }
            } else if new.decision == .blocked {
                fields.append(FieldChange(path: "supplyChain.verdict", old: nil, new: "blocked"))
                blocked = true
                what.append("the running revision is now blocked by policy")
            } else {
                admissionUnrecorded = true
            }
        }
        return (fields, what.joined(separator: "; "), blocked)
    }

    /// A desired revision whose runtime object was edited by hand (the driver reports `drift`): the plan
    /// says so, as a change to put it back.
    static func addDrift(_ dp: UnsafePointer<DesiredServer>, _ lp: UnsafePointer<LiveServer>, to extra: inout (fields: [FieldChange], reason: String, blocked: Bool)) {
        guard let drift = lp.pointee.revisions.first(where: { $0.revision == dp.pointee.revision })?.drift else { return }
        extra.fields.append(FieldChange(path: "drift", old: "edited outside mcpfleet", new: "revision \(dp.pointee.revision) as applied"))
        extra.reason = extra.reason.isEmpty ? drift : extra.reason + "; " + drift
    }

    /// Creates and updates of catalog objects (in `desired` order) into `changes`; deletions (objects
    /// only the baseline has) into `deletes`, which go last.
    static func objectChanges(_ desired: [CatalogObject], _ live: [CatalogObject], into changes: inout [Change], deletes: inout [Change]) {
        let liveByKey = Dictionary(live.map { ("\($0.kind.rawValue)/\($0.name)", $0) }, uniquingKeysWith: { a, _ in a })
        var seen = Set<String>()
        for o in desired {
            let key = "\(o.kind.rawValue)/\(o.name)"
            seen.insert(key)
            let noun = o.kind.rawValue
            guard let l = liveByKey[key] else {
                changes.append(Change(action: .create, kind: o.kind, name: o.name, fields: o.fields.map { FieldChange(path: $0.path, old: nil, new: $0.display) },
                                      reason: o.kind == .environment ? "environment `\(o.name)` is new" : "\(noun) `\(o.name)` now applies to this environment"))
                continue
            }
            let diff = fieldChanges(old: l.fields, new: o.fields)
            if !diff.isEmpty {
                changes.append(Change(action: .update, kind: o.kind, name: o.name, fields: diff,
                                      reason: "\(noun) settings changed: " + diff.map(\.path).joined(separator: ", ")))
            }
        }
        for l in live where !seen.contains("\(l.kind.rawValue)/\(l.name)") {
            deletes.append(Change(action: .delete, kind: l.kind, name: l.name, fields: l.fields.map { FieldChange(path: $0.path, old: $0.display, new: nil) },
                                  reason: "\(l.kind.rawValue) `\(l.name)` no longer applies to this environment"))
        }
    }

    /// For each desired server (by index), the index of the first live server of its name, if any; and
    /// the live servers whose name no desired server has, in name order (stable). A merge of the two
    /// lists in name order: what a name index and a set of names gave, without hashing every name.
    static func matchByName(_ desired: [DesiredServer], _ desiredOrder: [Int], _ live: [LiveServer]) -> (match: [Int?], gone: [Int]) {
        desired.withUnsafeBufferPointer { ds in
        live.withUnsafeBufferPointer { ls in
            var match = [Int?](repeating: nil, count: ds.count)
            var gone: [Int] = []
            guard let lbase = ls.baseAddress else { return (match, gone) }
            let liveOrder = nameOrder(ls.count) { (lbase + $0).pointee.name }
            var j = 0
            var previous: (name: String, match: Int?)?
            for di in desiredOrder {
                let name = (ds.baseAddress! + di).pointee.name
                if let p = previous, p.name == name { match[di] = p.match; continue } // a repeated desired name
                while j < liveOrder.count, (lbase + liveOrder[j]).pointee.name < name { gone.append(liveOrder[j]); j += 1 }
                var found: Int?
                if j < liveOrder.count, (lbase + liveOrder[j]).pointee.name == name {
                    found = liveOrder[j]
                    while j < liveOrder.count, (lbase + liveOrder[j]).pointee.name == name { j += 1 }
                }
                match[di] = found
                previous = (name, found)
            }
            gone.append(contentsOf: liveOrder[j...])
            return (match, gone)
        }
        }
    }

    /// Indices `0..<count` in name order (stable). The renderer and the drivers already list servers
    /// by name, so one linear check usually replaces the sort.
    static func nameOrder(_ count: Int, _ name: (Int) -> String) -> [Int] {
        var sorted = true
        var i = 1
        while i < count {
            if name(i) < name(i - 1) { sorted = false; break }
            i += 1
        }
        return sorted ? Array(0..<count) : (0..<count).sorted { name($0) < name($1) }
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
