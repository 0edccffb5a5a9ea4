import FleetCore
import FleetState
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Paths and limits the driver works with, resolved once.
struct LocalConfiguration: Sendable {
    var environmentName: String
    var manifestRoot: String
    var stateDirectory: String
    var logDirectory: String
    var secretsDirectory: String
    var bridgeScript: String
    var maxLogBytes: Int
    var keptLogs = 3
    var maxBackoff: Duration
    /// Restarts after a run at least this long start again from the shortest backoff.
    var stableRun: Duration = .seconds(10)
    var tickInterval: Duration = .milliseconds(200)
    /// How often the ports of instances already seen holding them are checked again.
    var portRecheck: Duration = .seconds(1)
    /// PATH, HOME and LANG of the controller: all an instance inherits.
    var inherited: [String: String]
    /// Sensitive plain values by digest, from the manifests as they are now. The state database keeps
    /// specs sealed (never the values), so a revision reloaded from it is made whole from here.
    var sensitiveValues: (@Sendable () -> [String: String])? = nil
}

/// Everything needed to start one instance.
struct LaunchPlan {
    var executable: String
    var argv: [String]
    var environment: [String]
    var workingDirectory: String
    var logPath: String
}

/// Owns the instances: starts, watches, restarts and stops them, and keeps the state database in step
/// so that a controller killed at any moment leaves no process it cannot find again.
actor LocalSupervisor {
    struct Key: Hashable, Sendable, Comparable {
        var server: String
        var slot: Int
        static func < (a: Key, b: Key) -> Bool { (a.server, a.slot) < (b.server, b.slot) }
    }

    enum Phase: Sendable {
        case running
        case backoff(reason: String, until: ContinuousClock.Instant)
        case stopping
    }

    struct Instance: Sendable {
        var row: LocalStateTables.InstanceRow
        var phase: Phase
        var launchedAt: ContinuousClock.Instant?
        /// Runs in a row that ended sooner than `stableRun`: the backoff exponent.
        var failures = 0
        /// Who holds the instance's port, as last checked (see `checkPorts`); nil: not checked since it started.
        var ownership: Ownership?
        var id: String { "\(row.server)-\(row.revision)-\(row.slot)" }
    }

    /// A port-ownership verdict and what it was made from: the process and the LISTEN socket inodes on
    /// the port. While both are the same, the verdict stands (a socket inode names one socket for its
    /// life), so a recheck costs one look-up in the kernel's listening table, not a walk of /proc.
    struct Ownership: Sendable {
        var pid: Int32
        var inodes: [UInt64]
        var verdict: PortOwnership.Verdict
    }

    /// The instances by server and slot: the live-state cache the supervisor's own events (start, exit,
    /// adoption, stop) keep current, read by server in O(that server's instances).
    struct InstanceTable: Sendable {
        private(set) var byServer: [String: [Int: Instance]] = [:]
        private(set) var count = 0

        subscript(key: Key) -> Instance? {
            get { byServer[key.server]?[key.slot] }
            set {
                let old = byServer[key.server]?[key.slot]
                if let newValue {
                    byServer[key.server, default: [:]][key.slot] = newValue
                    if old == nil { count += 1 }
                } else if old != nil {
                    byServer[key.server]![key.slot] = nil
                    if byServer[key.server]!.isEmpty { byServer[key.server] = nil }
                    count -= 1
                }
            }
        }

        /// One server's instances, by slot.
        func of(_ server: String) -> [Instance] { (byServer[server] ?? [:]).values.sorted { $0.row.slot < $1.row.slot } }
        func keys(of server: String) -> [Key] { (byServer[server] ?? [:]).keys.sorted().map { Key(server: server, slot: $0) } }
        var keys: [Key] { byServer.flatMap { server, slots in slots.keys.map { Key(server: server, slot: $0) } } }
        var values: [Instance] { byServer.values.flatMap(\.values) }
        var servers: Dictionary<String, [Int: Instance]>.Keys { byServer.keys }
    }

    let configuration: LocalConfiguration
    let tables: LocalStateTables
    let driverID: String
    static let markerVariable = "MCPFLEET_INSTANCE"
    private let clock = ContinuousClock()

    private var revisions: [String: [String: DesiredServer]] = [:] { didSet { generation &+= 1 } }
    private var instances = InstanceTable() { didSet { generation &+= 1 } }
    /// Changes with every write to `revisions`, `instances` or `tenants` (see `LocalDriver.liveGeneration`).
    /// Writes happen only on events: a tick or port check that finds nothing new writes nothing.
    private(set) var generation: UInt64 = 0
    /// When every running instance's port was last checked (starting ones are checked every tick).
    private var portsCheckedAt: ContinuousClock.Instant?
    private var logsCheckedAt: ContinuousClock.Instant?
    private var tenants: [String: DesiredTenant] = [:] {
        didSet {
            liveTenants = nil
            generation &+= 1
        }
    }
    /// `tenants` as observations report them (sorted once per change, not once per server key).
    private var liveTenants: [LiveTenant]?
    private var loop: Task<Void, Never>?
    private var lockFD: Int32 = -1
    private(set) var supervising = false

    init(configuration: LocalConfiguration, tables: LocalStateTables) throws {
        self.configuration = configuration
        self.tables = tables
        self.driverID = try tables.driverID()
    }

    /// The recorded state is read when first needed, not at construction: `start()` reads it anyway
    /// (under the supervision lock), and reading it twice — every revision's spec decoded from JSON, every
    /// recorded pid's identity checked in /proc — was a fifth of a no-op `apply`'s CPU at 1,000 instances.
    private var loaded = false

    private func ensureLoaded() throws {
        guard !loaded else { return }
        try reload()
    }

    private func reload() throws {
        (revisions, instances, tenants) = try Self.load(tables, clock: clock)
        loaded = true
        // `load` just checked every recorded pid's identity: the tick's next check is a `portRecheck` away.
        logsCheckedAt = clock.now
    }

    /// Reads the recorded state; an instance counts as running only when its pid is alive and started
    /// when recorded (so a recycled pid is never taken for ours).
    private static func load(_ tables: LocalStateTables, clock: ContinuousClock) throws
        -> ([String: [String: DesiredServer]], InstanceTable, [String: DesiredTenant]) {
        var revisions: [String: [String: DesiredServer]] = [:]
        for spec in try tables.revisions() { revisions[spec.name, default: [:]][spec.revision] = spec }
        var instances = InstanceTable()
        for row in try tables.instances() {
            var row = row
            let alive = row.pid.flatMap { pid in row.startTime.map { ProcessControl.isAlive(pid, startTime: $0) } } ?? false
            if !alive {
                row.pid = nil
                row.startTime = nil
            }
            let phase: Phase = row.intent == "stop" ? .stopping : alive ? .running : .backoff(reason: row.reason ?? "not running", until: clock.now)
            instances[Key(server: row.server, slot: row.slot)] = Instance(row: row, phase: phase)
        }
        let tenants = Dictionary(try tables.tenants().map { ($0.name, $0) }, uniquingKeysWith: { _, b in b })
        return (revisions, instances, tenants)
    }

    // MARK: Supervision

    /// Takes the state directory's lock, adopts or stops what a previous controller left, and starts watching.
    func start() async throws {
        guard !supervising else { return }
        let lockPath = configuration.stateDirectory + "/supervisor.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw DriverError(configuration.stateDirectory, "cannot open \(lockPath): \(ProcessControl.errorText())") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw DriverError(configuration.stateDirectory, "another mcpfleet process is supervising this state directory")
        }
        lockFD = fd
        supervising = true
        do {
            try reload()
            try await recover()
            // Who holds each adopted instance's port, known before the first observe: else a controller
            // starting over sees its running fleet as "starting" until the first tick.
            checkPorts(force: true)
        } catch {
            supervising = false
            close(fd)
            lockFD = -1
            throw error
        }
        loop = Task { [configuration] in
            while !Task.isCancelled {
                await self.tick()
                do { try await Task.sleep(for: configuration.tickInterval) } catch { break }
            }
        }
    }

    /// Finds instances started just before a previous controller died (pid not yet recorded) by the
    /// marker in their environment; adopts those the database expects and stops the rest.
    private func recover() async throws {
        var strays: [(pid_t, Int64)] = []
        for found in ProcessControl.findMarked(variable: Self.markerVariable, prefix: driverID + "/") {
            let parts = found.value.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, let slot = Int(parts[2]) else { continue }
            let key = Key(server: String(parts[0]), slot: slot)
            guard var inst = instances[key], inst.row.revision == parts[1], inst.row.intent == "run" else {
                strays.append((found.pid, found.startTime))
                continue
            }
            if inst.row.pid == found.pid { continue }
            if inst.row.pid != nil {
                strays.append((found.pid, found.startTime)) // a duplicate of a live, recorded instance
                continue
            }
            inst.row.pid = found.pid
            inst.row.startTime = found.startTime
            inst.row.reason = nil
            inst.phase = .running
            try tables.updateProcess(inst.row)
            instances[key] = inst
        }
        if !strays.isEmpty { await terminate(strays) }
        let stopping = instances.keys.filter { if case .stopping = instances[$0]!.phase { return true } else { return false } }
        if !stopping.isEmpty { try await stopAndForget(stopping) }
    }

    func shutdown(stopInstances: Bool) async {
        loop?.cancel()
        await loop?.value
        loop = nil
        if stopInstances {
            do { try ensureLoaded() } catch {}
            let running = instances.keys.filter { instances[$0]!.row.pid != nil }
            await terminate(running.compactMap { k in instances[k].flatMap { i in i.row.pid.map { ($0, i.row.startTime ?? -1) } } })
            for key in running {
                guard var inst = instances[key] else { continue }
                inst.row.pid = nil
                inst.row.startTime = nil
                inst.row.reason = "stopped with the controller"
                inst.phase = .backoff(reason: "stopped with the controller", until: clock.now)
                instances[key] = inst
                // Kept with intent "run": the next controller on this state directory starts it again.
                do { try tables.updateProcess(inst.row) } catch {}
            }
        }
        if lockFD >= 0 {
            close(lockFD)
            lockFD = -1
        }
        supervising = false
    }

    func tick() async {
        let now = clock.now
        // Logs are measured once per `portRecheck` (a second), not every tick: a log may outgrow its
        // bound by a second's output before it is rotated.
        let checkLogs = logsCheckedAt.map { now - $0 >= configuration.portRecheck } ?? true
        if checkLogs { logsCheckedAt = now }
        // Over the table as it was at the start of the tick (exits and launches update it meanwhile);
        // no sorted copy of every key each tick.
        for (server, slots) in instances.byServer {
            for (slot, inst) in slots {
                step(Key(server: server, slot: slot), inst, now: now, checkLogs: checkLogs)
            }
        }
        checkPorts(force: false)
    }

    private func step(_ key: Key, _ inst: Instance, now: ContinuousClock.Instant, checkLogs: Bool) {
        switch inst.phase {
        case .running:
            if let status = exitStatus(inst, checkIdentity: checkLogs) {
                handleExit(key, status)
            } else if checkLogs {
                rotateLogIfNeeded(logPath(inst.row))
            }
        case .backoff(_, let until):
            if inst.row.intent == "run" && now >= until { launch(key, countRestart: true) }
        case .stopping:
            break
        }
    }

    /// Checks who holds the ports of running instances: at once for those not yet seen listening on
    /// their own port (starting, or another process on it), every `portRecheck` for the rest. One read
    /// of the kernel's listening table per check; the process tree is walked only for an instance whose
    /// port's listeners changed since its last verdict. So `observe` and `endpoints` read verdicts
    /// instead of connecting to every instance (design 0006: ready only while its own process holds its port).
    func checkPorts(force: Bool) {
        let now = clock.now
        let sweep = force || portsCheckedAt.map { now - $0 >= configuration.portRecheck } ?? true
        var keys: [Key] = []
        for (server, slots) in instances.byServer {
            for (slot, inst) in slots {
                guard case .running = inst.phase, let pid = inst.row.pid else { continue }
                if sweep || inst.ownership?.pid != pid || inst.ownership?.verdict != .owned { keys.append(Key(server: server, slot: slot)) }
            }
        }
        if sweep { portsCheckedAt = now }
        guard !keys.isEmpty else { return }
        let listeners = PortOwnership.Listeners.read()
        for key in keys {
            guard var inst = instances[key], let pid = inst.row.pid else { continue }
            let inodes = listeners.inodes(port: inst.row.port).sorted()
            if let o = inst.ownership, o.pid == pid, o.inodes == inodes, o.verdict != .unknown { continue }
            var verdict = PortOwnership.verdict(port: inst.row.port, pid: pid, listeners: listeners)
            if case .unknown = verdict {
                // No socket tables here (not Linux): a plain connect is all there is to go by.
                verdict = ProcessControl.isListening(port: inst.row.port) ? .unknown : .free
            }
            inst.ownership = Ownership(pid: pid, inodes: inodes, verdict: verdict)
            instances[key] = inst
        }
    }

    /// The process's end, if it ended; nil while it runs. Our children are reaped with waitpid; adopted
    /// processes (not our children) are watched through kill(pid, 0) and their /proc start time.
    /// An adopted process is looked for every tick (`kill(pid, 0)`); whether the pid is still the process
    /// adopted (its start time in /proc) is checked with `checkIdentity`, once a second: reading /proc for
    /// every adopted instance every tick was a tenth of an idle controller's CPU at 1,000 instances.
    private func exitStatus(_ inst: Instance, checkIdentity: Bool = true) -> ExitStatus? {
        guard let pid = inst.row.pid else { return .vanished }
        switch ProcessControl.reap(pid) {
        case .running:
            return nil
        case .exited(let status):
            // Anything the leader left in its group (a bridged stdio server) goes with it.
            ProcessControl.signalGroup(pid, SIGKILL)
            return status
        case .notOurChild:
            if !checkIdentity { return kill(pid, 0) == 0 || errno == EPERM ? nil : .vanished }
            return ProcessControl.isAlive(pid, startTime: inst.row.startTime ?? -1) ? nil : .vanished
        }
    }

    private func handleExit(_ key: Key, _ status: ExitStatus) {
        guard var inst = instances[key] else { return }
        let now = clock.now
        let ranLong = inst.launchedAt.map { now - $0 >= configuration.stableRun } ?? true
        inst.failures = ranLong ? 1 : inst.failures + 1
        let delay = backoff(afterFailures: inst.failures)
        inst.phase = .backoff(reason: status.description, until: now.advanced(by: delay))
        inst.row.pid = nil
        inst.row.startTime = nil
        inst.row.reason = status.description
        instances[key] = inst
        appendLog(inst.row, "mcpfleet: \(inst.id) \(status); restarting in \(delay)")
        do { try tables.updateProcess(inst.row) } catch {}
    }

    /// The restart delay (`spec.local.restartBackoff` is its bound): 1 s after the first exit, doubling
    /// with each exit in a row up to the bound; a run of `stableRun` (10 s) or more starts again at 1 s.
    private func backoff(afterFailures failures: Int) -> Duration {
        let seconds = 1 << min(max(failures - 1, 0), 20)
        return min(.seconds(seconds), configuration.maxBackoff)
    }

    /// Starts (or restarts) an instance whose row is already in the database — unless its port is taken
    /// by another process (then it waits, naming the holder) or it cannot start at all (then it says so,
    /// and marks the instance unstartable: retrying will not help).
    private func launch(_ key: Key, countRestart: Bool) {
        guard var inst = instances[key] else { return }
        let now = clock.now
        guard var spec = revisions[key.server]?[inst.row.revision] else {
            inst.phase = .backoff(reason: "revision \(inst.row.revision) is not recorded", until: now.advanced(by: configuration.maxBackoff))
            instances[key] = inst
            return
        }
        if !spec.sealedDigests.isEmpty {
            // Reloaded from the state database, which never holds sensitive values.
            if spec.unseal(configuration.sensitiveValues?() ?? [:]).isEmpty {
                revisions[key.server]?[inst.row.revision] = spec
            } else {
                inst.phase = .backoff(reason: "revision \(inst.row.revision) has sensitive values the state does not keep and the manifests no longer carry; it starts again when the controller applies a revision",
                                      until: now.advanced(by: configuration.maxBackoff))
                instances[key] = inst
                return
            }
        }
        if countRestart { inst.row.restarts += 1 }
        func refuse(_ reason: String, unstartable: Bool) {
            inst.failures += 1
            inst.row.reason = reason
            inst.row.unstartable = unstartable
            if inst.row.pid == nil {
                inst.phase = .backoff(reason: reason, until: now.advanced(by: backoff(afterFailures: inst.failures)))
            }
            instances[key] = inst
            appendLog(inst.row, "mcpfleet: not starting \(inst.id): \(reason)")
            do { try tables.updateProcess(inst.row) } catch {}
        }
        let plan: LaunchPlan
        do {
            plan = try self.plan(spec, slot: inst.row.slot, port: inst.row.port)
        } catch {
            let e = error as? DriverError
            return refuse(e?.message ?? String(describing: error), unstartable: e?.terminal ?? false)
        }
        if case .foreign(let holders) = PortOwnership.holders(port: inst.row.port) {
            let who = holders.isEmpty ? "another process" : holders.map(\.description).joined(separator: ", ")
            return refuse("port \(inst.row.port) is already in use by \(who)", unstartable: false)
        }
        do {
            rotateLogIfNeeded(plan.logPath)
            appendLog(inst.row, "mcpfleet: starting \(inst.id) on port \(inst.row.port)" + (inst.row.restarts > 0 ? " (restart \(inst.row.restarts))" : ""))
            let pid = try ProcessControl.spawn(executable: plan.executable, argv: plan.argv, environment: plan.environment,
                                               workingDirectory: plan.workingDirectory, logPath: plan.logPath)
            inst.row.pid = pid
            // Set at fork and kept across exec; the child is ours and unreaped, so /proc/<pid> exists.
            inst.row.startTime = ProcessControl.stat(pid)?.startTime ?? -1
            // `reason` keeps the last exit: while the new process comes up, it says why it restarted.
            inst.row.unstartable = false
            inst.phase = .running
            inst.launchedAt = now
            instances[key] = inst
            try tables.updateProcess(inst.row)
        } catch let e as SpawnError {
            // posix_spawn reports exec failures (no such file, not executable, bad interpreter): permanent.
            refuse(e.description, unstartable: true)
        } catch {
            refuse(String(describing: error), unstartable: false)
        }
    }

    /// SIGTERM to each process group, up to 5 s for them to exit, then SIGKILL; children are reaped.
    private func terminate(_ processes: [(pid: pid_t, startTime: Int64)]) async {
        var waiting = processes.filter { p in
            if case .running = ProcessControl.reap(p.pid) { return true }
            return ProcessControl.isAlive(p.pid, startTime: p.startTime)
        }
        for p in waiting { ProcessControl.signalGroup(p.pid, SIGTERM) }
        let deadline = clock.now.advanced(by: .seconds(5))
        var killed = false
        while !waiting.isEmpty {
            waiting.removeAll { p in
                switch ProcessControl.reap(p.pid) {
                case .exited:
                    ProcessControl.signalGroup(p.pid, SIGKILL)
                    return true
                case .running: return false
                case .notOurChild: return !ProcessControl.isAlive(p.pid, startTime: p.startTime)
                }
            }
            if waiting.isEmpty { break }
            if !killed && clock.now >= deadline {
                for p in waiting { ProcessControl.signalGroup(p.pid, SIGKILL) }
                killed = true
            } else if killed && clock.now >= deadline.advanced(by: .seconds(5)) {
                break
            }
            do { try await Task.sleep(for: .milliseconds(25)) } catch {}
        }
    }

    /// Stops instances (already marked "stop" in the database) and forgets them.
    private func stopAndForget(_ keys: [Key]) async throws {
        var processes: [(pid_t, Int64)] = []
        for key in keys {
            guard var inst = instances[key] else { continue }
            inst.phase = .stopping
            inst.row.intent = "stop"
            instances[key] = inst
            if let pid = inst.row.pid { processes.append((pid, inst.row.startTime ?? -1)) }
        }
        await terminate(processes)
        for key in keys {
            if let inst = instances[key] { appendLog(inst.row, "mcpfleet: stopped \(inst.id)") }
            try tables.deleteInstance(server: key.server, slot: key.slot)
            instances[key] = nil
        }
    }

    // MARK: Driver operations

    func scale(_ spec: DesiredServer, replicas: Int) async throws {
        let resource = "server/\(spec.name)"
        guard replicas >= 0 else { throw DriverError(resource, "replicas must not be negative (got \(replicas))", terminal: true) }
        guard let basePort = spec.port else {
            throw DriverError(resource, "has no transport.port; the local driver places instances on ports from it", terminal: true)
        }
        if replicas > 0 { _ = try plan(spec, slot: 0, port: basePort) } // fail before recording anything
        try await start()
        try tables.saveRevision(spec, now: Int64(Date().timeIntervalSince1970 * 1000))
        revisions[spec.name, default: [:]][spec.revision] = spec
        try await resize(spec, replicas: replicas)
    }

    /// Resizes a revision from the definition stored for it (`scale` stored it), never rewriting it.
    func rescale(server: String, revision: String, replicas: Int) async throws {
        try ensureLoaded()
        let resource = "server/\(server)"
        guard replicas >= 0 else { throw DriverError(resource, "replicas must not be negative (got \(replicas))", terminal: true) }
        guard let spec = revisions[server]?[revision] else {
            guard replicas == 0 else { throw DriverError.noKeptDefinition(server: server, revision: revision) }
            // Stopping what still runs needs no definition.
            let victims = instances.keys(of: server).filter { instances[$0]!.row.revision == revision && instances[$0]!.row.intent == "run" }
            guard !victims.isEmpty else { return }
            try await start()
            try tables.markStopping(server: server, slots: victims.map(\.slot))
            try await stopAndForget(victims)
            return
        }
        if replicas > 0, let basePort = spec.port { _ = try plan(spec, slot: 0, port: basePort) } // fail before starting anything
        try await start()
        try await resize(spec, replicas: replicas)
    }

    private func resize(_ spec: DesiredServer, replicas: Int) async throws {
        guard let basePort = spec.port else {
            throw DriverError("server/\(spec.name)", "has no transport.port; the local driver places instances on ports from it", terminal: true)
        }
        let current = instances.keys(of: spec.name).filter { instances[$0]!.row.revision == spec.revision && instances[$0]!.row.intent == "run" }
        if current.count < replicas {
            var used = Set(instances.keys(of: spec.name).map(\.slot))
            var rows: [LocalStateTables.InstanceRow] = []
            for _ in current.count..<replicas {
                var slot = 0
                while used.contains(slot) { slot += 1 }
                used.insert(slot)
                rows.append(.init(server: spec.name, slot: slot, revision: spec.revision, port: basePort + slot, tenant: spec.tenant,
                                  pid: nil, startTime: nil, restarts: 0, intent: "run"))
            }
            // Recorded before spawning: a controller killed in between finds the rows (and, by marker, the processes).
            try tables.insert(rows)
            for row in rows {
                let key = Key(server: row.server, slot: row.slot)
                instances[key] = Instance(row: row, phase: .backoff(reason: "starting", until: clock.now))
                launch(key, countRestart: false)
            }
        } else if current.count > replicas {
            let victims = Array(current.suffix(current.count - replicas))
            try tables.markStopping(server: spec.name, slots: victims.map(\.slot))
            try await stopAndForget(victims)
        }
    }

    func removeRevision(server: String, revision: String) async throws {
        try ensureLoaded()
        let victims = instances.keys(of: server).filter { instances[$0]!.row.revision == revision }
        if !victims.isEmpty {
            try await start()
            try tables.markStopping(server: server, slots: victims.map(\.slot))
            try await stopAndForget(victims)
        }
        try tables.deleteRevision(server: server, revision: revision)
        revisions[server]?[revision] = nil
        if revisions[server]?.isEmpty == true { revisions[server] = nil }
    }

    func removeServer(named name: String) async throws {
        try ensureLoaded()
        let known = Set((revisions[name] ?? [:]).keys).union(instances.of(name).map(\.row.revision))
        for revision in known.sorted() { try await removeRevision(server: name, revision: revision) }
    }

    func ensureTenant(_ tenant: DesiredTenant) throws {
        try ensureLoaded()
        try tables.saveTenant(tenant)
        tenants[tenant.name] = tenant
    }

    func removeTenant(named name: String) throws {
        try ensureLoaded()
        try tables.deleteTenant(name)
        tenants[name] = nil
    }

    /// Live state from the supervisor's table (O(the scope's instances)). Without supervision (a one-shot
    /// command beside no controller, or beside one in another process) the table is read from the
    /// database first and every running instance's port checked once.
    func observe(_ scope: ObserveScope = .all) throws -> LiveState {
        if !supervising {
            try reload()
            checkPorts(force: true)
        }
        let context = ObserveContext(supervised: supervising || supervisedElsewhere())
        let names: [String]
        switch scope {
        case .all: names = Set(revisions.keys).union(instances.servers).sorted()
        case .server(let name): names = revisions[name] != nil || instances.byServer[name] != nil ? [name] : []
        }
        var servers: [LiveServer] = []
        for name in names {
            let specs = revisions[name] ?? [:]
            let mine = instances.of(name)
            var live: [LiveRevision] = []
            for revision in Set(specs.keys).union(mine.map(\.row.revision)).sorted() {
                let group = mine.filter { $0.row.revision == revision && $0.row.intent == "run" }
                let reported = mine.filter { $0.row.revision == revision }.map { liveInstance($0, context) }
                live.append(LiveRevision(revision: revision, version: specs[revision]?.version, replicas: group.count,
                                         ready: reported.filter { $0.state == .running && $0.healthy }.count,
                                         fields: specs[revision]?.fields, instances: reported))
            }
            let tenant = specs.values.first?.tenant ?? mine.first?.row.tenant
            servers.append(LiveServer(name: name, tenant: tenant, revisions: live))
        }
        return LiveState(environment: configuration.environmentName, driver: DriverKind.local.rawValue, servers: servers,
                         tenants: sortedLiveTenants())
    }

    private func sortedLiveTenants() -> [LiveTenant] {
        if let liveTenants { return liveTenants }
        let sorted = tenants.values.sorted { $0.name < $1.name }.map { LiveTenant(name: $0.name, fields: $0.fields) }
        liveTenants = sorted
        return sorted
    }

    struct ObserveContext {
        /// This driver or another process (a running controller) supervises the state directory.
        var supervised: Bool
    }

    /// True when another process holds the supervision lock (a controller runs on this state directory).
    func supervisedElsewhere() -> Bool {
        let fd = open(configuration.stateDirectory + "/supervisor.lock", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return errno == EWOULDBLOCK }
        flock(fd, LOCK_UN)
        return false
    }

    private func liveInstance(_ inst: Instance, _ context: ObserveContext) -> LiveInstance {
        let row = inst.row
        switch inst.phase {
        case .stopping:
            return LiveInstance(id: inst.id, revision: row.revision, slot: row.slot, port: row.port, pid: row.pid.map(Int.init), state: .stopping,
                                healthy: false, restarts: row.restarts)
        case .backoff(let reason, _):
            // No countdown here: reasons are compared and recorded, and must stay the same while nothing changes.
            let detail = context.supervised ? reason : "\(reason) (no controller is supervising)"
            return LiveInstance(id: inst.id, revision: row.revision, slot: row.slot, port: row.port, state: .failed, healthy: false,
                                reason: detail, restarts: row.restarts, logTail: logTail(row), unstartable: row.unstartable ? true : nil)
        case .running:
            // Ready as far as the driver can tell only when the port's listener is this instance's own
            // process (or a descendant): a foreign process on the port is never taken for the replica.
            // The verdict is the supervisor's last check of this process (`checkPorts`), not checked here.
            let verdict = inst.ownership.flatMap { $0.pid == row.pid ? $0.verdict : nil } ?? .free
            let owned = verdict == .owned || verdict == .unknown
            let problem = verdict.problem(port: row.port, instancePid: row.pid)
            var foreign = false
            if case .foreign = verdict { foreign = true }
            // Coming up again after an exit: say which, and show what it printed.
            let restarted = problem != nil && row.restarts > 0 && row.reason != nil
            let reason = problem.map { restarted ? "\($0) (restart \(row.restarts); last exit: \(row.reason!))" : $0 }
            return LiveInstance(id: inst.id, revision: row.revision, slot: row.slot, port: row.port, pid: row.pid.map(Int.init),
                                state: owned ? .running : .starting, healthy: owned, reason: reason, restarts: row.restarts,
                                logTail: foreign || restarted ? logTail(row) : nil)
        }
    }

    /// The last lines the instance wrote (its own output, not mcpfleet's notes), each bounded, with the
    /// values of its secrets replaced: status, history and the audit log show these.
    func logTail(_ row: LocalStateTables.InstanceRow, lines: Int = 5) -> [String]? {
        let path = logPath(row)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let size = lseek(fd, 0, SEEK_END)
        let start = max(0, size - 8192)
        guard lseek(fd, start, SEEK_SET) >= 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: Int(size - start))
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        var text = String(decoding: buffer[0..<n], as: UTF8.self)
        if let spec = revisions[row.server]?[row.revision] {
            for variable in spec.env {
                guard let ref = variable.secretRef, let value = try? readSecret(ref, resource: "", variable: variable.name), value.count >= 4 else { continue }
                text = text.replacingOccurrences(of: value, with: "[secret \(variable.name)]")
            }
        }
        var out = text.split(whereSeparator: \.isNewline).map { String($0).trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("mcpfleet: ") }
        if start > 0, !out.isEmpty { out.removeFirst() }  // likely cut mid-line
        // The last `lines` distinct lines, in the order they last appeared: a crash loop prints the same
        // few lines on every start, and each is worth showing once.
        var seen = Set<String>()
        var tail: [String] = []
        for line in out.reversed() where seen.insert(line).inserted {
            tail.insert(line.count > 200 ? String(line.prefix(199)) + "…" : line, at: 0)
            if tail.count == lines { break }
        }
        return tail.isEmpty ? nil : tail
    }

    /// Instances to probe: running, and listening on their port themselves (never a port another
    /// process holds — a probe there would test the wrong server).
    func endpoints(server: String, revision: String) throws -> [Endpoint] {
        if !supervising {
            try reload()
            checkPorts(force: true)
        }
        let path = revisions[server]?[revision]?.path ?? "/mcp"
        return instances.of(server).filter { $0.row.revision == revision && $0.row.intent == "run" }
            .filter { if case .running = $0.phase { return true } else { return false } }
            .filter { inst in
                guard let pid = inst.row.pid, let o = inst.ownership, o.pid == pid else { return false }
                return o.verdict == .owned || o.verdict == .unknown
            }
            .sorted { $0.row.slot < $1.row.slot }
            .map { Endpoint(instance: $0.id, host: "127.0.0.1", port: $0.row.port, path: path) }
    }

    // MARK: Launch plans, logs

    private func logPath(_ row: LocalStateTables.InstanceRow) -> String {
        "\(configuration.logDirectory)/\(row.server)/\(row.server)-\(row.revision)-\(row.slot).log"
    }

    /// argv, environment and directory of one instance. Errors name the server and, for secrets, the
    /// reference — never a value.
    func plan(_ spec: DesiredServer, slot: Int, port: Int) throws -> LaunchPlan {
        let resource = "server/\(spec.name)"
        guard spec.sealedDigests.isEmpty else {
            throw DriverError(resource, "revision \(spec.revision) lacks its sensitive values (sealed); it cannot start", terminal: true)
        }
        guard let command = spec.command, let program = command.first, !program.isEmpty else {
            throw DriverError(resource, "has no artifact.command; the local driver runs commands", terminal: true)
        }
        let manifestDir = Self.join(configuration.manifestRoot, spec.manifestDirectory == "." ? "" : spec.manifestDirectory)
        func substitute(_ s: String) -> String {
            s.replacingOccurrences(of: "${PORT}", with: String(port))
                .replacingOccurrences(of: "${REPLICA}", with: String(slot))
                .replacingOccurrences(of: "${MANIFEST_DIR}", with: manifestDir)
        }
        let workingDirectory = spec.workingDirectory.map { Self.absolute(substitute($0), against: manifestDir) } ?? manifestDir
        guard ProcessControl.isDirectory(workingDirectory) else {
            throw DriverError(resource, "working directory \(workingDirectory) does not exist", terminal: true)
        }

        var env: [(String, String)] = []
        let searchPath = configuration.inherited["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        env.append(("PATH", searchPath))
        for name in ["HOME", "LANG"] { if let v = configuration.inherited[name] { env.append((name, v)) } }
        for variable in spec.env {
            if let ref = variable.secretRef {
                env.append((variable.name, try readSecret(ref, resource: resource, variable: variable.name)))
            } else if let value = variable.value {
                env.append((variable.name, value))
            }
        }
        env.append(("PORT", String(port)))
        env.append(("MCP_PORT", String(port)))
        env.append((Self.markerVariable, "\(driverID)/\(spec.name)/\(spec.revision)/\(slot)"))
        // Later entries win, as in a shell: the driver's own variables cannot be overridden by accident.
        var seen = Set<String>()
        let environment = env.reversed().filter { seen.insert($0.0).inserted }.reversed().map { "\($0.0)=\($0.1)" }

        let args = command.map(substitute)
        let resolved: String
        if args[0].contains("/") {
            resolved = Self.absolute(args[0], against: workingDirectory)
            guard access(resolved, X_OK) == 0 else { throw DriverError(resource, "command \(resolved) is not an executable file", terminal: true) }
        } else {
            guard let found = ProcessControl.which(args[0], searchPath: searchPath) else {
                throw DriverError(resource, "command \(args[0]) not found on PATH", terminal: true)
            }
            resolved = found
        }
        var executable = resolved
        var argv = [args[0]] + args.dropFirst()
        if spec.transport == .stdio {
            guard let python = ProcessControl.which("python3", searchPath: searchPath) else {
                throw DriverError(resource, "a stdio server needs python3 on PATH for the mcpfleet stdio bridge", terminal: true)
            }
            executable = python
            argv = ["python3", configuration.bridgeScript, "--host", "127.0.0.1", "--port", String(port), "--path", spec.path, "--", resolved] + args.dropFirst()
        }
        let logDir = "\(configuration.logDirectory)/\(spec.name)"
        do { try SQLiteDatabase.makeDirectories(logDir) } catch {
            throw DriverError(resource, "cannot create log directory \(logDir)")
        }
        return LaunchPlan(executable: executable, argv: argv, environment: environment, workingDirectory: workingDirectory,
                          logPath: "\(logDir)/\(spec.name)-\(spec.revision)-\(slot).log")
    }

    private func readSecret(_ ref: SecretReference, resource: String, variable: String) throws -> String {
        let safe = { (s: String) in !s.isEmpty && !s.contains("/") && s != "." && s != ".." }
        guard safe(ref.name), safe(ref.key) else {
            throw DriverError(resource, "env \(variable): \(ref) is not a valid secret reference", terminal: true)
        }
        let path = "\(configuration.secretsDirectory)/\(ref.name)/\(ref.key)"
        guard let data = FileManager.default.contents(atPath: path) else {
            // Terminal: the revision cannot start as written; it fails at once instead of retrying until the deadline.
            throw DriverError(resource, "env \(variable): \(ref) not found (no readable file \(path))", terminal: true)
        }
        // An environment value ends at a NUL: a secret holding one would be cut short without a word.
        if data.contains(0) { throw DriverError(resource, "env \(variable): \(ref) contains a NUL byte, which an environment variable cannot hold", terminal: true) }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw DriverError(resource, "env \(variable): \(ref) is not valid UTF-8", terminal: true)
        }
        var value = text
        // Files written with `echo` end in a newline that is not part of the secret.
        if value.hasSuffix("\n") { value.removeLast() }
        return value
    }

    private func appendLog(_ row: LocalStateTables.InstanceRow, _ line: String) {
        let path = logPath(row)
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Copies the log aside and truncates it in place (as logrotate's copytruncate): the instance keeps
    /// writing to the descriptor it has, which may outlive this controller, so the file cannot be swapped.
    func rotateLogIfNeeded(_ path: String) {
        guard let size = ProcessControl.fileSize(path), size >= configuration.maxLogBytes else { return }
        let keep = configuration.keptLogs
        _ = unlink("\(path).\(keep)")
        if keep > 1 {
            for i in stride(from: keep - 1, through: 1, by: -1) { _ = rename("\(path).\(i)", "\(path).\(i + 1)") }
        }
        guard copyFile(path, "\(path).1") else { return }
        _ = truncate(path, 0)
    }

    private func copyFile(_ from: String, _ to: String) -> Bool {
        let input = open(from, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { return false }
        defer { close(input) }
        let output = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard output >= 0 else { return false }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return n == 0 }
            let written = buffer.withUnsafeBytes { write(output, $0.baseAddress, n) }
            guard written == n else { return false }
        }
    }

    static func absolute(_ path: String, against base: String) -> String {
        path.hasPrefix("/") ? path : join(base, path)
    }

    static func join(_ a: String, _ b: String) -> String {
        if b.isEmpty { return a }
        return a.hasSuffix("/") ? a + b : a + "/" + b
    }
}
