import FleetCore
import FleetHTTP
import Foundation
import Logging
import MCP

/// Reads a server's MCP surface with the official Swift SDK's `Client` over `ProbeTransport`: the
/// `initialize` handshake (the client offers the newest protocol version it speaks; the server's answer
/// must be one the SDK supports), then every page of `tools/list`, `prompts/list` and
/// `resources/templates/list` the server's capabilities announce.
public enum ProbeSurface {
    /// More pages than this from one list is a server that never stops paging.
    public static let pageLimit = 500

    public static func read(url: String, http: any HTTPTransport, timeoutMs: Int64) async throws -> ServerContract {
        let transport = ProbeTransport(url: url, http: http, timeout: .milliseconds(timeoutMs))
        let client = MCP.Client(name: "mcpfleet", version: "0.1.0")
        // The SDK client has no deadline of its own: past the probe's budget, disconnecting it fails
        // whatever it still waits for. Each HTTP exchange is also bounded by `timeoutMs`.
        let budgetMs = timeoutMs * 4
        let clock = ContinuousClock()
        let start = clock.now
        let watchdog = Task {
            try await Task.sleep(for: .milliseconds(budgetMs))
            await client.disconnect()
        }
        do {
            let contract = try await Self.surface(client: client, transport: transport)
            watchdog.cancel()
            await client.disconnect()
            return contract
        } catch {
            watchdog.cancel()
            await client.disconnect()
            if clock.now - start >= .milliseconds(budgetMs) {
                throw ProbeTransportError(description: "no complete answer within \(budgetMs)ms")
            }
            throw error
        }
    }

    static func surface(client: MCP.Client, transport: ProbeTransport) async throws -> ServerContract {
        let initialized = try await client.connect(transport: transport)
        guard Version.supported.contains(initialized.protocolVersion) else {
            throw ProbeTransportError(description: "the server answered protocol version \(initialized.protocolVersion), which mcpfleet does not speak (it speaks \(Version.supported.sorted().joined(separator: ", ")))")
        }
        let caps = initialized.capabilities
        var tools: [ContractTool] = []
        if caps.tools != nil {
            tools = try await pages("tools/list") { try await client.listTools(cursor: $0) }.map(contractTool)
        }
        var prompts: [ContractPrompt] = []
        if caps.prompts != nil {
            prompts = try await optional { try await pages("prompts/list") { try await client.listPrompts(cursor: $0) } }.map { p in
                ContractPrompt(name: p.name, title: p.title, description: p.description,
                               arguments: (p.arguments ?? []).map { .init(name: $0.name, title: $0.title, description: $0.description, required: $0.required ?? false) })
            }
        }
        var templates: [ContractResourceTemplate] = []
        if caps.resources != nil {
            templates = try await optional { try await pages("resources/templates/list") { try await client.listResourceTemplates(cursor: $0) } }.map { t in
                ContractResourceTemplate(name: t.name, uriTemplate: t.uriTemplate, title: t.title, description: t.description, mimeType: t.mimeType)
            }
        }
        return ServerContract(server: ContractServerInfo(name: initialized.serverInfo.name, version: initialized.serverInfo.version),
                              protocolVersion: initialized.protocolVersion, tools: tools, prompts: prompts, resourceTemplates: templates)
    }

    /// A list a server announced but does not implement (`Method not found`) is empty: servers announce
    /// `resources` for plain resources and leave templates out (the SDK's everything server does).
    static func optional<T>(_ body: () async throws -> [T]) async throws -> [T] {
        do { return try await body() } catch let e as MCPError where e.code == -32601 { return [] }
    }

    /// Every page of a list, following `nextCursor`; a cursor seen twice or too many pages is an error.
    static func pages<T>(_ method: String, _ fetch: (String?) async throws -> ([T], String?)) async throws -> [T] {
        var all: [T] = []
        var cursor: String?
        var seen: Set<String> = []
        for _ in 0..<pageLimit {
            let (items, next) = try await fetch(cursor)
            all += items
            guard let next, !next.isEmpty else { return all }
            guard seen.insert(next).inserted else { throw ProbeTransportError(description: "\(method) repeated the cursor \(next.prefix(40))") }
            cursor = next
        }
        throw ProbeTransportError(description: "\(method) still had more after \(pageLimit) pages")
    }

    static func contractTool(_ t: MCP.Tool) -> ContractTool {
        var annotations: [String: ContractValue]?
        if !t.annotations.isEmpty, case .object(let o) = value(t.annotations) { annotations = o }
        return ContractTool(name: t.name, title: t.title, description: t.description, inputSchema: value(t.inputSchema),
                            outputSchema: t.outputSchema.map(value), annotations: annotations)
    }

    /// An SDK value as a contract value (through its JSON form).
    static func value<T: Encodable>(_ v: T) -> ContractValue {
        guard let data = try? JSONEncoder().encode(v), let c = try? JSONDecoder().decode(ContractValue.self, from: data) else { return .null }
        return c
    }
}
