import FleetCore

/// A `RolloutStore` in memory, for tests.
public actor InMemoryRolloutStore: RolloutStore {
    private var recordsByServer: [String: RolloutRecord] = [:]
    private var revisionsByServer: [String: [RevisionRecord]] = [:]
    private var auditLog: [AuditEntry] = []
    /// Every record saved, in order (tests check that bookkeeping was persisted before acting).
    public private(set) var saves: [RolloutRecord] = []

    public init() {}

    public func record(server: String) -> RolloutRecord? { recordsByServer[server] }
    public func records() -> [RolloutRecord] { recordsByServer.values.sorted { $0.server < $1.server } }

    public func save(_ record: RolloutRecord) throws {
        if let failure = failing { throw failure }
        recordsByServer[record.server] = record
        saves.append(record)
    }

    public func saveIfUnchanged(_ record: RolloutRecord) throws -> RolloutRecord? {
        if let failure = failing { throw failure }
        guard (recordsByServer[record.server]?.generation ?? 0) == record.generation else { return nil }
        var out = record
        out.generation += 1
        recordsByServer[record.server] = out
        saves.append(out)
        return out
    }

    public func removeRecord(server: String) { recordsByServer[server] = nil }

    public func revisions(server: String) -> [RevisionRecord] { revisionsByServer[server] ?? [] }

    public func saveRevision(_ revision: RevisionRecord) {
        var list = revisionsByServer[revision.server] ?? []
        if let i = list.firstIndex(where: { $0.revision == revision.revision }) {
            list[i] = revision
        } else {
            list.append(revision)
        }
        revisionsByServer[revision.server] = list
    }

    /// Appends, or counts a repeat of one of the server's recent entries (as every store does).
    public func appendAudit(_ entry: AuditEntry) throws {
        if let failure = failing { throw failure }
        let recent = auditLog.indices.reversed().filter { auditLog[$0].server == entry.server }.prefix(AuditEntry.repeatWindow)
        if let i = recent.first(where: { entry.isRepeat(of: auditLog[$0]) }) {
            auditLog[i].repeats = (auditLog[i].repeats ?? 0) + 1
            auditLog[i].lastTime = entry.time
            return
        }
        auditLog.append(entry)
    }

    private var beat: Int64?
    /// When set, writes (saves, audit appends, heartbeats) throw it: an unwritable store.
    public private(set) var failing: DriverError?
    public func setFailing(_ error: DriverError?) { failing = error }

    public func heartbeat(now: Int64?) throws {
        if let failure = failing { throw failure }
        beat = now
    }

    public nonisolated var keepsHeartbeat: Bool { true }

    public func lastHeartbeat() -> Int64? { beat }

    public func audit(server: String?, limit: Int) -> [AuditEntry] {
        let matching = auditLog.filter { server == nil || $0.server == server }
        return Array(matching.suffix(limit))
    }

    /// Lets a test edit a record as the CLI would (pin, pause, promote).
    public func update(server: String, _ change: @Sendable (inout RolloutRecord) -> Void) {
        var r = recordsByServer[server] ?? RolloutRecord(server: server)
        change(&r)
        r.generation += 1
        recordsByServer[server] = r
    }
}
