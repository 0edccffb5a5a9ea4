import FleetApp
import Foundation
import Testing

/// The controller reads the operator's repository; it must never take its locks. `git status` refreshes
/// the index's stat data under `.git/index.lock` when files were touched, and an operator's `git commit`
/// at that moment fails with "index.lock exists" (seen in NotificationEndToEndTests).
@Suite struct GitSourceLockTests {
    func git(_ args: [String], in dir: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.invalid"] + args
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "git \(args)")
    }

    @Test func readingTheCommitNeverRewritesTheIndex() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-gitlock-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try git(["init", "-q"], in: dir)
        try "a: 1\n".write(toFile: dir + "/server.yaml", atomically: true, encoding: .utf8)
        try git(["add", "server.yaml"], in: dir)
        try git(["commit", "-q", "-m", "one"], in: dir)
        // Touch the file (same content, new mtime): the index's stat data is now stale, which a plain
        // `git status` repairs by rewriting the index under index.lock.
        let later = Date().addingTimeInterval(5)
        try FileManager.default.setAttributes([.modificationDate: later], ofItemAtPath: dir + "/server.yaml")
        let index = dir + "/.git/index"
        let before = try FileManager.default.attributesOfItem(atPath: index)[.modificationDate] as? Date
        let inode = try FileManager.default.attributesOfItem(atPath: index)[.systemFileNumber] as? UInt64
        let commit = try #require(GitSource.manifestCommit(dir))
        #expect(!commit.hasSuffix(GitSource.dirtySuffix), "same content is not a change: \(commit)")
        let after = try FileManager.default.attributesOfItem(atPath: index)
        #expect(after[.modificationDate] as? Date == before && after[.systemFileNumber] as? UInt64 == inode, "the index was rewritten")
    }
}
