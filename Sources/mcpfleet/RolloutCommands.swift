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

    /// Loads the server's record, lets `change` edit it, saves it and appends an audit entry. The running
    /// controller notices the change within its poll interval.
    func edit(action: String, reason: String, _ change: (inout RolloutRecord, _ store: any RolloutStore) async throws -> String?) async throws {
        let target = try FleetTarget.load(path: dir, env: env)
        guard target.desired.server(server) != nil else {
            throw CommandFailure(message: "server `\(server)` is not in the catalog for environment \(target.environment.name)")
        }
        let (_, store) = try target.runtime()
        guard var record = try await store.record(server: server) else {
            throw CommandFailure(message: "server `\(server)` has no rollout record yet (has the controller run it?)")
        }
        let revision = try await change(&record, store)
        record.updatedAt = Int64(Date().timeIntervalSince1970 * 1000)
        try await store.save(record)
        try await store.appendAudit(AuditEntry(time: record.updatedAt, server: server, action: action, revision: revision, reason: reason,
                                               manifestCommit: GitSource.headCommit(dir), outcome: "ok"))
    }
}

struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Pin a server to an earlier revision (default: the last good one) until `mcpfleet resume`.")

    @OptionGroup var target: ServerTarget

    @Option(name: .long, help: "The revision to go back to (see `mcpfleet history SERVER`).")
    var to: String?

    func run() async throws {
        var chosen = ""
        try await target.edit(action: "pin", reason: "manual rollback") { record, store in
            let revisions = try await store.revisions(server: target.server)
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
            if let from = record.failedRevisions.firstIndex(of: revision) { record.failedRevisions.remove(at: from) }
            record.pinnedRevision = revision
            record.paused = false
            chosen = revision
            return revision
        }
        writeStdout("Pinned \(target.server) to revision \(chosen); the controller moves it there and holds it. `mcpfleet resume \(target.server)` releases the pin.\n")
    }
}

struct PauseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause", abstract: "Hold a server's rollout where it is.")

    @OptionGroup var target: ServerTarget

    func run() async throws {
        try await target.edit(action: "pause", reason: "paused by an operator") { record, _ in
            record.paused = true
            record.message = "paused by an operator"
            return record.targetRevision
        }
        writeStdout("Paused \(target.server). `mcpfleet resume \(target.server)` continues.\n")
    }
}

struct ResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Continue a paused rollout and release a rollback pin.")

    @OptionGroup var target: ServerTarget

    func run() async throws {
        try await target.edit(action: "resume", reason: "resumed by an operator") { record, _ in
            record.paused = false
            record.pinnedRevision = nil
            record.message = nil
            // The current step (pause, analysis, deadline) starts over from now.
            record.stepStartedAt = Int64(Date().timeIntervalSince1970 * 1000)
            return record.targetRevision
        }
        writeStdout("Resumed \(target.server).\n")
    }
}

struct PromoteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote", abstract: "End the current canary pause (or accept an inconclusive analysis) and continue the rollout.")

    @OptionGroup var target: ServerTarget

    func run() async throws {
        try await target.edit(action: "promote", reason: "promoted by an operator") { record, _ in
            guard record.targetRevision != nil else {
                throw CommandFailure(message: "server `\(target.server)` has no rollout in progress")
            }
            record.promoted = true
            record.paused = false
            return record.targetRevision
        }
        writeStdout("Promoted \(target.server): the rollout continues with its next step.\n")
    }
}
