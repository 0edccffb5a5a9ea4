import FleetCore
import FleetHTTP
import Foundation
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization

/// A notification target with its secrets read (docs/designs/0012-telling-people-what-happened.md).
public struct ResolvedNotificationTarget: Sendable {
    public var target: NotificationTarget
    /// The webhook's URL, or GitHub's API base.
    public var url: String
    /// The URL came from a secret: it is never printed (errors say `<url from NAME/KEY>`).
    public var urlSecret: SecretReference?
    public var signingKey: [UInt8]?
    public var token: String?

    public init(target: NotificationTarget, url: String, urlSecret: SecretReference? = nil, signingKey: [UInt8]? = nil, token: String? = nil) {
        self.target = target
        self.url = url
        self.urlSecret = urlSecret
        self.signingKey = signingKey
        self.token = token
    }

    /// The request that delivers `event`, or nil when this target has nothing to say about it (a
    /// commit status needs a full, clean commit).
    public func request(for event: RolloutEvent, timeout: Duration) -> HTTPRequest? {
        var headers: HTTPHeaders = ["Content-Type": "application/json", "User-Agent": "mcpfleet"]
        switch target.kind {
        case .webhook:
            let body = event.webhookBody()
            headers.add(name: "X-Mcpfleet-Event", value: event.kind.rawValue)
            headers.add(name: "X-Mcpfleet-Delivery", value: event.id)
            if let key = signingKey { headers.add(name: Notifier.signatureHeader, value: RolloutEvent.signature(body: body, key: key)) }
            return HTTPRequest(method: "POST", url: url, headers: headers, body: body, timeout: timeout)
        case .slack:
            return HTTPRequest(method: "POST", url: url, headers: headers, body: event.slackBody(), timeout: timeout)
        case .github:
            guard let status = event.githubStatus(), let repository = target.repository else { return nil }
            headers.add(name: "Accept", value: "application/vnd.github+json")
            headers.add(name: "X-GitHub-Api-Version", value: "2022-11-28")
            if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
            let base = url.hasSuffix("/") ? String(url.dropLast()) : url
            return HTTPRequest(method: "POST", url: "\(base)/repos/\(repository)/statuses/\(status.sha)", headers: headers, body: status.body(), timeout: timeout)
        }
    }

    /// `text` with a secret URL replaced by where it comes from.
    func redact(_ text: String) -> String {
        guard let ref = urlSecret else { return text }
        return text.replacingOccurrences(of: url, with: "<url from \(ref.name)/\(ref.key)>")
    }
}

/// How hard the notifier tries one delivery.
public struct NotificationRetryPolicy: Sendable {
    /// Attempts per event (the first included); then the event is dropped, logged and counted.
    public var maxAttempts = 6
    public var initialBackoffMs: Int64 = 1_000
    public var maxBackoffMs: Int64 = 60_000
    public var requestTimeout: Duration = .seconds(10)
    /// Events waiting per target; beyond it the oldest are dropped (counted), so a receiver that is
    /// down for a day costs bounded memory.
    public var queueLimit = 1_000
    /// After a graceful shutdown begins, how long queued events may still take to go out.
    public var drainTimeoutMs: Int64 = 5_000

    public init() {}

    /// Exponential backoff with ±20 % jitter, capped.
    func backoffMs(afterAttempt attempt: Int) -> Int64 {
        let base = min(maxBackoffMs, initialBackoffMs << Int64(min(20, max(0, attempt - 1))))
        let jitter = Int64(Double(base) * Double.random(in: -0.2...0.2))
        return max(1, base + jitter)
    }
}

/// Sends rollout events to the environment's notification targets, off the controller's path:
/// `notify` only queues (it never waits on a receiver), one task per target delivers that target's
/// events in order, retrying a failed delivery with backoff (network errors, 5xx, 408, 429) before
/// moving on. A receiver that is down delays only its own events.
public final class Notifier: Service, Sendable {
    public static let signatureHeader = "X-Mcpfleet-Signature-256"

    final class Channel: Sendable {
        let target: ResolvedNotificationTarget
        let stream: AsyncStream<RolloutEvent>
        let continuation: AsyncStream<RolloutEvent>.Continuation

        init(_ target: ResolvedNotificationTarget, limit: Int) {
            self.target = target
            (stream, continuation) = AsyncStream.makeStream(of: RolloutEvent.self, bufferingPolicy: .bufferingNewest(max(1, limit)))
        }
    }

    public let environment: String
    let channels: [Channel]
    let transport: any HTTPTransport
    let clock: any ControllerClock
    let policy: NotificationRetryPolicy
    let logger: Logger
    let registry: PrometheusCollectorRegistry?
    /// Set when a graceful shutdown begins: deliveries stop retrying once the drain time is up.
    let drainDeadline = Mutex<Int64?>(nil)

    public init(environment: String, targets: [ResolvedNotificationTarget], transport: any HTTPTransport, clock: any ControllerClock = SystemClock(),
                policy: NotificationRetryPolicy = NotificationRetryPolicy(), logger: Logger = Logger(label: "mcpfleet.notify"),
                registry: PrometheusCollectorRegistry? = nil) {
        self.environment = environment
        channels = targets.map { Channel($0, limit: policy.queueLimit) }
        self.transport = transport
        self.clock = clock
        self.policy = policy
        self.logger = logger
        self.registry = registry
    }

    /// Queues the events `entry` stands for; returns at once.
    public func notify(_ entry: AuditEntry) {
        let events = RolloutEvent.events(for: entry, environment: environment)
        guard !events.isEmpty else { return }
        for channel in channels {
            for event in events where channel.target.target.wants(event) {
                if case .dropped(let old) = channel.continuation.yield(event) {
                    count(channel, old, "dropped")
                    logger.warning("notification queue full; dropped the oldest event", metadata: ["target": "\(channel.target.target.name)", "event": "\(old.kind.rawValue) \(old.server)"])
                }
            }
        }
    }

    /// Delivers until `finish()` (or a graceful shutdown) and the queues are drained.
    public func run() async {
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for channel in channels {
                    group.addTask { await self.deliver(channel) }
                }
            }
        } onGracefulShutdown: {
            self.finish()
        }
    }

    /// No more events: what is queued still goes out (retrying at most until the drain timeout).
    public func finish() {
        drainDeadline.withLock { if $0 == nil { $0 = clock.nowMs() + policy.drainTimeoutMs } }
        for channel in channels { channel.continuation.finish() }
    }

    func deliver(_ channel: Channel) async {
        for await event in channel.stream {
            await send(event, via: channel)
        }
    }

    func send(_ event: RolloutEvent, via channel: Channel) async {
        let t = channel.target
        guard let request = t.request(for: event, timeout: policy.requestTimeout) else { return }
        var attempt = 0
        while true {
            attempt += 1
            let failure: String
            let retryable: Bool
            do {
                let response = try await transport.send(request)
                if (200..<300).contains(response.status) {
                    count(channel, event, "sent")
                    logger.debug("notification sent", metadata: ["target": "\(t.target.name)", "event": "\(event.kind.rawValue)", "server": "\(event.server)"])
                    return
                }
                failure = "HTTP \(response.status)"
                retryable = response.status >= 500 || response.status == 408 || response.status == 429
            } catch {
                failure = t.redact("\(error)")
                retryable = !(error is CancellationError)
            }
            let deadline = drainDeadline.withLock { $0 }
            let pause = policy.backoffMs(afterAttempt: attempt)
            let outOfTime = deadline.map { clock.nowMs() + pause > $0 } ?? false
            if !retryable || attempt >= policy.maxAttempts || outOfTime || Task.isCancelled {
                count(channel, event, "failed")
                logger.error("notification not delivered", metadata: [
                    "target": "\(t.target.name)", "event": "\(event.kind.rawValue)", "server": "\(event.server)",
                    "attempts": "\(attempt)", "error": "\(failure)",
                ])
                return
            }
            count(channel, event, "retried")
            logger.warning("notification failed; retrying", metadata: [
                "target": "\(t.target.name)", "event": "\(event.kind.rawValue)", "attempt": "\(attempt)", "retry_in_ms": "\(pause)", "error": "\(failure)",
            ])
            do { try await clock.sleep(milliseconds: pause) } catch {
                count(channel, event, "failed")
                return
            }
        }
    }

    func count(_ channel: Channel, _ event: RolloutEvent, _ outcome: String) {
        registry?.makeCounter(descriptor: MetricNameDescriptor(namespace: "mcpfleet", metricName: "notifications", unitName: "total",
                                                               helpText: "Notification deliveries by target and outcome (sent, retried, failed, dropped)."),
                              labels: [("target", channel.target.target.name), ("type", channel.target.target.kind.rawValue), ("outcome", outcome)]).increment()
    }
}

/// A rollout store that forwards every audit entry it records to a `Notifier`: the audit log is the
/// one place every rollout step and operator action is written, so what the log says is what gets
/// announced, in the same order, and only after it was recorded.
public struct NotifyingRolloutStore: RolloutStoreDecorator {
    public let inner: any RolloutStore
    public let notifier: Notifier

    public init(_ inner: any RolloutStore, notifier: Notifier) {
        self.inner = inner
        self.notifier = notifier
    }

    public func appendAudit(_ entry: AuditEntry) async throws {
        try await inner.appendAudit(entry)
        notifier.notify(entry)
    }

    public func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        let saved = try await inner.saveIfUnchanged(record, then: then)
        if saved != nil {
            for case .audit(let entry) in then { notifier.notify(entry) }
        }
        return saved
    }

}
