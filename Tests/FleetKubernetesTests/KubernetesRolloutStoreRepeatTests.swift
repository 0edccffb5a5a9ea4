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

/// The record a controller replica and `mcpfleet promote` both write: compare-and-swap on its generation,
/// checked inside the resourceVersion-guarded write, also when one store answers from its watch cache.
@Suite(.serialized) struct KubernetesRolloutRecordCompareAndSwapTests {
    @Test func aWriteBetweenReadAndSaveIsRefusedNotOverwritten() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        let controller = KubernetesRolloutStore(client: client, namespace: "mcpfleet-system")
        controller.start()
        let operatorCLI = KubernetesRolloutStore(client: try api.client(), namespace: "mcpfleet-system")
        #expect(try await controller.saveIfUnchanged(RolloutRecord(server: "web", phase: .paused, targetRevision: "r2"))?.generation == 1)

        var step = try #require(try await controller.record(server: "web"))
        var promote = try #require(try await operatorCLI.record(server: "web"))
        promote.promoted = true
        #expect(try await operatorCLI.saveIfUnchanged(promote)?.generation == 2)
        // The controller's cache may not have seen the promote yet: the write's 409 makes it read again,
        // and the generation check refuses the step made from the old read.
        step.message = "canary paused (step 1 of 2)"
        #expect(try await controller.saveIfUnchanged(step) == nil)
        #expect(try await operatorCLI.record(server: "web")?.promoted == true, "the promote survives")
        #expect(try await controller.saveIfUnchanged(RolloutRecord(server: "other", generation: 3)) == nil, "nothing stored is generation 0")
        await controller.stop()
    }
}
