import FleetCore
import FleetHTTP
import FleetTesting
@testable import FleetKubernetes
import Foundation
import Testing

/// The driver against the project's Kubernetes test API server, checked with the real kubectl.
@Suite(.serialized) struct KubernetesDriverTests {
    func driver(_ api: KubeAPIServerProcess, env: Environment, options: KubernetesDriverOptions = KubernetesDriverOptions(qps: 500, burst: 1000)) throws -> KubernetesDriver {
        var options = options
        options.retry = RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(500))
        return try KubernetesDriver(environment: env, config: api.config, transport: try api.transport(), options: options)
    }

    func kubectlDeployments(_ kubeconfig: String) throws -> [KubeObject] {
        guard let kubectl = which("kubectl") else { throw TestFailure("kubectl is not installed") }
        let (status, out, err) = try run(kubectl, ["--kubeconfig", kubeconfig, "get", "deploy", "-A", "-o", "json"])
        guard status == 0 else { throw TestFailure("kubectl get deploy failed: \(err)") }
        return (try JSONValue.parse(out)["items"]?.array ?? []).map(KubeObject.init)
    }

    /// Isolation relaxed and quota dropped: the NetworkPolicy and ResourceQuota that no longer apply are
    /// removed, by a driver that reads the API server and by one that reads its cache. A namespace that
    /// did not exist holds nothing to remove, so creating a tenant sends no DELETE (a cold converge of
    /// 20 tenants sent 40).
    @Test func aTenantsRelaxedIsolationAndDroppedQuotaAreRemovedAndANewTenantSendsNoDeletes() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, _) = try exampleCluster()
        let client = try api.client()
        let strict = DesiredTenant(name: "team", isolation: .strict, namespace: "mcp-team",
                                   fields: [SpecField(path: "quota.cpu", display: "2", canonical: "2000m")])
        let relaxed = DesiredTenant(name: "team", isolation: .shared, namespace: "mcp-team", fields: [])
        func present(_ type: ResourceType, _ name: String) async throws -> Bool {
            try await client.getIfPresent(type, namespace: "mcp-team", name: name) != nil
        }
        for cached in [false, true] {
            let d = try driver(api, env: env)
            if cached { try await d.start() }
            try await api.resetCounters()
            try await d.ensureTenant(strict)
            if !cached {
                let c = try await api.counters()
                #expect(c[["byVerb", "delete"]] == nil, "\(c.jsonText)")
            }
            #expect(try await present(.networkPolicy, KubernetesRenderer.networkPolicyName))
            #expect(try await present(.resourceQuota, KubernetesRenderer.quotaName))
            try await d.ensureTenant(relaxed)
            #expect(try await !present(.networkPolicy, KubernetesRenderer.networkPolicyName), "cached: \(cached)")
            #expect(try await !present(.resourceQuota, KubernetesRenderer.quotaName), "cached: \(cached)")
            #expect(try await present(.limitRange, KubernetesRenderer.limitRangeName))
            await d.stop()
        }
    }

    @Test func deployScaleRollPruneAsKubectlSeesIt() async throws {
        // Over TLS with a bearer token, configured from a kubeconfig, as kubectl is.
        let api = try KubeAPIServerProcess(tls: true)
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let dir = try makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let kubeconfig = try api.writeKubeconfig(in: dir)
        let config = try ClusterConfig.fromKubeconfig(paths: [kubeconfig])
        #expect(config.tls.caFile == api.caFile)
        let driver = try KubernetesDriver(environment: env, config: config,
                                          options: KubernetesDriverOptions(retry: RetryPolicy(initialBackoff: .milliseconds(20), maxBackoff: .milliseconds(500))))

        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        for server in state.servers { try await driver.scale(server, replicas: server.replicas) }
        let everything = try #require(state.server("time"))
        try await waitUntil("everything ready", timeout: .seconds(10), every: .milliseconds(50)) {
            try await driver.observe().server("time")?.readyReplicas == everything.replicas
        }
        var live = try await driver.observe()
        #expect(live.tenants.map(\.name) == ["research"])
        #expect(live.tenants.first?.fields == state.tenants.first?.fields)
        let rev = try #require(live.server("time")?.revisions.first)
        #expect(rev.revision == everything.revision)
        // Deployments carry a spec digest, not the fields; with no revision record in the store yet
        // (the controller writes one), the revision's fields are unknown.
        #expect(rev.fields == nil)
        #expect(rev.drift == nil)
        #expect(rev.version == "1.10")
        #expect(rev.instances?.count == 2)
        let endpoints = try await driver.endpoints(server: "time", revision: everything.revision)
        #expect(endpoints.count == 2)
        #expect(endpoints.allSatisfy { $0.port == 18200 && $0.path == "/mcp" })

        // kubectl sees exactly what the driver applied.
        var seen = try kubectlDeployments(kubeconfig).filter { $0.labels["app.kubernetes.io/managed-by"] == "mcpfleet" }
        #expect(seen.map(\.name) == ["time-\(everything.revision)"])
        #expect(seen.first?.namespace == "mcp-research")
        #expect(seen.first?.json[["spec", "replicas"]]?.int == 2)

        // Scale, idempotently.
        try await driver.scale(everything, replicas: 3)
        try await driver.scale(everything, replicas: 3)
        try await waitUntil("3 ready", timeout: .seconds(10), every: .milliseconds(50)) { try await driver.observe().server("time")?.readyReplicas == 3 }

        // Roll: the new revision's Deployment comes up beside the old one, then the old one goes.
        let next = nextRevision(everything, version: "1.11")
        try await driver.scale(next, replicas: 1)
        try await waitUntil("canary ready", timeout: .seconds(10), every: .milliseconds(50)) {
            try await driver.observe().server("time")?.revisions.first { $0.revision == next.revision }?.ready == 1
        }
        live = try await driver.observe()
        #expect(live.server("time")?.revisions.map(\.revision).sorted() == [everything.revision, next.revision].sorted())
        try await driver.scale(next, replicas: 3)
        try await driver.scale(everything, replicas: 0)
        try await driver.removeRevision(server: "time", revision: everything.revision)
        try await waitUntil("rolled", timeout: .seconds(10), every: .milliseconds(50)) {
            let s = try await driver.observe().server("time")
            return s?.revisions.map(\.revision) == [next.revision] && s?.readyReplicas == 3
        }
        seen = try kubectlDeployments(kubeconfig).filter { $0.labels["app.kubernetes.io/managed-by"] == "mcpfleet" }
        #expect(seen.map(\.name) == ["time-\(next.revision)"])

        // Prune.
        try await driver.removeServer(named: "time")
        try await driver.removeServer(named: "time")  // idempotent
        live = try await driver.observe()
        #expect(live.servers.isEmpty)
        #expect(try kubectlDeployments(kubeconfig).filter { $0.labels["app.kubernetes.io/managed-by"] == "mcpfleet" }.isEmpty)
        #expect(try await driver.client.getIfPresent(.service, namespace: "mcp-research", name: "time") == nil)
        try await driver.removeTenant(named: "research")
        try await waitUntil("namespace gone", timeout: .seconds(10), every: .milliseconds(50)) {
            try await driver.client.getIfPresent(.namespace, namespace: nil, name: "mcp-research") == nil
        }
    }

    /// The fields `plan` diffs come from the rollout store's revision records (or, for a Deployment an
    /// older mcpfleet made, its `mcpfleet.io/fields` annotation); a hand edit shows as drift in the plan.
    @Test func planFieldsFromRevisionRecordsOldAnnotationsAndDrift() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let server = try #require(state.server("time"))
        let driver = try driver(api, env: env)
        _ = try await driver.client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        try await driver.scale(server, replicas: server.replicas)
        let name = KubernetesRenderer.deploymentName(server: "time", revision: server.revision)
        let applied = try await driver.client.get(.deployment, namespace: "mcp-research", name: name)
        #expect(applied.annotations["mcpfleet.io/fields"] == nil)
        let digest = try #require(applied.annotations["mcpfleet.io/spec-digest"])
        #expect(digest.hasPrefix("sha256:") && digest.count == 71)
        #expect(applied.annotations.values.map(\.count).reduce(0, +) < 200, "\(applied.annotations)")

        // The controller records the revision; a fresh driver (another process: `plan`) reads its fields there.
        try await driver.rolloutStore().saveRevision(RevisionRecord(server: "time", revision: server.revision, version: server.version,
                                                                     fields: server.fields, createdAt: 1, outcome: .promoted))
        let planner = try self.driver(api, env: env)
        let live = try await planner.observe()
        let rev = try #require(live.server("time")?.revisions.first)
        #expect(rev.fields == server.fields)
        #expect(rev.drift == nil)
        var next = state
        let nextServer = nextRevision(server, version: "1.11")
        next.servers = next.servers.map { $0.name == "time" ? nextServer : $0 }
        let rollout = try #require(Planner.plan(desired: next, live: live, baseline: "test").changes.first { $0.name == "time" })
        #expect(rollout.action == .rollout)
        #expect(rollout.fields.map(\.path) == ["version"], "\(rollout.fields)")
        #expect(Planner.plan(desired: state, live: live, baseline: "test").changes.filter { $0.name == "time" }.isEmpty)

        // Someone edits the Deployment by hand: the digest no longer matches, and the plan says so.
        var edited = try await driver.client.get(.deployment, namespace: "mcp-research", name: name)
        var json = edited.json
        var containers = try #require(json[["spec", "template", "spec", "containers"]]?.array)
        containers[0]["image"] = .string("ghcr.io/someone/else:latest")
        json["spec"]?["template"]?["spec"]?["containers"] = .array(containers)
        edited = KubeObject(json)
        _ = try await driver.client.replace(edited)
        let drifted = try #require(try await planner.observe().server("time")?.revisions.first)
        let drift = try #require(drifted.drift)
        #expect(drift.contains("mcp-research/\(name) was edited outside mcpfleet"), "\(drift)")
        var driftedLive = live
        driftedLive.servers = driftedLive.servers.map { var s = $0; if s.name == "time" { s.revisions = [drifted] }; return s }
        let change = try #require(Planner.plan(desired: state, live: driftedLive, baseline: "test").changes.first { $0.name == "time" })
        #expect(change.action == .update)
        #expect(change.fields.map(\.path) == ["drift"])
        #expect(change.reason.contains("edited outside mcpfleet"))
        // (Applying it again is refused as a server-side apply conflict naming the edited field, as for
        // any hand edit: serverSideApplyConflictsAreReported.)

        // A Deployment an older mcpfleet made: fields in the annotation, no digest; read as before, no drift.
        var old = try KubernetesRenderer.deployment(nextServer, namespace: "mcp-research", replicas: 1)
        var annotations = old.annotations
        annotations["mcpfleet.io/spec-digest"] = nil
        annotations["mcpfleet.io/fields"] = KubernetesRenderer.fieldsJSON(nextServer.fields)
        var oldJSON = old.json
        oldJSON["metadata"]?["annotations"] = .strings(annotations)
        old = KubeObject(oldJSON)
        _ = try await driver.client.apply(old)
        let upgraded = try #require(try await planner.observe().server("time")?.revisions.first { $0.revision == nextServer.revision })
        #expect(upgraded.fields == nextServer.fields)
        #expect(upgraded.drift == nil)
    }

    @Test func unmanagedObjectsAreNotReportedAsManaged() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let driver = try driver(api, env: env)
        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        let foreign = KubeObject(.obj([
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": .obj(["name": "hand-made", "namespace": "mcp-research", "labels": .strings(["app": "hand-made"])]),
            "spec": .obj([
                "replicas": 1, "selector": .obj(["matchLabels": .strings(["app": "hand-made"])]),
                "template": .obj(["metadata": .obj(["labels": .strings(["app": "hand-made"])]),
                                  "spec": .obj(["containers": [.obj(["name": "c", "image": .string("busybox@sha256:" + String(repeating: "b", count: 64))])]])]),
            ]),
        ]))
        _ = try await driver.client.create(foreign)
        let live = try await driver.observe()
        let s = try #require(live.server("hand-made"))
        #expect(!s.managed)
        // Removing a server of that name never touches the unmanaged Deployment.
        try await driver.removeServer(named: "hand-made")
        #expect(try await driver.client.getIfPresent(.deployment, namespace: "mcp-research", name: "hand-made") != nil)

        // A namespace mcpfleet did not create is used but never deleted.
        // (The cluster environment's namespacePrefix is "mcp-".)
        _ = try await driver.client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcp-own"])])))
        let adopted = DesiredTenant(name: "own", isolation: .shared, namespace: "mcp-own", fields: [])
        try await driver.ensureTenant(adopted)
        #expect(try await driver.client.getIfPresent(.limitRange, namespace: "mcp-own", name: KubernetesRenderer.limitRangeName) != nil)
        try await driver.removeTenant(named: "own")
        #expect(try await driver.client.getIfPresent(.namespace, namespace: nil, name: "mcp-own") != nil)
        #expect(try await driver.client.getIfPresent(.limitRange, namespace: "mcp-own", name: KubernetesRenderer.limitRangeName) == nil)
    }

    @Test func retriesServerErrorsAndHonoursRetryAfter() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        try await api.injectFaults(#"{"status":503,"count":3}"#)
        _ = try await client.get(.namespace, namespace: nil, name: "default")
        var log = try await api.requests().filter { $0["path"]?.string == "/api/v1/namespaces/default" }
        #expect(log.compactMap { $0["status"]?.int } == [503, 503, 503, 200])

        try await api.reset()
        let clock = ContinuousClock()
        let start = clock.now
        try await api.injectFaults(#"{"status":429,"retry_after":1,"count":2}"#)
        _ = try await client.get(.namespace, namespace: nil, name: "default")
        let elapsed = clock.now - start
        log = try await api.requests().filter { $0["path"]?.string == "/api/v1/namespaces/default" }
        #expect(log.compactMap { $0["status"]?.int } == [429, 429, 200])
        let times = log.compactMap { entry -> Double? in
            if case .double(let d)? = entry["time"] { return d }
            return entry["time"]?.int.map(Double.init)
        }
        #expect(times.count == 3)
        if times.count == 3 {
            // Each retry waited the second the server asked for, not the 20 ms backoff.
            #expect(times[1] - times[0] >= 0.95)
            #expect(times[2] - times[1] >= 0.95)
        }
        #expect(elapsed >= .milliseconds(1900))
        #expect(client.statistics.throttled == 2)

        // Retries are bounded: a persistent failure is reported, naming the object.
        try await api.reset()
        try await api.injectFaults(#"{"status":503,"count":100}"#)
        let bounded = try api.client(retry: RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(20)))
        do {
            _ = try await bounded.get(.namespace, namespace: nil, name: "default")
            Issue.record("a persistent 503 must fail")
        } catch let error as KubeError {
            #expect(error.status == 503)
            #expect(error.description.hasPrefix("Namespace default: get failed (HTTP 503"))
        }
        try await api.reset()
    }

    @Test func serverSideApplyConflictsAreReported() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let driver = try driver(api, env: env)
        for tenant in state.tenants { try await driver.ensureTenant(tenant) }
        let s = try #require(state.server("time"))
        try await driver.scale(s, replicas: 2)
        // Someone else takes .spec.replicas (as `kubectl apply --server-side --force-conflicts` would).
        let other = try KubeClient(config: api.config, transport: try api.transport(), fieldManager: "ops-team")
        var patch = try KubernetesRenderer.deployment(s, namespace: "mcp-research", replicas: 5).json
        patch = .obj(["apiVersion": patch["apiVersion"], "kind": patch["kind"],
                      "metadata": .obj(["name": patch[["metadata", "name"]], "namespace": "mcp-research"]), "spec": .obj(["replicas": 5])])
        _ = try await other.apply(KubeObject(patch), force: true)
        do {
            try await driver.scale(s, replicas: 2)
            Issue.record("the conflict must be reported")
        } catch let error as DriverError {
            #expect(error.terminal)
            #expect(error.resource == "Deployment mcp-research/time-\(s.revision)")
            #expect(error.message.contains(".spec.replicas"))
            #expect(error.message.contains("ops-team"))
        }
        do {
            _ = try await driver.client.apply(try KubernetesRenderer.deployment(s, namespace: "mcp-research", replicas: 2))
            Issue.record("the conflict must be reported")
        } catch let error as KubeError {
            #expect(error.conflicts.map(\.field) == [".spec.replicas"])
            #expect(error.conflicts.first?.manager == "ops-team")
        }
        // With force, mcpfleet takes the field back.
        let forcing = try self.driver(api, env: env, options: KubernetesDriverOptions(qps: 500, burst: 1000, forceConflicts: true))
        try await forcing.scale(s, replicas: 2)
        let d = try await driver.client.get(.deployment, namespace: "mcp-research", name: "time-\(s.revision)")
        #expect(d.json[["spec", "replicas"]]?.int == 2)
    }

    @Test func dryRunChangesNothing() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let (env, state) = try exampleCluster()
        let real = try driver(api, env: env)
        let dry = try driver(api, env: env, options: KubernetesDriverOptions(qps: 500, burst: 1000, dryRun: true))
        // A dry-run namespace is admitted but not stored.
        let ns = KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "dry-only"])]))
        let answered = try await dry.client.apply(ns, dryRun: true)
        #expect(answered.name == "dry-only")
        #expect(try await real.client.getIfPresent(.namespace, namespace: nil, name: "dry-only") == nil)
        // Objects inside a namespace need the namespace to exist, so create the tenant for real and
        // dry-run everything else.
        for tenant in state.tenants { try await real.ensureTenant(tenant) }
        let quotaBefore = try await real.client.get(.resourceQuota, namespace: "mcp-research", name: KubernetesRenderer.quotaName)
        var smaller = try #require(state.tenants.first)
        smaller.fields = smaller.fields.map { $0.path == "quota.maxReplicas" ? SpecField(path: $0.path, display: "3") : $0 }
        try await dry.ensureTenant(smaller)
        let quotaAfter = try await real.client.get(.resourceQuota, namespace: "mcp-research", name: KubernetesRenderer.quotaName)
        #expect(quotaAfter.resourceVersion == quotaBefore.resourceVersion)
        for s in state.servers { try await dry.scale(s, replicas: s.replicas) }
        try await dry.removeTenant(named: "research")
        #expect(try await real.client.list(.deployment).items.isEmpty)
        #expect(try await real.client.getIfPresent(.service, namespace: "mcp-research", name: "time") == nil)
        #expect(try await real.client.getIfPresent(.namespace, namespace: nil, name: "mcp-research") != nil)
        let writes = try await api.requests().filter { ["PATCH", "DELETE"].contains($0["method"]?.string ?? "") && ($0["query"]?.string ?? "").contains("dryRun=All") }
        #expect(writes.count >= 5)
    }

    @Test func watchSurvivesDroppedConnectionsAndGone() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "w"])])))
        func configMap(_ name: String) -> KubeObject {
            KubeObject(.obj(["apiVersion": "v1", "kind": "ConfigMap", "metadata": .obj(["name": .string(name), "namespace": "w"]), "data": .obj(["k": "v"])]))
        }
        // Only the test's own objects (the server adds kube-root-ca.crt to every namespace); watches are
        // renewed every second.
        let informer = Informer<String>(client: client, type: .configMap, namespace: "w",
                                        configuration: InformerConfiguration(stallTimeout: .seconds(2), retry: client.retry),
                                        transform: { $0.name.hasPrefix("cm-") ? $0.name : nil })
        // The first watch connection is dropped after two events.
        try await api.injectFaults(#"{"drop_watch_after_events":2,"count":1}"#)
        informer.start()
        defer { informer.stopWithoutWaiting() }
        try await informer.waitUntilSynced(timeout: .seconds(5))
        for i in 1...5 { _ = try await client.create(configMap("cm-\(i)")) }
        do {
            try await waitUntil("all five events across the dropped connection", timeout: .seconds(10), every: .milliseconds(50)) { informer.count == 5 }
        } catch {
            let log = try await api.requests().map { "\($0["method"]?.string ?? "") \($0["path"]?.string ?? "")?\($0["query"]?.string ?? "") \($0["status"].map { $0.jsonText } ?? "")" }
            throw TestFailure("\(error); seen \(informer.items.sorted()); requests:\n\(log.joined(separator: "\n"))")
        }
        #expect(informer.statistics.lists == 1)  // a drop resumes from the resourceVersion, no relist
        let watches = try await api.requests().filter { ($0["query"]?.string ?? "").contains("watch=1") }
        #expect(watches.count >= 2)

        // 410 Gone: the next watch request is held in the server (injected latency) while history is
        // compacted past the resourceVersion it asks for, so it is refused and the informer lists again.
        try await api.injectFaults(#"{"latency_ms":1500,"count":1,"method":"GET","path_regex":"/namespaces/w/configmaps$"}"#)
        do {
            try await waitUntil("a held watch request", timeout: .seconds(5), every: .milliseconds(50)) {
                try await api.faults().contains { $0["latency_ms"] != nil && $0["remaining"]?.int == 0 }
            }
        } catch {
            let log = try await api.requests().map { "\($0["method"]?.string ?? "") \($0["path"]?.string ?? "")?\($0["query"]?.string ?? "") \($0["status"].map { $0.jsonText } ?? "") \($0["time"].map { $0.jsonText } ?? "")" }
            throw TestFailure("\(error): faults \(try await api.faults().map(\.jsonText)) now \(Date().timeIntervalSince1970)\n\(log.joined(separator: "\n"))")
        }
        _ = try await client.create(configMap("cm-6"))
        _ = try await client.create(configMap("cm-7"))
        try await api.post("/__control/compact", "{}")
        try await waitUntil("relisted after 410", timeout: .seconds(10), every: .milliseconds(50)) { informer.statistics.gone >= 1 && informer.count == 7 }
        #expect(informer.statistics.relists >= 1)
        #expect(informer.items.sorted() == ["cm-1", "cm-2", "cm-3", "cm-4", "cm-5", "cm-6", "cm-7"])
        // And it keeps watching after the relist.
        _ = try await client.create(configMap("cm-8"))
        try await waitUntil("events after the relist", timeout: .seconds(5), every: .milliseconds(50)) { informer.items.contains("cm-8") }
    }

    @Test func lowLevelWatchReportsGone() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        let list = try await client.list(.namespace)
        for i in 0..<3 {
            _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": .string("g\(i)")])])))
        }
        try await api.post("/__control/compact", "{}")
        do {
            let events = try await client.watch(.namespace, resourceVersion: list.resourceVersion, timeoutSeconds: 5)
            for try await _ in events {}
            Issue.record("a compacted resourceVersion must be Gone")
        } catch let error as KubeError {
            #expect(error.isGone)
        }
    }

    @Test func rolloutStoreKeepsRecordsGuardedByResourceVersion() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        let store = KubernetesRolloutStore(client: client, namespace: "mcpfleet-system", maxRevisions: 3)
        #expect(try await store.record(server: "a") == nil)
        var record = RolloutRecord(server: "a", phase: .progressing, stableRevision: "r1", targetRevision: "r2", step: 1, updatedAt: 10)
        try await store.save(record)
        record.step = 2
        try await store.save(record)
        #expect(try await store.record(server: "a") == record)
        try await store.save(RolloutRecord(server: "b"))
        #expect(try await store.records().map(\.server) == ["a", "b"])
        try await store.removeRecord(server: "b")
        #expect(try await store.records().map(\.server) == ["a"])

        for i in 0..<5 {
            try await store.saveRevision(RevisionRecord(server: "a", revision: "r\(i)", version: "1.\(i)", fields: [], createdAt: Int64(i), outcome: .promoted))
        }
        #expect(try await store.revisions(server: "a").map(\.revision) == ["r2", "r3", "r4"])

        // Concurrent writers: every append survives (409 on a stale resourceVersion, then re-read).
        let other = KubernetesRolloutStore(client: try api.client(), namespace: "mcpfleet-system")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<10 {
                group.addTask { try await store.appendAudit(AuditEntry(time: Int64(i), server: "a", action: "scale", reason: "w1-\(i)", outcome: "ok")) }
                group.addTask { try await other.appendAudit(AuditEntry(time: Int64(100 + i), server: "a", action: "scale", reason: "w2-\(i)", outcome: "ok")) }
            }
            try await group.waitForAll()
        }
        try await store.appendAudit(AuditEntry(time: 500, server: "b", action: "delete", reason: "pruned", outcome: "ok"))
        let all = try await store.audit(server: "a", limit: 100)
        #expect(all.count == 20)
        #expect(try await store.audit(server: nil, limit: 2).map(\.time) == [500, 109])
    }

    @Test func leaderElectionHandsOver() async throws {
        let api = try KubeAPIServerProcess()
        defer { api.stop() }
        let client = try api.client()
        _ = try await client.create(KubeObject(.obj(["apiVersion": "v1", "kind": "Namespace", "metadata": .obj(["name": "mcpfleet-system"])])))
        func elector(_ id: String) throws -> LeaderElector {
            LeaderElector(client: try api.client(), namespace: "mcpfleet-system", identity: id,
                          leaseDuration: .seconds(2), renewDeadline: .milliseconds(1500), retryPeriod: .milliseconds(200))
        }
        let a = try elector("a"), b = try elector("b")
        let runA = Task { await a.run() }
        try await waitUntil("a leads", timeout: .seconds(5), every: .milliseconds(50)) { await a.isLeader }
        let runB = Task { await b.run() }
        let bChanges = await b.changes()
        // b campaigns for several retry periods but must not lead while a renews.
        try await waitUntil("b sees a as leader", timeout: .seconds(5), every: .milliseconds(50)) { await b.currentLeader == "a" }
        let clock = ContinuousClock()
        let hold = clock.now
        while clock.now - hold < .seconds(3) {
            #expect(!(await b.isLeader))
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(await a.isLeader)

        // a stops (and releases): b takes over within the lease duration.
        let stopped = clock.now
        runA.cancel()
        await runA.value
        #expect(!(await a.isLeader))
        try await waitUntil("b leads within the lease duration", timeout: .seconds(2), every: .milliseconds(50)) { await b.isLeader }
        #expect(clock.now - stopped < .seconds(2))
        var events: [LeadershipEvent] = []
        for await e in bChanges {
            events.append(e)
            if e == .acquired { break }
        }
        #expect(events.contains(.acquired))
        let lease = try await client.get(.lease, namespace: "mcpfleet-system", name: "mcpfleet-controller")
        #expect(lease.json[["spec", "holderIdentity"]]?.string == "b")
        #expect((lease.json[["spec", "leaseTransitions"]]?.int ?? 0) >= 1)

        runB.cancel()
        await runB.value

        // A leader that vanished without releasing: the lease is taken only once it expired.
        var ghost = try await client.get(.lease, namespace: "mcpfleet-system", name: "mcpfleet-controller").json
        ghost["spec"]?["holderIdentity"] = "ghost"
        ghost["spec"]?["leaseDurationSeconds"] = 2
        ghost["spec"]?["renewTime"] = .string(LeaderElector.microTime(Date()))
        _ = try await client.replace(KubeObject(ghost))
        let c = try elector("c")
        let crashed = clock.now
        let runC = Task { await c.run() }
        try await waitUntil("c leads", timeout: .seconds(6), every: .milliseconds(50)) { await c.isLeader }
        #expect(clock.now - crashed >= .milliseconds(1900))
        #expect(clock.now - crashed < .seconds(4))
        runC.cancel()
        await runC.value
    }
}
