import FleetCore
import FleetSystemd
import FleetTesting
import Foundation
import Testing

/// Desired state built in code (DesiredServer has no public memberwise init; it is Codable).
enum Fixtures {
    static func environment(name: String = "sbx", unitDir: String = "/run/systemd/system", stateDir: String? = "/run/mcpfleet/sbx",
                            secretsDir: String? = nil, relax: [String] = [], prefix: String = "mcp") -> Environment {
        let loc = SourceLocation(file: "environment.yaml", line: 1, column: 1)
        var env = Environment(metadata: ObjectMeta(name: name), driver: .systemd,
                              source: DocumentSource(file: "environment.yaml", relativePath: "environment.yaml", index: 0),
                              locations: FieldLocations(document: loc))
        var s = SystemdSettings()
        s.unitDir = unitDir
        s.relax = relax
        s.unitPrefix = prefix
        env.systemd = s
        env.stateDir = stateDir
        env.secretsDir = secretsDir
        return env
    }

    static func server(name: String, tenant: String = "platform", version: String = "1.0.0", command: [String], port: Int? = 22000,
                       replicas: Int = 1, env: [DesiredEnvVar] = [], cpuMillis: Int? = nil, memoryBytes: Int64? = nil,
                       manifestDirectory: String = "servers", workingDirectory: String? = nil) throws -> DesiredServer {
        var fields = [SpecField(path: "version", display: version), SpecField(path: "tenant", display: tenant),
                      SpecField(path: "artifact.command", display: command.joined(separator: " "))]
        for e in env {
            fields.append(e.secretRef.map { SpecField(path: "env.\(e.name)", display: "secretRef(\($0.name)/\($0.key))") }
                          ?? SpecField(path: "env.\(e.name)", display: "(value)", canonical: "value:" + (e.value ?? "")))
        }
        if let port { fields.append(SpecField(path: "transport.port", display: String(port))) }
        let revision = Renderer.revision(of: fields)
        var json: [String: Any] = [
            "name": name, "tenant": tenant, "version": version, "revision": revision, "replicas": replicas,
            "command": command, "transport": "streamable-http", "path": "/mcp",
            "env": env.map { e -> [String: Any] in
                var d: [String: Any] = ["name": e.name]
                if let v = e.value { d["value"] = v }
                if let r = e.secretRef { d["secretRef"] = ["name": r.name, "key": r.key] }
                return d
            },
            "health": ["probe": "mcp", "intervalMs": 1000, "timeoutMs": 1000, "failureThreshold": 3, "requireTools": [String]()],
            "rollout": ["strategy": "rolling", "maxSurge": 1, "maxUnavailable": 1, "steps": [Any](), "autoRollback": true, "progressDeadlineMs": 60000],
            "labels": [String: String](), "manifestDirectory": manifestDirectory,
            "fields": fields.map { ["path": $0.path, "display": $0.display, "canonical": $0.canonical] },
        ]
        if let port { json["port"] = port }
        if let cpuMillis { json["cpuMillis"] = cpuMillis; json["cpu"] = "\(cpuMillis)m" }
        if let memoryBytes { json["memoryBytes"] = memoryBytes; json["memory"] = String(memoryBytes) }
        if let workingDirectory { json["workingDirectory"] = workingDirectory }
        let data = try JSONSerialization.data(withJSONObject: json)
        return try JSONDecoder().decode(DesiredServer.self, from: data)
    }

    static func tenant(_ name: String, cpuMillis: Int? = nil, memoryBytes: Int64? = nil, tasks: Int? = nil) throws -> DesiredTenant {
        var fields: [[String: String]] = [["path": "isolation", "display": "strict", "canonical": "strict"]]
        if let cpuMillis { fields.append(["path": "quota.cpu", "display": "\(cpuMillis)m", "canonical": "\(cpuMillis)m"]) }
        if let memoryBytes { fields.append(["path": "quota.memory", "display": String(memoryBytes), "canonical": String(memoryBytes)]) }
        if let tasks { fields.append(["path": "quota.tasks", "display": String(tasks), "canonical": String(tasks)]) }
        let json: [String: Any] = ["name": name, "isolation": "strict", "namespace": "mcp-" + name, "fields": fields]
        return try JSONDecoder().decode(DesiredTenant.self, from: JSONSerialization.data(withJSONObject: json))
    }

    static func desired(tenants: [DesiredTenant], servers: [DesiredServer]) throws -> DesiredState {
        let enc = JSONEncoder()
        let json: [String: Any] = [
            "environment": "sbx", "driver": "systemd",
            "tenants": try JSONSerialization.jsonObject(with: enc.encode(tenants)),
            "servers": try JSONSerialization.jsonObject(with: enc.encode(servers)),
        ]
        return try JSONDecoder().decode(DesiredState.self, from: JSONSerialization.data(withJSONObject: json))
    }

    /// The official Swift SDK's conformance server (FleetTesting finds it; missing is a failure).
    static func everythingServer() throws -> String { try TestEnvironment.everythingServer() }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Sends MCP `initialize` over streamable HTTP with the real curl; returns the response (headers + body).
func mcpInitialize(port: Int) async throws -> String {
    let body = #"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"mcpfleet-tests","version":"1"}}}"#
    let r = try await SandboxCommandResult.run(["curl", "-s", "-i", "-m", "3", "-X", "POST", "http://127.0.0.1:\(port)/mcp",
                                                "-H", "content-type: application/json", "-H", "accept: application/json, text/event-stream", "-d", body])
    return r.status == 0 ? r.stdout : ""
}

func answersInitialize(port: Int) async throws -> Bool {
    let text = try await mcpInitialize(port: port)
    return text.lowercased().contains("mcp-session-id") && text.contains("serverInfo")
}
