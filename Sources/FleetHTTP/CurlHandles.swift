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

/// An easy handle and its error buffer, used by one transfer at a time. Connections live in the event
/// loop's multi handle (its connection cache), not here, so any handle reuses any idle connection.
final class CurlHandle: @unchecked Sendable {
    let easy: UnsafeMutableRawPointer
    let errorBuffer: UnsafeMutablePointer<CChar>
    let share: CurlShare

    init?(share: CurlShare) {
        guard let easy = curl_easy_init() else { return nil }
        self.easy = easy
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
        errorBuffer.deallocate()
    }
}
