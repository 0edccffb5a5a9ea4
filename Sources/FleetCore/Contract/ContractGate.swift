/// `Policy.spec.contracts`: what a surface that differs from the committed contract does.
public enum ContractsMode: String, Codable, Hashable, Sendable, CaseIterable {
    /// Reported (metric, audit entry, warning); the rollout goes on.
    case warn
    /// A canary that drifted fails its analysis and is rolled back; a running revision whose surface
    /// changes is taken out of service (its probes fail).
    case enforce
}

/// `Server.spec.tools`: which tools clients may see and call through the gateway. Globs over tool names
/// (`*` any run of characters, `?` one character). Empty `allow` allows every tool; `deny` wins.
public struct ToolAccess: Codable, Hashable, Sendable {
    public var allow: [String]
    public var deny: [String]

    public init(allow: [String] = [], deny: [String] = []) {
        self.allow = allow
        self.deny = deny
    }

    public var isEmpty: Bool { allow.isEmpty && deny.isEmpty }

    public func permits(_ tool: String) -> Bool {
        if deny.contains(where: { Self.matches($0, tool) }) { return false }
        return allow.isEmpty || allow.contains { Self.matches($0, tool) }
    }

    /// Whole-name wildcard match: `*` any run (including none), `?` exactly one character.
    public static func matches(_ pattern: String, _ name: String) -> Bool {
        let p = Array(pattern.unicodeScalars), s = Array(name.unicodeScalars)
        var pi = 0, si = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == s[si]) {
                pi += 1; si += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// Checked against a contract at plan time: patterns that match no tool (a typo, or a tool the
    /// server no longer has) and the tools the lists hide.
    public func check(_ contract: ServerContract) -> (unmatched: [String], hidden: [String]) {
        let names = contract.toolNames
        let unmatched = (allow + deny).filter { p in !names.contains { Self.matches(p, $0) } }
        return (unmatched, names.filter { !permits($0) })
    }
}

/// What a surface check found about one revision, as the rollout machine reads it.
public struct ContractVerdict: Hashable, Sendable {
    public var mode: ContractsMode
    /// The differences from the committed contract (or from the surface the revision first served).
    public var changes: [ContractChange]

    public init(mode: ContractsMode, changes: [ContractChange]) {
        self.mode = mode
        self.changes = changes
    }

    /// The differences on one line, bounded: `tool \`convert\`: new required parameter \`tz\`; …`.
    public var summary: String {
        var out = ""
        for (i, c) in changes.enumerated() {
            let next = (i == 0 ? "" : "; ") + c.description
            if out.count + next.count > 600 {
                out += "; … (\(changes.count - i) more)"
                break
            }
            out += next
        }
        return out
    }
}

/// The one place that decides what a surface that differs from its contract means (the planner, the
/// controller's probe path and the rollout machine all ask it).
public enum ContractGate {
    /// The live surface of a revision against the committed contract: nil when they agree (or no
    /// contract is committed), else the verdict with every difference.
    public static func check(expected: ServerContract?, observed: ServerContract, mode: ContractsMode) -> ContractVerdict? {
        guard let expected, ContractDiff.surfaceDiffers(expected, observed) else { return nil }
        return ContractVerdict(mode: mode, changes: ContractDiff.compare(old: expected, new: observed))
    }

    /// A running revision's surface against the one it served when it first became healthy.
    public static func checkRunning(first: ServerContract, now: ServerContract, mode: ContractsMode) -> ContractVerdict? {
        guard ContractDiff.surfaceDiffers(first, now) else { return nil }
        return ContractVerdict(mode: mode, changes: ContractDiff.compare(old: first, new: now))
    }

    /// Whether the rollout of a revision with this verdict must fail (enforce) or only be reported (warn).
    public static func failsRollout(_ v: ContractVerdict?) -> Bool { v?.mode == .enforce && !(v?.changes.isEmpty ?? true) }

    /// Whether an instance whose surface changed while running is taken out of service.
    public static func takesOutOfService(_ v: ContractVerdict?) -> Bool { failsRollout(v) }

    /// The rollback reason the rollout machine records.
    public static func rollbackReason(revision: String, _ v: ContractVerdict) -> String {
        "contract check of revision \(revision) failed: its surface differs from the committed contract: \(v.summary)"
    }
}

/// What the contract gate and the gateway know of one server: its committed contract (read by the CLI
/// from `spec.contract`), the mode the environment's policies set, and its tool lists.
public struct ContractExpectation: Hashable, Sendable {
    /// `spec.contract`, relative to the manifest root.
    public var file: String?
    public var contract: ServerContract?
    public var mode: ContractsMode
    public var tools: ToolAccess?

    public init(file: String? = nil, contract: ServerContract? = nil, mode: ContractsMode = .warn, tools: ToolAccess? = nil) {
        self.file = file
        self.contract = contract
        self.mode = mode
        self.tools = tools
    }
}

extension Catalog {
    /// `enforce` when any Policy that applies to the environment says so; `warn` otherwise (the default).
    public func contractsMode(environment: String) -> ContractsMode {
        policies.contains { $0.applies(to: environment) && $0.contracts == .enforce } ? .enforce : .warn
    }
}
