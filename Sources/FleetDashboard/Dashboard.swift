import FleetController
import FleetCore
import FleetGateway
import Foundation

/// Where the dashboard's data comes from: the controller's view of the fleet (the process serving the
/// dashboard runs the controller). Each closure is asked per request or per event; none may return a
/// secret (the view models carry none).
public struct DashboardFeed: Sendable {
    public var fleet: @Sendable () async throws -> FleetStatusView
    public var server: @Sendable (_ name: String) async throws -> ServerStatusDetail?
    /// Bumped when something the pages show may have changed (a rollout record, history or audit written).
    public var changes: FleetChanges

    public init(fleet: @escaping @Sendable () async throws -> FleetStatusView, server: @escaping @Sendable (_ name: String) async throws -> ServerStatusDetail?,
                changes: FleetChanges) {
        self.fleet = fleet
        self.server = server
        self.changes = changes
    }
}

/// The read-only web dashboard and its JSON API, as routes on the operational HTTP stack:
///
/// - `/ui` (fleet page), `/ui/servers/{name}` (server page), `/ui/assets/*` (style, script): static,
///   embedded in the binary; the script renders from the API and keeps the page live with
///   server-sent events (no polling from the page).
/// - `/api/v1/fleet`, `/api/v1/servers/{name}`: JSON (`Schemas/dashboard-fleet.schema.json`,
///   `Schemas/dashboard-server.schema.json`).
/// - `/api/v1/events` (`?server=NAME` for one server's page): `text/event-stream`; an event `fleet` (or
///   `server`) carries the same JSON whenever it changes, a comment line keeps idle proxies open.
///
/// Nothing here changes the fleet: promote, pause, resume and rollback are shown as CLI commands.
public struct Dashboard: Sendable {
    public var feed: DashboardFeed
    /// How often an event stream looks again when nothing signalled a change (instances becoming
    /// ready are seen by the controller's observations, which write no record).
    public var refreshMs: Int64 = 1000
    /// How long an event stream may stay silent before a keep-alive comment.
    public var keepAliveMs: Int64 = 15_000
    /// Event streams open now (each ends when its client goes).
    public let openStreams = FleetChanges()

    public init(feed: DashboardFeed) {
        self.feed = feed
    }

    public static func handles(_ path: String) -> Bool {
        path == "/ui" || path.hasPrefix("/ui/") || path.hasPrefix("/api/v1/") || path == "/api/v1"
    }

    public var routes: OpsRoutes {
        let dashboard = self
        return OpsRoutes(handles: Self.handles, respond: { path, query in await dashboard.respond(path: path, query: query) })
    }

    /// Headers of every page: nothing from elsewhere runs, nothing embeds the page.
    static let pageHeaders: [(String, String)] = [
        ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ]
    static let apiHeaders: [(String, String)] = [("X-Content-Type-Options", "nosniff"), ("Cache-Control", "no-store")]

    public func respond(path: String, query: String?) async -> OpsRoutes.Reply {
        switch path {
        case "/ui", "/ui/":
            return .body(status: 200, contentType: "text/html; charset=utf-8", body: PackageResources.index_html, headers: Self.pageHeaders)
        case "/ui/assets/dashboard.css":
            return .body(status: 200, contentType: "text/css; charset=utf-8", body: PackageResources.dashboard_css, headers: Self.pageHeaders)
        case "/ui/assets/dashboard.js":
            return .body(status: 200, contentType: "text/javascript; charset=utf-8", body: PackageResources.dashboard_js, headers: Self.pageHeaders)
        case "/api/v1/fleet":
            do { return Self.json(try await feed.fleet()) } catch { return Self.problem(503, "cannot read the fleet: \(error)") }
        case "/api/v1/events":
            let server = Self.parameter("server", in: query)
            if let server, !Self.validName(server) { return Self.problem(400, "`server` is not a server name") }
            let dashboard = self
            return .events({ dashboard.events(server: server) }, headers: Self.apiHeaders + [("X-Accel-Buffering", "no")])
        default:
            if let name = Self.suffix(path, after: "/ui/servers/") {
                guard Self.validName(name) else { return Self.problem(404, "no such page") }
                return .body(status: 200, contentType: "text/html; charset=utf-8", body: PackageResources.index_html, headers: Self.pageHeaders)
            }
            if let name = Self.suffix(path, after: "/api/v1/servers/") {
                guard Self.validName(name) else { return Self.problem(404, "no server `\(name)`") }
                do {
                    guard let detail = try await feed.server(name) else { return Self.problem(404, "no server `\(name)` is desired or running") }
                    return Self.json(detail)
                } catch {
                    return Self.problem(503, "cannot read server \(name): \(error)")
                }
            }
            return Self.problem(404, "no such page or endpoint: \(path)")
        }
    }

    /// The event stream of the fleet (or one server): the current JSON at once, then whenever it
    /// changes. Ends when the client goes (the consumer is cancelled) and with the process.
    func events(server: String?) -> AsyncStream<String> {
        let feed = self.feed, refreshMs = self.refreshMs, keepAliveMs = self.keepAliveMs, open = self.openStreams
        return AsyncStream(bufferingPolicy: .bufferingNewest(8)) { continuation in
            open.bump()
            let task = Task {
                defer { open.bump(by: -1) }
                continuation.yield("retry: 2000\n\n")
                var last: String?
                var seen = -1
                var lastSent = ContinuousClock.now
                var lastLook = ContinuousClock.now - .seconds(3600)
                while !Task.isCancelled {
                    let generation = feed.changes.generation
                    if generation != seen || ContinuousClock.now - lastLook >= .milliseconds(refreshMs) {
                        seen = generation
                        lastLook = ContinuousClock.now
                        let event: (name: String, data: String, key: String)?
                        do {
                            if let server {
                                event = try await feed.server(server).map { ("server", Self.line($0), Self.line($0.withoutClock())) }
                                    ?? ("gone", "{\"server\":\(Self.line(server))}", "gone")
                            } else {
                                let view = try await feed.fleet()
                                event = ("fleet", Self.line(view), Self.line(view.withoutClock()))
                            }
                        } catch {
                            event = ("problem", "{\"error\":\(Self.line("\(error)"))}", "problem \(error)")
                        }
                        if let event, event.key != last {
                            continuation.yield("event: \(event.name)\ndata: \(event.data)\n\n")
                            last = event.key
                            lastSent = ContinuousClock.now
                        }
                    }
                    if ContinuousClock.now - lastSent >= .milliseconds(keepAliveMs) {
                        continuation.yield(": keep-alive\n\n")
                        lastSent = ContinuousClock.now
                    }
                    do { try await Task.sleep(for: .milliseconds(100)) } catch { break }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    // MARK: helpers

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }

    /// One line of JSON (an event's `data:` may not span lines; JSON escapes newlines inside strings).
    static func line<T: Encodable>(_ value: T) -> String {
        do { return String(decoding: try encoder().encode(value), as: UTF8.self) } catch { return "null" }
    }

    static func json<T: Encodable>(_ value: T) -> OpsRoutes.Reply {
        .body(status: 200, contentType: "application/json", body: Array((line(value) + "\n").utf8), headers: apiHeaders)
    }

    static func problem(_ status: Int, _ message: String) -> OpsRoutes.Reply {
        .body(status: status, contentType: "application/json", body: Array((line(["error": message]) + "\n").utf8), headers: apiHeaders)
    }

    static func suffix(_ path: String, after prefix: String) -> String? {
        guard path.hasPrefix(prefix) else { return nil }
        let rest = String(path.dropFirst(prefix.count))
        return rest.removingPercentEncoding ?? rest
    }

    /// Server names as the catalog allows them (DNS labels); anything else is no server.
    static func validName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 253 && s.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }
    }

    static func parameter(_ name: String, in query: String?) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1)
            if kv.first.map(String.init) == name {
                let v = kv.count > 1 ? String(kv[1]) : ""
                return v.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? v
            }
        }
        return nil
    }
}

/// A counter bumped on every change worth showing, read by the event streams (cheap to read often);
/// also the count of open streams.
public final class FleetChanges: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    public init() {}

    public var generation: Int { lock.withLock { value } }

    public func bump(by n: Int = 1) { lock.withLock { value &+= n } }
}

/// A rollout store that tells the dashboard when it was written to (records, history, audit), so
/// event streams send the change at once instead of at their next look. Reads pass through.
public struct ChangeSignallingStore: RolloutStoreDecorator {
    public let inner: any RolloutStore
    public let changes: FleetChanges

    public init(_ inner: any RolloutStore, changes: FleetChanges) {
        self.inner = inner
        self.changes = changes
    }

    public func save(_ record: RolloutRecord) async throws {
        try await inner.save(record)
        changes.bump()
    }
    public func saveIfUnchanged(_ record: RolloutRecord) async throws -> RolloutRecord? {
        let saved = try await inner.saveIfUnchanged(record)
        if saved != nil { changes.bump() }
        return saved
    }
    public func saveIfUnchanged(_ record: RolloutRecord, then: [Bookkeeping]) async throws -> RolloutRecord? {
        let saved = try await inner.saveIfUnchanged(record, then: then)
        if saved != nil { changes.bump() }
        return saved
    }
    public func removeRecord(server: String) async throws {
        try await inner.removeRecord(server: server)
        changes.bump()
    }
    public func saveRevision(_ revision: RevisionRecord) async throws {
        try await inner.saveRevision(revision)
        changes.bump()
    }
    public func appendAudit(_ entry: AuditEntry) async throws {
        try await inner.appendAudit(entry)
        changes.bump()
    }
}

extension FleetStatusView {
    /// The view without what moves with the clock alone (its time, pause countdowns), to tell a change.
    public func withoutClock() -> FleetStatusView {
        var v = self
        v.generatedAt = 0
        v.controller.lastHeartbeat = nil
        for i in v.servers.indices { v.servers[i].rollout?.pauseRemainingMs = nil }
        return v
    }
}

extension ServerStatusDetail {
    public func withoutClock() -> ServerStatusDetail {
        var v = self
        v.generatedAt = 0
        v.server.rollout?.pauseRemainingMs = nil
        return v
    }
}
