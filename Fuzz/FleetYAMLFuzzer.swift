// libFuzzer harness for FleetYAML: any input must load without crashing, within limits, and
// produce well-formed positions. Build and run with Fuzz/run.sh.
import FleetCore
import FleetYAML

private let limits = YAMLLimits(maxBytes: 1 << 20, maxDepth: 64, maxAliasExpansion: 10_000, maxDocumentsPerFile: 1_000)

private func check(_ diagnostics: [Diagnostic], _ documents: [SourceDocument]) {
    for d in diagnostics {
        if let l = d.location, l.line < 1 || l.column < 1 { fatalError("bad diagnostic position \(d)") }
    }
    var last = -1
    for doc in documents {
        if doc.index <= last { fatalError("document indices not increasing") }
        last = doc.index
        if doc.location.line < 1 || doc.location.column < 1 { fatalError("bad document position") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    let result = YAMLLoader.parse(bytes, file: "fuzz.yaml", limits: limits)
    check(result.diagnostics, result.documents)
    _ = YAMLLoader.rawEventCount(bytes)
    // The same bytes as an ignore file and as a manifest under a few paths exercise the loader's
    // ignore rules and path handling.
    let set = ManifestLoader.load(
        root: "root",
        files: [(".mcpfleetignore", bytes), ("a/b.yaml", bytes), ("c.yml", bytes), (".h/d.yaml", bytes)],
        limits: limits)
    check(set.diagnostics, [])
    for file in set.files { check([], file.documents) }
    return 0
}
