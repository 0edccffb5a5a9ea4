import FleetCore
import FleetHTTP
@testable import FleetKubernetes
import FleetTesting
import Foundation
import Testing

/// The route object the controller publishes and the gateways watch (design 0009), against the
/// project's Kubernetes test API server: weights arrive by the watch, concurrent writers lose nothing,
/// a dropped watch resumes, a write conflict is retried.
@Suite(.serialized) struct GatewayRouteObjectTests {
    @Test func gatewaysSeeTheControllersWeightsThroughTheWatch() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        _ = try await api.client().create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        let controller = GatewayRouteObject(client: try api.client(), namespace: "mcpfleet-system")
        let gateway = GatewayRouteObject(client: try api.client(), namespace: "mcpfleet-system")
        gateway.start()
        defer { Task { await gateway.stop() } }
        try await gateway.waitUntilSynced(timeout: .seconds(30))
        #expect(gateway.current == nil, "no object yet: every route goes by replica")

        try await controller.publish(server: "echo", weights: ["rev-2": 20, "rev-1": 80])
        try await waitUntil("the gateway to see the canary weights", timeout: .seconds(30), every: .milliseconds(50)) {
            gateway.current?.weights["echo"] == ["rev-2": 20, "rev-1": 80]
        }
        // Two publishers at once (servers reconciled in parallel): neither write is lost (resourceVersion guard, retried).
        let other = GatewayRouteObject(client: try api.client(), namespace: "mcpfleet-system")
        async let a: Void = controller.publish(server: "time", weights: ["rev-9": 100])
        async let b: Void = other.publish(server: "fetch", weights: ["rev-4": 50, "rev-3": 50])
        _ = try await (a, b)
        try await waitUntil("both servers' weights", timeout: .seconds(30), every: .milliseconds(50)) {
            gateway.current?.weights.keys.sorted() == ["echo", "fetch", "time"]
        }
        // The watch drops: the gateway re-lists and still follows (the rollback takes the canary out).
        try await api.injectFaults(#"{"drop_watch_after_events":0,"count":1,"path_regex":"/configmaps"}"#)
        try await controller.publish(server: "echo", weights: ["rev-1": 100])
        try await waitUntil("the rollback's weights after the watch dropped", timeout: .seconds(30), every: .milliseconds(50)) {
            gateway.current?.weights["echo"] == ["rev-1": 100]
        }
        // A write conflict (someone wrote in between) is retried; nil weights remove the server (by replica).
        try await api.injectFaults(#"{"status":409,"count":1,"method":"PUT","path_regex":"mcpfleet-gateway-routes"}"#)
        try await controller.publish(server: "time", weights: nil)
        try await waitUntil("time back to by-replica", timeout: .seconds(30), every: .milliseconds(50)) {
            gateway.current?.weights["time"] == nil && gateway.current?.weights["fetch"] != nil
        }
        // What kubectl shows: one ConfigMap, labelled for the store, readable JSON.
        let cm = try await api.client().get(.configMap, namespace: "mcpfleet-system", name: GatewayRouteObject.name)
        #expect(cm.labels["mcpfleet.io/store"] == "routes")
        #expect(cm.json[["data", "routes.json"]]?.string == #"{"weights":{"echo":{"rev-1":100},"fetch":{"rev-3":50,"rev-4":50}}}"#)
    }
}
