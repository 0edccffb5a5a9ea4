import FleetCore
import FleetKubernetes
import Testing

/// Issue 13: in the cluster store too, a failure retried many times is one audit entry with a count.
@Suite(.serialized) struct KubernetesRolloutStoreRepeatTests {
    @Test func aRepeatedFailureIsCountedOnItsEntry() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        let store = KubernetesRolloutStore(client: client, namespace: "mcpfleet-system")
        let failure = AuditEntry(time: 1, server: "a", action: "scale", revision: "r2", reason: "0 → 1 replicas", outcome: "error: quota exceeded")
        for i in 0..<5 {
            var again = failure
            again.time = Int64(1 + i)
            try await store.appendAudit(again)
        }
        try await store.appendAudit(AuditEntry(time: 10, server: "a", action: "rollback", revision: "r2", reason: "cannot start", outcome: "ok"))
        try await store.appendAudit(AuditEntry(time: 11, server: "a", action: "rollback", revision: "r2", reason: "cannot start", outcome: "ok"))
        let audit = try await store.audit(server: "a", limit: 100)
        #expect(audit.filter { $0.action == "scale" }.count == 1)
        #expect(audit.first { $0.action == "scale" }?.repeats == 4)
        #expect(audit.first { $0.action == "scale" }?.lastTime == 5)
        // Successful entries are events of their own.
        #expect(audit.filter { $0.action == "rollback" }.count == 2)
    }
}
