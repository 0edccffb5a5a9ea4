import FleetCore
import FleetSystemd
import Foundation
import Testing

@Suite struct SystemdRendererTests {
    @Test func goldenServiceUnit() throws {
        let server = try Fixtures.server(name: "time", tenant: "research", version: "1.10",
                                         command: ["python3", "${MANIFEST_DIR}/time/server.py", "--port", "${PORT}", "--replica=${REPLICA}"],
                                         port: 18200, env: [DesiredEnvVar(name: "TIME_DEFAULT_TIMEZONE", value: "UTC"),
                                                            DesiredEnvVar(name: "API_TOKEN", secretRef: SecretReference(name: "time", key: "token"))],
                                         cpuMillis: 250, memoryBytes: 100_663_296, manifestDirectory: "servers")
        let r = try SystemdRenderer(environment: Fixtures.environment(name: "host", stateDir: "/var/lib/mcpfleet/host"), manifestRoot: "/srv/fleet")
        let unit = try r.serviceUnit(server)
        #expect(unit.name == "mcp-time-\(server.revision)@.service")
        let expected = """
        # Managed by mcpfleet (environment host); rewritten on every apply.
        [Unit]
        Description=MCP server time 1.10 (revision \(server.revision)), replica %i
        X-MCPFleet-Managed=yes
        X-MCPFleet-Server=time
        X-MCPFleet-Revision=\(server.revision)
        X-MCPFleet-Tenant=research
        StartLimitIntervalSec=60
        StartLimitBurst=5

        [Service]
        Type=exec
        Slice=mcp-research.slice
        ExecStart="python3" "/srv/fleet/servers/time/server.py" "--port" "${MCPFLEET_PORT}" "--replica=%i"
        EnvironmentFile=/var/lib/mcpfleet/host/systemd/instances/mcp-time-\(server.revision)/%i.env
        EnvironmentFile=/var/lib/mcpfleet/host/systemd/secrets/mcp-time-\(server.revision).env
        Environment="TIME_DEFAULT_TIMEZONE=UTC"
        Restart=on-failure
        RestartSec=1s
        TimeoutStopSec=10s
        CPUQuota=25%
        MemoryMax=100663296
        # Hardening; leave a directive out with spec.systemd.relax in the Environment.
        DynamicUser=yes
        NoNewPrivileges=yes
        ProtectSystem=strict
        ProtectHome=yes
        PrivateTmp=yes
        PrivateDevices=yes
        ProtectKernelTunables=yes
        ProtectKernelModules=yes
        ProtectKernelLogs=yes
        ProtectControlGroups=yes
        ProtectClock=yes
        ProtectHostname=yes
        RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
        RestrictNamespaces=yes
        RestrictRealtime=yes
        RestrictSUIDSGID=yes
        LockPersonality=yes
        MemoryDenyWriteExecute=yes
        SystemCallArchitectures=native
        SystemCallFilter=@system-service
        CapabilityBoundingSet=
        UMask=0077

        """
        #expect(unit.text == expected)
        #expect(r.instanceEnvironment(server: server, slot: 3) == "MCPFLEET_REPLICA=3\nMCPFLEET_PORT=18203\n")
    }

    @Test func goldenSliceWithEscapedTenantName() throws {
        let r = try SystemdRenderer(environment: Fixtures.environment(), manifestRoot: "/srv")
        let slice = try r.sliceUnit(Fixtures.tenant("team-a", cpuMillis: 1500, memoryBytes: 2_147_483_648, tasks: 512))
        // `-` would nest team-a's slice under a tenant called `team`.
        #expect(slice.name == #"mcp-team\x2da.slice"#)
        #expect(slice.text == """
        # Managed by mcpfleet (environment sbx); rewritten on every apply.
        [Unit]
        Description=mcpfleet tenant team-a
        X-MCPFleet-Managed=yes
        X-MCPFleet-Tenant=team-a

        [Slice]
        CPUQuota=150%
        MemoryMax=2147483648
        TasksMax=512

        """)
    }

    @Test(arguments: [
        ("plain", #""plain""#),
        ("100%", #""100%%""#),
        ("$HOME", #""$$HOME""#),
        ("${PATH}", #""$${PATH}""#),
        (#"say "hi""#, #""say \"hi\"""#),
        (#"back\slash"#, #""back\\slash""#),
        ("it's; rm -rf /", #""it's; rm -rf /""#),
        ("%n%i%%", #""%%n%%i%%%%""#),
        ("héllo wörld", #""héllo wörld""#),
    ])
    func execArgumentEscaping(input: String, expected: String) throws {
        #expect(try SystemdSyntax.execArgument(input, resource: "server/x") == expected)
    }

    @Test(arguments: ["a\nExecStartPre=/bin/true", "nul\u{0}byte", "tab\there", "cr\rhere", "del\u{7f}"])
    func controlCharactersAreRefused(input: String) throws {
        #expect(throws: DriverError.self) { try SystemdSyntax.execArgument(input, resource: "server/x") }
        #expect(throws: DriverError.self) { try SystemdSyntax.environmentAssignment(name: "X", value: input, resource: "server/x") }
        let server = try Fixtures.server(name: "evil", command: ["/bin/echo", input])
        let r = try SystemdRenderer(environment: Fixtures.environment(), manifestRoot: "/srv")
        do {
            _ = try r.serviceUnit(server)
            Issue.record("a control character reached a unit")
        } catch let e as DriverError {
            #expect(e.terminal)
            #expect(e.resource == "server/evil")
        }
    }

    @Test func environmentEscaping() throws {
        // `$` means nothing in Environment=; `%` is a specifier; quotes and backslashes are C-unquoted.
        #expect(try SystemdSyntax.environmentAssignment(name: "V", value: #"$HOME 100% "q" \n"#, resource: "s") == #""V=$HOME 100%% \"q\" \\n""#)
        #expect(try SystemdSyntax.environmentFileLine(name: "S", value: "a\"b$c`d\\e\nline2", resource: "s") == "S=\"a\\\"b\\$c\\`d\\\\e\nline2\"\n")
        #expect(throws: DriverError.self) { try SystemdSyntax.environmentAssignment(name: "1BAD", value: "x", resource: "s") }
    }

    @Test func relaxLeavesDirectivesOutAndUnknownNamesAreTerminal() throws {
        let server = try Fixtures.server(name: "py", command: ["/usr/bin/python3", "-m", "http.server"])
        let r = try SystemdRenderer(environment: Fixtures.environment(relax: ["MemoryDenyWriteExecute", "ProtectHome"]), manifestRoot: "/srv")
        let text = try r.serviceUnit(server).text
        #expect(!text.contains("MemoryDenyWriteExecute="))
        #expect(!text.contains("ProtectHome="))
        #expect(text.contains("ProtectSystem=strict"))
        #expect(text.contains("# Relaxed: MemoryDenyWriteExecute, ProtectHome"))
        do {
            _ = try SystemdRenderer(environment: Fixtures.environment(relax: ["ProtectEverything"]), manifestRoot: "/srv")
            Issue.record("unknown relax name accepted")
        } catch let e as DriverError {
            #expect(e.terminal)
            #expect(e.message.contains("ProtectEverything"))
        }
    }

    @Test func secretsNeverReachTheUnitText() throws {
        let server = try Fixtures.server(name: "s", command: ["/bin/true"], env: [DesiredEnvVar(name: "TOKEN", secretRef: SecretReference(name: "api", key: "token"))])
        let text = try SystemdRenderer(environment: Fixtures.environment(), manifestRoot: "/srv").serviceUnit(server).text
        #expect(!text.contains("TOKEN"))
        #expect(text.contains("EnvironmentFile=/run/mcpfleet/sbx/systemd/secrets/"))
    }

    @Test func renderWholeEnvironmentAndRequireCommand() throws {
        let ok = try Fixtures.server(name: "a", command: ["/bin/true"])
        let desired = try Fixtures.desired(tenants: [Fixtures.tenant("platform", tasks: 10)], servers: [ok])
        let units = try SystemdRenderer.render(desired: desired, environment: Fixtures.environment(), manifestRoot: "/srv")
        #expect(units.map(\.name) == ["mcp-platform.slice", "mcp-a-\(ok.revision)@.service"])
        var imageOnly = ok
        imageOnly.command = nil
        #expect(throws: DriverError.self) { try SystemdRenderer(environment: Fixtures.environment(), manifestRoot: "/srv").serviceUnit(imageOnly) }
    }

    @Test func relativeStateDirectoryIsResolvedAgainstTheManifestRoot() throws {
        let r = try SystemdRenderer(environment: Fixtures.environment(stateDir: ".mcpfleet/host"), manifestRoot: "/srv/fleet")
        #expect(r.stateDirectory == "/srv/fleet/.mcpfleet/host")
        #expect(throws: DriverError.self) { try SystemdRenderer(environment: Fixtures.environment(stateDir: "/var/lib/my state"), manifestRoot: "/srv") }
    }
}
