import Crypto
import Foundation

/// What a rollout event is about (docs/designs/0012-telling-people-what-happened.md).
public enum RolloutEventKind: String, Codable, Hashable, Sendable, CaseIterable {
    case started, step, paused, resumed, promoted, succeeded, failed
    case rolledBack = "rolled-back"
    case blocked
    case crashLooping = "crash-looping"
    /// A serving revision's crash loop ended (every replica ready, no restart for a minute).
    case recovered

    /// The events an audit entry stands for. Only entries that record something that happened
    /// (`outcome: ok`) are events; a driver call failing and being retried is not news until the rollout
    /// fails. `rollback` is the target failing (`failed`, with the reason); `rollback-start` is the server
    /// going back (`rolled-back`); an operator's `pin` is a manual rollback.
    public static func kinds(of entry: AuditEntry) -> [RolloutEventKind] {
        guard entry.outcome == "ok" else { return [] }
        switch entry.action {
        case "rollout-start": return [.started]
        case "step", "analysis-passed": return [.step]
        case "pause", "analysis-inconclusive": return [.paused]
        case "resume": return [.resumed]
        case "promote", "analysis-overridden": return [.promoted]
        case "rollout-complete": return [.succeeded]
        case "rollout-failed", "rollback": return [.failed]
        case "rollback-start", "pin": return [.rolledBack]
        case "blocked": return [.blocked]
        case "crash-loop": return [.crashLooping]
        case "crash-loop-recovered": return [.recovered]
        default: return []
        }
    }
}

/// One rollout event as receivers get it. The generic webhook's body is this object as canonical JSON
/// (sorted keys), signed with HMAC-SHA256.
public struct RolloutEvent: Codable, Hashable, Sendable {
    /// Unique per event and stable across retries (receivers deduplicate by it).
    public var id: String
    public var kind: RolloutEventKind
    public var environment: String
    public var server: String
    public var revision: String?
    public var reason: String
    /// The manifest commit the change came from (`-dirty` when uncommitted edits were rolled out).
    public var commit: String?
    /// Who acted, for operator actions (`mcpfleet pause` …); nil for the controller's own steps.
    public var actor: String?
    /// The audit action the event comes from (`rollback`, `analysis-passed` …).
    public var action: String
    /// Unix epoch milliseconds.
    public var time: Int64
    public var correlationId: String?
    /// For `step` events from action `step`: which step, at what weight.
    public var step: RolloutStep?

    public init(kind: RolloutEventKind, environment: String, entry: AuditEntry) {
        step = entry.step
        self.kind = kind
        self.environment = environment
        server = entry.server
        revision = entry.revision
        reason = entry.reason
        commit = entry.manifestCommit
        actor = entry.actor
        action = entry.action
        time = entry.time
        correlationId = entry.correlationId
        let digest = SHA256.hash(data: Data("\(environment)\n\(entry.server)\n\(entry.action)\n\(entry.revision ?? "")\n\(entry.time)\n\(kind.rawValue)\n\(entry.correlationId ?? "")".utf8))
        id = digest.prefix(12).map { String(format: "%02x", $0) }.joined()
    }

    public static func events(for entry: AuditEntry, environment: String) -> [RolloutEvent] {
        RolloutEventKind.kinds(of: entry).map { RolloutEvent(kind: $0, environment: environment, entry: entry) }
    }

    /// A one-line summary for chat: `✗ time 3f2a… failed in dev: reason`.
    public var summary: String {
        let mark: String
        switch kind {
        case .succeeded, .recovered: mark = "✅"
        case .failed, .crashLooping: mark = "❌"
        case .rolledBack: mark = "↩️"
        case .blocked: mark = "⛔"
        case .paused: mark = "⏸️"
        default: mark = "▶️"
        }
        var s = "\(mark) \(server)"
        if let revision { s += " \(revision)" }
        s += " \(kind.rawValue) in \(environment)"
        if !reason.isEmpty { s += ": \(reason)" }
        if let actor { s += " (by \(actor))" }
        if let commit { s += " [commit \(commit.prefix(12))\(commit.hasSuffix("-dirty") ? " + uncommitted changes" : "")]" }
        return s
    }

    // MARK: Payloads (pure; the notifier sends them)

    /// The generic webhook body: canonical JSON (sorted keys, no insignificant whitespace).
    public func webhookBody() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a struct of strings and integers cannot fail.
        return Array((try? encoder.encode(self)) ?? Data())
    }

    /// `sha256=<hex>`: HMAC-SHA256 of the exact body bytes under the receiver's shared key.
    public static func signature(body: [UInt8], key: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: key))
        return "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
    }

    /// A Slack-compatible incoming-webhook body (`{"text": …}`; Mattermost, Rocket.Chat and Teams'
    /// Slack-compatible connectors read the same).
    public func slackBody() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(["text": summary])) ?? Data())
    }

    /// The GitHub commit status this event sets, or nil when the event has no full commit to attach to
    /// (no git, or uncommitted changes: a status on HEAD would claim what HEAD does not contain).
    public func githubStatus() -> GitHubCommitStatus? {
        guard let commit, commit.count == 40, commit.allSatisfy(\.isHexDigit) else { return nil }
        let state: String
        switch kind {
        case .started, .step, .paused, .resumed, .promoted: state = "pending"
        case .succeeded, .recovered: state = "success"
        case .failed, .rolledBack, .crashLooping: state = "failure"
        case .blocked: state = "error"
        }
        var description = "\(kind.rawValue)" + (revision.map { " \($0)" } ?? "") + (reason.isEmpty ? "" : ": \(reason)")
        // GitHub refuses descriptions over 140 characters.
        if description.count > 140 { description = String(description.prefix(139)) + "…" }
        return GitHubCommitStatus(sha: commit, state: state, context: "mcpfleet/\(environment)/\(server)", description: description)
    }
}

/// A commit status as GitHub's `POST /repos/{owner}/{repo}/statuses/{sha}` takes it.
public struct GitHubCommitStatus: Codable, Hashable, Sendable {
    public var sha: String
    public var state: String
    public var context: String
    public var description: String

    public func body() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array((try? encoder.encode(["state": state, "context": context, "description": description])) ?? Data())
    }
}

/// `spec.notifications[]` of an Environment: where rollout events go.
public struct NotificationTarget: Sendable, Hashable {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        /// JSON body, `X-Mcpfleet-Signature-256: sha256=<hmac>` when `signingKey` is set.
        case webhook
        /// `{"text": …}` to a Slack-compatible incoming webhook (its URL is a secret: `urlSecretRef`).
        case slack
        /// Commit statuses on the manifest commit (`repository`, `token`).
        case github
    }

    public var name: String
    public var kind: Kind
    /// Where to send (webhook, slack); a URL with a credential in it belongs in `urlSecretRef`.
    public var url: String?
    public var urlSecretRef: SecretReference?
    /// The HMAC key a webhook's receiver checks the signature with.
    public var signingKey: SecretReference?
    /// The GitHub token (a fine-grained token with "commit statuses: write").
    public var token: SecretReference?
    /// `owner/name` for GitHub.
    public var repository: String?
    /// GitHub's API (default `https://api.github.com`; GitHub Enterprise: `https://HOST/api/v3`).
    public var apiURL: String?
    /// The kinds sent (nil: all).
    public var events: Set<RolloutEventKind>?
    /// Only these servers (nil: all).
    public var servers: Set<String>?

    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }

    public static let defaultGitHubAPI = "https://api.github.com"

    public func wants(_ event: RolloutEvent) -> Bool {
        (events?.contains(event.kind) ?? true) && (servers?.contains(event.server) ?? true)
    }
}
