import Foundation
import Testing

import FleetSupplyChain

struct ToolError: Error, CustomStringConvertible {
    var description: String
}

/// A temporary directory with helpers that make keys and signatures with the `openssl` CLI.
final class Sandbox {
    let dir: URL
    let openssl: String

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("fsc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        openssl = try Sandbox.findOnPath("openssl")
    }

    deinit {
        do { try FileManager.default.removeItem(at: dir) } catch { /* best effort cleanup of a temp dir */ }
    }

    static func findOnPath(_ tool: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for d in path.split(separator: ":") {
            let p = "\(d)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        throw ToolError(description: "\(tool) not found on PATH")
    }

    func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try write(name, Data(text.utf8))
    }

    @discardableResult
    func write(_ name: String, _ data: Data) throws -> String {
        let p = path(name)
        try data.write(to: URL(fileURLWithPath: p))
        return p
    }

    func read(_ name: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path(name))) }

    /// Run `openssl` with argv (no shell); returns stdout; throws with stderr on failure.
    @discardableResult
    func run(_ args: [String]) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: openssl)
        p.arguments = args
        p.currentDirectoryURL = dir
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ToolError(description: "openssl \(args.joined(separator: " ")) failed: \(String(decoding: e, as: UTF8.self))")
        }
        return o
    }

    /// Makes a P-256 private key file `<name>.pem`; returns the public key PEM.
    func p256Key(_ name: String) throws -> String {
        try run(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path("\(name).pem")])
        return String(decoding: try run(["pkey", "-in", path("\(name).pem"), "-pubout"]), as: UTF8.self)
    }

    func ed25519Key(_ name: String) throws -> String {
        try run(["genpkey", "-algorithm", "ed25519", "-out", path("\(name).pem")])
        return String(decoding: try run(["pkey", "-in", path("\(name).pem"), "-pubout"]), as: UTF8.self)
    }

    /// cosign sign-blob format: base64 of the DER signature over SHA-256 of the file, plus newline.
    @discardableResult
    func signP256(key: String, file: String, out: String) throws -> String {
        try run(["dgst", "-sha256", "-sign", path("\(key).pem"), "-out", path("\(out).der"), file])
        let der = try read("\(out).der")
        return try write(out, der.base64EncodedString() + "\n")
    }

    @discardableResult
    func signEd25519(key: String, file: String, out: String, base64: Bool = true) throws -> String {
        try run(["pkeyutl", "-sign", "-inkey", path("\(key).pem"), "-rawin", "-in", file, "-out", path("\(out).raw")])
        let raw = try read("\(out).raw")
        return try write(out, base64 ? Data((raw.base64EncodedString() + "\n").utf8) : raw)
    }

    func sha256Hex(_ file: String) throws -> String {
        let out = String(decoding: try run(["dgst", "-sha256", "-r", file]), as: UTF8.self)
        return String(out.prefix(64))
    }
}

/// A signed artifact with a complete set of evidence, built with openssl.
struct Fixture {
    let box: Sandbox
    let keyPEM: String
    let key: TrustedKey
    let artifact: String
    let digest: String  // hex
    var evidence: ArtifactEvidence

    /// `server.py` for server `time` 1.2.0, signed with P-256 key `release`, with a CycloneDX SBOM,
    /// a clean Grype report and an in-toto statement.
    init(box: Sandbox, server: String = "time", version: String = "1.2.0") throws {
        self.box = box
        keyPEM = try box.p256Key("release")
        key = try TrustedKey(name: "release-2026", pem: keyPEM)
        artifact = try box.write("server.py", "#!/usr/bin/env python3\nprint('hello from \(server)')\n")
        digest = try box.sha256Hex(artifact)
        let sig = try box.signP256(key: "release", file: artifact, out: "server.sig")
        let sbom = try box.write("sbom.cdx.json", Samples.cycloneDX(name: server, version: version, sha256: digest))
        let scan = try box.write("grype.json", Samples.grype(severities: ["Low", "Medium"]))
        let prov = try box.write("intoto.json", Samples.inToto(sha256: digest))
        evidence = ArtifactEvidence(
            server: server, version: version, commandPath: artifact, declaredDigest: "sha256:\(digest)",
            signaturePath: sig, sbomPath: sbom, scanPath: scan, provenancePath: prov)
    }

    func policy(_ name: String = "baseline", mode: GateMode = .enforce, keys: [TrustedKey]? = nil) -> GatePolicy {
        GatePolicy(name: name, mode: mode, requireSignature: true, trustedKeys: keys ?? [key], requireSBOM: true,
                   maxSeverity: .high, requireScan: true, requireProvenance: true, requireDigest: true)
    }
}
