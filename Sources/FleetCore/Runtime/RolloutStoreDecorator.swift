/// A rollout store that wraps another and acts on some of its calls (notifications from the audit log,
/// the dashboard's change signal, the gateway's canary weights). A conformer names `inner` and
/// implements only the calls it acts on; every other call goes to `inner` unchanged — so a new
/// `RolloutStore` requirement is forwarded here, once, and never silently falls to a default.
public protocol RolloutStoreDecorator: RolloutStore {
    var inner: any RolloutStore { get }
}

extension RolloutStoreDecorator {
    public func record(server: String) async throws -> RolloutRecord? { try await inner.record(server: server) }
    public func records() async throws -> [RolloutRecord] { try await inner.records() }
    public func save(_ record: RolloutRecord) async throws { try await inner.save(record) }
    public func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord? { try await inner.saveIfUnchanged(record) }
    /// Through this decorator's own calls, one by one, so whatever it acts on is seen; a decorator that
    /// implements it passes the batch to `inner` whole.
    public func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        try await saveIfUnchangedOneByOne(record, then: then)
    }
    public func removeRecord(server: String) async throws { try await inner.removeRecord(server: server) }
    public func revisions(server: String) async throws -> [RevisionRecord] { try await inner.revisions(server: server) }
    public func saveRevision(_ revision: RevisionRecord) async throws { try await inner.saveRevision(revision) }
    public func appendAudit(_ entry: AuditEntry) async throws { try await inner.appendAudit(entry) }
    public func audit(server: String?, limit: Int) async throws -> [AuditEntry] { try await inner.audit(server: server, limit: limit) }
    public func heartbeat(now: Int64?) async throws { try await inner.heartbeat(now: now) }
    public func lastHeartbeat() async throws -> Int64? { try await inner.lastHeartbeat() }
    public var keepsHeartbeat: Bool { inner.keepsHeartbeat }
    public func compactedAudit(server: String?) async throws -> [AuditSummary] { try await inner.compactedAudit(server: server) }
}
