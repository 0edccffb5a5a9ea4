import CCurl
import Foundation

/// `curl_global_init` runs exactly once, on first use (global lets are initialised lazily and atomically).
let curlGlobalInitResult: CURLcode = curl_global_init(mcpf_global_all)

/// A CURLSH sharing the DNS cache and TLS sessions between all handles of one transport.
final class CurlShare: @unchecked Sendable {
    let raw: UnsafeMutablePointer<mcpf_share>

    init?() {
        guard let raw = mcpf_share_new() else { return nil }
        self.raw = raw
    }

    // Handles keep the share alive, so this runs only after every handle was cleaned up.
    deinit { mcpf_share_free(raw) }
}

/// An easy handle plus the multi handle that drives it (and owns its connection cache), used by one
/// transfer at a time. Reusing the pair reuses its open connections.
final class CurlHandle: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    let multi: UnsafeMutableRawPointer
    let errorBuffer: UnsafeMutablePointer<CChar>
    let share: CurlShare

    init?(share: CurlShare) {
        guard let easy = curl_easy_init() else { return nil }
        guard let multi = curl_multi_init() else {
            curl_easy_cleanup(easy)
            return nil
        }
        self.easy = easy
        self.multi = multi
        self.share = share
        errorBuffer = .allocate(capacity: Int(mcpf_error_size) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(mcpf_error_size) + 1)
    }

    var errorMessage: String {
        errorBuffer[Int(mcpf_error_size)] = 0
        return String(cString: errorBuffer)
    }

    deinit {
        curl_easy_cleanup(easy)
        curl_multi_cleanup(multi)
        errorBuffer.deallocate()
    }
}

/// Idle handles kept for reuse.
final class HandlePool: @unchecked Sendable {
    private let lock = NSLock()
    private var idle: [CurlHandle] = []
    private let capacity: Int
    private let share: CurlShare

    init(capacity: Int, share: CurlShare) {
        self.capacity = capacity
        self.share = share
    }

    func checkOut() -> CurlHandle? {
        if let handle = lock.withLock({ idle.popLast() }) { return handle }
        return CurlHandle(share: share)
    }

    func checkIn(_ handle: CurlHandle) {
        // A handle that is not kept is released by the caller, outside the lock.
        lock.withLock {
            if idle.count < capacity { idle.append(handle) }
        }
    }

    var idleCount: Int { lock.withLock { idle.count } }
}
