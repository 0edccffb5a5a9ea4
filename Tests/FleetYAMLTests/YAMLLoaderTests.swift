import FleetCore
@testable import FleetYAML
import Testing

private func load(_ text: String, limits: YAMLLimits = .default) -> YAMLParseResult {
    YAMLLoader.parse(text, file: "m.yaml", limits: limits)
}

private func codes(_ r: YAMLParseResult) -> [String] { r.diagnostics.map(\.code) }

private func at(_ line: Int, _ column: Int) -> FleetCore.SourceLocation {
    FleetCore.SourceLocation(file: "m.yaml", line: line, column: column)
}

@Suite struct PositionTests {
    @Test func keysValuesAndItemsCarryTheirStartMarks() throws {
        let r = load("""
            name: time
            spec:
              args:
                - one
                - "two"
            """)
        #expect(r.diagnostics.isEmpty)
        let root = try #require(r.documents.first?.root)
        #expect(root.location == at(1, 1))
        let entries = try #require(root.mapping)
        #expect(entries[0].key.location == at(1, 1))
        #expect(entries[0].value.location == at(1, 7))
        #expect(entries[1].key.location == at(2, 1))
        let args = try #require(root["spec"]?.mapping?.first)
        #expect(args.key.location == at(3, 3))
        #expect(args.value.location == at(4, 5))
        let items = try #require(args.value.sequence)
        #expect(items.map(\.location) == [at(4, 7), at(5, 7)])
        #expect(items[1].scalar == Scalar("two", style: .doubleQuoted))
    }

    @Test func columnsCountUnicodeScalars() throws {
        let r = load("é: ü\n")
        let entry = try #require(r.documents.first?.root?.mapping?.first)
        #expect(entry.value.location == at(1, 4))
    }

    @Test func leadingByteOrderMarkIsIgnored() throws {
        let r = YAMLLoader.parse([0xEF, 0xBB, 0xBF] + Array("a: b\n".utf8), file: "m.yaml")
        #expect(r.diagnostics.isEmpty)
        let entry = try #require(r.documents.first?.root?.mapping?.first)
        #expect(entry.key.location == at(1, 1))
        #expect(entry.value.scalar?.text == "b")
    }
}

@Suite struct ScalarTests {
    @Test func scalarsStayUntypedText() throws {
        let r = load("version: 1.10\non: NO\nport: 080\nempty:\nnull: ~\n")
        #expect(r.diagnostics.isEmpty)
        let root = try #require(r.documents.first?.root)
        #expect(root["version"]?.scalar == Scalar("1.10", style: .plain))
        #expect(root["on"]?.scalar == Scalar("NO", style: .plain))
        #expect(root.mapping?[1].key.scalar == Scalar("on", style: .plain))
        #expect(root["port"]?.scalar?.text == "080")
        #expect(root["empty"]?.isNull == true)
        #expect(root["null"]?.scalar?.text == "~")
    }

    @Test func stylesAndTagsAreKept() throws {
        let r = load("""
            a: 'single'
            b: "double"
            c: |
              literal
            d: >
              folded
              text
            e: !!str 5
            f: !!int "7"
            """)
        #expect(r.diagnostics.isEmpty)
        let root = try #require(r.documents.first?.root)
        #expect(root["a"]?.scalar == Scalar("single", style: .singleQuoted))
        #expect(root["b"]?.scalar == Scalar("double", style: .doubleQuoted))
        #expect(root["c"]?.scalar == Scalar("literal\n", style: .literal))
        #expect(root["d"]?.scalar == Scalar("folded text\n", style: .folded))
        #expect(root["e"]?.scalar == Scalar("5", style: .plain, tag: "tag:yaml.org,2002:str"))
        #expect(root["f"]?.scalar == Scalar("7", style: .doubleQuoted, tag: "tag:yaml.org,2002:int"))
    }
}

@Suite struct DocumentTests {
    @Test func multipleDocumentsWithEmptyOnes() throws {
        let r = load("a: 1\n---\n---\n# just a comment\n---\nb: 2\n...\n")
        #expect(r.diagnostics.isEmpty)
        #expect(r.documents.map(\.index) == [0, 1, 2, 3])
        #expect(r.documents.map { $0.root == nil } == [false, true, true, false])
        #expect(r.documents[3].root?["b"]?.scalar?.text == "2")
        #expect(r.documents[1].location == at(2, 1))
        #expect(r.documents.allSatisfy { $0.file == "m.yaml" })
    }

    @Test func commentOnlyAndEmptyFilesAreOneEmptyDocument() {
        for text in ["", "# nothing here\n", "\n\n"] {
            let r = load(text)
            #expect(r.diagnostics.isEmpty)
            #expect(r.documents.count == 1)
            #expect(r.documents.first?.root == nil)
        }
    }

    @Test func documentCountLimit() {
        let r = load("a: 1\n---\nb: 2\n---\nc: 3\n", limits: YAMLLimits(maxDocumentsPerFile: 2))
        #expect(codes(r) == ["yaml-size-limit"])
        #expect(r.documents.count == 2)
    }
}

@Suite struct AliasTests {
    @Test func aliasReusesTheAnchoredNode() throws {
        let r = load("base: &b {image: x, port: 1}\ncopy: *b\nname: &n hello\nagain: *n\n")
        #expect(r.diagnostics.isEmpty)
        let root = try #require(r.documents.first?.root)
        let base = try #require(root["base"])
        let copy = try #require(root["copy"])
        #expect(copy.mapping == base.mapping)
        #expect(copy.location == at(2, 7))
        #expect(root["again"]?.scalar?.text == "hello")
    }

    @Test func mergeKeysExplicitWinsThenEarlierSource() throws {
        let r = load("""
            a: &a {x: 1, y: 1}
            b: &b {y: 2, z: 2, w: 2}
            c:
              <<: [*a, *b]
              x: 3
            d:
              w: 4
              <<: *b
            """)
        #expect(r.diagnostics.isEmpty)
        let root = try #require(r.documents.first?.root)
        let c = try #require(root["c"])
        #expect(c["x"]?.scalar?.text == "3")
        #expect(c["y"]?.scalar?.text == "1")
        #expect(c["z"]?.scalar?.text == "2")
        #expect(c.mapping?.compactMap(\.keyText) == ["y", "z", "w", "x"])
        let d = try #require(root["d"])
        #expect(d.mapping?.compactMap(\.keyText) == ["w", "y", "z"])
        #expect(d["w"]?.scalar?.text == "4")
    }

    @Test func quotedMergeKeyIsAnOrdinaryKey() throws {
        let r = load("a: &a {x: 1}\nb:\n  '<<': *a\n")
        #expect(r.diagnostics.isEmpty)
        #expect(r.documents.first?.root?["b"]?.mapping?.first?.keyText == "<<")
    }

    @Test func mergeOfAScalarIsAnError() {
        let r = load("b:\n  <<: hello\n  x: 1\n")
        #expect(codes(r) == ["yaml-syntax"])
    }

    @Test func undefinedAliasIsASyntaxError() {
        let r = load("a: *nowhere\n")
        #expect(codes(r) == ["yaml-syntax"])
        #expect(r.diagnostics.first?.location == at(1, 4))
    }

    @Test func recursiveAliasIsUndefined() {
        let r = load("a: &x [1, *x]\n")
        #expect(codes(r) == ["yaml-syntax"])
    }

    @Test func billionLaughsIsRejected() {
        var text = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"]
        var previous = "a"
        for n in names {
            text += "\(n): &\(n) [" + Array(repeating: "*\(previous)", count: 9).joined(separator: ",") + "]\n"
            previous = n
        }
        text += "---\nafter: ok\n"
        #expect(text.utf8.count < 1000)
        let r = load(text)
        #expect(codes(r) == ["yaml-alias-limit"])
        // The bomb's document is dropped; the next one is still read.
        #expect(r.documents.count == 1)
        #expect(r.documents.first?.index == 1)
        #expect(r.documents.first?.root?["after"]?.scalar?.text == "ok")
    }

    @Test func mergeBombIsRejected() {
        var text = "a: &a {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7, k8: 8, k9: 9}\n"
        for i in 0..<30 {
            text += "m\(i): &m\(i)\n  <<: [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        }
        let r = load(text, limits: YAMLLimits(maxAliasExpansion: 1000))
        #expect(codes(r) == ["yaml-alias-limit"])
    }
}

@Suite struct LimitTests {
    @Test func deepFlowSequenceIsRejected() {
        let text = String(repeating: "[", count: 20_000) + String(repeating: "]", count: 20_000)
        let r = load(text)
        #expect(codes(r) == ["yaml-depth-limit"])
        #expect(r.diagnostics.first?.location == at(1, 65))
        #expect(r.documents.isEmpty)
    }

    @Test func deepFlowMappingIsRejected() {
        let text = String(repeating: "{a: ", count: 20_000) + "1" + String(repeating: "}", count: 20_000)
        #expect(codes(load(text)) == ["yaml-depth-limit"])
    }

    @Test func deepBlockMappingIsRejected() {
        var text = ""
        for i in 0..<100 {
            text += String(repeating: " ", count: i) + "k:\n"
        }
        #expect(codes(load(text)) == ["yaml-depth-limit"])
        #expect(codes(load(text, limits: YAMLLimits(maxDepth: 200))) == [])
    }

    @Test func depthAtTheLimitIsAccepted() {
        let text = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect(codes(load(text)) == [])
        let deeper = "[" + text + "]"
        #expect(codes(load(deeper)) == ["yaml-depth-limit"])
    }

    @Test func sizeLimitIsCheckedBeforeParsing() {
        let r = load("a: [unclosed\n", limits: YAMLLimits(maxBytes: 8))
        #expect(codes(r) == ["yaml-size-limit"])
        #expect(r.documents.isEmpty)
    }
}

@Suite struct ErrorTests {
    @Test func duplicateKeysNameTheKeyAndFirstLine() throws {
        let r = load("a: 1\nb: 2\na: 3\n")
        #expect(codes(r) == ["yaml-duplicate-key"])
        let d = try #require(r.diagnostics.first)
        #expect(d.location == at(3, 1))
        #expect(d.message.contains("'a'"))
        #expect(d.message.contains("line 1"))
        #expect(r.documents.first?.root?["a"]?.scalar?.text == "1")
        #expect(r.documents.first?.root?.mapping?.count == 2)
    }

    @Test func duplicateKeysInALargeMapping() throws {
        var text = ""
        for i in 0..<40 { text += "k\(i): \(i)\n" }
        text += "k7: again\n"
        let r = load(text)
        #expect(codes(r) == ["yaml-duplicate-key"])
        #expect(r.diagnostics.first?.location == at(41, 1))
        #expect(r.diagnostics.first?.message.contains("line 8") == true)
    }

    @Test func invalidUTF8HasAPosition() throws {
        let bytes = Array("a: ok\nbé: ".utf8) + [0xC3, 0x28] + Array("\n".utf8)
        let r = YAMLLoader.parse(bytes, file: "m.yaml")
        #expect(codes(r) == ["yaml-invalid-utf8"])
        #expect(r.diagnostics.first?.location == at(2, 5))
    }

    @Test func utf16IsInvalidUTF8() {
        let r = YAMLLoader.parse([0xFF, 0xFE, 0x61, 0x00], file: "m.yaml")
        #expect(codes(r) == ["yaml-invalid-utf8"])
        #expect(r.diagnostics.first?.location == at(1, 1))
    }

    @Test func syntaxErrorPositionAndEarlierDocumentsKept() throws {
        let r = load("a: 1\n---\nb: 2\n c: 3\n")
        #expect(codes(r) == ["yaml-syntax"])
        let d = try #require(r.diagnostics.first)
        #expect(d.location == at(4, 3))
        #expect(d.message.contains("mapping values are not allowed"))
        #expect(r.documents.count == 1)
        #expect(r.documents.first?.root?["a"]?.scalar?.text == "1")
    }

    @Test func unclosedFlowSequence() throws {
        let r = load("a: [1, 2\nb: 3\n")
        #expect(codes(r) == ["yaml-syntax"])
        #expect(r.diagnostics.first?.message.contains("while parsing a flow sequence") == true)
    }

    @Test func unsupportedTags() {
        #expect(codes(load("a: !foo bar\n")) == ["yaml-tag"])
        #expect(codes(load("a: !!python/object:os.system {}\n")) == ["yaml-tag"])
        #expect(codes(load("a: !!map x\n")) == ["yaml-tag"])
        #expect(codes(load("a: !!seq [1]\nb: !!map {x: 1}\nc: !!null ~\nd: !!bool true\ne: !!float 1.5\n")) == [])
        let r = load("a: !foo bar\n")
        #expect(r.diagnostics.first?.location == at(1, 4))
        #expect(r.diagnostics.first?.message.contains("!foo") == true)
    }

    @Test func complexKeys() {
        let r = load("? [a, b]\n: 1\nc: 2\n")
        #expect(codes(r) == ["yaml-complex-key"])
        #expect(r.diagnostics.first?.location == at(1, 3))
        #expect(r.documents.first?.root?.mapping?.compactMap(\.keyText) == ["c"])
        #expect(codes(load("{[a]: 1}")) == ["yaml-complex-key"])
        #expect(codes(load("{{a: 1}: 1}")) == ["yaml-complex-key"])
    }

    @Test func allDiagnosticsOfADocumentAreReported() {
        let r = load("a: 1\na: 2\nb: !foo x\n? [x]\n: y\n")
        #expect(Set(codes(r)) == ["yaml-duplicate-key", "yaml-tag", "yaml-complex-key"])
    }

    @Test func rawEventCountCountsEvents() {
        // stream start, doc start, mapping start, 2 scalars, mapping end, doc end, stream end
        #expect(YAMLLoader.rawEventCount(Array("a: b\n".utf8)) == 8)
        #expect(YAMLLoader.rawEventCount([]) == 2)
    }
}
