// libFuzzer harness for FleetYAML and what follows it: any input must load without crashing, within
// limits, with well-formed positions, then decode, validate, render and plan without crashing.
// Build and run with Fuzz/run.sh.
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
    // Whatever parsed goes on through decoding, cross-document validation, rendering and a plan
    // against an empty live state: no input may crash any of them.
    let loaded = CatalogLoader.from(set: set, baseDirectory: "root") { _ in false }
    check(loaded.diagnostics.items, [])
    for environment in loaded.catalog.environments {
        let desired = Renderer.desiredState(loaded.catalog, environment: environment)
        _ = Planner.plan(desired: desired, live: LiveState(), baseline: "fuzz")
    }
    return 0
}
