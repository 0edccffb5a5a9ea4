import FleetCore
import FleetTesting
@testable import FleetKubernetes
import Foundation
import Testing

/// The Kubernetes driver's live-state cache at fleet size, against the test API server: what one resync
/// pass (a full observe plus one scoped observe and one endpoints call per server), one changed server
/// and an idle minute cost in API requests, and what the cache costs in memory. Driver level: the
/// controller does not use the cache before phase 2 of issue 14 (Benchmarks/scale/README.md). Runs only
/// with `MCPFLEET_SCALE_BENCH=1`; `MCPFLEET_SCALE_BENCH_SERVERS` (default 1000), `_IDLE_SECONDS` (30),
/// `_OUT` (a file for the Markdown table).
@Suite(.serialized) struct KubernetesCacheBenchmarkTests {
    static let enabled = ProcessInfo.processInfo.environment["MCPFLEET_SCALE_BENCH"] == "1"

    static func rssMiB() -> Double {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    /// RSS after glibc's `malloc_trim(0)` returned freed heap to the system, so that what earlier work
    /// (the fleet's setup) freed does not count: close to what live objects hold.
    static func trimmedRSSMiB() -> Double {
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") {
            typealias Trim = @convention(c) (Int) -> Int32
            _ = unsafeBitCast(symbol, to: Trim.self)(0)
        }
        return rssMiB()
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    @Test(.enabled(if: enabled)) func resyncAndOneChangeAtFleetSize() async throws {
        let env = ProcessInfo.processInfo.environment
        let count = Int(env["MCPFLEET_SCALE_BENCH_SERVERS"] ?? "") ?? 1000
        let idle = Int(env["MCPFLEET_SCALE_BENCH_IDLE_SECONDS"] ?? "") ?? 30
        let api = try KubeAPIServerProcess(arguments: ["--ready-delay-ms", "50", "--watch-window", "1000000", "--bookmark-interval-ms", "60000"])
        defer { api.stop() }
        let (environment, state) = try exampleCluster()
        let template = try #require(state.server("time"))
        let tenants = (0..<max(1, count / 50)).map { DesiredTenant(name: "t\($0)", isolation: .shared, namespace: "t\($0)", fields: []) }
        let servers = (0..<count).map { i -> DesiredServer in
            var s = template
            s.name = "s\(i)"
            s.tenant = tenants[i % tenants.count].name
            s.replicas = 1
            return s
        }
        let clock = ContinuousClock()
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        func requests() async throws -> String {
            let c = try await api.counters()
            return (c["byVerb"]?.members ?? []).map { "\($0.key) \($0.value.int ?? 0)" }.joined(separator: ", ")
        }
        var rows: [(String, String)] = []

        // The fleet, written by a driver without a cache (setup, at raised client limits).
        let writer = try KubernetesDriver(environment: environment, config: api.config, transport: try api.transport(),
                                          options: KubernetesDriverOptions(qps: 1000, burst: 2000))
        for t in tenants { try await writer.ensureTenant(t) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for chunk in stride(from: 0, to: count, by: count / 16 + 1) {
                let part = servers[chunk..<min(count, chunk + count / 16 + 1)]
                group.addTask { for s in part { try await writer.scale(s, replicas: 1) } }
            }
            try await group.waitForAll()
        }
        try await waitUntil("\(count) Deployments ready", timeout: .seconds(600), every: .seconds(1)) {
            try await writer.observe().servers.filter { $0.readyReplicas == 1 }.count == count
        }

        // The cache: its first lists, and the memory it holds.
        var options = KubernetesDriverOptions()  // the default client limits: 50 qps, burst 100
        options.cacheSyncTimeout = .seconds(300)
        let driver = try KubernetesDriver(environment: environment, config: api.config, transport: try api.transport(), options: options)
        let rssBefore = Self.trimmedRSSMiB()
        try await api.resetCounters()
        let startAt = clock.now
        try await driver.start()
        rows.append(("start: first LIST of every kind until synced", String(format: "%.2f s; %@", seconds(clock.now - startAt), try await requests())))
        let rssAfter = Self.trimmedRSSMiB()
        rows.append(("memory the synced cache holds (RSS after malloc_trim, before → after)",
                     String(format: "%.1f MiB (%.1f → %.1f MiB, debug build)", rssAfter - rssBefore, rssBefore, rssAfter)))

        // One resync pass with nothing changed: what the controller's keys ask of the driver.
        try await api.resetCounters()
        let cpu0 = Self.cpuSeconds()
        let passAt = clock.now
        let all = try await driver.observe(.all)
        for s in servers {
            _ = try await driver.observe(.server(s.name))
            _ = try await driver.endpoints(server: s.name, revision: s.revision)
        }
        let pass = clock.now - passAt
        let cpu = Self.cpuSeconds() - cpu0
        #expect(all.servers.count == count)
        #expect(try await api.nonWatchRequests() == 0)
        rows.append(("resync pass: observe(.all) + \(count) × (observe(.server) + endpoints)",
                     String(format: "%.3f s, %.3f s CPU (debug build); requests: %@", seconds(pass), cpu, try await requests().isEmpty ? "none" : try await requests())))

        // One changed server: a new revision next to the old one, ready, the old one retired.
        try await api.resetCounters()
        let changed = servers[count / 2]
        let next = nextRevision(changed, version: "2")
        let changeAt = clock.now
        try await driver.scale(next, replicas: 1)
        try await waitUntil("new revision ready", timeout: .seconds(30), every: .milliseconds(20)) {
            try await driver.observe(.server(changed.name)).server(changed.name)?.revisions.first { $0.revision == next.revision }?.ready == 1
        }
        let readyAfter = clock.now - changeAt
        try await driver.scale(changed, replicas: 0)
        try await driver.removeRevision(server: changed.name, revision: changed.revision)
        rows.append(("one changed server: scale new, wait ready (cache), scale old to 0, remove it",
                     String(format: "new revision seen ready after %.2f s; requests: %@", seconds(readyAfter), try await requests())))
        #expect(try await api.nonWatchRequests() <= 4)

        // An idle controller: the open watches, renewed once per stall timeout (30 s by default).
        try await api.resetCounters()
        let idleCPU = Self.cpuSeconds()
        try await Task.sleep(for: .seconds(idle))
        rows.append(("idle for \(idle) s with the cache running", String(format: "%.2f s CPU; requests: %@", Self.cpuSeconds() - idleCPU, try await requests())))
        #expect(try await api.nonWatchRequests() == 0)
        await driver.stop()

        let report = (["| \(count) servers | measured |", "|---|---|"] + rows.map { "| \($0.0) | \($0.1) |" }).joined(separator: "\n") + "\n"
        print(report)
        if let out = env["MCPFLEET_SCALE_BENCH_OUT"] { try write(report, to: out) }
    }
}
