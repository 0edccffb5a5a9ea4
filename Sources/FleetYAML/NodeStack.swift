import FleetCore

/// A growable stack of nodes whose elements can be moved out without retain/release traffic
/// (noncopyable, so it owns its buffer and needs no class and no dynamic exclusivity checks):
/// a finished collection's children are moved straight into its exactly-sized array.
struct NodeStack: ~Copyable {
    private var base: UnsafeMutablePointer<Node>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int = 256) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }

    @inline(__always)
    mutating func push(_ node: consuming Node) {
        if count == capacity { grow() }
        (base + count).initialize(to: node)
        count += 1
    }

    private mutating func grow() {
        let newCapacity = capacity * 2
        let newBase = UnsafeMutablePointer<Node>.allocate(capacity: newCapacity)
        newBase.moveInitialize(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    /// The node at `index`, which must be below `count`.
    @inline(__always)
    subscript(index: Int) -> Node { base[index] }

    /// Moves the nodes from `start` to the top into an array and pops them.
    mutating func popSequence(from start: Int) -> [Node] {
        let n = count - start
        guard n > 0 else { return [] }
        let items = [Node](unsafeUninitializedCapacity: n) { buffer, initialized in
            buffer.baseAddress?.moveInitialize(from: base + start, count: n)
            initialized = n
        }
        count = start
        return items
    }

    /// Moves the key/value pairs from `start` to the top into entries and pops them. Pairs whose key
    /// is not a scalar are dropped, their keys appended to `rejected`; an unpaired trailing node is dropped.
    mutating func popEntries(from start: Int, rejected: inout [Node]) -> [MappingEntry] {
        let pairs = (count - start) / 2
        let entries = [MappingEntry](unsafeUninitializedCapacity: pairs) { buffer, initialized in
            var j = 0
            var i = start
            while i + 1 < count {
                let key = (base + i).move()
                let value = (base + i + 1).move()
                i += 2
                if case .scalar = key.value {
                    buffer.initializeElement(at: j, to: MappingEntry(key: key, value: value))
                    j += 1
                } else {
                    rejected.append(key)
                }
            }
            if i < count { (base + i).deinitialize(count: 1) }
            initialized = j
        }
        count = start
        return entries
    }

    mutating func removeAll() {
        base.deinitialize(count: count)
        count = 0
    }
}
