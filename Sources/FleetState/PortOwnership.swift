import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who listens on a TCP port, as the kernel says (Linux: the LISTEN sockets in /proc/net/tcp and tcp6,
/// matched by inode to the descriptors in /proc/<pid>/fd). Host drivers ask it before they probe an
/// instance (is the listener *this instance's* process?) and before they start one (is the port free?),
/// so a foreign process on a replica's port is never mistaken for the replica.
public enum PortOwnership {
    public struct Holder: Hashable, Sendable, CustomStringConvertible {
        public var pid: Int32
        /// The holder's program name (never its arguments; for messages).
        public var command: String

        public var description: String { "pid \(pid) (\(command))" }

        public init(pid: Int32, command: String) {
            self.pid = pid
            self.command = command
        }
    }

    public enum Verdict: Hashable, Sendable {
        /// Nothing listens on the port.
        case free
        /// Every listener on the port belongs to the process tree asked about.
        case owned
        /// Something else listens (alone, or beside ours): the holders found, possibly none when the
        /// socket belongs to a process this one cannot see.
        case foreign([Holder])
        /// This platform cannot tell (not Linux): callers fall back on a plain connect.
        case unknown
    }

    /// One reading of the kernel's socket tables: the inodes of LISTEN sockets by port.
    public struct Listeners: Sendable {
        public let byPort: [Int: [UInt64]]
        public let readable: Bool

        /// The LISTEN sockets now (read once per pass over many instances): through the kernel's
        /// sock_diag netlink interface (what `ss -lt` uses), which walks only the listening table, else
        /// from /proc/net/tcp{,6} — whose reading walks every established socket of the kernel, costly
        /// on a busy host.
        public static func read() -> Listeners {
            #if os(Linux)
            return readNetlink() ?? readProcNet()
            #else
            return Listeners(byPort: [:], readable: false)
            #endif
        }

        /// Through sock_diag netlink only; nil when the kernel does not answer (no netlink, no permission).
        public static func readNetlink() -> Listeners? {
            #if os(Linux)
            return SockDiag.listeningTCP().map { Listeners(byPort: $0, readable: true) }
            #else
            return nil
            #endif
        }

        /// The same from /proc/net/tcp and /proc/net/tcp6 (the fallback, and a cross-check in tests).
        public static func readProcNet() -> Listeners {
            var out: [Int: [UInt64]] = [:]
            var any = false
            for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
                guard let text = PortOwnership.readText(file, limit: 16 << 20) else { continue }
                any = true
                for line in text.split(separator: "\n").dropFirst() {
                    let f = line.split(separator: " ", omittingEmptySubsequences: true)
                    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
                    guard f.count > 9, f[3] == "0A", let colon = f[1].lastIndex(of: ":"),
                          let port = Int(f[1][f[1].index(after: colon)...], radix: 16), let inode = UInt64(f[9]), inode != 0 else { continue }
                    out[port, default: []].append(inode)
                }
            }
            return Listeners(byPort: out, readable: any)
        }

        public func inodes(port: Int) -> [UInt64] { byPort[port] ?? [] }
    }

    /// Whether the listeners on `port` belong to the process tree rooted at `pid` (the instance's
    /// process-group leader and its descendants).
    public static func verdict(port: Int, pid: Int32, listeners: Listeners = .read()) -> Verdict {
        // Nothing listening: no need to walk the process tree.
        guard listeners.readable, !listeners.inodes(port: port).isEmpty else { return listeners.readable ? .free : .unknown }
        return verdict(port: port, processes: tree(of: pid), listeners: listeners)
    }

    /// Whether the listeners on `port` belong to `processes` (for example every process of a systemd
    /// unit's control group).
    public static func verdict(port: Int, processes: [Int32], listeners: Listeners = .read()) -> Verdict {
        #if os(Linux)
        guard listeners.readable else { return .unknown }
        let inodes = Set(listeners.inodes(port: port))
        guard !inodes.isEmpty else { return .free }
        var ours = Set<UInt64>()
        for p in processes {
            ours.formUnion(socketInodes(of: p).intersection(inodes))
            if ours == inodes { return .owned }
        }
        return .foreign(holders(of: inodes.subtracting(ours)))
        #else
        return .unknown
        #endif
    }

    /// The processes of a control group (`cgroup.procs` under the cgroup v2, hybrid or v1 systemd
    /// hierarchy below `root`), as pids of this process's namespace; nil when none can be read.
    public static func controlGroupProcesses(_ group: String, root: String = "") -> [Int32]? {
        for hierarchy in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"] {
            guard let text = readText(root + hierarchy + group + "/cgroup.procs", limit: 1 << 20) else { continue }
            return text.split(separator: "\n").compactMap { Int32($0) }
        }
        return nil
    }

    /// Who holds the listeners on `port`, if anyone (before starting an instance there).
    public static func holders(port: Int, listeners: Listeners = .read()) -> Verdict {
        #if os(Linux)
        guard listeners.readable else { return .unknown }
        let inodes = Set(listeners.inodes(port: port))
        return inodes.isEmpty ? .free : .foreign(holders(of: inodes))
        #else
        return .unknown
        #endif
    }

    /// The processes whose descriptors include one of `inodes` (every process this one can see).
    static func holders(of inodes: Set<UInt64>) -> [Holder] {
        guard !inodes.isEmpty, let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var found: [Holder] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), pid > 0 else { continue }
            if !socketInodes(of: pid).isDisjoint(with: inodes) { found.append(Holder(pid: pid, command: commandLine(of: pid))) }
        }
        return found.sorted { $0.pid < $1.pid }
    }

    /// `pid` and its descendants (through /proc/<pid>/task/<tid>/children), bounded.
    static func tree(of pid: Int32) -> [Int32] {
        var out: [Int32] = []
        var queue = [pid]
        var seen = Set<Int32>()
        while let p = queue.first, out.count < 256 {
            queue.removeFirst()
            guard seen.insert(p).inserted else { continue }
            out.append(p)
            guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(p)/task") else { continue }
            for tid in tasks {
                guard let text = readText("/proc/\(p)/task/\(tid)/children", limit: 1 << 16) else { continue }
                queue += text.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
            }
        }
        return out
    }

    /// Inodes of the sockets among a process's descriptors (`socket:[N]` links in /proc/<pid>/fd).
    static func socketInodes(of pid: Int32) -> Set<UInt64> {
        guard let dir = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(dir) }
        var out = Set<UInt64>()
        var buffer = [CChar](repeating: 0, count: 64)
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard Int(name) != nil else { continue }
            let n = readlink("/proc/\(pid)/fd/\(name)", &buffer, buffer.count - 1)
            guard n > 8 else { continue }
            let link = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard link.hasPrefix("socket:["), link.hasSuffix("]"), let inode = UInt64(link.dropFirst(8).dropLast()) else { continue }
            out.insert(inode)
        }
        return out
    }

    /// A process's program name for messages: the last path component of its `argv[0]` (or its
    /// `comm` when the command line is unreadable), control characters removed, at most 64
    /// characters. Never its arguments: another process's command line can carry its secrets
    /// (`--token=…`), and these messages reach `status`, history and logs.
    public static func commandLine(of pid: Int32) -> String {
        let argv0 = readText("/proc/\(pid)/cmdline", limit: 4096)?.split(separator: "\0", omittingEmptySubsequences: false).first.map(String.init)
        let raw = (argv0?.isEmpty == false ? argv0 : readText("/proc/\(pid)/comm", limit: 64)) ?? ""
        let name = String(raw.split(separator: "/").last ?? "").unicodeScalars.filter { !CharacterSet.controlCharacters.contains($0) }
        let shown = String(String.UnicodeScalarView(name)).trimmingCharacters(in: .whitespaces)
        return shown.isEmpty ? "?" : String(shown.prefix(64))
    }

    /// Reads up to `limit` bytes of a (proc) file, which has no size to go by.
    public static func readText(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension PortOwnership.Verdict {
    /// A sentence for an instance's reason, or nil when the port is ours.
    public func problem(port: Int, instancePid: Int32?) -> String? {
        switch self {
        case .owned, .unknown: return nil
        case .free: return "not yet accepting connections on port \(port)"
        case .foreign(let holders):
            let who = holders.isEmpty ? "another process" : holders.map(\.description).joined(separator: ", ")
            let mine = instancePid.map { ", not by this instance (pid \($0))" } ?? ""
            return "port \(port) is held by \(who)\(mine)"
        }
    }
}

#if os(Linux)
/// The kernel's sock_diag netlink interface (linux/inet_diag.h), for one question: which TCP sockets
/// listen, on which port, with which inode. Asking for the LISTEN state only, the kernel walks only its
/// listening table. The few structures involved are laid out here byte by byte (they are not in the
/// C library's headers Swift imports).
enum SockDiag {
    static let netlinkSockDiag: Int32 = 4          // NETLINK_SOCK_DIAG
    static let sockDiagByFamily: UInt16 = 20       // SOCK_DIAG_BY_FAMILY
    static let done: UInt16 = 3                    // NLMSG_DONE
    static let error: UInt16 = 2                   // NLMSG_ERROR
    static let tcpListen: UInt32 = 10              // TCP_LISTEN
    static let requestDump: UInt16 = 0x1 | 0x300   // NLM_F_REQUEST | NLM_F_DUMP

    /// Port → inodes of the listening TCP sockets (IPv4 and IPv6), or nil when netlink cannot answer.
    static func listeningTCP() -> [Int: [UInt64]]? {
        let fd = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), netlinkSockDiag)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var out: [Int: [UInt64]] = [:]
        for family in [UInt8(AF_INET), UInt8(AF_INET6)] {
            guard ask(fd, family: family, sequence: UInt32(family)), collect(fd, into: &out) else { return nil }
        }
        return out
    }

    /// nlmsghdr (16 bytes) + inet_diag_req_v2 (56 bytes): TCP sockets of `family` in LISTEN state.
    static func ask(_ fd: Int32, family: UInt8, sequence: UInt32) -> Bool {
        var request = [UInt8](repeating: 0, count: 72)
        func put32(_ v: UInt32, at i: Int) { withUnsafeBytes(of: v.littleEndian) { for (k, b) in $0.enumerated() { request[i + k] = b } } }
        func put16(_ v: UInt16, at i: Int) { withUnsafeBytes(of: v.littleEndian) { for (k, b) in $0.enumerated() { request[i + k] = b } } }
        put32(72, at: 0)                                   // nlmsg_len
        put16(sockDiagByFamily, at: 4)                     // nlmsg_type
        put16(requestDump, at: 6)                          // nlmsg_flags
        put32(sequence, at: 8)                             // nlmsg_seq
        request[16] = family                               // sdiag_family
        request[17] = UInt8(IPPROTO_TCP)                   // sdiag_protocol
        put32(1 << tcpListen, at: 20)                      // idiag_states
        // sockaddr_nl: family (2 bytes), padding, pid 0 (the kernel), groups 0.
        var address = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK).littleEndian) { address[0] = $0[0]; address[1] = $0[1] }
        let sent = address.withUnsafeBytes { a in
            request.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, a.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(a.count)) }
        }
        return sent == 72
    }

    /// Reads the dump's answers until NLMSG_DONE: each an inet_diag_msg (source port at offset 4 of the
    /// message, big-endian; inode at offset 68).
    static func collect(_ fd: Int32, into out: inout [Int: [UInt64]]) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            var offset = 0
            while offset + 16 <= n {
                func u32(_ i: Int) -> UInt32 { UInt32(buffer[i]) | UInt32(buffer[i + 1]) << 8 | UInt32(buffer[i + 2]) << 16 | UInt32(buffer[i + 3]) << 24 }
                let length = Int(u32(offset))
                let type = UInt16(buffer[offset + 4]) | UInt16(buffer[offset + 5]) << 8
                guard length >= 16, offset + length <= n else { return false }
                if type == done { return true }
                if type == error { return false }
                let message = offset + 16
                if length >= 16 + 72 {
                    let port = Int(buffer[message + 4]) << 8 | Int(buffer[message + 5])
                    let inode = UInt64(u32(message + 68))
                    if inode != 0 { out[port, default: []].append(inode) }
                }
                offset += (length + 3) & ~3
            }
        }
    }
}
#endif
