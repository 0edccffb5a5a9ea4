import FleetCore
import Foundation
import Logging
import ServiceLifecycle

/// What the controller converges on: the rendered desired state with where it came from and the
/// supply-chain verdicts (a blocked revision is never rolled out).
public struct DesiredStateSnapshot: Sendable {
    public var desired: DesiredState
    /// Content hash of the manifests this was rendered from.
    public var fingerprint: String
    /// The git commit of the manifests, when they live in a git work tree.
    public var commit: String?
    public var verdicts: [String: PolicyVerdict]
    /// Per server: the committed contract, the contracts mode and the tool lists (docs/designs/0010-tool-contracts.md).
    public var contracts: [String: ContractExpectation]

    public init(desired: DesiredState, fingerprint: String, commit: String? = nil, verdicts: [String: PolicyVerdict] = [:],
                contracts: [String: ContractExpectation] = [:]) {
        self.desired = desired
        self.fingerprint = fingerprint
        self.commit = commit
        self.verdicts = verdicts
        self.contracts = contracts
    }
}

/// A cheap change detector for a manifest directory: FNV-1a over every file's path, size and bytes
/// (YAML files and `.mcpfleetignore`; hidden directories such as `.git` and state dirs are skipped).
public enum DirectoryFingerprint {
    public static func compute(_ root: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ bytes: some Sequence<UInt8>) {
            for b in bytes {
                hash ^= UInt64(b)
                hash = hash &* 0x0000_0100_0000_01b3
            }
        }
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: root) else { return "missing" }
        var files: [String] = []
        while let rel = walker.nextObject() as? String {
            let name = (rel as NSString).lastPathComponent
            if name.hasPrefix(".") && name != ".mcpfleetignore" {
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), isDir.boolValue { walker.skipDescendants() }
                continue
            }
            if name.hasSuffix(".yaml") || name.hasSuffix(".yml") || name == ".mcpfleetignore" || name.hasSuffix(".py") || name.hasSuffix(".json") || name.hasSuffix(".sig") || name.hasSuffix(".pub") {
                files.append(rel)
            }
        }
        for rel in files.sorted() {
            mix(rel.utf8)
            mix([0])
            if let data = fm.contents(atPath: root + "/" + rel) { mix(data) }
            mix([0xff])
        }
        return String(hash, radix: 16)
    }
}

/// Runs `git pull --ff-only` in the manifest directory every interval (argv, never a shell).
public struct GitPuller: Service {
    let directory: String
    let intervalMs: Int64
    let clock: any ControllerClock
    let logger: Logger

    public init(directory: String, intervalMs: Int64, clock: any ControllerClock, logger: Logger) {
        self.directory = directory
        self.intervalMs = intervalMs
        self.clock = clock
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            pull()
            do { try await cancelWhenGracefulShutdown { try await clock.sleep(milliseconds: intervalMs) } } catch { return }
        }
    }

    /// One pull; failures are logged and retried at the next interval (the last good manifests stay in force).
    public func pull() {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "-C", directory, "pull", "--ff-only", "--quiet"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        do {
            try p.run()
            let data = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            if p.terminationStatus != 0 {
                logger.warning("git pull failed; keeping the manifests as they are", metadata: [
                    "directory": "\(directory)", "status": "\(p.terminationStatus)",
                    "stderr": "\(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))",
                ])
            }
        } catch {
            logger.warning("cannot run git pull", metadata: ["directory": "\(directory)", "error": "\(error)"])
        }
    }
}
