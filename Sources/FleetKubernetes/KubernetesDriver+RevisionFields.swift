import FleetCore
import Foundation

/// The spec fields of each revision, for `plan`'s field-level diff. Deployments carry only a digest of
/// their containers (`mcpfleet.io/spec-digest`); the fields are in the rollout store's revision records,
/// read through the store's public API and kept: a revision is a content hash, so its fields never
/// change. A revision the store has no record of yet (a rollout in progress) is asked about again after
/// `missRetry`. Deployments an older mcpfleet made still carry `mcpfleet.io/fields`, read as before.
final class RevisionFieldsCache: @unchecked Sendable {
    static let missRetry: Duration = .seconds(30)
    /// Servers whose records are read at once during a full observe.
    static let concurrentReads = 8

    private let lock = NSLock()
    // Guarded by `lock`:
    private var known: [String: [SpecField]] = [:]
    private var missed: [String: ContinuousClock.Instant] = [:]

    private static func key(_ server: String, _ revision: String) -> String { server + "/" + revision }

    /// `live` with the recorded fields of every managed revision that has none; servers whose records
    /// cannot be read keep theirs unknown (the plan then names the revisions instead of their fields).
    /// With `readStore` false only fields already read are added: a running controller's observes
    /// (every few seconds, thousands of servers) and scoped observes never turn into store reads.
    func filling(_ live: LiveState, readStore: Bool = true, from store: @escaping @Sendable () -> any RolloutStore) async -> LiveState {
        var out = live
        var wanted: [Int] = []
        lock.withLock {
            let now = ContinuousClock.now
            for i in out.servers.indices where out.servers[i].managed {
                var needsRead = false
                for k in out.servers[i].revisions.indices where out.servers[i].revisions[k].fields == nil {
                    let key = Self.key(out.servers[i].name, out.servers[i].revisions[k].revision)
                    if let fields = known[key] {
                        out.servers[i].revisions[k].fields = fields
                    } else if missed[key].map({ now - $0 >= Self.missRetry }) ?? true {
                        needsRead = true
                    }
                }
                if needsRead { wanted.append(i) }
            }
        }
        guard readStore, !wanted.isEmpty else { return out }
        let store = store()
        let names = wanted.map { out.servers[$0].name }
        let read: [String: [RevisionRecord]] = await withTaskGroup(of: (String, [RevisionRecord]?).self) { group in
            var result: [String: [RevisionRecord]] = [:]
            var next = 0
            func add() {
                guard next < names.count else { return }
                let name = names[next]
                next += 1
                group.addTask {
                    do { return (name, try await store.revisions(server: name)) } catch { return (name, nil) }
                }
            }
            for _ in 0..<min(Self.concurrentReads, names.count) { add() }
            while let (name, records) = await group.next() {
                if let records { result[name] = records }
                add()
            }
            return result
        }
        lock.withLock {
            let now = ContinuousClock.now
            for i in wanted {
                guard let records = read[out.servers[i].name] else { continue }  // unreadable: asked again next time
                let byRevision = Dictionary(records.map { ($0.revision, $0.fields) }, uniquingKeysWith: { a, _ in a })
                for k in out.servers[i].revisions.indices where out.servers[i].revisions[k].fields == nil {
                    let key = Self.key(out.servers[i].name, out.servers[i].revisions[k].revision)
                    if let fields = byRevision[out.servers[i].revisions[k].revision] {
                        known[key] = fields
                        missed[key] = nil
                        out.servers[i].revisions[k].fields = fields
                    } else {
                        missed[key] = now
                    }
                }
            }
        }
        return out
    }
}
