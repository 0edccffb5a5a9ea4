import FleetState
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a child process ended, as the driver reports it (a status, never its output).
enum ExitStatus: Hashable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Not our child: it is gone, but its parent collected the status.
    case vanished

    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signaled(signal)
    }

    var description: String {
        switch self {
        case .exited(let code): return "exited with status \(code)"
        case .signaled(let signal): return "killed by signal \(signal)"
        case .vanished: return "is no longer running"
        }
    }
}

struct SpawnError: Error, CustomStringConvertible {
    var description: String
}

#if os(Linux)
enum GlibcExtras {
    typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, UnsafePointer<CChar>?) -> Int32
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    nonisolated(unsafe) private static let handle = dlopen(nil, RTLD_NOW)
    static let addChdir: AddChdir? = dlsym(handle, "posix_spawn_file_actions_addchdir_np").map { unsafeBitCast($0, to: AddChdir.self) }
    static let addCloseFrom: AddCloseFrom? = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: AddCloseFrom.self) }
}
#endif

/// The system calls the supervisor needs, kept in one place.
enum ProcessControl {
    /// Starts `argv` as the leader of a new process group (so the whole tree can be signalled), stdin
    /// from /dev/null, stdout and stderr appended to `logPath`, no inherited descriptors besides those.
    /// Never through a shell: each argument reaches the program verbatim.
    static func spawn(executable: String, argv: [String], environment: [String], workingDirectory: String, logPath: String) throws -> pid_t {
        let logFD = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        guard logFD >= 0 else { throw SpawnError(description: "cannot open log file \(logPath): \(errorText())") }
        defer { close(logFD) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, logFD, 1)
        posix_spawn_file_actions_adddup2(&actions, logFD, 2)
        #if os(Linux)
        // glibc's *_np file actions are not in Swift's Glibc module view; both exist since glibc 2.34.
        guard let addChdir = GlibcExtras.addChdir, let addCloseFrom = GlibcExtras.addCloseFrom else {
            throw SpawnError(description: "this C library lacks posix_spawn_file_actions_addchdir_np/addclosefrom_np (glibc 2.34 or newer needed)")
        }
        _ = addChdir(&actions, workingDirectory)
        _ = addCloseFrom(&actions, 3)
        #endif

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup($0) } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, cArgs, cEnv)
        guard rc == 0 else { throw SpawnError(description: "cannot start \(executable): \(String(cString: strerror(rc)))") }
        return pid
    }

    struct ProcStat {
        var state: Character
        var processGroup: Int32
        /// Field 22 of /proc/<pid>/stat: clock ticks after boot when the process started. With the pid it
        /// names one process for the life of the machine, so a recycled pid is never mistaken for ours.
        var startTime: Int64
    }

    /// Read into a stack buffer and parsed in place (the supervisor checks every adopted instance's
    /// identity once a second: a `String` split per read was most of that check's cost).
    static func stat(_ pid: pid_t) -> ProcStat? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 2048) { buffer -> ProcStat? in
            var n = 0
            while n < buffer.count {
                let r = read(fd, buffer.baseAddress! + n, buffer.count - n)
                if r < 0 && errno == EINTR { continue }
                guard r > 0 else { break }
                n += r
            }
            // The command name (field 2) may hold anything, ")" too: the fields after it start at the last ")".
            guard n > 0, var i = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")) else { return nil }
            i += 1
            var field = -1, state: UInt8 = 0, pgrp: Int64 = 0, start: Int64 = 0, digits = 0, startDigits = 0
            while i < n, field <= 19 {
                let c = buffer[i]
                if c == UInt8(ascii: " ") {
                    field += 1
                    digits = 0
                } else if field == 0 {
                    state = c
                } else if field == 2 || field == 19 {
                    guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9"), digits < 18 else { return nil }
                    digits += 1
                    if field == 2 { pgrp = pgrp * 10 + Int64(c - UInt8(ascii: "0")) } else {
                        start = start * 10 + Int64(c - UInt8(ascii: "0"))
                        startDigits += 1
                    }
                }
                i += 1
            }
            guard field >= 19, state != 0, startDigits > 0, let group = Int32(exactly: pgrp) else { return nil }
            return ProcStat(state: Character(UnicodeScalar(state)), processGroup: group, startTime: start)
        }
    }

    /// The process `pid` exists, is not a zombie, and started at `startTime`.
    static func isAlive(_ pid: pid_t, startTime: Int64) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM, let s = stat(pid) else { return false }
        return s.startTime == startTime && s.state != "Z" && s.state != "X"
    }

    enum ReapResult { case running, exited(ExitStatus), notOurChild }

    /// Collects a child's exit status without blocking.
    static func reap(_ pid: pid_t) -> ReapResult {
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid { return .exited(ExitStatus(waitStatus: status)) }
        if rc == 0 { return .running }
        return .notOurChild
    }

    static func signalGroup(_ pgid: pid_t, _ signal: Int32) {
        guard pgid > 1 else { return }
        _ = kill(-pgid, signal)
    }

    /// Something accepts TCP connections on 127.0.0.1:port (a cheap readiness check).
    static func isListening(port: Int) -> Bool {
        #if os(Linux)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(truncatingIfNeeded: port).bigEndian)
        addr.sin_addr.s_addr = in_addr_t(UInt32(0x7f00_0001).bigEndian)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0
    }

    /// An executable on `searchPath` (colon-separated), as a shell would find it.
    static func which(_ program: String, searchPath: String) -> String? {
        for dir in searchPath.split(separator: ":", omittingEmptySubsequences: true) {
            let candidate = "\(dir)/\(program)"
            if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
        }
        return nil
    }

    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// One `stat` (FileManager's attributes also look up the owner's names: too dear once per instance per tick).
    static func fileSize(_ path: String) -> Int? {
        var st = SwiftGlibc.stat()
        guard fstatat(AT_FDCWD, path, &st, 0) == 0 else { return nil }
        return Int(st.st_size)
    }

    /// Process-group leaders whose environment holds `name=<prefix>…`, with the rest of that value: how a
    /// restarted driver finds an instance started just before the previous one died, before it recorded the pid.
    static func findMarked(variable name: String, prefix: String) -> [(pid: pid_t, value: String, startTime: Int64)] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var found: [(pid_t, String, Int64)] = []
        let needle = "\(name)=\(prefix)"
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = pid_t(name), pid > 1, let s = stat(pid), s.processGroup == pid, s.state != "Z" else { continue }
            guard let environ = readFile("/proc/\(pid)/environ", limit: 1 << 20) else { continue }
            for variable in environ.split(separator: "\0") where variable.hasPrefix(needle) {
                found.append((pid, String(variable.dropFirst(needle.count)), s.startTime))
            }
        }
        return found
    }

    /// Process-group leaders carrying the instance marker whose standard output goes to a file under
    /// `logDirectory`: instances some driver on that state directory started, whatever its database says.
    static func instancesLogging(under logDirectory: String, marker: String) -> [PortOwnership.Holder] {
        var buffer = [CChar](repeating: 0, count: 4096)
        return findMarked(variable: marker, prefix: "").compactMap { found -> PortOwnership.Holder? in
            let n = readlink("/proc/\(found.pid)/fd/1", &buffer, buffer.count - 1)
            guard n > 0 else { return nil }
            let target = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard target.hasPrefix(logDirectory.hasSuffix("/") ? logDirectory : logDirectory + "/") else { return nil }
            return PortOwnership.Holder(pid: found.pid, command: PortOwnership.commandLine(of: found.pid))
        }.sorted { $0.pid < $1.pid }
    }

    static func readFile(_ path: String, limit: Int) -> String? { PortOwnership.readText(path, limit: limit) }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
