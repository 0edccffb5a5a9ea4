import FleetCore
import FleetHTTP
import Foundation
import Logging
import ServiceLifecycle

public struct ControllerConfiguration: Sendable {
    /// Keys reconciled at once.
    public var workers: Int = 4
    /// How often the manifest source is checked for changes.
    public var pollIntervalMs: Int64 = 2_000
    /// How often everything is reconciled even without changes (drift from outside).
    public var resyncIntervalMs: Int64 = 30_000
    /// How soon a server in motion (instances starting, draining) is looked at again.
    public var rolloutPollMs: Int64 = 250
    /// Probe scheduler tick; each instance is probed every `health.interval`, new ones at once.
    public var probeTickMs: Int64 = 200
    public var probeConcurrency: Int = 32

    public init() {}
}

/// What the work queue holds: the global sync (tenants, deletions, fan-out) or one server.
public enum ReconcileKey: Hashable, Sendable, CustomStringConvertible {
    case sync
    case server(String)

    public var description: String {
        switch self {
        case .sync: return "sync"
        case .server(let s): return "server/\(s)"
        }
    }
}

/// The reconcile loop: level-based, one key at a time per server, observe → read bookkeeping → one
/// machine step → persist → act → audit. Knows drivers only through `RuntimeDriver`.
public final class Controller: Service, Sendable {
    public typealias Source = @Sendable () async throws -> DesiredStateSnapshot

    let source: Source
    let sourceFingerprint: (@Sendable () async throws -> String)?
    let driver: any RuntimeDriver
    let store: any RolloutStore
    let clock: any ControllerClock
    let logger: Logger
    let configuration: ControllerConfiguration
    public let metrics: ControllerMetrics
    let prober: Prober?
    public let queue: WorkQueue<ReconcileKey>
    public let tracker: HealthTracker
    let analysis: AnalysisRunner
    let state = ControllerState()

    /// - Parameters:
    ///   - source: renders the desired state (the composition root builds it from the manifest files).
    ///   - sourceFingerprint: a cheap change check; when given, `source` runs only when it changes (and at resync).
    ///   - transport: for MCP/HTTP probes and Prometheus queries; nil disables probes (drivers' readiness only).
    public init(source: @escaping Source, sourceFingerprint: (@Sendable () async throws -> String)? = nil, driver: any RuntimeDriver,
                store: any RolloutStore, clock: any ControllerClock, logger: Logger, configuration: ControllerConfiguration = ControllerConfiguration(),
                transport: (any HTTPTransport)? = nil, metrics: ControllerMetrics = ControllerMetrics(),
                extraProviders: [AnalysisProviderKind: any AnalysisProvider] = [:]) {
        self.source = source
        self.sourceFingerprint = sourceFingerprint
        self.driver = driver
        self.store = store
        self.clock = clock
        self.logger = logger
        self.configuration = configuration
        self.metrics = metrics
        prober = transport.map { Prober(transport: $0) }
        let queue = WorkQueue<ReconcileKey>(clock: clock)
        self.queue = queue
        let tracker = HealthTracker()
        self.tracker = tracker
        var providers: [AnalysisProviderKind: any AnalysisProvider] = [.probe: ProbeAnalysisProvider(tracker: tracker)]
        if let transport { providers[.prometheus] = PrometheusAnalysisProvider(transport: transport) }
        providers.merge(extraProviders) { _, b in b }
        analysis = AnalysisRunner(providers: providers, clock: clock) { server, status in
            if let m = status.measurements.last { metrics.slo(server: server, revision: status.revision, measurement: m) }
            await queue.add(.server(server))
        }
    }

    // MARK: - running

    public func run() async throws {
        let background = Task {
            await withTaskGroup(of: Void.self) { g in
                g.addTask { await self.sourceLoop() }
                g.addTask { await self.probeLoop() }
            }
        }
        await withTaskCancellationOrGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { g in
                for _ in 0..<max(1, configuration.workers) { g.addTask { await self.worker() } }
            }
        } onCancelOrGracefulShutdown: {
            // Workers finish the step in hand (persisted, acted on), then get no more keys.
            Task { await self.queue.shutDown() }
        }
        background.cancel()
        await background.value
        await analysis.cancelAll()
        logger.info("controller stopped")
    }

    /// True once the manifests were loaded and a first pass over every server was made.
    public func isReady() async -> Bool { await state.ready }

    /// The last live state observed, with the controller's bookkeeping folded in.
    public func lastLive() async -> LiveState? { await state.lastLive }

    public func snapshot() async -> DesiredStateSnapshot? { await state.snapshot }

    /// True when every desired server's last step left it settled (nothing in motion).
    public func isSettled() async -> Bool {
        guard let snap = await state.snapshot else { return false }
        return await state.allSettled(snap.desired.servers.map(\.name))
    }

    /// Loads the source now (as the watcher would) and queues a full sync; returns false on failure.
    @discardableResult
    public func refreshSource() async -> Bool {
        do {
            let snap = try await source()
            let changed = await state.setSnapshot(snap)
            if changed {
                logger.info("desired state loaded", metadata: ["fingerprint": "\(snap.fingerprint)", "commit": "\(snap.commit ?? "")",
                                                             "servers": "\(snap.desired.servers.count)"])
            }
            await queue.add(.sync)
            return true
        } catch {
            logger.error("cannot load the desired state; keeping the last good one", metadata: ["error": "\(error)"])
            return false
        }
    }

    func sourceLoop() async {
        var lastFingerprint: String?
        var lastFull: Int64?
        var operatorMarks: [String: String] = [:]
        while !Task.isCancelled {
            // `mcpfleet rollback|pause|resume|promote` edit the store; notice them without waiting for a resync.
            if let records = try? await store.records() {
                for r in records {
                    let mark = "\(r.pinnedRevision ?? "")|\(r.paused)|\(r.promoted)|\(r.stepStartedAt)"
                    if let old = operatorMarks[r.server], old != mark { await queue.add(.server(r.server)) }
                    operatorMarks[r.server] = mark
                }
            }
            let now = clock.nowMs()
            var reload = lastFull.map { now - $0 >= configuration.resyncIntervalMs } ?? true
            if !reload, let fp = sourceFingerprint {
                do {
                    let current = try await fp()
                    reload = current != lastFingerprint
                    lastFingerprint = current
                } catch {
                    logger.warning("cannot check the manifest source", metadata: ["error": "\(error)"])
                }
            } else if !reload {
                reload = true
            }
            if reload {
                if lastFull == nil, let fp = sourceFingerprint { lastFingerprint = try? await fp() }
                if await refreshSource() || lastFull == nil { lastFull = now }
            }
            do { try await clock.sleep(milliseconds: configuration.pollIntervalMs) } catch { return }
        }
    }

    func worker() async {
        while let key = await queue.get() {
            await process(key)
            await queue.done(key)
            metrics.queueDepth(await queue.depth)
        }
    }

    func process(_ key: ReconcileKey) async {
        let correlation = String(UUID().uuidString.prefix(8)).lowercased()
        var log = logger
        log[metadataKey: "correlation_id"] = "\(correlation)"
        log[metadataKey: "key"] = "\(key)"
        let start = ContinuousClock.now
        do {
            switch key {
            case .sync: try await sync(log: log, correlation: correlation)
            case .server(let name): try await reconcile(server: name, log: log, correlation: correlation)
            }
            await queue.forget(key)
            metrics.reconcileDuration(ContinuousClock.now - start, result: "success")
        } catch {
            metrics.reconcileDuration(ContinuousClock.now - start, result: "error")
            if case .server(let name) = key { metrics.reconcileError(server: name) }
            if let e = error as? DriverError, e.terminal {
                log.error("reconcile failed; not retried until something changes", metadata: ["error": "\(e)"])
            } else {
                let delay = await queue.addRateLimited(key)
                log.warning("reconcile failed; retrying", metadata: ["error": "\(error)", "retry_in_ms": "\(delay)"])
            }
        }
    }

    // MARK: - sync: tenants first, then every server, then what is no longer desired

    func sync(log: Logger, correlation: String) async throws {
        guard let snap = await state.snapshot else { return }
        let live = try await observe()
        let liveTenants = Dictionary(live.tenants.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for t in snap.desired.tenants {
            let l = liveTenants[t.name]
            if l == nil || (l?.fields.map { Set($0) != Set(t.fields) } ?? false) {
                try await act("ensure-tenant", server: "tenant/\(t.name)", revision: nil, reason: l == nil ? "tenant missing" : "tenant settings changed",
                              snap: snap, correlation: correlation) {
                    try await self.driver.ensureTenant(t)
                }
            }
        }
        let desiredNames = Set(snap.desired.servers.map(\.name))
        for s in snap.desired.servers { await queue.add(.server(s.name)) }
        for l in live.servers where l.managed && !desiredNames.contains(l.name) { await queue.add(.server(l.name)) }
        let desiredTenants = Set(snap.desired.tenants.map(\.name))
        for t in live.tenants where t.managed && !desiredTenants.contains(t.name) && !live.servers.contains(where: { $0.tenant == t.name }) {
            try await act("remove-tenant", server: "tenant/\(t.name)", revision: nil, reason: "no desired server belongs to it", snap: snap, correlation: correlation) {
                try await self.driver.removeTenant(named: t.name)
            }
        }
        if !(await state.ready) {
            await state.markReady()
            log.info("first sync done", metadata: ["servers": "\(desiredNames.count)"])
        }
    }

    func observe() async throws -> LiveState {
        let live = try await driver.observe()
        let records = try await store.records()
        await state.setLive(live.merging(records))
        return live
    }

    // MARK: - one server

    func reconcile(server name: String, log: Logger, correlation: String) async throws {
        guard let snap = await state.snapshot else { return }
        let live = try await observe()
        let liveServer = live.server(name)
        guard let desired = snap.desired.server(name) else {
            if let l = liveServer, l.managed {
                try await act("delete", server: name, revision: l.servingRevision?.revision, reason: "no longer in the catalog for this environment",
                              snap: snap, correlation: correlation) {
                    try await self.driver.removeServer(named: name)
                }
                await queue.add(.sync)
            }
            if liveServer == nil || liveServer?.managed == true {
                try await store.removeRecord(server: name)
                await analysis.cancel(server: name)
                await tracker.forget(server: name)
                await state.forget(name)
            }
            return
        }
        if !live.tenants.contains(where: { $0.name == desired.tenant }), let t = snap.desired.tenants.first(where: { $0.name == desired.tenant }) {
            try await act("ensure-tenant", server: "tenant/\(t.name)", revision: nil, reason: "tenant of \(name) missing", snap: snap, correlation: correlation) {
                try await self.driver.ensureTenant(t)
            }
        }
        let verdict = snap.verdicts[name]
        let blocked = verdict.flatMap { $0.decision == .blocked && $0.revision == desired.revision ? $0.reasons.joined(separator: "; ") : nil }
        if blocked != nil { metrics.policyDenial(server: name) }

        var record = try await store.record(server: name)
        var currentLive = liveServer
        var settled = false
        var wakeAt: Int64?
        // A few machine steps when it only changed phase (no actions), so a step boundary costs no extra round.
        for _ in 0..<4 {
            let health = await healthSummary(desired, live: currentLive)
            let status = await analysis.status(server: name)
            let now = clock.nowMs()
            let out = RolloutMachine.step(RolloutInput(desired: desired, record: record, live: currentLive, analysis: status,
                                                       health: health, blockedReason: blocked, now: now))
            if record.map({ var a = $0; a.updatedAt = 0; var b = out.record; b.updatedAt = 0; return a != b }) ?? true || !out.actions.isEmpty {
                // Bookkeeping first: a controller killed after this line resumes from the new record.
                try await store.save(out.record)
                if record?.phase != out.record.phase || record?.targetRevision != out.record.targetRevision {
                    log.info("rollout phase", metadata: ["server": "\(name)", "phase": "\(out.record.phase.rawValue)",
                                                         "target": "\(out.record.targetRevision ?? "")", "stable": "\(out.record.stableRevision ?? "")",
                                                         "message": "\(out.record.message ?? "")"])
                }
            }
            log.debug("step", metadata: ["server": "\(name)", "actions": "\(out.actions.map(\.description))", "settled": "\(out.settled)",
                                         "health": "\(health.map { "\($0.key)=\($0.value.healthy)/\($0.value.probed)" })", "message": "\(out.record.message ?? "")"])
            record = out.record
            try await perform(out.actions, desired: desired, live: currentLive, snap: snap, correlation: correlation)
            settled = out.settled
            wakeAt = out.wakeAt
            guard out.again && out.actions.allSatisfy({ if case .scale = $0 { false } else { true } }) else { break }
            if out.actions.contains(where: { if case .removeRevision = $0 { true } else { false } }) {
                currentLive = try await observe().server(name)
            }
        }
        metrics.phase(server: name, phase: record?.phase ?? .stable)
        metrics.replicas(server: name, desired: desired.replicas, ready: currentLive?.readyReplicas ?? 0)
        await state.setSettled(name, settled)
        if !settled {
            let now = clock.nowMs()
            let delay = min(configuration.rolloutPollMs, max(0, (wakeAt ?? Int64.max) - now))
            await queue.add(.server(name), afterMs: max(1, delay))
        } else {
            await queue.add(.server(name), afterMs: configuration.resyncIntervalMs)
        }
    }

    func healthSummary(_ desired: DesiredServer, live: LiveServer?) async -> [String: RevisionHealth] {
        guard prober != nil, desired.transport != .stdio, let live else { return [:] }
        let known = await state.known(desired.name)
        let summary = await tracker.summary(server: desired.name, threshold: desired.health.failureThreshold, known: known.filter { !$0.value.isEmpty })
        var out = summary
        for r in live.revisions where r.replicas > 0 && known[r.revision] == nil {
            // Instances the probe scheduler has not seen yet are not ready as far as rollouts go.
            out[r.revision] = RevisionHealth(healthy: 0, probed: 0)
        }
        return out
    }

    /// The health check a revision was deployed with: from the spec rendered in this process, else from the
    /// revision's recorded fields (so an older revision is never probed against the new requirements).
    func probeHealth(for revision: String, desired: DesiredServer, live: LiveServer) async -> DesiredHealth {
        if revision == desired.revision { return desired.health }
        if let cached = await state.spec(server: desired.name, revision: revision) { return cached.health }
        guard let fields = live.revisions.first(where: { $0.revision == revision })?.fields else { return desired.health }
        var h = desired.health
        let byPath = Dictionary(fields.map { ($0.path, $0.display) }, uniquingKeysWith: { a, _ in a })
        if let kind = byPath["health.probe"].flatMap(ProbeKind.init(rawValue:)) { h.probe = kind }
        h.path = byPath["health.path"]
        let tools = byPath["health.requireTools"].map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "[]")) } ?? ""
        h.requireTools = tools.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return h
    }

    func spec(for revision: String, desired: DesiredServer, live: LiveServer?) async -> DesiredServer {
        if revision == desired.revision { return desired }
        if let cached = await state.spec(server: desired.name, revision: revision) { return cached }
        // Not rendered by this process: drivers keep each revision group's definition, so the current
        // spec relabelled to that revision identifies the group; version and fields come from live state.
        var s = desired
        s.revision = revision
        if let r = live?.revisions.first(where: { $0.revision == revision }) {
            s.version = r.version ?? s.version
            s.fields = r.fields ?? s.fields
        }
        return s
    }

    func perform(_ actions: [RolloutAction], desired: DesiredServer, live: LiveServer?, snap: DesiredStateSnapshot, correlation: String) async throws {
        let name = desired.name
        for action in actions {
            switch action {
            case .scale(let revision, let replicas):
                let s = await spec(for: revision, desired: desired, live: live)
                let from = live?.revisions.first { $0.revision == revision }?.replicas ?? 0
                try await act("scale", server: name, revision: revision, reason: "\(from) → \(replicas) replicas", snap: snap, correlation: correlation) {
                    try await self.driver.scale(s, replicas: replicas)
                }
            case .removeRevision(let revision):
                try await act("remove-revision", server: name, revision: revision, reason: "revision no longer needed", snap: snap, correlation: correlation) {
                    try await self.driver.removeRevision(server: name, revision: revision)
                }
            case .recordRevision(let revision, let outcome, let reason):
                let existing = try await store.revisions(server: name).first { $0.revision == revision }
                let s = await spec(for: revision, desired: desired, live: live)
                let verdict = snap.verdicts[name].flatMap { $0.revision == revision ? $0 : nil }
                try await store.saveRevision(RevisionRecord(
                    server: name, revision: revision, version: existing?.version ?? s.version, fields: existing?.fields ?? s.fields,
                    createdAt: existing?.createdAt ?? clock.nowMs(), outcome: outcome, reason: reason,
                    manifestCommit: existing?.manifestCommit ?? snap.commit, evidence: existing?.evidence ?? verdict?.evidence))
            case .audit(let what, let revision, let reason):
                try await store.appendAudit(AuditEntry(time: clock.nowMs(), server: name, action: what, revision: revision, reason: reason,
                                                       manifestCommit: snap.commit, outcome: "ok", correlationId: correlation))
                logger.info("\(what)", metadata: ["server": "\(name)", "revision": "\(revision ?? "")", "reason": "\(reason)", "correlation_id": "\(correlation)"])
            case .runAnalysis(let revision, let step, let notBefore):
                let before = await analysis.status(server: name)
                await analysis.ensure(server: desired, revision: revision, step: step, notBefore: notBefore)
                if before?.revision != revision || before?.step != step || (before?.startedAt ?? 0) < notBefore {
                    // A fresh run measures only what happens from now on.
                    await tracker.resetWindow(server: name, revision: revision)
                }
            }
        }
    }

    /// Runs one driver call and appends it to the audit log either way.
    func act(_ action: String, server: String, revision: String?, reason: String, snap: DesiredStateSnapshot, correlation: String,
             _ body: @Sendable () async throws -> Void) async throws {
        do {
            try await body()
            metrics.change(action: action)
            try await store.appendAudit(AuditEntry(time: clock.nowMs(), server: server, action: action, revision: revision, reason: reason,
                                                   manifestCommit: snap.commit, outcome: "ok", correlationId: correlation))
        } catch {
            try? await store.appendAudit(AuditEntry(time: clock.nowMs(), server: server, action: action, revision: revision, reason: reason,
                                                    manifestCommit: snap.commit, outcome: "error: \(error)", correlationId: correlation))
            throw error
        }
    }

    // MARK: - probes

    func probeLoop() async {
        guard let prober else { return }
        while !Task.isCancelled {
            if let snap = await state.snapshot, let live = await state.lastLive {
                for d in snap.desired.servers where d.transport != .stdio {
                    guard let l = live.server(d.name) else { continue }
                    var known: [String: Set<String>] = [:]
                    let previous = await state.known(d.name)
                    for r in l.revisions where r.replicas > 0 {
                        let endpoints: [Endpoint]
                        do { endpoints = try await driver.endpoints(server: d.name, revision: r.revision) } catch {
                            // Keep what was known; a revision never seen falls back on the driver's own readiness.
                            logger.warning("cannot list endpoints", metadata: ["server": "\(d.name)", "revision": "\(r.revision)", "error": "\(error)"])
                            known[r.revision] = previous[r.revision] ?? []
                            continue
                        }
                        known[r.revision] = Set(endpoints.map(\.instance))
                        let health = endpoints.isEmpty ? d.health : await probeHealth(for: r.revision, desired: d, live: l)
                        for e in endpoints {
                            let last = await tracker.lastProbe(server: d.name, instance: e.instance)
                            let now = clock.nowMs()
                            guard last == nil || now - last! >= health.intervalMs else { continue }
                            guard await state.beginProbe(d.name + "/" + e.instance, limit: configuration.probeConcurrency) else { continue }
                            let revision = r.revision
                            Task {
                                let result = await prober.probe(e, health: health, path: d.path)
                                self.metrics.probe(server: d.name, revision: revision, result: result)
                                let flipped = await self.tracker.record(server: d.name, revision: revision, instance: e.instance, result: result,
                                                                        threshold: d.health.failureThreshold, now: self.clock.nowMs())
                                await self.state.endProbe(d.name + "/" + e.instance)
                                if flipped {
                                    self.logger.info(result.success ? "instance healthy" : "instance unhealthy", metadata: [
                                        "server": "\(d.name)", "revision": "\(revision)", "instance": "\(e.instance)", "reason": "\(result.message ?? "")"])
                                    await self.queue.add(.server(d.name))
                                }
                            }
                        }
                    }
                    let firstSight = await state.setKnown(d.name, known)
                    await tracker.retain(server: d.name, instances: Set(known.values.flatMap { $0 }))
                    if firstSight { await queue.add(.server(d.name)) }
                }
            }
            do { try await clock.sleep(milliseconds: configuration.probeTickMs) } catch { return }
        }
    }
}

/// The controller's in-memory state (rebuilt from the source, the driver and the store after a restart).
actor ControllerState {
    var snapshot: DesiredStateSnapshot?
    var lastLive: LiveState?
    var ready = false
    private var specs: [String: [String: DesiredServer]] = [:]
    private var settled: [String: Bool] = [:]
    private var knownInstances: [String: [String: Set<String>]] = [:]
    private var probing: Set<String> = []

    /// Returns true when the desired state changed.
    func setSnapshot(_ s: DesiredStateSnapshot) -> Bool {
        let changed = snapshot?.fingerprint != s.fingerprint || snapshot?.desired != s.desired
        snapshot = s
        for d in s.desired.servers { specs[d.name, default: [:]][d.revision] = d }
        return changed
    }

    func setLive(_ l: LiveState) { lastLive = l }
    func markReady() { ready = true }
    func spec(server: String, revision: String) -> DesiredServer? { specs[server]?[revision] }
    func setSettled(_ server: String, _ value: Bool) { settled[server] = value }
    func allSettled(_ names: [String]) -> Bool { names.allSatisfy { settled[$0] == true } }
    func known(_ server: String) -> [String: Set<String>] { knownInstances[server] ?? [:] }

    /// Returns true when a revision got endpoints it had not had before (worth a reconcile).
    func setKnown(_ server: String, _ k: [String: Set<String>]) -> Bool {
        let old = knownInstances[server] ?? [:]
        knownInstances[server] = k
        return k.contains { rev, ids in old[rev] == nil || !ids.isSubset(of: old[rev]!) }
    }

    func forget(_ server: String) {
        settled[server] = nil
        knownInstances[server] = nil
        specs[server] = nil
    }

    func beginProbe(_ key: String, limit: Int) -> Bool {
        guard probing.count < limit, !probing.contains(key) else { return false }
        probing.insert(key)
        return true
    }

    func endProbe(_ key: String) { probing.remove(key) }
}
