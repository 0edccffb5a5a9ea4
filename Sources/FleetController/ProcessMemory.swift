import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// glibc's allocator settings for a long-running controller (issue 14, memory at 1,000 servers).
/// Found through `dlsym`: `malloc.h` is not part of Swift's Glibc module, and on other C libraries
/// (musl, Darwin) both are no-ops.
public enum ProcessMemory {
    /// `mallopt(M_ARENA_MAX, n)`: glibc gives each thread that contends for the heap an arena of its
    /// own (up to 8 per core), and memory freed in one arena is not reused by another. The controller's
    /// work hops between the concurrency pool's threads, so its heap spread over a dozen arenas, each
    /// holding free space the others could not use. Called at start-up, before other threads exist.
    /// glibc's own `MALLOC_ARENA_MAX`, when set, wins (an operator's tuning).
    public static func limitArenas(_ n: Int32) {
        #if canImport(Glibc)
        guard getenv("MALLOC_ARENA_MAX") == nil else { return }
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mArenaMax: Int32 = -8  // M_ARENA_MAX in <malloc.h>
        _ = unsafeBitCast(sym, to: MallOpt.self)(mArenaMax, n)
        #endif
    }

    /// `malloc_trim(0)`: returns the free pages inside the heap to the kernel. After a sync pass, the
    /// pass's temporary copies (observations, records, reconcile scratch) are free but their pages
    /// would stay resident until reused; a trim costs about a millisecond per 50 MiB of heap.
    public static func trim() {
        #if canImport(Glibc)
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        _ = unsafeBitCast(sym, to: MallocTrim.self)(0)
        #endif
    }
}
