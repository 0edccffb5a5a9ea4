import ArgumentParser
import FleetCore
import Foundation

/// Options shared by the commands that steer one server's rollout.
struct ServerTarget: ParsableArguments {
    @Argument(help: "The server.")
    var server: String

    @Option(name: [.customShort("C"), .customLong("dir")], help: "The manifest directory.")
    var dir: String = "."

    @Option(name: .long, help: "Environment; may be omitted when the catalog has exactly one.")
    var env: String?

    /// Loads the server's record, lets `change` edit it (returning the revision concerned and the reason
    /// to audit), saves it and appends an audit entry. The running controller notices within its poll interval.
    func edit(action: String, _ change: (inout RolloutRecord, _ context: EditContext) async throws -> (revision: String?, reason: String)) async throws {
        let target = try FleetTarget.load(path: dir, env: env)
        guard let desired = target.desired.server(server) else {
            throw CommandFailure(message: "server `\(server)` is not in the catalog for environment \(target.environment.name)")
        }
        let (_, store) = try target.runtime()
        // Saved over the record as read (compare-and-swap): a controller step written in between makes
        // the edit start again from the new record instead of overwriting it (or being overwritten).
        for _ in 0..<8 {
            guard var record = try await store.record(server: server) else {
                throw CommandFailure(message: "server `\(server)` has no rollout record yet (has the controller run it?)")
            }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            let (revision, reason) = try await change(&record, EditContext(target: target, desired: desired, store: store, now: now))
            record.updatedAt = now
            guard try await store.saveIfUnchanged(record) != nil else { continue }
            try await store.appendAudit(AuditEntry(time: now, server: server, action: action, revision: revision, reason: reason,
                                                   manifestCommit: GitSource.manifestCommit(dir), outcome: "ok"))
            return
        }
        throw CommandFailure(message: "server `\(server)`: the rollout record kept changing while \(action) was saved (8 attempts); nothing was changed, try again")
    }
}

struct EditContext {
    var target: FleetTarget
    var desired: DesiredServer
    var store: any RolloutStore
    var now: Int64

    /// Why policy blocks `revision`, if it is the desired one and the supply-chain gate blocks it now.
    func blockedReason(_ revision: String) throws -> String? {
        guard revision == desired.revision else { return nil }
        let snapshot = try FleetTarget.snapshot(path: target.path, environmentName: target.environment.name)
        guard let v = snapshot.verdicts[desired.name], v.revision == revision, v.decision == .blocked else { return nil }
        return v.reasons.joined(separator: "; ")
    }
}

struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Pin a server to an earlier revision (default: the last good one) until `mcpfleet resume`.",
        discussion: """
        A revision that policy blocks, or that failed a rollout (probes, SLO analysis, progress deadline, \
        crash loop), is refused: `--force` pins it anyway, and the audit log records what was overridden.
        """)

    @OptionGroup var target: ServerTarget

    @Option(name: .long, help: "The revision to go back to (see `mcpfleet history SERVER`).")
    var to: String?

    @Flag(name: .long, help: "Pin the revision even if policy blocks it or it failed a rollout (audited with the reason).")
    var force = false

    func run() async throws {
        var chosen = ""
        var overridden: String?
        try await target.edit(action: "pin") { record, context in
            let revisions = try await context.store.revisions(server: target.server)
            let revision: String
            if let to {
                guard revisions.contains(where: { $0.revision == to }) || record.stableRevision == to else {
                    throw CommandFailure(message: "server `\(target.server)` has no revision \(to) (known: \(revisions.map(\.revision).joined(separator: ", ")))")
                }
                revision = to
            } else if record.targetRevision != nil, let stable = record.stableRevision {
                revision = stable
            } else if let previous = revisions.filter({ $0.revision != record.stableRevision && ($0.outcome == .superseded || $0.outcome == .promoted) })
                .max(by: { $0.createdAt < $1.createdAt }) {
                revision = previous.revision
            } else {
                throw CommandFailure(message: "server `\(target.server)` has no earlier good revision to go back to; name one with --to")
            }
            // The same gates as a rollout: the rollout rules decide, `--force` overrides (audited).
            if let refusal = RolloutRules.pinRefusal(revision: revision, blockedReason: try context.blockedReason(revision),
                                                     failedRevisions: record.failedRevisions, history: revisions) {
                guard force else {
                    throw CommandFailure(message: "not pinning \(target.server) to \(revision): \(refusal). `--force` pins it anyway (audited)")
                }
                overridden = refusal
                if let from = record.failedRevisions.firstIndex(of: revision) { record.failedRevisions.remove(at: from) }
            }
            record.pinnedRevision = revision
            record.pinForced = overridden != nil
            record.paused = false
            record.pausedAt = nil
            chosen = revision
            return (revision, overridden.map { "manual rollback forced past a gate: \($0)" } ?? "manual rollback")
        }
        writeStdout("Pinned \(target.server) to revision \(chosen)" + (overridden != nil ? " (forced: \(overridden!))" : "")
                    + "; the controller moves it there and holds it. `mcpfleet resume \(target.server)` releases the pin.\n")
    }
}

struct PauseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Hold a server's rollout where it is.")

    @OptionGroup var target: ServerTarget

    func run() async throws {
        try await target.edit(action: "pause") { record, context in
            record.pause(at: context.now, message: "paused by an operator (`mcpfleet resume \(target.server)` continues)")
            return (record.targetRevision, "paused by an operator")
        }
        writeStdout("Paused \(target.server). `mcpfleet resume \(target.server)` continues.\n")
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Continue a paused rollout and release a rollback pin.",
        discussion: """
        A canary pause and the progress deadline continue where they were when paused (the time spent \
        paused does not count). With --retry, the desired revision is tried again although it failed \
        (after fixing what it lacked, e.g. a secret file).
        """)

    @OptionGroup var target: ServerTarget

    @Flag(name: .long, help: "Also roll out the desired revision again if it failed before.")
    var retry = false

    func run() async throws {
        try await target.edit(action: "resume") { record, context in
            record.resume(at: context.now)
            var reason = "resumed by an operator"
            if retry, let i = record.failedRevisions.firstIndex(of: context.desired.revision) {
                record.failedRevisions.remove(at: i)
                record.failureReasons[context.desired.revision] = nil
                reason += "; failed revision \(context.desired.revision) to be retried"
            }
            return (record.targetRevision ?? (retry ? context.desired.revision : nil), reason)
        }
        writeStdout("Resumed \(target.server).\n")
    }
}

struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote", abstract: "End the current canary pause (or accept an inconclusive analysis) and continue the rollout.")

    @OptionGroup var target: ServerTarget

    func run() async throws {
        try await target.edit(action: "promote") { record, _ in
            guard record.targetRevision != nil else {
                throw CommandFailure(message: "server `\(target.server)` has no rollout in progress")
            }
            // Promote accepts where the rollout stands (an inconclusive analysis included): no clock shift.
            record.promoted = true
            record.paused = false
            record.pausedAt = nil
            return (record.targetRevision, "promoted by an operator")
        }
        writeStdout("Promoted \(target.server): the rollout continues with its next step.\n")
    }
}
