public import FleetCore
import Foundation

/// Rollout bookkeeping kept in the cluster, as ConfigMaps in the controller's namespace, so a new
/// controller pod (or the other replica after a leader change) continues where the last one stopped:
///
/// - `mcpfleet-rollout-<server>`: the `RolloutRecord` (`data["record.json"]`)
/// - `mcpfleet-revisions-<server>`: the last `maxRevisions` `RevisionRecord`s (`data["revisions.json"]`)
/// - `mcpfleet-audit-<server>`: the last `maxAuditEntries` audit entries (`data["audit.json"]`)
///
/// Every write is a read-modify-write guarded by `resourceVersion` (a `PUT` that fails with 409 when
/// someone wrote in between, then re-read and retried), so two writers never lose each other's update.
/// A ConfigMap holds at most 1 MiB; the bounds keep each well below it.
public final class KubernetesRolloutStore: RolloutStore {
    public let client: KubeClient
    public let namespace: String
    public let maxRevisions: Int
    public let maxAuditEntries: Int

    static let storeLabel = "mcpfleet.io/store"
    static let serverLabel = "mcpfleet.io/server"

    public init(client: KubeClient, namespace: String, maxRevisions: Int = 50, maxAuditEntries: Int = 500) {
        self.client = client
        self.namespace = namespace
        self.maxRevisions = max(1, maxRevisions)
        self.maxAuditEntries = max(1, maxAuditEntries)
    }

    // MARK: RolloutStore

    public func record(server: String) async throws -> RolloutRecord? {
        guard let text = try await read(name: Self.name("rollout", server), key: "record.json") else { return nil }
        return try decode(RolloutRecord.self, text, server: server)
    }

    public func records() async throws -> [RolloutRecord] {
        let items = try await call { try await self.client.list(.configMap, namespace: self.namespace, labelSelector: "\(Self.storeLabel)=rollout") }.items
        return try items.compactMap { cm -> RolloutRecord? in
            guard let text = cm.json[["data", "record.json"]]?.string else { return nil }
            return try decode(RolloutRecord.self, text, server: cm.labels[Self.serverLabel] ?? cm.name)
        }.sorted { $0.server < $1.server }
    }

    public func save(_ record: RolloutRecord) async throws {
        let text = try encode(record)
        try await update(kind: "rollout", server: record.server, key: "record.json") { _ in text }
    }

    public func removeRecord(server: String) async throws {
        _ = try await call { try await self.client.delete(.configMap, namespace: self.namespace, name: Self.name("rollout", server)) }
    }

    public func revisions(server: String) async throws -> [RevisionRecord] {
        guard let text = try await read(name: Self.name("revisions", server), key: "revisions.json") else { return [] }
        return try decode([RevisionRecord].self, text, server: server)
    }

    public func saveRevision(_ revision: RevisionRecord) async throws {
        try await update(kind: "revisions", server: revision.server, key: "revisions.json") { old in
            var list = try old.map { try self.decode([RevisionRecord].self, $0, server: revision.server) } ?? []
            if let i = list.firstIndex(where: { $0.revision == revision.revision }) { list[i] = revision } else { list.append(revision) }
            list.sort { $0.createdAt < $1.createdAt }
            if list.count > self.maxRevisions { list.removeFirst(list.count - self.maxRevisions) }
            return try self.encode(list)
        }
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await update(kind: "audit", server: entry.server, key: "audit.json") { old in
            var list = try old.map { try self.decode([AuditEntry].self, $0, server: entry.server) } ?? []
            // A failure repeating a recent entry is counted on it (see `RolloutStore.appendAudit`).
            if let i = list.indices.suffix(AuditEntry.repeatWindow).last(where: { entry.isRepeat(of: list[$0]) }) {
                list[i].repeats = (list[i].repeats ?? 0) + 1
                list[i].lastTime = entry.time
            } else {
                list.append(entry)
            }
            if list.count > self.maxAuditEntries { list.removeFirst(list.count - self.maxAuditEntries) }
            return try self.encode(list)
        }
    }

    /// Newest first.
    public func audit(server: String?, limit: Int) async throws -> [AuditEntry] {
        var entries: [AuditEntry]
        if let server {
            entries = try await read(name: Self.name("audit", server), key: "audit.json").map { try decode([AuditEntry].self, $0, server: server) } ?? []
        } else {
            let items = try await call { try await self.client.list(.configMap, namespace: self.namespace, labelSelector: "\(Self.storeLabel)=audit") }.items
            entries = try items.flatMap { cm -> [AuditEntry] in
                guard let text = cm.json[["data", "audit.json"]]?.string else { return [] }
                return try decode([AuditEntry].self, text, server: cm.labels[Self.serverLabel] ?? cm.name)
            }
        }
        entries.sort { $0.time > $1.time }
        return Array(entries.prefix(max(0, limit)))
    }

    // MARK: Plumbing

    /// ConfigMap names are DNS subdomains: audit subjects such as `tenant/team` become `tenant.team`.
    static func name(_ kind: String, _ server: String) -> String {
        server.isEmpty ? "mcpfleet-\(kind)" : "mcpfleet-\(kind)-\(subdomainSafe(server))"
    }

    static func subdomainSafe(_ s: String) -> String {
        String(s.lowercased().map { c -> Character in
            c == "/" ? "." : (c.isASCII && (c.isLetter || c.isNumber || c == "-" || c == ".")) ? c : "-"
        }.prefix(200))
    }

    /// Label values allow `[A-Za-z0-9_.-]`, at most 63 characters.
    static func labelSafe(_ s: String) -> String {
        String(s.map { c -> Character in c == "/" ? "." : (c.isASCII && (c.isLetter || c.isNumber || "-_.".contains(c))) ? c : "-" }.prefix(63))
    }

    func read(name: String, key: String) async throws -> String? {
        let cm = try await call { try await self.client.getIfPresent(.configMap, namespace: self.namespace, name: name) }
        return cm?.json[["data", key]]?.string
    }

    /// Read-modify-write of one data key, guarded by resourceVersion; retried on conflicts.
    func update(kind: String, server: String, key: String, _ transform: (String?) throws -> String) async throws {
        let name = Self.name(kind, server)
        for _ in 0..<16 {
            let current = try await call { try await self.client.getIfPresent(.configMap, namespace: self.namespace, name: name) }
            let value = try transform(current?.json[["data", key]]?.string)
            var labels = [Self.storeLabel: kind, KubernetesRenderer.labelManagedBy: KubernetesRenderer.managedBy, KubernetesRenderer.labelPartOf: "mcpfleet"]
            if !server.isEmpty { labels[Self.serverLabel] = Self.labelSafe(server) }
            var metadata = KubernetesRenderer.meta(name: name, namespace: namespace, labels: labels)
            if let rv = current?.resourceVersion { metadata["resourceVersion"] = .string(rv) }
            let object = KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": .obj([key: .string(value)])]))
            do {
                if current == nil { _ = try await client.create(object) } else { _ = try await client.replace(object) }
                return
            } catch let error as KubeError where error.status == 409 {
                continue  // someone wrote in between (or created it first): read again
            } catch let error as KubeError {
                throw error.driverError
            }
        }
        throw DriverError("ConfigMap \(namespace)/\(name)", "gave up after repeated write conflicts")
    }

    func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    func decode<T: Decodable>(_ type: T.Type, _ text: String, server: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(text.utf8))
        } catch {
            throw DriverError("rollout store of server \(server) (namespace \(namespace))", "unreadable record: \(error)", terminal: true)
        }
    }

    func call<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as KubeError {
            throw error.driverError
        }
    }
}
