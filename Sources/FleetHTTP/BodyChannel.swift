import Foundation

/// Hands body chunks from the event loop's thread to an async consumer, with backpressure: when more than
/// `highWater` bytes are buffered the producer is told to pause (the transfer is paused with
/// CURL_WRITEFUNC_PAUSE) and it is woken once the consumer has drained the buffer
/// (the loop is asked to resume it).
final class BodyChannel: @unchecked Sendable {
    enum Offer { case accepted, full, closed }

    let displayURL: String
    let highWater: Int
    let lowWater: Int

    private let lock = NSLock()
    // Guarded by `lock`:
    private var chunks: [[UInt8]] = []
    private var buffered = 0
    private var finished = false
    private var failure: HTTPError?
    private var abandoned = false
    private var waiter: CheckedContinuation<[UInt8]?, any Error>?
    private var transfer: Transfer?

    init(displayURL: String, highWater: Int = 1 << 20, lowWater: Int = 256 << 10) {
        self.displayURL = displayURL
        self.highWater = highWater
        self.lowWater = lowWater
    }

    func attach(_ transfer: Transfer) {
        lock.withLock { self.transfer = transfer }
    }

    // MARK: Producer side (event loop thread)

    func offer(_ bytes: UnsafeRawBufferPointer) -> Offer {
        lock.lock()
        if abandoned {
            lock.unlock()
            return .closed
        }
        if buffered >= highWater {
            lock.unlock()
            return .full
        }
        if let waiter {
            self.waiter = nil
            lock.unlock()
            waiter.resume(returning: Array(bytes))
            return .accepted
        }
        chunks.append(Array(bytes))
        buffered += bytes.count
        lock.unlock()
        return .accepted
    }

    /// Whether a paused producer may resume.
    var hasRoom: Bool { lock.withLock { abandoned || buffered < lowWater } }

    func finish(_ error: HTTPError?) {
        lock.lock()
        guard !finished else {
            lock.unlock()
            return
        }
        finished = true
        failure = error
        transfer = nil  // breaks the channel <-> transfer cycle
        let waiter = self.waiter
        self.waiter = nil
        if waiter != nil { failure = nil }
        lock.unlock()
        if let waiter {
            if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
        }
    }

    // MARK: Consumer side

    func next() async throws -> [UInt8]? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8]?, any Error>) in
                lock.lock()
                if abandoned {
                    lock.unlock()
                    continuation.resume(throwing: HTTPError.cancelled(url: displayURL))
                    return
                }
                if !chunks.isEmpty {
                    let data = chunks.count == 1 ? chunks[0] : Array(chunks.joined())
                    let producerMayBePaused = buffered >= highWater
                    chunks = []
                    buffered = 0
                    let transfer = self.transfer
                    lock.unlock()
                    if producerMayBePaused { transfer?.wake() }
                    continuation.resume(returning: data)
                    return
                }
                if finished {
                    let failure = self.failure
                    self.failure = nil  // throw once, then end
                    lock.unlock()
                    if let failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: nil) }
                    return
                }
                waiter = continuation
                lock.unlock()
            }
        } onCancel: {
            self.abandon()
        }
    }

    /// The consumer went away (Task cancelled or stream dropped): abort the transfer.
    func abandon() {
        lock.lock()
        let alreadyDone = abandoned || (finished && chunks.isEmpty && failure == nil)
        abandoned = true
        chunks = []
        buffered = 0
        let waiter = self.waiter
        self.waiter = nil
        let transfer = self.transfer
        self.transfer = nil
        lock.unlock()
        waiter?.resume(throwing: HTTPError.cancelled(url: displayURL))
        if !alreadyDone { transfer?.cancel() }
    }
}

/// Owned by the body stream's unfolding closure: when the stream is dropped, the transfer is aborted.
final class StreamLifetime: Sendable {
    let channel: BodyChannel

    init(_ channel: BodyChannel) { self.channel = channel }

    func next() async throws -> [UInt8]? { try await channel.next() }

    deinit { channel.abandon() }
}
