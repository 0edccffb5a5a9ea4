// Reading array elements in place. `for x in array`, `map` and passing `array[i]` along copy each
// element whole (every reference in it retained and released); for `Server`-sized values in catalogs
// of thousands that copying was most of what validation, rendering and planning cost.

extension Array {
    /// Calls `body` with a pointer to each element in turn. `pointee` is a borrow: `for x in array` and
    /// `map` copy each element (every reference in it retained and released), which for `Server`-sized
    /// values in catalogs of thousands was most of what a pass over them cost.
    func forEachInPlace(_ body: (UnsafePointer<Element>) throws -> Void) rethrows {
        try withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }
            for i in 0..<all.count { try body(base + i) }
        }
    }

    /// `map`, reading each element in place (see `forEachInPlace`).
    func mapInPlace<T>(_ transform: (UnsafePointer<Element>) throws -> T) rethrows -> [T] {
        try withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return [] }
            var out: [T] = []
            out.reserveCapacity(all.count)
            for i in 0..<all.count { out.append(try transform(base + i)) }
            return out
        }
    }
}

extension Array {
    /// Sorts by `key`, stably (as `sort(by:)` does here), moving each element once: indices are sorted
    /// and the permutation applied by following its cycles. Sorting `Server`-sized values directly
    /// moved each of them ~log n times.
    mutating func sortInPlace(by key: (UnsafePointer<Element>) -> String) {
        let order = withUnsafeBufferPointer { all -> [Int] in
            guard let base = all.baseAddress else { return [] }
            return (0..<all.count).sorted { key(base + $0) < key(base + $1) }
        }
        guard order.enumerated().contains(where: { $0.offset != $0.element }) else { return }
        withUnsafeMutableBufferPointer { all in
            let base = all.baseAddress!
            var done = [Bool](repeating: false, count: all.count)
            // Slot k receives the element at order[k]; each cycle of the permutation is rotated through
            // one temporary.
            for start in 0..<all.count where !done[start] {
                done[start] = true
                guard order[start] != start else { continue }
                let first = (base + start).move()
                var k = start
                while order[k] != start {
                    (base + k).moveInitialize(from: base + order[k], count: 1)
                    k = order[k]
                    done[k] = true
                }
                (base + k).initialize(to: first)
            }
        }
    }
}
