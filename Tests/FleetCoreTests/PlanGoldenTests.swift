import FleetCore
import FleetYAML
import Foundation
import Testing

/// Golden plans in the gitops-engine style: `Tests/Fixtures/plan/<case>/` holds `manifests/`, a
/// baseline (`live.json`, or `before/` manifests taken as converged, optionally changed by `live-patch`)
/// and the expected `expected.txt` and `expected.json`. `MCPFLEET_RECORD=1 swift test` rewrites them.
@Suite struct PlanGoldenTests {
    static let root = packageRoot + "/Tests/Fixtures/plan"
    static var cases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    static func plan(for name: String) throws -> Plan {
        let dir = root + "/" + name
        let loaded = CatalogLoader.load(path: dir + "/manifests")
        guard !loaded.diagnostics.hasErrors else { throw GoldenError("\(name)/manifests invalid: \(loaded.errorsText)") }
        guard let env = loaded.catalog.environment("dev") else { throw GoldenError("\(name) has no environment dev") }
        let desired = Renderer.desiredState(loaded.catalog, environment: env)
        var live: LiveState
        if let data = FileManager.default.contents(atPath: dir + "/live.json") {
            live = try JSONDecoder().decode(LiveState.self, from: data)
        } else {
            let before = CatalogLoader.load(path: dir + "/before")
            guard !before.diagnostics.hasErrors, let benv = before.catalog.environment("dev") else { throw GoldenError("\(name)/before invalid: \(before.errorsText)") }
            live = LiveState.converged(Renderer.desiredState(before.catalog, environment: benv))
        }
        if let patch = FileManager.default.contents(atPath: dir + "/live-patch") {
            applyPatch(String(decoding: patch, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines), to: &live, desired: desired)
        }
        return Planner.plan(desired: desired, live: live, baseline: "fixture \(name)")
    }

    /// Named live-state situations that are easier to state in code than to keep in JSON by hand.
    static func applyPatch(_ patch: String, to live: inout LiveState, desired: DesiredState) {
        switch patch {
        case "prune":
            live.servers.append(LiveServer(name: "legacy", tenant: "team-a", revisions: [LiveRevision(revision: "0123456789ab", version: "0.9.0", replicas: 2, ready: 2)]))
            live.servers.append(LiveServer(name: "handmade", tenant: "team-a", managed: false, revisions: [LiveRevision(revision: "ba9876543210", replicas: 1, ready: 1)]))
        case "holds":
            if let i = live.servers.firstIndex(where: { $0.name == "search" }) {
                live.servers[i].pinnedRevision = live.servers[i].revisions.first?.revision
            }
            if let i = live.servers.firstIndex(where: { $0.name == "time" }), let target = desired.server("time")?.revision {
                live.servers[i].failedRevisions = [target]
                live.servers[i].phase = .rolledBack
            }
        case "drift":
            // A Kubernetes Deployment of the desired revision edited by hand (the driver's spec digest).
            if let i = live.servers.firstIndex(where: { $0.name == "time" }), !live.servers[i].revisions.isEmpty {
                live.servers[i].revisions[0].drift = "Deployment team-a/time-\(live.servers[i].revisions[0].revision) was edited outside mcpfleet"
            }
        default: break
        }
    }

    @Test(arguments: cases)
    func goldenPlan(name: String) throws {
        let plan = try Self.plan(for: name)
        let text = PlanFormatter(color: false).text(plan)
        let json = try CanonicalJSON.encode(plan)
        let dir = Self.root + "/" + name
        let record = ProcessInfo.processInfo.environment["MCPFLEET_RECORD"] == "1"
        for (file, actual) in [("expected.txt", text), ("expected.json", json)] {
            let path = dir + "/" + file
            if record {
                try actual.write(toFile: path, atomically: true, encoding: .utf8)
                continue
            }
            let expected = try #require(FileManager.default.contents(atPath: path), "missing \(path); run MCPFLEET_RECORD=1 swift test")
            #expect(String(decoding: expected, as: UTF8.self) == actual, "\(name)/\(file) differs; rerun with MCPFLEET_RECORD=1 to accept")
        }
        // Deterministic: planning twice gives the same bytes.
        #expect(try CanonicalJSON.encode(try Self.plan(for: name)) == json)
    }

    @Test func goldenOutcomes() throws {
        #expect(try Self.plan(for: "in-sync").exitCode == 0)
        #expect(try Self.plan(for: "reformatted-no-change").exitCode == 0)
        let scale = try Self.plan(for: "scale-only")
        #expect(scale.changes.map(\.action) == [.scale])
        #expect(scale.changes.first?.fields == [FieldChange(path: "replicas", old: "2", new: "5")])
        let prune = try Self.plan(for: "prune-owned-only")
        #expect(prune.changes.map(\.subject) == ["server/legacy"])
        let holds = try Self.plan(for: "holds")
        #expect(holds.changes.isEmpty)
        #expect(holds.holds.map(\.server) == ["search", "time"])
        let created = try Self.plan(for: "create-from-empty")
        #expect(created.changes.map(\.subject) == ["tenant/team-a", "server/search", "server/time"])
    }

    @Test func secretsNeverAppear() throws {
        let plan = try Self.plan(for: "secret-ref-changed")
        // Every format, the saved plan's `desired` section included: a secret-looking plain value is
        // only ever its digest.
        let text = PlanFormatter(color: false).text(plan) + PlanFormatter(color: false).markdown(plan) + (try CanonicalJSON.encode(plan))
        #expect(!text.contains("rotated-plain-value-xyz"))
        #expect(text.contains("secretRef(search-creds/token) → secretRef(search-creds-v2/token)"))
        #expect(text.contains("env.UPSTREAM_AUTH_TOKEN: (sensitive, sha256:ba7816bf8f01) → (sensitive, sha256:2e165bdf2486)"))
    }
}

struct GoldenError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
