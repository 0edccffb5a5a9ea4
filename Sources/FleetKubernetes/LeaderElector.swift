import Foundation

/// A change of leadership as one elector sees it.
public enum LeadershipEvent: Sendable, Equatable {
    /// This elector became the leader.
    case acquired
    /// This elector stopped being the leader (could not renew within the deadline, or released).
    case lost
    /// The lease's holder changed (nil: released, nobody holds it).
    case leaderChanged(String?)
}

/// Leader election on a `coordination.k8s.io/v1` Lease, with client-go's algorithm and defaults:
/// a candidate takes the lease when it is free or its holder has not renewed it for
/// `leaseDuration` (measured on the candidate's own clock from when it last saw the lease change, so
/// clock skew between nodes does not matter); the leader renews every `retryPeriod` and steps down when
/// it could not renew for `renewDeadline`; on shutdown it releases the lease so a successor takes over
/// at once instead of after `leaseDuration`. Every update is guarded by resourceVersion.
public actor LeaderElector {
    public nonisolated let identity: String
    public nonisolated let namespace: String
    public nonisolated let name: String
    public nonisolated let leaseDuration: Duration
    public nonisolated let renewDeadline: Duration
    public nonisolated let retryPeriod: Duration
    let client: KubeClient

    public private(set) var isLeader = false
    /// The holder as last seen in the lease (nil when free or not yet read).
    public private(set) var currentLeader: String?

    /// The lease as this elector last wrote it while holding it: a renewal starts from it (client-go's
    /// fast path), so holding the lease costs one write per `retryPeriod`, not a read and a write.
    private var held: KubeObject?
    private var observedSpec: JSONValue?
    private var observedTime: ContinuousClock.Instant?
    private var lastRenew: ContinuousClock.Instant?
    private var subscribers: [UUID: AsyncStream<LeadershipEvent>.Continuation] = [:]
    private let clock = ContinuousClock()

    public init(client: KubeClient, namespace: String, name: String = "mcpfleet-controller", identity: String? = nil,
                leaseDuration: Duration = .seconds(15), renewDeadline: Duration = .seconds(10), retryPeriod: Duration = .seconds(2)) {
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity ?? "\(ProcessInfo.processInfo.hostName)_\(UUID().uuidString.prefix(8).lowercased())"
        self.leaseDuration = leaseDuration
        self.renewDeadline = min(renewDeadline, leaseDuration)
        self.retryPeriod = retryPeriod
    }

    /// Leadership changes from now on; the stream ends when `run` returns.
    public func changes() -> AsyncStream<LeadershipEvent> {
        let (stream, continuation) = AsyncStream<LeadershipEvent>.makeStream()
        let id = UUID()
        subscribers[id] = continuation
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        return stream
    }

    private func unsubscribe(_ id: UUID) { subscribers[id] = nil }

    private func emit(_ event: LeadershipEvent) {
        for c in subscribers.values { c.yield(event) }
    }

    private func setLeader(_ leader: Bool) {
        guard leader != isLeader else { return }
        isLeader = leader
        emit(leader ? .acquired : .lost)
    }

    /// Campaigns and holds leadership until the calling task is cancelled, then releases the lease.
    /// After losing the lease it campaigns again.
    public func run() async {
        outer: while !Task.isCancelled {
            while await !tryAcquireOrRenew() {
                do { try await Task.sleep(for: jittered(retryPeriod)) } catch { break outer }
            }
            lastRenew = clock.now
            setLeader(true)
            while true {
                do { try await Task.sleep(for: retryPeriod) } catch { break outer }
                if await tryAcquireOrRenew() {
                    lastRenew = clock.now
                } else if let last = lastRenew, clock.now - last >= renewDeadline {
                    setLeader(false)
                    continue outer
                }
            }
        }
        if isLeader {
            // The calling task is cancelled, and a cancelled task's requests are aborted: release
            // from a fresh task that does not inherit the cancellation.
            let release = Task { await self.release() }
            await release.value
        }
        setLeader(false)
        for c in subscribers.values { c.finish() }
        subscribers = [:]
    }

    /// Gives the lease up (holder cleared, duration 1 s) if this elector holds it.
    public func release() async {
        guard let lease = try? await client.getIfPresent(.lease, namespace: namespace, name: name),
              lease.json[["spec", "holderIdentity"]]?.string == identity else { return }
        var json = lease.json
        var spec = json["spec"] ?? .object([])
        spec["holderIdentity"] = .string("")
        spec["leaseDurationSeconds"] = 1
        spec["renewTime"] = .string(Self.microTime(Date()))
        json["spec"] = spec
        held = nil
        if (try? await client.replace(KubeObject(json))) != nil {
            isLeader = false
            observe(spec)
        }
    }

    private func jittered(_ d: Duration) -> Duration {
        // client-go's JitterUntil with factor 1.2: spread candidates so they do not collide.
        d + .nanoseconds(Int64.random(in: 0...max(0, RetryPolicy.nanos(d) / 5)))
    }

    private func observe(_ spec: JSONValue) {
        if spec != observedSpec {
            observedSpec = spec
            observedTime = clock.now
            let holder = spec["holderIdentity"]?.string.flatMap { $0.isEmpty ? nil : $0 }
            if holder != currentLeader {
                currentLeader = holder
                emit(.leaderChanged(holder))
            }
        }
    }

    /// One attempt to take or renew the lease. Any API error counts as "not now".
    func tryAcquireOrRenew() async -> Bool {
        let now = Date()
        let seconds = Int64(max(1, leaseDuration.components.seconds))
        if let held, isLeader {
            // Renewed from the lease as we wrote it; its resourceVersion makes the write fail if anyone
            // wrote in between, and then the lease is read as below.
            var json = held.json
            var spec = json["spec"] ?? .object([])
            spec["renewTime"] = .string(Self.microTime(now))
            json["spec"] = spec
            if let written = try? await client.replace(KubeObject(json)) {
                self.held = written
                observe(spec)
                return true
            }
            self.held = nil
        }
        let existing: KubeObject?
        do {
            existing = try await client.getIfPresent(.lease, namespace: namespace, name: name)
        } catch {
            return false
        }
        guard let existing else {
            let spec = JSONValue.obj([
                "holderIdentity": .string(identity), "leaseDurationSeconds": .int(seconds),
                "acquireTime": .string(Self.microTime(now)), "renewTime": .string(Self.microTime(now)), "leaseTransitions": 0,
            ])
            let lease = KubeObject(.obj([
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": .obj(["name": .string(name), "namespace": .string(namespace),
                                  "labels": .strings([KubernetesRenderer.labelPartOf: "mcpfleet"])]),
                "spec": spec,
            ]))
            guard let written = try? await client.create(lease) else { return false }
            held = written
            observe(spec)
            return true
        }
        var spec = existing.json["spec"] ?? .object([])
        observe(spec)
        let holder = spec["holderIdentity"]?.string ?? ""
        if !holder.isEmpty, holder != identity, let seen = observedTime {
            let duration = Duration.seconds(spec["leaseDurationSeconds"]?.int ?? Int(seconds))
            if clock.now - seen < duration { return false }
        }
        if holder != identity {
            spec["acquireTime"] = .string(Self.microTime(now))
            spec["leaseTransitions"] = .int(Int64((spec["leaseTransitions"]?.int ?? 0) + 1))
        }
        spec["holderIdentity"] = .string(identity)
        spec["leaseDurationSeconds"] = .int(seconds)
        spec["renewTime"] = .string(Self.microTime(now))
        var json = existing.json
        json["spec"] = spec
        // `replace` sends the resourceVersion we read: a concurrent candidate's write makes ours fail.
        guard let written = try? await client.replace(KubeObject(json)) else { return false }
        held = written
        observe(spec)
        return true
    }

    /// RFC 3339 with exactly six fractional digits, as Kubernetes' MicroTime.
    static func microTime(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var seconds = time_t(t.rounded(.down))
        let micros = Int(((t - Double(seconds)) * 1_000_000).rounded(.down))
        var tm = tm()
        gmtime_r(&seconds, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", Int(tm.tm_year) + 1900, Int(tm.tm_mon) + 1, Int(tm.tm_mday),
                      Int(tm.tm_hour), Int(tm.tm_min), Int(tm.tm_sec), micros)
    }
}
