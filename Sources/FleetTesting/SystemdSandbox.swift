import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real systemd booted as PID 1 of a throwaway PID + mount namespace, for tests (TESTING.md, "Real
/// systemd, in a throwaway sandbox").
///
/// Booted naively, systemd's boot services would empty the machine's shared /tmp and touch sysctl,
/// users and journald files. So the PID-1 script first makes every mount private, mounts fresh tmpfs
/// on /run, /tmp and /var/tmp, and masks every unit that changes shared state, before it execs
/// systemd. The sandbox shares the host network (units' ports are reachable on 127.0.0.1) and the rest
/// of the file system: binaries that units run must live outside /tmp and be readable by any user.
///
/// Reach it with `nsenter -t pid -m -p systemctl …` (see `run`) and its files at `root` (`/proc/PID/root`).
public final class SystemdSandbox: Sendable {
    /// systemd's PID as seen from outside.
    public let pid: Int32
    /// Host directory with the PID-1 script and the boot log.
    public let workDirectory: String
    let launcher: Process

    /// The sandbox's file system as seen from this process (its private /run lives only there).
    public var root: String { "/proc/\(pid)/root" }

    /// Copies a host executable into the sandbox's private /run and returns its path as units see it.
    /// Hardened units run with `PrivateTmp=`, so a binary under the host's /tmp (a CI checkout may live
    /// there) would be invisible to them; /run is readable by their dynamic users.
    public func stage(_ hostPath: String) throws -> String {
        let directory = "/run/mcpfleet-test-bin"
        try FileManager.default.createDirectory(atPath: root + directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        let inside = directory + "/" + (hostPath as NSString).lastPathComponent
        if FileManager.default.fileExists(atPath: root + inside) { return inside }
        try FileManager.default.copyItem(atPath: hostPath, toPath: root + inside)
        chmod(root + inside, 0o755)
        return inside
    }

    /// Units that would change state shared with the host, or are simply not wanted in a test.
    public static let maskedUnits = [
        "systemd-tmpfiles-setup.service", "systemd-tmpfiles-setup-dev.service", "systemd-tmpfiles-clean.timer", "systemd-tmpfiles-clean.service",
        "systemd-sysctl.service", "systemd-sysusers.service", "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
        "proc-sys-fs-binfmt_misc.mount", "systemd-modules-load.service", "modprobe@.service", "kmod-static-nodes.service",
        "systemd-remount-fs.service", "systemd-journal-flush.service", "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
        "systemd-timesyncd.service", "systemd-logind.service", "systemd-user-sessions.service",
        "getty.target", "getty@tty1.service", "console-getty.service", "serial-getty@.service", "container-getty@.service", "getty-static.service",
        "postgresql.service", "postgresql@.service", "cron.service", "ssh.service", "sshd.service",
        "e2scrub_reap.service", "e2scrub_all.timer", "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer", "man-db.timer",
        "systemd-random-seed.service", "systemd-machine-id-commit.service", "systemd-firstboot.service", "systemd-repart.service",
        "systemd-pstore.service", "systemd-pcrphase.service", "systemd-pcrphase-sysinit.service",
        "systemd-udevd.service", "systemd-udev-trigger.service", "systemd-udev-settle.service",
        "systemd-ask-password-wall.path", "systemd-ask-password-console.path", "remote-fs.target",
    ]

    /// Why a sandbox cannot be booted here, or nil. Tests skip with this message; CI runs as root.
    public static var unavailableReason: String? {
        if geteuid() != 0 { return "needs root (unshare --pid --mount and systemd as PID 1); run the tests as root, as CI does" }
        for tool in ["/lib/systemd/systemd", "/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/setsid", "/bin/mount"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed"
        }
        return nil
    }

    /// The PID-1 script: private mounts and masks first, systemd last. `set -e`: if any mount fails,
    /// systemd is never started on shared mounts.
    static func script(pidFile: String) -> String {
        """
        #!/bin/sh
        set -e
        mount --make-rprivate /
        # /proc is still the host's here: our pid as the host sees it is the ppid of `cut`.
        cut -d' ' -f4 /proc/self/stat > '\(pidFile).tmp'
        mv '\(pidFile).tmp' '\(pidFile)'
        mount -t proc -o nosuid,nodev,noexec proc /proc
        mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
        mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
        mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
        mkdir -p /run/systemd/system
        for u in \(maskedUnits.joined(separator: " ")); do
          ln -sf /dev/null "/run/systemd/system/$u"
        done
        exec /lib/systemd/systemd --system --unit=multi-user.target
        """
    }

    init(pid: Int32, workDirectory: String, launcher: Process) {
        self.pid = pid
        self.workDirectory = workDirectory
        self.launcher = launcher
    }

    /// Boots a sandbox and waits until systemd reports running (or degraded).
    public static func boot(timeout: Duration = .seconds(30)) async throws -> SystemdSandbox {
        if let why = unavailableReason { throw SandboxError(message: why) }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("mcpfleet-systemd-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let pidFile = work + "/pid"
        let scriptPath = work + "/pid1.sh"
        try script(pidFile: pidFile).write(toFile: scriptPath, atomically: true, encoding: .utf8)
        chmod(scriptPath, 0o755)
        _ = FileManager.default.createFile(atPath: work + "/boot.log", contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: work + "/boot.log"))

        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        p.arguments = ["/usr/bin/unshare", "--pid", "--fork", "--mount", scriptPath]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = log
        p.standardError = log
        try p.run()

        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var pid: Int32 = 0
        while clock.now < deadline {
            if let text = FileManager.default.contents(atPath: pidFile), let n = Int32(String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) {
                pid = n
                break
            }
            if !p.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard pid > 0 else {
            if p.isRunning { p.terminate() }
            throw SandboxError(message: "the sandbox's PID 1 did not start: \(bootLog(work))")
        }
        let sandbox = SystemdSandbox(pid: pid, workDirectory: work, launcher: p)
        do {
            while !FileManager.default.fileExists(atPath: sandbox.root + "/run/systemd/private") {
                guard clock.now < deadline, p.isRunning else { throw SandboxError(message: "systemd did not open /run/systemd/private in time: \(bootLog(work))") }
                try await Task.sleep(for: .milliseconds(20))
            }
            let remaining = max(1, Int((deadline - clock.now).components.seconds))
            let r = try await sandbox.run(["timeout", String(remaining), "systemctl", "is-system-running", "--wait"])
            let state = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            guard state == "running" || state == "degraded" else {
                throw SandboxError(message: "systemd in the sandbox is \(state.isEmpty ? "not answering" : state): \(r.stderr) \(bootLog(work))")
            }
        } catch {
            sandbox.shutdown()
            throw error
        }
        return sandbox
    }

    static func bootLog(_ work: String) -> String {
        let text = FileManager.default.contents(atPath: work + "/boot.log").map { String(decoding: $0, as: UTF8.self) } ?? ""
        return text.isEmpty ? "(boot log empty)" : "boot log: " + String(text.suffix(2000))
    }

    /// argv for running a command inside the sandbox (for any command runner).
    public func nsenter(_ argv: [String]) -> [String] { ["/usr/bin/nsenter", "-t", String(pid), "-m", "-p", "--"] + argv }

    /// Runs a command inside the sandbox's namespaces.
    public func run(_ argv: [String]) async throws -> SandboxCommandResult {
        try await SandboxCommandResult.run(nsenter(argv))
    }

    public func systemctl(_ args: String...) async throws -> SandboxCommandResult { try await run(["systemctl"] + args) }

    /// SIGKILL to PID 1 ends every process of the namespace and its mounts with it.
    public func shutdown() {
        kill(pid, SIGKILL)
        launcher.waitUntilExit()
        try? FileManager.default.removeItem(atPath: workDirectory)
    }
}

public struct SandboxError: Error, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}

public struct SandboxCommandResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    /// Runs argv (no shell) and collects its output.
    public static func run(_ argv: [String]) async throws -> SandboxCommandResult {
        try await withCheckedThrowingContinuation { continuation in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: argv[0].hasPrefix("/") ? argv[0] : "/usr/bin/env")
            p.arguments = argv[0].hasPrefix("/") ? Array(argv.dropFirst()) : argv
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = FileHandle.nullDevice
            let box = DataBox()
            let group = DispatchGroup()
            for (pipe, isOut) in [(out, true), (err, false)] {
                group.enter()
                DispatchQueue.global().async {
                    box.set(pipe.fileHandleForReading.readDataToEndOfFile(), stdout: isOut)
                    group.leave()
                }
            }
            p.terminationHandler = { proc in
                group.notify(queue: .global()) {
                    let (o, e) = box.value
                    continuation.resume(returning: SandboxCommandResult(status: proc.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self)))
                }
            }
            do { try p.run() } catch {
                continuation.resume(throwing: SandboxError(message: "cannot run \(argv[0]): \(error)"))
                return
            }
            // Process closes the parent's write ends after spawning, so the readers see EOF at exit.
        }
    }
}

private final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var out = Data(), err = Data()

    func set(_ d: Data, stdout: Bool) {
        lock.lock(); defer { lock.unlock() }
        if stdout { out = d } else { err = d }
    }

    var value: (Data, Data) {
        lock.lock(); defer { lock.unlock() }
        return (out, err)
    }
}
