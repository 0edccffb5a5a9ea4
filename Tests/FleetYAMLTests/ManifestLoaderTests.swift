import FleetCore
@testable import FleetYAML
import Foundation
import Testing

/// A fresh directory under the system temp dir, removed by `remove()`.
private struct TempTree {
    let root: String

    init() throws {
        root = FileManager.default.temporaryDirectory.path + "/fleetyaml-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    func write(_ relativePath: String, _ text: String) throws {
        let full = root + "/" + relativePath
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: full))
    }

    func link(_ relativePath: String, to destination: String) throws {
        try FileManager.default.createSymbolicLink(atPath: root + "/" + relativePath, withDestinationPath: destination)
    }

    func remove() throws {
        try FileManager.default.removeItem(atPath: root)
    }
}

@Suite struct ManifestLoaderTests {
    @Test func directoryOrderHiddenAndIgnored() throws {
        let tree = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove() } }
        try tree.write("b.yaml", "name: b\n")
        try tree.write("a.yml", "name: a\n")
        try tree.write("Z.yaml", "name: Z\n")
        try tree.write("sub/c.yaml", "name: c\n---\nname: c2\n")
        try tree.write("sub/q/deep.yaml", "name: deep\n")
        try tree.write("sub/deep.yaml", "name: deep0\n")
        try tree.write("x.draft.yaml", "name: draft\n")
        try tree.write("ignored/z.yaml", "name: z\n")
        try tree.write("keep/ignored", "not a dir\n")
        try tree.write(".hidden.yaml", "name: hidden\n")
        try tree.write(".git/config.yaml", "name: git\n")
        try tree.write("sub/.secret/s.yaml", "name: s\n")
        try tree.write("notes.txt", "name: notes\n")
        try tree.write(".mcpfleetignore", """
            # generated
            \("")
            ignored/
            *.draft.yaml
            sub/**/deep.yaml
            """)
        try tree.link("sub/loop", to: "..")

        let set = ManifestLoader.load(path: tree.root)
        #expect(set.diagnostics.isEmpty)
        #expect(set.files.map(\.relativePath) == ["Z.yaml", "a.yml", "b.yaml", "sub/c.yaml"])
        #expect(set.files.map(\.path) == set.files.map { tree.root + "/" + $0.relativePath })
        #expect(set.documents.count == 5)
        #expect(set.documents.last?.file == tree.root + "/sub/c.yaml")
        #expect(set.documents.last?.index == 1)
        #expect(set.files.first?.text == "name: Z\n")
    }

    /// A manifest (or a directory) that is a link out of the root is an error naming the link; its
    /// target is never read, so no byte of it can reach a diagnostic.
    @Test(arguments: ["/proc/self/environ", "OUTSIDE"])
    func linksOutOfTheRootAreRefusedUnread(target: String) throws {
        let tree = try TempTree()
        let outside = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove(); try outside.remove() } }
        try outside.write("secret.yaml", "token: canary-outside-root-91c2\n")
        let destination = target == "OUTSIDE" ? outside.root + "/secret.yaml" : target
        try tree.write("good.yaml", "name: good\n")
        try tree.link("x.yaml", to: destination)
        try tree.link("dir", to: outside.root)
        try tree.write("inside/real.yaml", "name: real\n")
        try tree.link("alias.yaml", to: "inside/real.yaml")

        let set = ManifestLoader.load(path: tree.root)
        #expect(set.files.map(\.relativePath) == ["alias.yaml", "good.yaml", "inside/real.yaml"])
        #expect(set.diagnostics.map(\.code) == ["link-outside-root", "link-outside-root"])
        #expect(set.diagnostics.map { $0.location?.file } == [tree.root + "/dir", tree.root + "/x.yaml"])
        let shown = set.diagnostics.map(\.description).joined() + set.files.map(\.text).joined()
        #expect(!shown.contains("canary-outside-root"))
        #expect(!shown.contains(outside.root))
        #expect(!shown.contains("/proc"))

        // Named on its own, the link is refused the same way.
        let single = ManifestLoader.load(path: tree.root + "/x.yaml")
        #expect(single.files.isEmpty)
        #expect(single.diagnostics.map(\.code) == ["link-outside-root"])
    }

    @Test func rootGivenWithTrailingSlash() throws {
        let tree = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove() } }
        try tree.write("servers/time.yaml", "name: time\n")
        let set = ManifestLoader.load(path: tree.root + "/")
        #expect(set.files.map(\.path) == [tree.root + "/servers/time.yaml"])
    }

    @Test func diagnosticsCarryTheDisplayPath() throws {
        let tree = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove() } }
        try tree.write("bad.yaml", "a: 1\na: 2\n")
        let set = ManifestLoader.load(path: tree.root)
        #expect(set.diagnostics.map(\.code) == ["yaml-duplicate-key"])
        #expect(set.diagnostics.first?.location?.file == tree.root + "/bad.yaml")
    }

    @Test func singleFile() throws {
        let tree = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove() } }
        try tree.write("one.yaml", "name: one\n")
        let set = ManifestLoader.load(path: tree.root + "/one.yaml")
        #expect(set.diagnostics.isEmpty)
        #expect(set.files.map(\.relativePath) == ["one.yaml"])
        #expect(set.files.map(\.path) == [tree.root + "/one.yaml"])
        #expect(set.documents.first?.root?["name"]?.scalar?.text == "one")
    }

    @Test func unreadableEntriesAreIODiagnostics() throws {
        let tree = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove() } }
        try tree.write("ok.yaml", "name: ok\n")
        try tree.link("broken.yaml", to: tree.root + "/does-not-exist.yaml")
        let set = ManifestLoader.load(path: tree.root)
        #expect(set.diagnostics.map(\.code) == ["io"])
        #expect(set.files.map(\.relativePath) == ["ok.yaml"])

        let missing = ManifestLoader.load(path: tree.root + "/nope")
        #expect(missing.diagnostics.map(\.code) == ["io"])
        #expect(missing.files.isEmpty)
    }

    @Test func oversizedFileIsASizeDiagnostic() throws {
        let tree = try TempTree()
        defer { #expect(throws: Never.self) { try tree.remove() } }
        try tree.write("big.yaml", String(repeating: "# padding\n", count: 100))
        let set = ManifestLoader.load(path: tree.root, limits: YAMLLimits(maxBytes: 100))
        #expect(set.diagnostics.map(\.code) == ["yaml-size-limit"])
    }

    @Test func inMemoryLoad() {
        let files: [(relativePath: String, bytes: [UInt8])] = [
            ("servers/time.yaml", Array("name: time\n".utf8)),
            ("a.yaml", Array("name: a\n".utf8)),
            ("./b.yml", Array("name: b\n".utf8)),
            (".hidden.yaml", Array("name: h\n".utf8)),
            ("drafts/x.yaml", Array("name: x\n".utf8)),
            ("servers/old.yaml", Array("name: old\n".utf8)),
            ("README.md", Array("# hi\n".utf8)),
            (".mcpfleetignore", Array("drafts/\nold.yaml\n".utf8)),
        ]
        let set = ManifestLoader.load(root: "Manifests", files: files)
        #expect(set.diagnostics.isEmpty)
        #expect(set.files.map(\.relativePath) == ["a.yaml", "b.yml", "servers/time.yaml"])
        #expect(set.files.map(\.path) == ["Manifests/a.yaml", "Manifests/b.yml", "Manifests/servers/time.yaml"])
        #expect(set.documents.last?.file == "Manifests/servers/time.yaml")
        #expect(set.documents.last?.root?["name"]?.location.file == "Manifests/servers/time.yaml")
    }
}

@Suite struct IgnoreRulesTests {
    @Test(arguments: [
        ("*.yaml", "a/b/c.yaml", false, true),
        ("c.yaml", "a/b/c.yaml", false, true),
        ("b/", "a/b", true, true),
        ("b/", "a/b", false, false),
        ("a/*.yaml", "a/x.yaml", false, true),
        ("a/*.yaml", "a/b/x.yaml", false, false),
        ("/x.yaml", "x.yaml", false, true),
        ("/x.yaml", "d/x.yaml", false, false),
        ("**/x.yaml", "d/e/x.yaml", false, true),
        ("**/x.yaml", "x.yaml", false, true),
        ("a/**", "a/b/c", false, true),
        ("a/**/z", "a/z", false, true),
        ("a/**/z", "a/b/c/z", false, true),
        ("a?.yaml", "ab.yaml", false, true),
        ("[ab].yaml", "b.yaml", false, true),
        ("[!ab].yaml", "b.yaml", false, false),
        ("# comment", "# comment", false, false),
    ])
    func patterns(pattern: String, path: String, isDirectory: Bool, ignored: Bool) {
        #expect(IgnoreRules(pattern).ignores(path, isDirectory: isDirectory) == ignored)
    }

    @Test func negationLastMatchWins() {
        let rules = IgnoreRules("*.yaml\n!keep.yaml\n")
        #expect(rules.ignores("drop.yaml", isDirectory: false))
        #expect(!rules.ignores("keep.yaml", isDirectory: false))
    }
}
