import FleetCore
@testable import FleetGateway
import FleetHTTP
import FleetTesting
import Foundation
import MCP
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `spec.tools` on the traffic (issue 17): the gateway hides denied tools from `tools/list` (SSE and
/// JSON answers) and refuses `tools/call` of them with a JSON-RPC error the replica never sees.
@Suite(.serialized) struct ToolFilterTests {
    /// The messages of an answer, whether a JSON body or an event stream.
    static func messages(_ r: FleetHTTP.HTTPResponse) throws -> [[String: Any]] {
        // (As a Swift string `\r\n` is one character: normalise before splitting lines.)
        let text = String(decoding: r.body, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "\n")
        let payloads = (r.header("Content-Type") ?? "").hasPrefix("text/event-stream")
            ? text.split(separator: "\n").filter { $0.hasPrefix("data:") }.map { String($0.dropFirst(5)).trimmingCharacters(in: .whitespaces) }
            : [text]
        return try payloads.map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
    }

    func session(_ h: GatewayHarness, _ server: String) async throws -> String {
        let r = try await h.post(server, GatewayHarness.initialize)
        #expect(r.status == 200)
        let session = try #require(r.header("Mcp-Session-Id"))
        _ = try await h.post(server, #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, session: session)
        return session
    }

    func listed(_ h: GatewayHarness, _ server: String, _ session: String) async throws -> [String] {
        let r = try await h.post(server, #"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#, session: session)
        #expect(r.status == 200, "\(r.status)")
        let answer = try #require(try Self.messages(r).first { ($0["id"] as? Int) == 7 })
        let tools = try #require((answer["result"] as? [String: Any])?["tools"] as? [[String: Any]])
        return tools.compactMap { $0["name"] as? String }.sorted()
    }

    @Test func deniedToolsAreHiddenAndRefusedOverSSEAndJSON() async throws {
        let access = ToolAccess(deny: ["fail"])
        let h = try await GatewayHarness(servers: ["sse": ["py"], "json": ["py-json"], "open": ["py"]],
                                         policies: ["sse": RoutePolicy(tools: access), "json": RoutePolicy(tools: access)])
        defer { Task { await h.stop() } }
        for server in ["sse", "json"] {
            let s = try await session(h, server)
            #expect(try await listed(h, server, s) == ["echo"], "\(server)")
            let call = try await h.post(server, #"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"fail","arguments":{}}}"#, session: s)
            #expect(call.status == 200)
            let answer = try #require(try Self.messages(call).first)
            #expect(answer["id"] as? String == "c-1")
            let error = try #require(answer["error"] as? [String: Any])
            #expect(error["code"] as? Int == -32602 && (error["message"] as? String ?? "").contains("not allowed"), "\(answer)")
            // Permitted calls still go through.
            let echo = try await h.post(server, #"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#, session: s)
            #expect(try Self.messages(echo).contains { ($0["id"] as? Int) == 8 && $0["result"] != nil })
        }
        // A server without lists is untouched.
        let open = try await session(h, "open")
        #expect(try await listed(h, "open", open) == ["echo", "fail"])
        // The refused calls never reached a replica.
        #expect(!h.server.metrics.toolStats().keys.contains { $0.tool == "fail" }, "\(h.server.metrics.toolStats().keys)")
        #expect(h.log.all.contains { $0.contains("tool-denied") })
    }

    /// The filter fails closed: what it cannot read for sure never reaches a replica.
    @Test func whatTheFilterCannotReadForSureIsRefused() async throws {
        let h = try await GatewayHarness(servers: ["json": ["py-json"]], policies: ["json": RoutePolicy(tools: ToolAccess(deny: ["fail"]))])
        defer { Task { await h.stop() } }
        let s = try await session(h, "json")
        // A denied tool called as a notification (no id: there would be no JSON-RPC answer to carry the error).
        let notification = try await h.post("json", #"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"fail","arguments":{}}}"#, session: s)
        #expect(notification.status == 403, "\(notification.status)")
        // The tool named twice (a server could take either), the method or params given twice.
        for body in [#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","name":"fail","arguments":{}}}"#,
                     #"{"jsonrpc":"2.0","id":3,"method":"tools/list","method":"tools/call","params":{"name":"fail"}}"#,
                     #"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"},"params":{"name":"fail"}}"#,
                     // Not JSON as the gateway reads it (a lenient server might).
                     #"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"fail",},}"#] {
            let r = try await h.post("json", body, session: s)
            #expect(r.status == 400, "\(body): \(r.status)")
        }
        // Permitted notifications and calls still go through.
        let initialized = try await h.post("json", #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, session: s)
        #expect(initialized.status == 202, "\(initialized.status)")
        let echo = try await h.post("json", #"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#, session: s)
        #expect(try Self.messages(echo).contains { ($0["id"] as? Int) == 8 && $0["result"] != nil })
        #expect(!h.server.metrics.toolStats().keys.contains { $0.tool == "fail" })
    }

    @Test func theSwiftSDKClientSeesTheFilteredSurface() async throws {
        let h = try await GatewayHarness(servers: ["py": ["py-json"]], policies: ["py": RoutePolicy(tools: ToolAccess(allow: ["ec*"]))])
        defer { Task { await h.stop() } }
        let client = Client(name: "swift-sdk-test", version: "1.0")
        _ = try await client.connect(transport: HTTPClientTransport(endpoint: URL(string: h.url("py"))!, streaming: false))
        #expect(try await client.listTools().tools.map(\.name) == ["echo"])
        do {
            _ = try await client.callTool(name: "fail")
            Issue.record("a denied tool was called")
        } catch let e as MCPError {
            #expect(e.code == -32602, "\(e)")
        }
        await client.disconnect()
    }

    @Test func anSSEEventSplitAcrossChunksIsRewrittenWhole() {
        var r = ToolFilter.ListRewriter(access: ToolAccess(deny: ["b"]), sse: true)
        let event = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}\r\n\r\n"
        var out: [UInt8] = []
        let bytes = Array(event.utf8)
        for chunk in stride(from: 0, to: bytes.count, by: 7).map({ Array(bytes[$0..<min($0 + 7, bytes.count)]) }) {
            out += chunk.withUnsafeBytes { r.feed($0) }
        }
        out += r.finish()
        let text = String(decoding: out, as: UTF8.self)
        #expect(text.contains("\"name\":\"a\"") && !text.contains("\"name\":\"b\"") && text.hasPrefix("event: message") && text.hasSuffix("\n\r\n"), "\(text)")
    }
}
