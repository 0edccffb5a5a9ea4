import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Data parallelism for the pure, per-item phases (parsing files, decoding documents, rendering
/// servers): contiguous chunks run on all cores and their results come back **in chunk order**, so
/// merging them gives exactly what a sequential loop gives — same values, same diagnostics, same order.
///
/// `MCPFLEET_THREADS=1` (or `workers` set to 1) runs everything on the calling thread; the benchmarks
/// use it to report single-threaded figures next to the parallel ones.
public enum Parallel {
    /// Worker threads used: `MCPFLEET_THREADS` when set to a positive number, else the online CPUs
    /// (at most 16). Read once.
    public static let workers: Int = {
        if let raw = getenv("MCPFLEET_THREADS"), let n = Int(String(cString: raw)), n > 0 { return min(n, 256) }
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return max(1, min(cpus > 0 ? Int(cpus) : 1, 16))
    }()

    /// Runs `body` over contiguous chunks of `0..<count` and returns the results in chunk order.
    /// Chunks hold at least `minimumChunk` items; with one worker, or too few items to be worth a
    /// thread, there is a single chunk run on the calling thread. `body` must touch only its chunk's
    /// items and shared state that is safe to read concurrently.
    public static func chunks<T>(_ count: Int, minimumChunk: Int, _ body: (Range<Int>) -> T) -> [T] {
        let chunkCount = Self.chunkCount(count, minimumChunk: minimumChunk)
        guard chunkCount > 1 else { return [body(0..<count)] }
        let ranges = (0..<chunkCount).map { c in (count * c / chunkCount)..<(count * (c + 1) / chunkCount) }
        return withoutActuallyEscaping(body) { body in
            let results = UnsafeMutableBufferPointer<T>.allocate(capacity: chunkCount)
            defer { results.baseAddress!.deinitialize(count: chunkCount); results.deallocate() }
            let box = UnsafeSendable(results: results, ranges: ranges, body: body)
            // Each iteration initialises exactly its own slot; concurrentPerform returns after all of them.
            DispatchQueue.concurrentPerform(iterations: chunkCount) { c in
                (box.results.baseAddress! + c).initialize(to: box.body(box.ranges[c]))
            }
            return Array(results)
        }
    }

    /// A parallel `map` over `0..<count`, in order. Each chunk writes its results straight into the
    /// output array's storage (no per-chunk arrays to concatenate: copying them would retain every
    /// reference in every element once more).
    public static func map<T>(_ count: Int, minimumChunk: Int, _ transform: (Int) -> T) -> [T] {
        map(count, minimumChunk: minimumChunk, state: { () }) { _, i in transform(i) }
    }

    /// `map` with a value each run of items shares (a scratch buffer, say): `state()` makes one per
    /// chunk, and `transform` may change it in passing.
    public static func map<S, T>(_ count: Int, minimumChunk: Int, state: () -> S, _ transform: (inout S, Int) -> T) -> [T] {
        guard chunkCount(count, minimumChunk: minimumChunk) > 1 else {
            var st = state()
            return (0..<count).map { transform(&st, $0) }
        }
        return Array(unsafeUninitializedCapacity: count) { buffer, initialized in
            let out = UnsafeMutableBufferPointer(rebasing: buffer[0..<count])
            let box = UnsafeOutput(buffer: out)
            _ = chunks(count, minimumChunk: minimumChunk) { range -> Void in
                var st = state()
                for i in range { (box.buffer.baseAddress! + i).initialize(to: transform(&st, i)) }
            }
            initialized = count
        }
    }

    private struct UnsafeOutput<T>: @unchecked Sendable {
        let buffer: UnsafeMutableBufferPointer<T>
    }

    /// How many chunks `count` items make: a few per worker (so a slow chunk does not leave a core
    /// idle), none smaller than `minimumChunk`.
    static func chunkCount(_ count: Int, minimumChunk: Int) -> Int {
        guard workers > 1, count >= 2 * max(minimumChunk, 1) else { return 1 }
        return max(1, min(workers * 4, count / max(minimumChunk, 1)))
    }

    /// What the concurrent iterations share. Safe because each iteration writes only its own slot of
    /// `results`, `ranges` is read-only, and `body` is documented to be safe to call concurrently.
    private struct UnsafeSendable<T>: @unchecked Sendable {
        let results: UnsafeMutableBufferPointer<T>
        let ranges: [Range<Int>]
        let body: (Range<Int>) -> T
    }
}
