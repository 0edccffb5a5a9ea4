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
    /// How often the controller writes a heartbeat to the store (and so learns whether it is writable).
    public var heartbeatIntervalMs: Int64 = 5_000
    /// Reconciles failing in a row, with none succeeding, after which `/readyz` says not ready.
    public var failureStreakLimit: Int = 3

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
    /// The surfaces MCP probes read: recorded, checked against contracts (ProbeContracts.swift).
    let contracts: ContractMonitor

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
        contracts = ContractMonitor(store: store, metrics: metrics, logger: logger, now: { clock.nowMs() })
        // Failures back off up to the resync interval: a resync would retry them then anyway.
        let queue = WorkQueue<ReconcileKey>(clock: clock, maxDelayMs: max(WorkQueue<ReconcileKey>.baseDelayMs, configuration.resyncIntervalMs))
        self.queue = queue
        let tracker = HealthTracker()
        self.tracker = tracker
        var providers: [AnalysisProviderKind: any AnalysisProvider] = [.probe: ProbeAnalysisProvider(tracker: tracker)]
        if let transport { providers[.prometheus] = PrometheusAnalysisProvider(transport: transport) }
        providers.merge(extraProviders) { _, b in b }
        analysis = AnalysisRunner(providers: providers, clock: clock) { server, status in
            if let m = status.measurements.last { metrics.slo(server: server, revision: status.revision, measurement: m) }
            await queue.add(.server(server), priority: .urgent)
        }
    }

    // MARK: - running

    public func run() async throws {
        // The driver's live-state cache (watches, supervision) lives as long as the loop.
        try await driver.start()
        let background = Task {
            await withTaskGroup(of: Void.self) { g in
                g.addTask { await self.sourceLoop() }
                g.addTask { await self.probeLoop() }
                g.addTask { await self.heartbeatLoop() }
                g.addTask { await self.liveChangeLoop() }
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
        await driver.stop()
        logger.info("controller stopped")
    }

    /// True once the manifests were loaded and a first pass over every server was made.
    public func isReady() async -> Bool { await state.ready }

    /// Whether the controller can do its job now, and if not why: what `/readyz` answers.
    public struct Readiness: Sendable, Hashable {
        public var ready: Bool
        public var reason: String
    }

    /// Ready once the first sync is done, unless the store cannot be written (nothing the controller
    /// does could be recorded, so it must not act) or every reconcile has been failing.
    public func readiness() async -> Readiness {
        let s = await state.health()
        if !s.ready { return Readiness(ready: false, reason: "first sync not done") }
        if let e = s.storeError { return Readiness(ready: false, reason: "the rollout store is not writable: \(e)") }
        if s.failureStreak >= configuration.failureStreakLimit, let e = s.lastError {
            return Readiness(ready: false, reason: "every reconcile is failing (\(s.failureStreak) in a row, none succeeded since): \(e)")
        }
        return Readiness(ready: true, reason: "ready")
    }

    /// The last live state observed, with the controller's bookkeeping folded in.
    public func lastLive() async -> LiveState? { await state.lastLive }

    public func snapshot() async -> DesiredStateSnapshot? { await state.snapshot }

    /// The analysis run of a server in hand (each measurement's values), for the dashboard.
    public func analysisStatus(server: String) async -> AnalysisStatus? { await analysis.status(server: server) }

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

    /// What the driver's live-state cache saw change (someone deleted a Deployment, a pod died) queues
    /// that server's reconcile at once; a relist queues a sync. Drivers without a cache report nothing.
    func liveChangeLoop() async {
        guard let changes = driver.liveChanges() else { return }
        for await scope in changes {
            switch scope {
            case .server(let name): await queue.add(.server(name), priority: .urgent)
            case .all: await queue.add(.sync)
            }
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
                    let mark = "\(r.pinnedRevision ?? "")|\(r.pinForced)|\(r.paused)|\(r.promoted)|\(r.stepStartedAt)|\(r.failedRevisions)"
                    if let old = operatorMarks[r.server], old != mark {
                        // An operator acted (e.g. `resume --retry` after adding a secret): start failures are tried afresh.
                        await state.clearStartErrors(server: r.server)
                        await queue.add(.server(r.server), bypassingBackoff: true)
                    }
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
            await state.reconciled(key, error: nil)
            metrics.reconcileDuration(ContinuousClock.now - start, result: "success")
        } catch {
            metrics.reconcileDuration(ContinuousClock.now - start, result: "error")
            if case .server(let name) = key { metrics.reconcileError(server: name) }
            let terminal = (error as? DriverError)?.terminal ?? false
            let delay = await queue.addRateLimited(key, terminal: terminal)
            // The same failure again is logged once at warning, then at debug, with a count (and at
            // warning again at 10, 100, 1000 … repeats), so a stuck key does not flood the log.
            let repeats = await state.reconciled(key, error: "\(error)")
            let level: Logger.Level = repeats == 0 || [10, 100, 1000, 10000].contains(repeats) ? .warning : .debug
            log.log(level: level, terminal ? "reconcile failed with an error retrying cannot fix; retried at the next resync or sooner if the catalog or an operator changes it"
                                           : "reconcile failed; retrying",
                    metadata: ["error": "\(error)", "retry_in_ms": "\(delay)", "repeats": "\(repeats)"])
        }
        if case .server(let name) = key { await passReconciled(name) }
    }

    // MARK: - sync: tenants first, then every server, then what is no longer desired

    func sync(log: Logger, correlation: String) async throws {
        guard let snap = await state.snapshot else { return }
        let live = try await observeAll()
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
        await state.beginPass(desiredNames, cpuSeconds: ProcessCPU.seconds())
        // A changed catalog may fix what failed: those keys skip their backoff; a plain resync does not.
        // Servers whose spec changed go ahead of the sweep over the rest (a resync, a first pass).
        let (changed, changedServers) = await state.syncedSnapshot(snap)
        if changed { await state.clearStartErrors(server: nil) }
        // So are servers whose runtime is not what they want (the first pass after a start, drift): the
        // sweep over the rest confirms that nothing changed.
        let liveByName = Dictionary(live.servers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func differs(_ s: DesiredServer) -> Bool {
            guard let l = liveByName[s.name] else { return true }
            return l.revisions.contains { $0.revision != s.revision && $0.replicas > 0 }
                || !l.revisions.contains { $0.revision == s.revision && $0.replicas == s.replicas }
        }
        for s in snap.desired.servers {
            if changedServers.contains(s.name) {
                await queue.add(.server(s.name), bypassingBackoff: true)
            } else if differs(s) {
                await queue.add(.server(s.name), bypassingBackoff: changed)
                await queue.add(.server(s.name), bypassingBackoff: true)
            } else {
                await queue.add(.server(s.name), bypassingBackoff: changed, priority: .low)
            }
        }
        for l in live.servers where l.managed && !desiredNames.contains(l.name) { await queue.add(.server(l.name)) }
        // Bookkeeping of servers neither desired nor running (a deletion interrupted after the runtime
        // forgot the server): reconciling the key removes the record.
        let liveNames = Set(live.servers.map(\.name))
        for r in try await store.records() where !desiredNames.contains(r.server) && !liveNames.contains(r.server) {
            await queue.add(.server(r.server))
        }
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

    /// Counts a server's reconcile towards the sync pass in hand; the pass's last one reports its wall and
    /// CPU time (log at info, `mcpfleet_resync_pass_*` metrics): what a resync costs, measured where it runs.
    func passReconciled(_ name: String) async {
        guard let pass = await state.passReconciled(name) else { return }
        let wall = ContinuousClock.now - pass.startedAt
        let wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        let cpu = ProcessCPU.seconds() - pass.cpuStart
        metrics.resyncPass(servers: pass.servers, wallSeconds: wallSeconds, cpuSeconds: cpu)
        // The pass's temporary copies are free now; their pages go back to the kernel instead of
        // staying resident between passes (issue 14: an idle `run` grew by fragmentation).
        ProcessMemory.trim()
        logger.info("sync pass done", metadata: ["servers": "\(pass.servers)", "wall_ms": "\(Int(wallSeconds * 1000))", "cpu_ms": "\(Int(cpu * 1000))"])
    }

    /// The sync key's observation: everything, once per pass (the only full observation the loop makes).
    func observeAll() async throws -> LiveState {
        let live = try await driver.observe(.all)
        let records = try await store.records()
        if await state.lastLive == nil { await state.adopt(live, records: records, now: clock.nowMs()) }
        await state.setLive(live.merging(records))
        return live
    }

    /// A server key's observation: that server's objects only (from the driver's cache), and every tenant.
    func observe(server name: String) async throws -> LiveState {
        try await driver.observe(.server(name))
    }

    // MARK: - one server

    func reconcile(server name: String, log: Logger, correlation: String) async throws {
        guard let (snap, desiredServer) = await state.snapshot(server: name) else { return }
        let live = try await observe(server: name)
        let liveServer = live.server(name)
        guard let desired = desiredServer else {
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
                await contracts.forget(server: name)
                await tracker.forget(server: name)
                await state.forget(name)
                await state.updateLive(server: name, nil)
            } else if let l = liveServer {
                await state.updateLive(server: name, l)
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
        var progressed = false
        var scaled = false
        // A few machine steps when it only changed phase (no actions), so a step boundary costs no extra
        // round; and one more when a start failed in a way retrying cannot fix, so the revision fails now.
        for _ in 0..<5 {
            let health = await healthSummary(desired, live: currentLive, record: record)
            let status = await analysis.status(server: name)
            let problems = await problems(desired, live: currentLive)
            let now = clock.nowMs()
            var input = record
            input?.probes = await probeNotes(desired, live: currentLive, recorded: record?.probes ?? [:])
            let out = RolloutMachine.step(RolloutInput(desired: desired, record: input, live: currentLive, analysis: status,
                                                       health: health, blockedReason: blocked, problems: problems, now: now))
            var next = out.record
            var actions = out.actions
            if record.map({ var a = $0; a.updatedAt = 0; var b = out.record; b.updatedAt = 0; return a != b }) ?? true || !out.actions.isEmpty {
                // Bookkeeping first: a controller killed after this line resumes from the new record. Saved
                // only over the record this step read: an operator's promote, pause or pin written in
                // between is read again and stepped on, never overwritten (and nothing is acted on).
                // The revisions and audit entries the step writes before it acts go with the record: one
                // write where the store can (a sharded Kubernetes store), all of it durable before any action.
                let bookkeeping = try await leadingBookkeeping(out.actions, desired: desired, live: currentLive, snap: snap, correlation: correlation)
                var saved: RolloutRecord?
                try await persist { saved = try await self.store.saveIfUnchanged(out.record, then: bookkeeping) }
                guard let saved else {
                    log.debug("rollout record changed while stepping; reading it again", metadata: ["server": "\(name)"])
                    record = try await store.record(server: name)
                    continue
                }
                next = saved
                progressed = true
                for write in bookkeeping { logBookkeeping(write, server: name, correlation: correlation) }
                actions = Array(out.actions.dropFirst(bookkeeping.count))
                if record?.phase != out.record.phase || record?.targetRevision != out.record.targetRevision || record?.message != out.record.message {
                    let level: Logger.Level = [.rolledBack, .failed, .degraded].contains(out.record.phase) ? .warning : .info
                    log.log(level: level, "rollout phase", metadata: ["server": "\(name)", "phase": "\(out.record.phase.rawValue)",
                                                                   "target": "\(out.record.targetRevision ?? "")", "stable": "\(out.record.stableRevision ?? "")",
                                                                   "message": "\(out.record.message ?? "")"])
                }
            }
            log.debug("step", metadata: ["server": "\(name)", "actions": "\(out.actions.map(\.description))", "settled": "\(out.settled)",
                                         "health": "\(health.map { "\($0.key)=\($0.value.healthy)/\($0.value.probed)" })", "message": "\(out.record.message ?? "")"])
            record = next
            do {
                try await perform(actions, desired: desired, live: currentLive, snap: snap, correlation: correlation)
            } catch let failure as StartFailure {
                // Retrying cannot start this revision: the machine hears it at once and fails the rollout.
                log.warning("cannot start revision", metadata: ["server": "\(name)", "revision": "\(failure.revision)", "error": "\(failure.error)"])
                if failure.revision != out.record.targetRevision { throw failure.error }
                currentLive = try await observe(server: name).server(name)
                continue
            }
            settled = out.settled
            wakeAt = out.wakeAt
            if actions.contains(where: { if case .scale = $0 { true } else { false } }) { scaled = true }
            guard out.again && out.actions.allSatisfy({ if case .scale = $0 { false } else { true } }) else { break }
            if out.actions.contains(where: { if case .removeRevision = $0 { true } else { false } }) {
                currentLive = try await observe(server: name).server(name)
            }
        }
        // What `status`, the progress line and the probe loop read: this server's part of the last live state
        // — after a scale, as it is now, so the probe loop looks for the new instances at once.
        if scaled, let now = try? await observe(server: name).server(name) { currentLive = now }
        let merged = currentLive.map { LiveState(servers: [$0]).merging(record.map { [$0] } ?? []).servers[0] }
        if merged != (await state.liveServer(name)) { progressed = true }
        await state.updateLive(server: name, merged)
        metrics.phase(server: name, phase: record?.displayPhase ?? .stable)
        metrics.replicas(server: name, desired: desired.replicas, ready: currentLive?.readyReplicas ?? 0)
        await state.setSettled(name, settled)
        if !settled {
            // In motion: looked at again soon — every rolloutPollMs while something moves, backing off
            // to 4x that while nothing does (e.g. a fleet's instances waiting for their first probes,
            // whose results queue the server at once anyway), never past a step's own wake-up time.
            let idle = await state.pollIdle(name, progressed: progressed)
            let now = clock.nowMs()
            let poll = configuration.rolloutPollMs << Int64(min(idle, 2))
            let delay = min(poll, max(0, (wakeAt ?? Int64.max) - now))
            // Ahead of servers not started yet: a cold converge finishes each rollout as its instances
            // get ready, instead of after every other server has started.
            await queue.add(.server(name), afterMs: max(1, delay), priority: .urgent)
        } else {
            // Settled: looked at again with the resync's sweep, behind anything that happens meanwhile.
            await queue.add(.server(name), afterMs: configuration.resyncIntervalMs, priority: .low)
        }
    }

    func healthSummary(_ desired: DesiredServer, live: LiveServer?, record: RolloutRecord?) async -> [String: RevisionHealth] {
        guard prober != nil, desired.transport != .stdio, let live else { return [:] }
        let known = await state.known(desired.name)
        let summary = await tracker.summary(server: desired.name, threshold: desired.health.failureThreshold, known: known.filter { !$0.value.isEmpty })
        var out = summary
        for r in live.revisions where r.replicas > 0 && out[r.revision] == nil {
            // Instances the probe scheduler has not seen yet — or a revision with no endpoint to probe (not
            // listening yet, or its port held by another process) — are not ready as far as rollouts go:
            // without an entry the machine would take the driver's "listening" for ready.
            out[r.revision] = RevisionHealth(healthy: 0, probed: 0)
        }
        // A controller that starts over (a restart, each `apply`) finds the steady revision's instances
        // probed ready by its predecessor: an instance this process has not probed yet counts as probed
        // ready when the recorded verdict is about the same run of it (pid, restarts) and the driver still
        // calls it running and healthy — so a fleet at rest settles without waiting for N first probes.
        // Never during a rollout (a target revision), never for a verdict of an earlier run: design 0006.
        if let record, record.targetRevision == nil, !record.probes.isEmpty, let stable = record.stableRevision,
           let group = live.revisions.first(where: { $0.revision == stable }), var h = out[stable] {
            let probedHere = await tracker.probedInstances(server: desired.name)
            for i in group.instances ?? [] where !probedHere.contains(i.id) && record.probes[i.id]?.trusts(i) == true {
                h.healthy += 1
                h.probed += 1
            }
            out[stable] = h
        }
        return out
    }

    /// Why each revision's instances are not ready: the driver's view (state, exit status, port holder,
    /// log tail, unstartable) and the controller's probes (failure messages), plus start failures the
    /// driver reported from `scale`. New reasons are logged at warning level, once each.
    func problems(_ desired: DesiredServer, live: LiveServer?) async -> [String: RevisionProblems] {
        var out: [String: RevisionProblems] = [:]
        let probeFailures = await tracker.failures(server: desired.name, threshold: desired.health.failureThreshold)
        for r in live?.revisions ?? [] {
            var p = RevisionProblems()
            for i in r.instances ?? [] {
                p.restarts += i.restarts ?? 0
                var why: String?
                if i.unstartable == true {
                    why = i.reason ?? "cannot start"
                    p.unstartable = p.unstartable ?? "\(i.id): \(why!)"
                } else if i.state != .running || !i.healthy {
                    why = i.reason ?? i.state.rawValue
                } else if let failure = probeFailures[i.id] {
                    why = "probe failed: \(failure)"
                }
                if let why { p.reasons.append(RevisionProblems.line(instance: i.id, why: why, logTail: i.logTail)) }
            }
            if r.instances == nil {
                for (id, failure) in probeFailures.sorted(by: { $0.key < $1.key }) where id.contains(r.revision) {
                    p.reasons.append(RevisionProblems.line(instance: id, why: "probe failed: \(failure)", logTail: nil))
                }
            }
            if let e = await state.startError(server: desired.name, revision: r.revision) { p.unstartable = e }
            if p != RevisionProblems() { out[r.revision] = p }
        }
        if let drift = await contracts.failingDrift(server: desired.name, revision: desired.revision, expectation: await state.snapshot?.contracts[desired.name]) {
            out[desired.revision, default: RevisionProblems()].contractDrift = ContractGate.rollbackReason(revision: desired.revision, drift)
        }
        // Revisions the runtime has no group of (their start failed before it recorded anything).
        for (revision, e) in await state.startErrors(server: desired.name) where out[revision] == nil {
            out[revision] = RevisionProblems(unstartable: e)
        }
        for line in await state.newProblems(server: desired.name, out.values.flatMap(\.reasons)) {
            logger.warning("instance not ready", metadata: ["server": "\(desired.name)", "reason": "\(line)"])
        }
        return out
    }

    /// The controller's probe verdicts, for the record (`status` folds them into READY).
    /// An instance this process has not probed yet keeps the verdict recorded for it (by the controller
    /// before a restart), so a new controller does not rewrite every server's record twice — once
    /// without verdicts, once with — before anything changed (rollouts go by this process's probes only).
    func probeNotes(_ desired: DesiredServer, live: LiveServer?, recorded: [String: ProbeNote]) async -> [String: ProbeNote] {
        guard prober != nil, desired.transport != .stdio, let live else { return [:] }
        let instances = Dictionary(live.revisions.flatMap { $0.instances ?? [] }.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        // Each fresh verdict names the run of the instance it is about (see `ProbeNote.trusts`).
        var out = recorded
        for (id, note) in await tracker.notes(server: desired.name, threshold: desired.health.failureThreshold) {
            var n = note
            n.pid = instances[id]?.pid
            n.restarts = instances[id]?.restarts
            out[id] = n
        }
        return out.filter { instances.isEmpty || instances[$0.key] != nil }
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

    /// The spec of `revision` as this process rendered it; nil for one it did not (the runtime keeps its definition).
    func renderedSpec(for revision: String, desired: DesiredServer) async -> DesiredServer? {
        revision == desired.revision ? desired : await state.spec(server: desired.name, revision: revision)
    }

    /// Version and fields of `revision` for its record: as rendered here, else from live state. Never
    /// passed to `driver.scale` (the relabelled current spec would redefine the old revision).
    func spec(for revision: String, desired: DesiredServer, live: LiveServer?) async -> DesiredServer {
        if let rendered = await renderedSpec(for: revision, desired: desired) { return rendered }
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
                let rendered = await renderedSpec(for: revision, desired: desired)
                let from = live?.revisions.first { $0.revision == revision }?.replicas ?? 0
                do {
                    try await act("scale", server: name, revision: revision, reason: "\(from) → \(replicas) replicas", snap: snap, correlation: correlation) {
                        // A revision this process did not render is resized from the definition the runtime keeps.
                        if let rendered { try await self.driver.scale(rendered, replicas: replicas) } else {
                            try await self.driver.rescale(server: name, revision: revision, tenant: desired.tenant, replicas: replicas)
                        }
                    }
                    await state.setStartError(server: name, revision: revision, nil)
                } catch let e as DriverError where e.terminal && replicas > from {
                    await state.setStartError(server: name, revision: revision, e.message)
                    throw StartFailure(revision: revision, error: e)
                }
            case .removeRevision(let revision):
                try await act("remove-revision", server: name, revision: revision, reason: "revision no longer needed", snap: snap, correlation: correlation) {
                    try await self.driver.removeRevision(server: name, revision: revision)
                }
            case .recordRevision:
                guard let write = try await bookkeeping(action, desired: desired, live: live, snap: snap, correlation: correlation) else { continue }
                if case .revision(let revision) = write { try await store.saveRevision(revision) }
            case .audit:
                guard let write = try await bookkeeping(action, desired: desired, live: live, snap: snap, correlation: correlation) else { continue }
                if case .audit(let entry) = write { try await persist { try await self.store.appendAudit(entry) } }
                logBookkeeping(write, server: name, correlation: correlation)
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

    /// The store write a bookkeeping action makes (a revision record or an audit entry); nil for an action on the runtime.
    func bookkeeping(_ action: RolloutAction, desired: DesiredServer, live: LiveServer?, snap: DesiredStateSnapshot, correlation: String) async throws -> Bookkeeping? {
        let name = desired.name
        switch action {
        case .recordRevision(let revision, let outcome, let reason):
            let existing = try await store.revisions(server: name).first { $0.revision == revision }
            let s = await spec(for: revision, desired: desired, live: live)
            let verdict = snap.verdicts[name].flatMap { $0.revision == revision ? $0 : nil }
            return .revision(RevisionRecord(
                server: name, revision: revision, version: existing?.version ?? s.version, fields: existing?.fields ?? s.fields,
                createdAt: existing?.createdAt ?? clock.nowMs(), outcome: outcome, reason: reason,
                manifestCommit: existing?.manifestCommit ?? snap.commit, evidence: existing?.evidence ?? verdict?.evidence, contract: existing?.contract))
        case .audit(let what, let revision, let reason, let step):
            return .audit(AuditEntry(time: clock.nowMs(), server: name, action: what, revision: revision, reason: reason,
                                     manifestCommit: snap.commit, outcome: "ok", correlationId: correlation, step: step))
        case .scale, .removeRevision, .runAnalysis:
            return nil
        }
    }

    /// The bookkeeping at the head of a step's actions (before its first action on the runtime), to be
    /// written with the step's record.
    func leadingBookkeeping(_ actions: [RolloutAction], desired: DesiredServer, live: LiveServer?, snap: DesiredStateSnapshot,
                            correlation: String) async throws -> [Bookkeeping] {
        var out: [Bookkeeping] = []
        for action in actions {
            guard let write = try await bookkeeping(action, desired: desired, live: live, snap: snap, correlation: correlation) else { break }
            out.append(write)
        }
        return out
    }

    /// The log line of a written audit entry (revision records are not logged).
    func logBookkeeping(_ write: Bookkeeping, server: String, correlation: String) {
        guard case .audit(let entry) = write else { return }
        let level: Logger.Level = ["rollback", "rollout-failed"].contains(entry.action) ? .warning : .info
        logger.log(level: level, "\(entry.action)", metadata: ["server": "\(server)", "revision": "\(entry.revision ?? "")", "reason": "\(entry.reason)",
                                                         "correlation_id": "\(correlation)"])
    }

    /// Runs one driver call and appends it to the audit log either way (a failure repeated by retries
    /// is counted on its first entry by the store, not appended again).
    func act(_ action: String, server: String, revision: String?, reason: String, snap: DesiredStateSnapshot, correlation: String,
             _ body: @Sendable () async throws -> Void) async throws {
        do {
            try await body()
        } catch {
            let entry = AuditEntry(time: clock.nowMs(), server: server, action: action, revision: revision, reason: reason,
                                   manifestCommit: snap.commit, outcome: "error: \(error)", correlationId: correlation)
            do { try await persist { try await self.store.appendAudit(entry) } } catch {
                logger.error("cannot write the audit log", metadata: ["error": "\(error)", "entry": "\(action) \(server)"])
            }
            throw error
        }
        metrics.change(action: action)
        try await persist {
            try await self.store.appendAudit(AuditEntry(time: self.clock.nowMs(), server: server, action: action, revision: revision, reason: reason,
                                                        manifestCommit: snap.commit, outcome: "ok", correlationId: correlation))
        }
    }

    /// A store write; its outcome is what readiness knows about the store.
    func persist(_ body: () async throws -> Void) async throws {
        do {
            try await body()
            if await state.setStoreError(nil) { logger.notice("the rollout store is writable again; the controller is ready") }
        } catch {
            if await state.setStoreError("\(error)") {
                logger.error("the rollout store is not writable; the controller reports not ready and acts on nothing it cannot record", metadata: ["error": "\(error)"])
            }
            throw error
        }
    }

    /// Writes a heartbeat every `heartbeatIntervalMs`: `status` tells a live controller by it, and a
    /// store that refuses it makes the controller not ready until it accepts one again.
    func heartbeatLoop() async {
        while !Task.isCancelled {
            // `persist` logs the store becoming unwritable (and writable again) once.
            do { try await persist { try await self.store.heartbeat(now: self.clock.nowMs()) } } catch {}
            do { try await clock.sleep(milliseconds: configuration.heartbeatIntervalMs) } catch { break }
        }
        // Stopping: no controller runs on this store any more (status and `state restore` rely on it).
        do { try await store.heartbeat(now: nil) } catch {
            logger.warning("cannot clear the controller's heartbeat", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - probes

    /// One probe the scheduler may start: an instance's first (no verdict from this process yet) or a
    /// periodic one, `due` since when.
    struct ProbeCandidate {
        var desired: DesiredServer
        var revision: String
        var endpoint: Endpoint
        var health: DesiredHealth
        var due: Int64
    }

    /// Every `probeTickMs`, looks at the servers with a probe due (or instances come or gone) and starts
    /// probes, at most `probeConcurrency` at once. First probes — what a starting instance, and so a
    /// rollout, waits for — start before periodic ones (an adopted instance's first probe, confirming a
    /// recorded verdict, counts as periodic), and periodic ones start most overdue first: when
    /// the fleet's periodic probes alone would fill every slot (3,000 instances probed every 10 s), the
    /// periodic ones run late, spread evenly, and a new instance is never starved behind them.
    func probeLoop() async {
        guard let prober else { return }
        while !Task.isCancelled {
            if let snap = await state.snapshot, await state.lastLive != nil {
                let tickStart = clock.nowMs()
                var periodic: [ProbeCandidate] = []
                for d in snap.desired.servers where d.transport != .stdio {
                    // Nothing due (no probe, no instance come or gone since): no driver call for this server.
                    if let due = await state.probeDue(d.name), tickStart < due { continue }
                    guard let l = await state.liveServer(d.name) else { continue }
                    var nextDue = Int64.max
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
                        if endpoints.isEmpty { nextDue = 0 }  // instances not reachable yet: look again next tick
                        let health = endpoints.isEmpty ? d.health : await probeHealth(for: r.revision, desired: d, live: l)
                        for e in endpoints {
                            let last = await tracker.lastProbe(server: d.name, instance: e.instance)
                            let now = clock.nowMs()
                            // Adopted instances probed ready by the previous controller are first probed
                            // spread over one interval, not all at once (the verdict stands till then).
                            let adoptedDue = last == nil ? await state.adoptedProbeDue(d.name, e.instance, intervalMs: health.intervalMs) : nil
                            if let adoptedDue, now < adoptedDue {
                                nextDue = min(nextDue, adoptedDue)
                                continue
                            }
                            if let last, now - last < health.intervalMs {
                                nextDue = min(nextDue, last + health.intervalMs)
                                continue
                            }
                            // An adopted instance's first probe confirms a verdict that stands meanwhile: it
                            // waits with the periodic ones, behind instances nothing has judged yet.
                            let candidate = ProbeCandidate(desired: d, revision: r.revision, endpoint: e, health: health,
                                                           due: last.map { $0 + health.intervalMs } ?? adoptedDue ?? 0)
                            if last == nil && adoptedDue == nil {
                                // A first probe: started now if a slot is free.
                                let started = await startProbe(candidate, snap: snap, prober: prober)
                                nextDue = min(nextDue, started ? now + health.intervalMs : 0)
                            } else {
                                periodic.append(candidate)
                                nextDue = 0  // set below if it starts
                            }
                        }
                    }
                    let firstSight = await state.setKnown(d.name, known)
                    await tracker.retain(server: d.name, instances: Set(known.values.flatMap { $0 }))
                    if firstSight { await queue.add(.server(d.name), priority: .urgent) }
                    await state.setProbeDue(d.name, nextDue == Int64.max ? nil : nextDue)
                }
                // Periodic probes in the slots first probes left, most overdue first; the rest wait for the
                // next tick (their servers stay due).
                periodic.sort { $0.due < $1.due }
                for c in periodic where !(await startProbe(c, snap: snap, prober: prober)) {
                    if await state.probeSlotsFull(limit: configuration.probeConcurrency) { break }
                }
            }
            do { try await clock.sleep(milliseconds: configuration.probeTickMs) } catch { return }
        }
    }

    /// Starts one probe if a slot is free (false: every slot busy, or this instance is being probed).
    func startProbe(_ c: ProbeCandidate, snap: DesiredStateSnapshot, prober: Prober) async -> Bool {
        let d = c.desired, e = c.endpoint, revision = c.revision, health = c.health
        guard await state.beginProbe(d.name + "/" + e.instance, limit: configuration.probeConcurrency) else { return false }
        Task {
            let answer = await prober.probe(e, health: health, path: d.path)
            // The slot is for talking to the server; recording a first contract (store writes, which
            // queue behind a cold converge's applies for seconds) must not hold back other first probes.
            await self.state.probeAnswered(d.name + "/" + e.instance)
            let result = await self.contracts.check(server: d.name, revision: revision, instance: e.instance, desiredRevision: d.revision,
                                                    result: answer, expectation: snap.contracts[d.name])
            self.metrics.probe(server: d.name, revision: revision, result: result)
            let flipped = await self.tracker.record(server: d.name, revision: revision, instance: e.instance, result: result,
                                                    threshold: d.health.failureThreshold, now: self.clock.nowMs())
            await self.state.endProbe(d.name + "/" + e.instance)
            // The server is looked at again when this instance's next probe is due.
            await self.state.setProbeDue(d.name, nil)
            if flipped {
                self.logger.log(level: result.success ? .info : .warning, result.success ? "instance healthy" : "instance unhealthy", metadata: [
                    "server": "\(d.name)", "revision": "\(revision)", "instance": "\(e.instance)", "reason": "\(result.message ?? "")"])
                await self.queue.add(.server(d.name), priority: .urgent)
            }
        }
        return true
    }
}

/// A `scale` that starts instances failed in a way retrying cannot fix (the driver's terminal error).
struct StartFailure: Error, CustomStringConvertible {
    var revision: String
    var error: DriverError
    var description: String { "\(error)" }
}

/// The controller's in-memory state (rebuilt from the source, the driver and the store after a restart).
actor ControllerState {
    var snapshot: DesiredStateSnapshot?
    var lastLive: LiveState?
    var ready = false
    private var specs: [String: [String: DesiredServer]] = [:]
    private var settled: [String: Bool] = [:]
    private var knownInstances: [String: [String: Set<String>]] = [:]
    /// Instances with a probe in flight (until its verdict is recorded), and how many of them are still
    /// waiting for the server's answer (what `probeConcurrency` limits).
    private var probing: Set<String> = []
    private var awaitingAnswer: Set<String> = []
    private var startErrors: [String: [String: String]] = [:]
    private var loggedProblems: [String: Set<String>] = [:]
    private var lastSyncedFingerprint: String?
    /// The last sync's servers (the snapshot's own array, shared, not copied) and their index by name.
    private var syncedServers: [DesiredServer] = []
    private var syncedIndex: [String: Int] = [:]
    /// The current snapshot's servers by name (`DesiredState.server` is a scan: O(N²) for a pass).
    private var desiredIndex: [String: Int] = [:]
    private var syncedVerdicts: [String: PolicyVerdict] = [:]
    /// Index of `lastLive.servers` by name, so a server key updates its own entry in O(1).
    private var liveIndex: [String: Int] = [:]
    private var storeError: String?
    private var failureStreak = 0
    private var lastError: String?
    private var lastErrorByKey: [ReconcileKey: (error: String, repeats: Int)] = [:]

    /// Instances running when the controller started whose recorded ready verdict is about the same run
    /// (`ProbeNote.trusts`), on their server's steady revision: their first probe is spread over one
    /// interval from `adoptedAtMs` instead of all coming at once.
    private var adopted: [String: Set<String>] = [:]
    private var adoptedAtMs: Int64 = 0

    func adopt(_ live: LiveState, records: [RolloutRecord], now: Int64) {
        adoptedAtMs = now
        let byName = Dictionary(records.map { ($0.server, $0) }, uniquingKeysWith: { a, _ in a })
        for server in live.servers {
            guard let r = byName[server.name], r.targetRevision == nil, let stable = r.stableRevision,
                  let group = server.revisions.first(where: { $0.revision == stable }) else { continue }
            let ids = (group.instances ?? []).filter { r.probes[$0.id]?.trusts($0) == true }.map(\.id)
            if !ids.isEmpty { adopted[server.name] = Set(ids) }
        }
    }

    /// When an adopted instance's first probe is due (nil: not adopted so, probe at once).
    func adoptedProbeDue(_ server: String, _ instance: String, intervalMs: Int64) -> Int64? {
        guard adopted[server]?.contains(instance) == true, intervalMs > 0 else { return nil }
        // FNV-1a of the instance id: the same spread in every process, no clumps from the order of servers.
        var h: UInt64 = 0xcbf29ce484222325
        for b in (server + "/" + instance).utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
        return adoptedAtMs + Int64(h % UInt64(intervalMs))
    }

    /// The sync pass in hand: the servers the sync queued that were not reconciled since.
    struct Pass {
        var startedAt: ContinuousClock.Instant
        var cpuStart: Double
        var servers: Int
        var pending: Set<String>
    }
    private var pass: Pass?

    func beginPass(_ names: Set<String>, cpuSeconds: Double) {
        pass = names.isEmpty ? nil : Pass(startedAt: .now, cpuStart: cpuSeconds, servers: names.count, pending: names)
    }

    /// Marks `name` reconciled; returns the pass when that was its last server.
    func passReconciled(_ name: String) -> Pass? {
        guard pass?.pending.remove(name) != nil, pass?.pending.isEmpty == true else { return nil }
        defer { pass = nil }
        return pass
    }

    struct Health {
        var ready: Bool
        var storeError: String?
        var failureStreak: Int
        var lastError: String?
    }

    func health() -> Health { Health(ready: ready, storeError: storeError, failureStreak: failureStreak, lastError: lastError) }
    /// Returns true when the store went from writable to not, or back.
    func setStoreError(_ e: String?) -> Bool {
        defer { storeError = e }
        return (storeError == nil) != (e == nil)
    }

    /// Counts a reconcile's outcome; returns how often this key failed the same way in a row before.
    @discardableResult
    func reconciled(_ key: ReconcileKey, error: String?) -> Int {
        guard let error else {
            failureStreak = 0
            lastErrorByKey[key] = nil
            return 0
        }
        failureStreak += 1
        lastError = error
        let repeats = lastErrorByKey[key].map { $0.error == error ? $0.repeats + 1 : 0 } ?? 0
        lastErrorByKey[key] = (error, repeats)
        return repeats
    }

    /// Whether `snap` differs from the last sync's (by fingerprint), and the servers whose desired spec or
    /// verdict differs from what the last sync saw (none at the first sync: every server is swept alike).
    func syncedSnapshot(_ snap: DesiredStateSnapshot) -> (changed: Bool, servers: Set<String>) {
        defer {
            lastSyncedFingerprint = snap.fingerprint
            syncedServers = snap.desired.servers
            syncedIndex = snap.desired.serverIndex()
            syncedVerdicts = snap.verdicts
        }
        guard let last = lastSyncedFingerprint, last != snap.fingerprint else { return (false, []) }
        var servers = Set<String>()
        for s in snap.desired.servers where syncedIndex[s.name].map({ syncedServers[$0] }) != s || syncedVerdicts[s.name] != snap.verdicts[s.name] {
            servers.insert(s.name)
        }
        return (true, servers)
    }

    func startError(server: String, revision: String) -> String? { startErrors[server]?[revision] }
    func startErrors(server: String) -> [String: String] { startErrors[server] ?? [:] }
    func setStartError(server: String, revision: String, _ message: String?) { startErrors[server, default: [:]][revision] = message }
    /// Forgets start failures (of one server, or all): something changed that may let them start.
    func clearStartErrors(server: String?) {
        if let server { startErrors[server] = nil } else { startErrors = [:] }
    }

    /// The lines among `lines` not reported before (the rest were logged already).
    func newProblems(server: String, _ lines: [String]) -> [String] {
        let current = Set(lines)
        let old = loggedProblems[server] ?? []
        loggedProblems[server] = current
        return lines.filter { !old.contains($0) }
    }

    /// Returns true when the desired state changed.
    func setSnapshot(_ s: DesiredStateSnapshot) -> Bool {
        let changed = snapshot?.fingerprint != s.fingerprint || snapshot?.desired != s.desired
        snapshot = s
        desiredIndex = s.desired.serverIndex()
        for d in s.desired.servers { specs[d.name, default: [:]][d.revision] = d }
        return changed
    }

    /// When the probe loop next needs to look at a server (a probe due); nil: at the next tick. Forgotten
    /// whenever the server's live state changes, so new instances are probed at once.
    private var probeDueAt: [String: Int64] = [:]

    /// The snapshot and `name`'s desired spec in it (nil: not desired), read together.
    func snapshot(server name: String) -> (DesiredStateSnapshot, DesiredServer?)? {
        guard let snapshot else { return nil }
        return (snapshot, desiredIndex[name].map { snapshot.desired.servers[$0] })
    }

    func probeDue(_ server: String) -> Int64? { probeDueAt[server] }
    func setProbeDue(_ server: String, _ due: Int64?) { probeDueAt[server] = due }
    func liveServer(_ name: String) -> LiveServer? { liveIndex[name].map { lastLive!.servers[$0] } }

    func setLive(_ l: LiveState) {
        if l.servers != lastLive?.servers { probeDueAt = [:] }
        lastLive = l
        liveIndex = Dictionary(l.servers.enumerated().map { ($0.element.name, $0.offset) }, uniquingKeysWith: { a, _ in a })
    }

    /// Replaces (or adds, or with nil removes) one server's entry in the last live state.
    /// In place: a copy of the fleet's live state per server key would make a pass O(N²).
    func updateLive(server name: String, _ server: LiveServer?) {
        guard lastLive != nil else { return }
        if liveServer(name) != server { probeDueAt[name] = nil }
        if let i = liveIndex[name] {
            if let server {
                lastLive!.servers[i] = server
            } else {
                var live = lastLive!
                live.servers.remove(at: i)
                setLive(live)
            }
        } else if let server {
            liveIndex[name] = lastLive!.servers.count
            lastLive!.servers.append(server)
        }
    }
    func markReady() { ready = true }
    func spec(server: String, revision: String) -> DesiredServer? { specs[server]?[revision] }
    func setSettled(_ server: String, _ value: Bool) { settled[server] = value }
    /// Reconciles in a row of an unsettled server that changed nothing (reset by one that did).
    private var idlePolls: [String: Int] = [:]
    func pollIdle(_ server: String, progressed: Bool) -> Int {
        let n = progressed ? 0 : (idlePolls[server] ?? 0) + 1
        idlePolls[server] = n
        return n
    }
    func allSettled(_ names: [String]) -> Bool { names.allSatisfy { settled[$0] == true } }
    func known(_ server: String) -> [String: Set<String>] { knownInstances[server] ?? [:] }

    /// Returns true when a revision got endpoints it had not had before (worth a reconcile).
    func setKnown(_ server: String, _ k: [String: Set<String>]) -> Bool {
        let old = knownInstances[server] ?? [:]
        knownInstances[server] = k
        return k.contains { rev, ids in old[rev] == nil || !ids.isSubset(of: old[rev]!) }
    }

    func forget(_ server: String) {
        adopted[server] = nil
        settled[server] = nil
        idlePolls[server] = nil
        knownInstances[server] = nil
        specs[server] = nil
        startErrors[server] = nil
        loggedProblems[server] = nil
    }

    func beginProbe(_ key: String, limit: Int) -> Bool {
        guard awaitingAnswer.count < limit, !probing.contains(key) else { return false }
        probing.insert(key)
        awaitingAnswer.insert(key)
        return true
    }

    /// The server answered: the probe's slot is free, the instance stays in flight until `endProbe`.
    func probeAnswered(_ key: String) { awaitingAnswer.remove(key) }
    func endProbe(_ key: String) {
        probing.remove(key)
        awaitingAnswer.remove(key)
    }
    func probeSlotsFull(limit: Int) -> Bool { awaitingAnswer.count >= limit }
}
