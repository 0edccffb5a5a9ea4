import FleetController
import FleetCore
import FleetTesting
import Foundation
import Testing

/// A reconcile step writes its record together with the revisions and audit entries it writes before it
/// acts (`RolloutStore.saveIfUnchanged(_:then:)`: one write on a sharded Kubernetes store), and only the
/// audit of an action on the runtime is written after that action.
@Suite struct StepBookkeepingTests {
    /// Every store write the controller makes, in order.
    actor Writes {
        var log: [String] = []
        func add(_ line: String) { log.append(line) }
    }

    struct RecordingStore: RolloutStoreDecorator {
        let inner: any RolloutStore
        let writes: Writes

        func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord? {
            await writes.add("record")
            return try await inner.saveIfUnchanged(record)
        }
        func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
            let parts = then.map { write -> String in
                switch write {
                case .revision(let r): return "revision \(r.revision) \(r.outcome.rawValue)"
                case .audit(let e): return "audit \(e.action)"
                }
            }
            await writes.add((["record"] + parts).joined(separator: " + "))
            return try await inner.saveIfUnchanged(record, then: then)
        }
        func saveRevision(_ revision: RevisionRecord) async throws {
            await writes.add("revision \(revision.revision) \(revision.outcome.rawValue)")
            try await inner.saveRevision(revision)
        }
        func appendAudit(_ entry: AuditEntry) async throws {
            await writes.add("audit \(entry.action)")
            try await inner.appendAudit(entry)
        }
    }

    @Test func aStepsBookkeepingGoesWithItsRecordAndAnActionsAuditAfterTheAction() async throws {
        let server = DesiredServer(name: "alpha", version: "1", revision: "rev-1", replicas: 1, command: ["/bin/true"],
                                   rollout: DesiredRollout(strategy: .rolling, maxSurge: 1, maxUnavailable: 0, autoRollback: true, progressDeadlineMs: 60_000))
        let source = SourceBox([server])
        let driver = InMemoryDriver(readyAfterObserves: 1)
        let inner = InMemoryRolloutStore()
        let writes = Writes()
        var configuration = fastConfiguration()
        configuration.resyncIntervalMs = 600_000
        configuration.pollIntervalMs = 600_000
        let controller = Controller(source: { await source.snapshot() }, driver: driver, store: RecordingStore(inner: inner, writes: writes),
                                    clock: SystemClock(), logger: quietLogger(), configuration: configuration)
        let task = Task { try await controller.run() }
        defer { task.cancel() }
        try await waitUntil("alpha stable", timeout: .seconds(30)) {
            try await inner.record(server: "alpha")?.phase == .stable
        }
        task.cancel()
        _ = await task.result
        let log = await writes.log
        // The rollout's start: its record, its pending revision and its audit entry in one write, before the scale.
        let start = try #require(log.firstIndex(of: "record + revision rev-1 pending + audit rollout-start"), "\(log)")
        let scale = try #require(log.firstIndex(of: "audit scale"), "\(log)")
        #expect(start < scale)
        // The end: record, the step's audit entry, the promoted revision and the completion in one write.
        let complete = try #require(log.firstIndex(of: "record + audit step + revision rev-1 promoted + audit rollout-complete"), "\(log)")
        #expect(scale < complete)
        // No bookkeeping of a step travels alone any more: the only separate audit entries are of actions on the runtime.
        // (The tenant's audit entry is the sync key's, not a rollout step's.)
        #expect(log.filter { $0.hasPrefix("audit ") || $0.hasPrefix("revision ") } == ["audit ensure-tenant", "audit scale"], "\(log)")
        #expect(log.count == 4, "\(log)")
        // What the audit log holds, in order, is what it held before batching.
        let actions = try await inner.audit(server: "alpha", limit: 100).map(\.action)
        #expect(actions.filter { ["rollout-start", "scale", "rollout-complete"].contains($0) } == ["rollout-start", "scale", "rollout-complete"], "\(actions)")
    }
}
