import FleetCore
import FleetSystemd
import Foundation
import Testing

/// The gateway as a hardened systemd unit (design 0009).
@Suite struct SystemdGatewayUnitTests {
    @Test func theGatewayUnitIsHardenedAndReadsTheControllersState() throws {
        let r = try SystemdRenderer(environment: Fixtures.environment(relax: ["MemoryDenyWriteExecute"]), manifestRoot: "/srv/catalog")
        let unit = try r.gatewayUnit(binary: "/usr/local/bin/mcpfleet", address: "0.0.0.0:9470", secretsDirectory: "/etc/mcpfleet/secrets")
        #expect(unit.name.hasSuffix("-gateway.service"))
        let lines = unit.text.split(separator: "\n").map(String.init)
        let exec = try #require(lines.first { $0.hasPrefix("ExecStart=") })
        #expect(exec.hasPrefix(#"ExecStart="/usr/local/bin/mcpfleet" "gateway" "/srv/catalog" "--env" "#) && exec.contains(#""--address" "0.0.0.0:9470""#), "\(exec)")
        // Every hardening directive but DynamicUser (it reads the controller's root-owned state) and what the environment relaxes.
        #expect(!lines.contains { $0.hasPrefix("DynamicUser=") } && !lines.contains { $0.hasPrefix("MemoryDenyWriteExecute=") })
        for d in ["NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "SystemCallFilter=@system-service", "ReadOnlyPaths=/srv/catalog",
                  "ReadOnlyPaths=/etc/mcpfleet/secrets", "Restart=always"] {
            #expect(lines.contains(d), "\(d) in\n\(unit.text)")
        }
        #expect(lines.contains { $0.hasPrefix("ReadWritePaths=") })
        // systemd itself accepts it.
        let dir = NSTemporaryDirectory() + "gw-unit-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let text = unit.text.replacingOccurrences(of: "/usr/local/bin/mcpfleet", with: "/bin/true")
        try text.write(toFile: dir + "/" + unit.name, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
        p.arguments = ["verify", "--man=no", dir + "/" + unit.name]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = err
        try p.run()
        p.waitUntilExit()
        let out = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        // Paths that do not exist on the test host are fine; syntax errors are not.
        let problems = out.split(separator: "\n").filter { $0.contains(unit.name) && !$0.contains("No such file") && !$0.contains("not executable") && !$0.contains("Failed to prepare") }
        #expect(problems.isEmpty, "\(out)")
    }

    @Test func aGatewayAddressThatIsNotHostPortIsRefused() throws {
        let r = try SystemdRenderer(environment: Fixtures.environment(), manifestRoot: "/srv/catalog")
        #expect(throws: DriverError.self) { try r.gatewayUnit(binary: "/usr/local/bin/mcpfleet", address: "0.0.0.0:9470\nExecStartPre=/bin/sh", secretsDirectory: nil) }
        #expect(throws: DriverError.self) { try r.gatewayUnit(binary: "/usr/local/bin/mcpfleet", address: "no-port", secretsDirectory: nil) }
    }
}
