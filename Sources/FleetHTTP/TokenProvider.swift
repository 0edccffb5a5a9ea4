import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Resolves a `BearerToken` to its current value, re-reading token files when they change.
final class TokenProvider: @unchecked Sendable {
    private struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var mtimeSeconds: Int64
        var mtimeNanoseconds: Int64
    }

    private struct State {
        var token: String?
        var identity: FileIdentity?
        var lastCheck: ContinuousClock.Instant?
    }

    private let source: BearerToken
    private let checkInterval: Duration
    private let lock = NSLock()
    private var state = State()  // guarded by `lock`

    init(_ source: BearerToken, checkInterval: Duration = .seconds(1)) {
        self.source = source
        self.checkInterval = checkInterval
    }

    /// The current token. Throws `HTTPError.credentials` only if no token was ever read successfully.
    func current() throws(HTTPError) -> String {
        switch source {
        case .value(let token):
            return token
        case .file(let path):
            lock.lock()
            defer { lock.unlock() }
            let now = ContinuousClock.now
            if let token = state.token, let last = state.lastCheck, now - last < checkInterval {
                return token
            }
            state.lastCheck = now
            let identity = Self.identity(of: path)
            if let token = state.token, let identity, identity == state.identity {
                return token
            }
            do {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                guard let text = String(data: data, encoding: .utf8) else {
                    throw HTTPError.credentials(path: path, message: "not UTF-8")
                }
                let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                guard !token.isEmpty else { throw HTTPError.credentials(path: path, message: "file is empty") }
                guard !token.contains(where: { $0 == "\r" || $0 == "\n" }) else {
                    throw HTTPError.credentials(path: path, message: "token contains a line break")
                }
                state.token = token
                state.identity = identity
                return token
            } catch {
                // Keep using the last good token (e.g. caught mid-rotation); retry at the next check.
                if let token = state.token { return token }
                if let error = error as? HTTPError { throw error }
                throw HTTPError.credentials(path: path, message: Self.describe(error))
            }
        }
    }

    private static func describe(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain,
            let message = strerror(Int32(underlying.code))
        {
            return String(cString: message)
        }
        return ns.localizedDescription
    }

    private static func identity(of path: String) -> FileIdentity? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        #if canImport(Darwin)
            let mtime = st.st_mtimespec
        #else
            let mtime = st.st_mtim
        #endif
        return FileIdentity(
            device: UInt64(st.st_dev), inode: UInt64(st.st_ino), size: Int64(st.st_size),
            mtimeSeconds: Int64(mtime.tv_sec), mtimeNanoseconds: Int64(mtime.tv_nsec))
    }
}
