import FleetCore
import FleetHTTP
import FleetTesting
@testable import FleetKubernetes
import Foundation
import Testing

/// `rescale` against the project's Kubernetes test API server: only `spec.replicas` of the revision's
/// Deployment changes; its pod template stays what was applied when that revision was rendered.
@Suite(.serialized) struct KubernetesRescaleTests {
    func deployment(_ api: KubeAPIServerProcess, _ driver: KubernetesDriver, namespace: String, name: String) async throws -> KubeObject {
        try await driver.client.get(.deployment, namespace: namespace, name: name)
    }

    /// Operations ("Apply", "Update") of the managers owning `spec.replicas`.
    func replicasOwners(_ object: KubeObject) -> [String] {
        (object.json[["metadata", "managedFields"]]?.array ?? []).compactMap { entry in
            entry[["fieldsV1", "f:spec", "f:replicas"]] == nil ? nil : "\(entry["manager"]?.string ?? "?")/\(entry["operation"]?.string ?? "?")"
        }
    }

    @Test func rescaleChangesOnlyReplicasAndKeepsTheOldPodTemplate() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let driver = try KubernetesDriver(environment: env, config: api.config, transport: try api.transport(),
                                          options: KubernetesDriverOptions(qps: 500, burst: 1000,
                                                                           retry: RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(500))))
        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        let old = try #require(state.server("time"))
        var next = nextRevision(old, version: "9.9")
        next.image = "registry.example/time-server:9.9"
        next.command = ["/usr/bin/time-server", "--new-code"]
        try await driver.scale(old, replicas: 2)
        try await driver.scale(next, replicas: 1)
        let ns = "mcp-research"
        let name = KubernetesRenderer.deploymentName(server: "time", revision: old.revision)
        let before = try await deployment(api, driver, namespace: ns, name: name)
        let template = try #require(before.json[["spec", "template"]])
        #expect(before.json[["spec", "replicas"]]?.int == 2)

        try await driver.rescale(server: "time", revision: old.revision, tenant: old.tenant, replicas: 3)
        let after = try await deployment(api, driver, namespace: ns, name: name)
        #expect(after.json[["spec", "replicas"]]?.int == 3)
        #expect(after.json[["spec", "template"]] == template)
        let container = after.json[["spec", "template", "spec", "containers"]]?.array?.first
        #expect(container?["image"]?.string != next.image)
        #expect(container?["command"] != .array(next.command!.map { .string($0) }))
        // Every other field the driver applied is still there (a partial apply would have dropped them).
        #expect(after.json[["spec", "selector"]] == before.json[["spec", "selector"]])
        #expect(after.labels == before.labels)
        #expect(after.annotations == before.annotations)
        // Down, too, from the kept definition.
        try await driver.rescale(server: "time", revision: old.revision, tenant: old.tenant, replicas: 0)
        let down = try await deployment(api, driver, namespace: ns, name: name)
        #expect(down.json[["spec", "replicas"]]?.int == 0)
        #expect(down.json[["spec", "template"]] == template)
        #expect(replicasOwners(down) == ["mcpfleet/Update"])

        // A later apply of that revision (rendered again) takes `spec.replicas` back from the merge patch.
        // (a conflict with this driver's own merge patch only, so it is forced).
        try await driver.scale(old, replicas: 1)
        let reapplied = try await deployment(api, driver, namespace: ns, name: name)
        #expect(reapplied.json[["spec", "replicas"]]?.int == 1)
        #expect(replicasOwners(reapplied) == ["mcpfleet/Apply"])
    }

    @Test func rescaleOfARevisionWithoutADeployment() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let driver = try KubernetesDriver(environment: env, config: api.config, transport: try api.transport(),
                                          options: KubernetesDriverOptions(qps: 500, burst: 1000))
        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        let tenant = try #require(state.server("time")).tenant
        try await driver.rescale(server: "time", revision: "gone", tenant: tenant, replicas: 0)
        let error = await #expect(throws: DriverError.self) {
            try await driver.rescale(server: "time", revision: "gone", tenant: tenant, replicas: 2)
        }
        #expect(error?.terminal == true)
        #expect(error?.message.contains("no definition of revision gone is kept") == true)
        #expect(try await driver.client.getIfPresent(.deployment, namespace: "mcp-research", name: "time-gone") == nil)
    }
}
