import CCurl
import Foundation

/// One libcurl multi handle driven by one dedicated thread: every transfer of a `CurlTransport` runs
/// here, so a hundred concurrent requests or a dozen long-lived watches cost one thread, not one each.
///
/// Other threads never touch the multi handle or an active easy handle: they queue a command (start,
/// cancel, resume a paused stream) and wake the loop with `curl_multi_wakeup`, which interrupts
/// `curl_multi_poll` at once. Completions are delivered from the loop thread (a continuation resumes,
/// nothing blocks). Connections stay in the multi handle's connection cache (`CURLMOPT_MAXCONNECTS`),
/// so every request can reuse any idle connection to its host.
///
/// The thread starts with the first transfer and ends once the transport is gone and no transfer is
/// left (a stream may outlive the transport that opened it).
final class CurlEventLoop: @unchecked Sendable {
    private enum Command {
        case start(Transfer)
        case cancel(Transfer)
        case resume(Transfer)
    }

    private let multi: UnsafeMutableRawPointer
    private let share: CurlShare
    private let idleCapacity: Int

    private let lock = NSLock()
    // Guarded by `lock`:
    private var commands: [Command] = []
    private var closing = false
    private var running = false
    private var idleHandles = 0

    // Loop thread only:
    private var active: [UnsafeMutableRawPointer: Transfer] = [:]
    private var pool: [CurlHandle] = []

    /// - Parameters:
    ///   - maxConnections: idle connections (and idle easy handles) kept for reuse.
    init?(share: CurlShare, maxConnections: Int) {
        guard let multi = curl_multi_init() else { return nil }
        self.multi = multi
        self.share = share
        idleCapacity = max(0, maxConnections)
        // 0 would mean libcurl's own default (4 per added handle); keep at least one idle connection.
        _ = mcpf_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, max(1, maxConnections))
    }

    deinit {
        // Only reached once the thread has exited (it holds the loop while it runs) and every transfer
        // that could queue a command is gone.
        for transfer in active.values { transfer.detach(from: multi) }
        pool.removeAll()
        curl_multi_cleanup(multi)
    }

    /// Idle pooled easy handles (for tests and diagnostics).
    var idleHandleCount: Int { lock.withLock { idleHandles } }

    /// Transfers being driven now (for tests and diagnostics).
    var activeCount: Int { lock.withLock { activeTransfers } }
    private var activeTransfers = 0  // guarded by `lock`, mirrors `active.count`

    func start(_ transfer: Transfer) { submit(.start(transfer)) }
    func cancel(_ transfer: Transfer) { submit(.cancel(transfer)) }
    func resume(_ transfer: Transfer) { submit(.resume(transfer)) }

    /// The transport is gone: the thread ends once the transfers still running are done.
    func close() {
        lock.withLock { closing = true }
        curl_multi_wakeup(multi)
    }

    private func submit(_ command: Command) {
        let startThread: Bool = lock.withLock {
            commands.append(command)
            if running { return false }
            if case .start = command {
                running = true
                return true
            }
            return false
        }
        if startThread {
            let thread = Thread { [self] in run() }
            thread.name = "mcpfleet-http"
            thread.start()
        } else {
            curl_multi_wakeup(multi)
        }
    }

    // MARK: The loop (its own thread)

    private func run() {
        while true {
            let batch: [Command]? = lock.withLock {
                let batch = commands
                commands = []
                if batch.isEmpty && active.isEmpty && closing {
                    running = false
                    return nil
                }
                return batch
            }
            guard let batch else { return }
            for command in batch {
                switch command {
                case .start(let transfer): begin(transfer)
                case .cancel(let transfer): abort(transfer)
                case .resume(let transfer): transfer.resumeIfPaused()
                }
            }
            var stillRunning: Int32 = 0
            let code = curl_multi_perform(multi, &stillRunning)
            if code != CURLM_OK {
                // Not expected outside out-of-memory; fail what runs rather than spin.
                let message = String(cString: curl_multi_strerror(code))
                for transfer in Array(active.values) {
                    finish(transfer, error: .curl(code: -Int(code.rawValue), message: message, url: transfer.request.displayURL))
                }
            }
            var queued: Int32 = 0
            while let message = curl_multi_info_read(multi, &queued) {
                guard message.pointee.msg == CURLMSG_DONE, let easy = message.pointee.easy_handle,
                    let transfer = active[easy]
                else { continue }
                let result = message.pointee.data.result
                finish(transfer, error: transfer.outcome(result))
            }
            let pending = lock.withLock { !commands.isEmpty }
            if pending { continue }
            var events: Int32 = 0
            // libcurl shortens the wait to its own next timeout (connect, request timeouts, retries).
            curl_multi_poll(multi, nil, 0, active.isEmpty ? 10_000 : 1_000, &events)
        }
    }

    private func begin(_ transfer: Transfer) {
        if transfer.isCancelled {
            transfer.complete(.cancelled(url: transfer.request.displayURL))
            return
        }
        guard let handle = pool.popLast() ?? CurlHandle(share: share) else {
            transfer.complete(.curl(code: -1, message: "could not create a libcurl handle", url: transfer.request.displayURL))
            return
        }
        updateCounts()
        if let error = transfer.attach(handle, share: share, multi: multi) {
            recycle(handle)
            transfer.complete(error)
            return
        }
        active[handle.easy] = transfer
        updateCounts()
    }

    private func abort(_ transfer: Transfer) {
        guard let easy = transfer.easy, active[easy] === transfer else { return }  // finished already, or never began
        finish(transfer, error: .cancelled(url: transfer.request.displayURL))
    }

    private func finish(_ transfer: Transfer, error: HTTPError?) {
        guard let easy = transfer.easy else { return }
        active[easy] = nil
        if let handle = transfer.detach(from: multi) { recycle(handle) }
        updateCounts()
        transfer.complete(error)
    }

    private func recycle(_ handle: CurlHandle) {
        if pool.count < idleCapacity { pool.append(handle) }
        updateCounts()
    }

    private func updateCounts() {
        let idle = pool.count, running = active.count
        lock.withLock {
            idleHandles = idle
            activeTransfers = running
        }
    }
}
