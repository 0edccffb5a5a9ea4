@testable import FleetCore
import Testing

@Suite struct ParallelTests {
    @Test func mapKeepsOrderForEverySize() {
        for count in [0, 1, 2, 7, 255, 256, 511, 512, 513, 1_000, 10_007] {
            let out = Parallel.map(count, minimumChunk: 3) { i in "item-\(i)" }
            #expect(out == (0..<count).map { "item-\($0)" }, "count \(count)")
        }
    }

    @Test func chunksCoverTheRangeOnceInOrder() {
        for count in [0, 1, 5, 64, 1_000, 4_099] {
            let ranges = Parallel.chunks(count, minimumChunk: 4) { $0 }
            #expect(ranges.first?.lowerBound ?? 0 == 0)
            #expect(ranges.last?.upperBound ?? 0 == count)
            for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
            if Parallel.workers > 1 && count >= 8 { #expect(ranges.count > 1, "count \(count) ran in one chunk") }
        }
    }

    @Test func smallInputsRunInOneChunkOnTheCallingThread() {
        #expect(Parallel.chunkCount(0, minimumChunk: 256) == 1)
        #expect(Parallel.chunkCount(511, minimumChunk: 256) == 1)
        #expect(Parallel.chunks(10, minimumChunk: 256) { $0 } == [0..<10])
    }

    @Test func mapMovesReferenceTypesWithoutLeakingOrDoubleFreeing() {
        final class Tracked: Sendable { let id: Int; init(_ id: Int) { self.id = id } }
        weak var probe: Tracked?
        do {
            let out = Parallel.map(2_000, minimumChunk: 10) { Tracked($0) }
            #expect(out.map(\.id) == Array(0..<2_000))
            probe = out[1_234]
            #expect(probe != nil)
        }
        #expect(probe == nil, "elements outlived the array: a retain too many")
    }
}

/// `LiveServer.servingIndex` / `replicaSplit` read revisions in place; they must pick exactly what the
/// straightforward definitions pick (`first(where:)` for a pin, `max(by:)` with the last-good tie-break).
@Suite struct ServingRevisionTests {
    static func reference(_ revisions: [LiveRevision], pinned: String?, lastGood: String?) -> LiveRevision? {
        if let pin = pinned, let r = revisions.first(where: { $0.revision == pin }) { return r }
        return revisions.max { a, b in
            a.replicas != b.replicas ? a.replicas < b.replicas : (b.revision == lastGood && a.revision != lastGood)
        }
    }

    @Test func matchesTheReferenceOnRandomRevisionLists() {
        var rng = SystemRandomNumberGenerator()
        let names = ["r1", "r2", "r3", "r4"]
        for _ in 0..<5_000 {
            let revisions = (0..<Int.random(in: 0...5, using: &rng)).map { k in
                LiveRevision(revision: names.randomElement(using: &rng)!, replicas: Int.random(in: 0...3, using: &rng), ready: 0,
                             fields: [SpecField(path: "version", display: "\(k)")])
            }
            let pinned = Bool.random(using: &rng) ? names.randomElement(using: &rng) : nil
            let lastGood = Bool.random(using: &rng) ? names.randomElement(using: &rng) : nil
            let server = LiveServer(name: "s", revisions: revisions, lastGoodRevision: lastGood, pinnedRevision: pinned)
            #expect(server.servingRevision == Self.reference(revisions, pinned: pinned, lastGood: lastGood), "\(revisions) pin \(pinned ?? "-") good \(lastGood ?? "-")")

            let target = names.randomElement(using: &rng)!
            let split = LiveServer.replicaSplit(revisions, target)
            #expect(split.current == (revisions.first { $0.revision == target }?.replicas ?? 0))
            #expect(split.others == revisions.filter { $0.revision != target }.reduce(0) { $0 + $1.replicas })
        }
    }
}

/// The planner matches desired and live servers by merging the two name-ordered lists; it must give
/// what a name index and a set of names give, duplicates and unsorted input included.
@Suite struct MatchByNameTests {
    @Test func mergeMatchesTheHashedReference() {
        var rng = SystemRandomNumberGenerator()
        let names = ["a", "b", "c", "d", "e", "f", "long-server-name-1", "long-server-name-2"]
        for _ in 0..<3_000 {
            let desired = (0..<Int.random(in: 0...6, using: &rng)).map { _ in
                DesiredServer(name: names.randomElement(using: &rng)!, tenant: "t", version: "1")
            }
            let live = (0..<Int.random(in: 0...6, using: &rng)).map { k in
                LiveServer(name: names.randomElement(using: &rng)!, tenant: "t\(k)", revisions: [])
            }
            let order = Planner.nameOrder(desired.count) { desired[$0].name }
            let (match, gone) = Planner.matchByName(desired, order, live)

            var firstLive: [String: Int] = [:]
            for (i, l) in live.enumerated() where firstLive[l.name] == nil { firstLive[l.name] = i }
            let desiredNames = Set(desired.map(\.name))
            #expect(match == desired.map { firstLive[$0.name] }, "\(desired.map(\.name)) vs \(live.map(\.name))")
            let expectedGone = live.indices.filter { !desiredNames.contains(live[$0].name) }.sorted { live[$0].name < live[$1].name }
            #expect(gone == expectedGone, "\(desired.map(\.name)) vs \(live.map(\.name))")
        }
    }
}

/// `sortInPlace` moves each element once along the permutation's cycles; it must order exactly as the
/// stable `sorted(by:)` does, and leave every element alive once (no leak, no double free).
@Suite struct SortInPlaceTests {
    final class Item { let name: String; let id: Int; init(_ name: String, _ id: Int) { self.name = name; self.id = id } }

    @Test func sortsLikeTheStableSortAndKeepsEveryElementOnce() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            var items = (0..<Int.random(in: 0...40, using: &rng)).map { Item(String(Int.random(in: 0...9, using: &rng)), $0) }
            let expected = items.sorted { $0.name < $1.name }.map(\.id)
            weak var probe = items.first
            items.sortInPlace { $0.pointee.name }
            #expect(items.map(\.id) == expected)
            #expect(Set(items.map(\.id)).count == items.count)
            if let p = probe { #expect(items.contains { $0 === p }) }
        }
    }
}
