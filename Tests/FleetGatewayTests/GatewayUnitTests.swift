import FleetCore
@testable import FleetGateway
import Foundation
import Testing

@Suite struct GatewayUnitTests {
    @Test func circuitBreakerEjectsAfterConsecutiveFailuresAndRetriesHalfOpen() {
        var b = CircuitBreaker(threshold: 3, ejection: .seconds(10))
        let s: Int64 = 1_000_000_000
        let first = b.admit(nowNanos: 0)
        #expect(first)
        b.failure(nowNanos: 0); b.failure(nowNanos: 0)
        #expect(b.state(nowNanos: 0) == .closed)
        b.success()
        b.failure(nowNanos: 0); b.failure(nowNanos: 0)
        #expect(b.state(nowNanos: 0) == .closed, "a success in between resets the count")
        b.failure(nowNanos: 1 * s)
        #expect(b.state(nowNanos: 1 * s) == .open)
        let duringEjection = b.admit(nowNanos: 5 * s)
        #expect(!duringEjection)
        // Half-open after the ejection: exactly one trial.
        #expect(b.state(nowNanos: 11 * s) == .halfOpen)
        let trial = b.admit(nowNanos: 11 * s), second = b.admit(nowNanos: 11 * s)
        #expect(trial && !second)
        // The trial fails: open again, for twice as long.
        b.failure(nowNanos: 12 * s)
        #expect(b.state(nowNanos: 12 * s + 19 * s) == .open)
        #expect(b.state(nowNanos: 12 * s + 21 * s) == .halfOpen)
        let retrial = b.admit(nowNanos: 33 * s)
        #expect(retrial)
        b.success()
        #expect(b.state(nowNanos: 33 * s) == .closed)
        let x = b.admit(nowNanos: 33 * s), y = b.admit(nowNanos: 33 * s)
        #expect(x && y)
    }

    @Test func tokenBucketRefillsAndSaysHowLongToWait() {
        let s: Int64 = 1_000_000_000
        var t = TokenBucket(RateLimit(requestsPerSecond: 2, burst: 3), nowNanos: 0)
        for _ in 0..<3 {
            let w = t.take(nowNanos: 0)
            #expect(w == nil)
        }
        let wait = t.take(nowNanos: 0)
        #expect(wait != nil && abs(wait! - 0.5) < 1e-9)
        let refilled = t.take(nowNanos: s / 2), empty = t.take(nowNanos: s / 2)
        #expect(refilled == nil && empty != nil)
        // Never more than the burst, however long it waited.
        var allowed = 0
        for _ in 0..<4 where t.take(nowNanos: 100 * s) == nil { allowed += 1 }
        #expect(allowed == 3)
    }

    @Test func sessionTokensAreSignedAndBoundToTheirRoute() throws {
        let signer = try SessionSigner(key: Array(repeating: 7, count: 32))
        let claims = SessionSigner.Claims(route: "time", replica: "time-abc-0", upstreamSession: "E627-7F")
        let token = signer.sign(claims)
        #expect(signer.verify(token) == claims)
        #expect(!token.contains("E627-7F"), "opaque: the upstream id is not in plain text")
        // Any change to the payload or the MAC, or another key, fails.
        var bytes = Array(token.utf8)
        bytes[6] = bytes[6] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(signer.verify(String(decoding: bytes, as: UTF8.self)) == nil)
        #expect(signer.verify(token + "x") == nil)
        #expect(signer.verify("mf1..") == nil && signer.verify("") == nil && signer.verify("random-session-id") == nil)
        #expect(try SessionSigner(key: Array(repeating: 8, count: 32)).verify(token) == nil)
        #expect(throws: GatewayError.self) { try SessionSigner(key: Array(repeating: 1, count: 8)) }
    }

    @Test func bearerTokensMatchExactly() {
        let tokens = BearerTokens(tokens: ["alpha-token", "beta-token"])
        #expect(tokens.accepts(authorization: "Bearer alpha-token"))
        #expect(tokens.accepts(authorization: "bearer beta-token"))
        #expect(!tokens.accepts(authorization: "Bearer alpha-toke"))
        #expect(!tokens.accepts(authorization: "Bearer alpha-tokenx"))
        #expect(!tokens.accepts(authorization: "Basic alpha-token"))
        #expect(!tokens.accepts(authorization: nil) && !tokens.accepts(authorization: "Bearer "))
        #expect(!BearerTokens(tokens: []).accepts(authorization: "Bearer alpha-token"))
        // Held as digests only.
        #expect(!String(describing: tokens).contains("alpha"))
    }

    @Test func sseParserFindsEventsAcrossChunkBoundaries() {
        var p = SSEParser()
        var events: [String] = []
        let stream = "id: 1\nretry: 1000\ndata: \n\nevent: message\ndata: {\"id\":1,\r\ndata: \"result\":{}}\r\n\r\n: comment\n\ndata: x\n\n"
        let bytes = Array(stream.utf8)
        for chunk in stride(from: 0, to: bytes.count, by: 7).map({ Array(bytes[$0..<min($0 + 7, bytes.count)]) }) {
            chunk.withUnsafeBytes { p.feed($0) { events.append(String(decoding: $0, as: UTF8.self)) } }
        }
        #expect(events == ["", "{\"id\":1,\n\"result\":{}}", "x"])
    }

    @Test func inspectorFindsToolCallsAndTheirOutcomes() {
        let batch = #"[{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"now"}},{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"fail"}},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#
        let r = JSONRPCInspector.request(Array(batch.utf8))
        #expect(r.method == "tools/call")
        #expect(r.calls == [.init(id: "n:7", tool: "now"), .init(id: "s:a", tool: "fail")])
        let responses = JSONRPCInspector.responses(Data(#"[{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}},{"jsonrpc":"2.0","id":"a","error":{"code":-32602,"message":"x"}}]"#.utf8))
        #expect(responses.map(\.id) == ["n:7", "s:a"] && responses.map(\.error) == [false, true])
        #expect(JSONRPCInspector.responses(Data(#"{"jsonrpc":"2.0","id":3,"result":{"isError":true}}"#.utf8)).first?.error == true)
        #expect(JSONRPCInspector.request(Array("not json".utf8)).calls.isEmpty)
    }

    @Test func routesByServerAndByTenantAndServer() {
        let table = RouteTable([Route(server: "time", tenant: "research", backends: [])])
        #expect(table.route(forPath: "/time/mcp")?.server == "time")
        #expect(table.route(forPath: "/research/time/mcp")?.server == "time")
        #expect(table.route(forPath: "/platform/time/mcp") == nil)
        #expect(table.route(forPath: "/time") == nil && table.route(forPath: "/nope/mcp") == nil && table.route(forPath: "/a/b/c/mcp") == nil)
    }

    @Test func balancingPrefersFewerOutstandingAndSkipsUnhealthyDrainingAndEjected() {
        var config = GatewayConfiguration()
        config.breakerFailures = 1
        let state = GatewayState(configuration: config, now: { 0 })
        let backends = [
            Backend(id: "a", revision: "r1", host: "127.0.0.1", port: 1, path: "/mcp"),
            Backend(id: "b", revision: "r1", host: "127.0.0.1", port: 2, path: "/mcp"),
            Backend(id: "sick", revision: "r1", host: "127.0.0.1", port: 3, path: "/mcp", healthy: false),
            Backend(id: "leaving", revision: "r1", host: "127.0.0.1", port: 4, path: "/mcp", draining: true),
        ]
        let route = Route(server: "s", tenant: "t", backends: backends)
        state.publish(RouteTable([route]))
        var picks: [String: Int] = [:]
        for _ in 0..<200 {
            let b = state.pick(route)!
            picks[b.id, default: 0] += 1
            state.finished(server: "s", replica: b.id, counted: true, failed: false)
        }
        #expect(Set(picks.keys) == ["a", "b"])
        // With `a` busy, two-choice picks `b` every time both are drawn (and `b` is drawn whenever it is one of two).
        for _ in 0..<5 { _ = state.session(route, replica: "a", countRequest: true) }
        for _ in 0..<20 {
            #expect(state.pick(route)?.id == "b")
            state.finished(server: "s", replica: "b", counted: true, failed: false)
        }
        // One failure ejects `b` (threshold 1): only `a` gets new sessions.
        state.finished(server: "s", replica: "b", counted: false, failed: true)
        #expect(state.pick(route)?.id == "a")
        #expect(state.replicaStatus().first { $0.replica == "b" }?.circuit == .open)
    }

    @Test func revisionWeightsSplitNewSessions() {
        let state = GatewayState(configuration: GatewayConfiguration(), now: { 0 })
        let route = Route(server: "s", tenant: "t", backends: [
            Backend(id: "old", revision: "r1", host: "h", port: 1, path: "/mcp"),
            Backend(id: "new", revision: "r2", host: "h", port: 2, path: "/mcp"),
        ], revisionWeights: ["r1": 80, "r2": 20])
        state.publish(RouteTable([route]))
        var canary = 0
        for _ in 0..<2000 {
            let b = state.pick(route)!
            if b.revision == "r2" { canary += 1 }
            state.finished(server: "s", replica: b.id, counted: true, failed: false)
        }
        #expect((300...500).contains(canary), "20 % of 2000 ± 5 points, got \(canary)")
    }
}

@Suite struct BreakerReleaseTests {
    @Test func aTrialThatEndsWithoutAVerdictCanBeTakenAgain() {
        var b = CircuitBreaker(threshold: 1, ejection: .seconds(1))
        b.failure(nowNanos: 0)
        let trial = b.admit(nowNanos: 2_000_000_000)
        #expect(trial && !b.available(nowNanos: 2_000_000_000))
        b.release()
        #expect(b.available(nowNanos: 2_000_000_000) && b.state(nowNanos: 2_000_000_000) == .halfOpen)
    }
}

@Suite struct InspectorEscapesTests {
    @Test func toolCallsWithEscapedSlashesAreSeen() {
        // Foundation's JSONEncoder on Linux (the Swift SDK's client) writes `tools\/call`.
        let r = JSONRPCInspector.request(Array(#"{"jsonrpc":"2.0","id":3,"method":"tools\/call","params":{"name":"echo"}}"#.utf8))
        #expect(r.method == "tools/call" && r.calls == [.init(id: "n:3", tool: "echo")])
        let plain = JSONRPCInspector.request(Array(#"{"jsonrpc":"2.0","id":1,"method" : "tools/list"}"#.utf8))
        #expect(plain.method == "tools/list" && plain.calls.isEmpty)
        let escaped = JSONRPCInspector.request(Array(#"{"jsonrpc":"2.0","id":1,"method":"notifications\/initialized"}"#.utf8))
        #expect(escaped.method == "notifications/initialized")
    }

    /// The in-place scanner reads only what telemetry needs; it must agree with a full parse on
    /// everything that decides a count (escapes anywhere, member order, nesting, ids, bad JSON).
    @Test func scannerAgreesWithAFullParse() {
        // Keys and names with escapes, params before method, whitespace everywhere.
        let r = JSONRPCInspector.request(Array(#" { "params" : { "arguments" : { "method" : "x", "name" : "decoy" }, "n\u0061me" : "\u00e9cho\ud83d\ude00" } , "id" : 12.0 , "\u006dethod" : "tools/call" } "#.utf8))
        #expect(r.method == "tools/call" && r.calls == [.init(id: "n:12", tool: "écho😀")])
        // A call without params.name is still a call; a string id stays a string.
        #expect(JSONRPCInspector.request(Array(#"{"id":"12","method":"tools/call"}"#.utf8)).calls == [.init(id: "s:12", tool: "?")])
        // Notifications (no id) are not calls; non-object batch members are skipped.
        let batch = JSONRPCInspector.request(Array(#"[1,{"method":"tools/call","params":{"name":"a"}},{"id":null,"method":"tools/call"},{"id":2,"method":"tools/call","params":{"name":"b"}}]"#.utf8))
        #expect(batch.method == "tools/call" && batch.calls == [.init(id: "n:2", tool: "b")])
        // Not one well-formed JSON text: nothing is counted.
        for bad in [#"{"id":1,"method":"tools/call""#, #"{"id":1,"method":"tools/call"} x"#, #"{"id":1,"method":"tools/call",}"#,
                    "{\"id\":1,\"method\":\"tools/\ncall\"}", #"{"id":1,"method":"tools/call","params":{"name":"a" "b"}}"#, #"{"id":tru,"method":"tools/call"}"#] {
            #expect(JSONRPCInspector.request(Array(bad.utf8)).calls.isEmpty, "\(bad)")
        }
        let deep = String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
        #expect(JSONRPCInspector.request(Array(#"{"id":1,"method":"tools/call","params":{"x":\#(deep)}}"#.utf8)).calls.isEmpty)

        // Responses: isError only at result.isError; an `error` member of any value; requests are not responses.
        let rs = JSONRPCInspector.responses(Data(#"[{"id":1,"result":{"content":[{"type":"text","text":"\"isError\":true"}],"structuredContent":{"isError":true}}},{"result":{"isError":true},"id":"1"},{"id":3,"error":null},{"id":4,"method":"sampling/createMessage","params":{}},{"id":5.0,"result":{"isError":false}}]"#.utf8))
        #expect(rs.map(\.id) == ["n:1", "s:1", "n:3", "n:5"] && rs.map(\.error) == [false, true, true, false])
        #expect(JSONRPCInspector.responses(Data(#"{"id":1,"result":{}"#.utf8)).isEmpty)
    }

    @Test func sseParserHandlesLongAndSplitLines() {
        var p = SSEParser(limit: 64)
        var events: [String] = []
        let long = String(repeating: "x", count: 100)
        let stream = "data: \(long)\n\ndata: a\r\ndata: b\r\n\r\ndata:c\n\n"
        let bytes = Array(stream.utf8)
        for size in [1, 3, bytes.count] {
            events = []
            for chunk in stride(from: 0, to: bytes.count, by: size).map({ Array(bytes[$0..<min($0 + size, bytes.count)]) }) {
                chunk.withUnsafeBytes { p.feed($0) { events.append(String(decoding: $0, as: UTF8.self)) } }
            }
            // The event over the limit is skipped; the stream after it is read as usual.
            #expect(events == ["a\nb", "c"], "chunks of \(size)")
        }
    }
}
