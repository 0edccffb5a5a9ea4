import FleetCore
import Foundation

/// `mcpfleet status --watch` as text: on a terminal a screen redrawn in place (the status table, then
/// a block per server in a rollout: revisions and shares, the step, the pause countdown, the analysis,
/// the command that moves it on, then the last events); elsewhere one appended line per server whose
/// state changed. Pure: the caller passes the view and the time.
public enum StatusScreen {
    /// The whole screen (no escape codes; the caller clears and homes the cursor).
    /// The whole screen; the view's `events` (newest first) are the last part.
    public static func screen(_ view: FleetStatusView, context: OperatorCommand.Context, now: Int64) -> String {
        var out = "mcpfleet status --watch · environment \(view.environment ?? "-") (\(view.driver ?? "-")) · \(clock(now))\n\n"
        out += view.table()
        for row in view.servers where row.rollout != nil || row.analysis != nil {
            out += "\n" + block(row, context: context, now: now)
        }
        out += view.notesText()
        if !view.events.isEmpty {
            out += "\nLAST EVENTS\n"
            out += FleetStatusView.columns(view.events.prefix(8).map { e in
                [clock(e.lastTime ?? e.time), e.server, e.action, e.outcome, (e.revision ?? "-"), e.reason + ((e.repeats ?? 0) > 0 ? " (×\((e.repeats ?? 0) + 1))" : "")]
            })
        }
        return out
    }

    /// A server's rollout: `time  canary → 1a2b3c  step 1 of 2 · paused, 1m52s left`, its revisions, the
    /// analysis so far and the command that moves it on.
    public static func block(_ row: ServerStatusRow, context: OperatorCommand.Context, now: Int64) -> String {
        var lines: [String] = []
        if let r = row.rollout {
            lines.append("\(row.name)  \(r.strategy) → \(r.revision)  \(r.stepLabel) · \(state(r, now: now))")
        } else {
            lines.append("\(row.name)  \(row.phase ?? "-")")
        }
        if !row.revisions.isEmpty {
            lines.append("  revisions: " + row.revisions.map { "\($0.revision) \($0.ready)/\($0.replicas) ready (\($0.sharePercent)%)\($0.role == .target ? " new" : $0.role == .serving ? " serving" : "")" }
                .joined(separator: " · "))
        }
        if let a = row.analysis {
            lines.append("  analysis: \(a.taken) of \(a.count) measurements, \(a.passed) passed, \(a.taken - a.passed) not (more than \(a.failureLimit) failed fails it)")
        }
        let commands = OperatorCommand.all(server: row.name, row: row, context: context).filter { $0.applies && $0.action != "pause" }
        if let next = commands.first { lines.append("  \(next.action): \(next.command)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// One appended line for a server (what a non-terminal watch prints when the server changed).
    public static func line(_ row: ServerStatusRow, now: Int64) -> String {
        var parts = ["\(row.name)", row.phase ?? "not running", "ready \(row.readyReplicas)/\(row.desiredReplicas ?? row.totalReplicas)"]
        if !row.revisions.isEmpty { parts.append(row.revisions.map { "\($0.revision) \($0.sharePercent)%" }.joined(separator: " ")) }
        if let r = row.rollout { parts.append("\(r.strategy) \(r.stepLabel) → \(r.revision) (\(state(r, now: now)))") }
        if let a = row.analysis { parts.append("analysis \(a.taken)/\(a.count) (\(a.passed) passed)") }
        if !row.notes.isEmpty { parts.append(row.notes.joined(separator: "; ")) }
        if let m = row.message { parts.append(m) }
        return "\(clock(now)) " + parts.joined(separator: " · ")
    }

    /// What a row's appended line depends on, without the countdown (which changes every second).
    public static func changeKey(_ row: ServerStatusRow) -> String {
        var r = row
        r.rollout?.pauseRemainingMs = nil
        r.rollout?.progressDeadlineAt = nil
        return line(r, now: 0)
    }

    static func state(_ r: RolloutProgress, now: Int64) -> String {
        if r.heldByOperator { return "held by an operator" + (r.pauseRemainingMs.map { ", pause \(left($0)) left when resumed" } ?? "") }
        if r.waitingForPromotion { return "waiting for promote" }
        if let end = r.pauseEndsAt { return "paused, \(left(max(0, end - now))) left" }
        if r.phase == "analyzing" { return "analyzing" }
        return r.phase
    }

    /// `1m52s`, `45s`.
    public static func left(_ ms: Int64) -> String {
        let s = (ms + 999) / 1000
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }

    static func clock(_ ms: Int64) -> String {
        let s = (ms / 1000) % 86_400
        return String(format: "%02d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
    }
}
