import FleetCore
import FleetYAML
import Foundation
import Testing

/// Every file in Manifests/invalid/ breaks one rule; its header says which diagnostic, where.
@Suite struct InvalidCorpusTests {
    static let directory = packageRoot + "/Manifests/invalid"

    static var files: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".yaml") }.sorted()
    }

    @Test func corpusIsThere() {
        #expect(Self.files.count >= 25)
    }

    @Test(arguments: files)
    func eachFileFailsWithItsExpectedDiagnostic(name: String) throws {
        let path = Self.directory + "/" + name
        let text = String(decoding: try #require(FileManager.default.contents(atPath: path)), as: UTF8.self)
        let expectations = text.split(separator: "\n").prefix(while: { $0.hasPrefix("#") }).compactMap { line -> (String, Int?, Int?)? in
            guard line.hasPrefix("# expect: ") else { return nil }
            let parts = line.dropFirst("# expect: ".count).split(separator: " ")
            guard let code = parts.first else { return nil }
            let pos = parts.dropFirst().first?.split(separator: ":").compactMap { Int($0) }
            return (String(code), pos?.first, pos?.last)
        }
        #expect(!expectations.isEmpty, "\(name) has no `# expect:` header")
        let loaded = CatalogLoader.load(path: path)
        let errors = loaded.diagnostics.sorted.filter { $0.severity == .error }
        #expect(errors.count == expectations.count, "\(name): \(loaded.errorsText)")
        for (code, line, column) in expectations {
            let hit = errors.contains { d in
                d.code == code && (line == nil || d.location?.line == line) && (column == nil || d.location?.column == column)
            }
            #expect(hit, "\(name): expected \(code) at \(line ?? 0):\(column ?? 0), got \(loaded.errorsText)")
        }
    }

    @Test func exampleCatalogIsValid() {
        let loaded = CatalogLoader.load(path: packageRoot + "/Manifests")
        #expect(loaded.diagnostics.isEmpty, "\(loaded.errorsText)")
        #expect(loaded.catalog.servers.count >= 3)
        #expect(Set(loaded.catalog.tenants.map(\.name)).count >= 2)
        #expect(Set(loaded.catalog.environments.map(\.driver)) == [.local, .systemd, .kubernetes])
    }
}
