import Foundation

extension GitSource {
    /// The commit the manifests in `directory` come from, as history records it: HEAD's, with `-dirty`
    /// appended when files under `directory` differ from it (uncommitted or untracked changes), so a
    /// rollout of edits nobody committed is never attributed to HEAD alone. Nil outside a git work tree.
    public static func manifestCommit(_ directory: String) -> String? {
        guard let head = headCommit(directory) else { return nil }
        guard let status = try? git(["status", "--porcelain", "--untracked-files=normal", "--", "."], in: directory) else { return head }
        return status.isEmpty ? head : head + dirtySuffix
    }

    public static let dirtySuffix = "-dirty"

    /// How `history` shows a recorded commit.
    public static func describeCommit(_ commit: String) -> String {
        commit.hasSuffix(dirtySuffix)
            ? "commit \(commit.dropLast(dirtySuffix.count).prefix(12)) + uncommitted changes"
            : "commit \(commit.prefix(12))"
    }
}
