import Foundation
import Testing

@testable import FleetHTTP

@Suite struct RequestResponseTests {
    @Test func echoesMethodHeadersAndBody() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        var headers = HTTPHeaders()
        headers.add(name: "X-Test", value: "one")
        headers.add(name: "X-Repeated", value: "a")
        headers.add(name: "X-Repeated", value: "b")
        headers.add(name: "X-Empty", value: "")
        let body = Array("hello \u{00e9}\u{0000} world".utf8)
        let response = try await transport.send(
            HTTPRequest(method: "POST", url: fx.plainBase + "/echo?x=1", headers: headers, body: body))
        #expect(response.status == 200)
        #expect(response.header("content-type") == "application/json")
        let echo = try decodeEcho(response)
        #expect(echo.method == "POST")
        #expect(echo.path == "/echo?x=1")
        #expect(echo.values("X-Test") == ["one"])
        #expect(echo.values("X-Repeated") == ["a", "b"])
        #expect(echo.values("X-Empty") == [""])
        #expect(echo.values("User-Agent") == ["mcpfleet/0.1"])
        #expect(echo.values("Content-Length") == ["\(body.count)"])
        // libcurl's defaults for POST bodies are suppressed.
        #expect(echo.values("Content-Type").isEmpty)
        #expect(echo.values("Expect").isEmpty)
        #expect(Array(echo.body.unicodeScalars.map { UInt8($0.value) }) == body)
    }

    @Test func methodsWithoutBodies() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let get = try decodeEcho(try await transport.send(HTTPRequest(url: fx.plainBase + "/echo")))
        #expect(get.method == "GET")
        #expect(get.values("Content-Length").isEmpty)
        let delete = try decodeEcho(try await transport.send(HTTPRequest(method: "DELETE", url: fx.plainBase + "/echo")))
        #expect(delete.method == "DELETE")
        let put = try decodeEcho(try await transport.send(HTTPRequest(method: "PUT", url: fx.plainBase + "/echo")))
        #expect(put.method == "PUT")
        #expect(put.values("Content-Length") == ["0"])
        let patch = try decodeEcho(
            try await transport.send(
                HTTPRequest(
                    method: "PATCH", url: fx.plainBase + "/echo",
                    headers: ["Content-Type": "application/apply-patch+yaml"], body: Array("a: 1".utf8))))
        #expect(patch.method == "PATCH")
        #expect(patch.values("Content-Type") == ["application/apply-patch+yaml"])
        #expect(patch.body == "a: 1")
        let head = try await transport.send(HTTPRequest(method: "HEAD", url: fx.plainBase + "/status?code=200"))
        #expect(head.status == 200)
        #expect(head.body.isEmpty)
        #expect(head.header("Content-Length") == "11")
    }

    @Test func statusAndMultiValueHeaders() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let response = try await transport.send(HTTPRequest(url: fx.plainBase + "/status?code=418"))
        #expect(response.status == 418)
        #expect(response.header("X-MULTI") == "a")
        #expect(response.headers.values(for: "x-multi") == ["a", "b"])
        #expect(response.headers["X-Multi"] == ["a", "b"])
        #expect(String(decoding: response.body, as: UTF8.self) == "status body")
        let missing = try await transport.send(HTTPRequest(url: fx.plainBase + "/nope"))
        #expect(missing.status == 404)
    }

    @Test func redirectsAreNotFollowed() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let response = try await transport.send(HTTPRequest(url: fx.plainBase + "/redirect"))
        #expect(response.status == 302)
        #expect(response.header("location") == "/echo")
    }

    @Test func invalidRequestsAreRejectedBeforeSending() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let cases: [HTTPRequest] = [
            HTTPRequest(method: "GE T", url: fx.plainBase + "/echo"),
            HTTPRequest(url: fx.plainBase + "/echo", headers: ["X-Bad": "a\r\nInjected: yes"]),
            HTTPRequest(url: fx.plainBase + "/echo", headers: ["Bad Name": "x"]),
            HTTPRequest(url: "file:///etc/passwd"),
            HTTPRequest(url: "ftp://127.0.0.1/"),
            HTTPRequest(url: "not a url"),
        ]
        for request in cases {
            let error = await caught { try await transport.send(request) }
            #expect(kind(error) == "invalidRequest", "\(request.method) \(request.url)")
        }
    }

    @Test func responseBodyLimit() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(maxResponseBodyBytes: 1000))
        let small = try await transport.send(HTTPRequest(url: fx.plainBase + "/big?bytes=1000"))
        #expect(small.body.count == 1000)
        let error = await caught { try await transport.send(HTTPRequest(url: fx.plainBase + "/big?bytes=100000")) }
        #expect(error as? HTTPError == .responseTooLarge(url: fx.plainBase + "/big?bytes=100000", limit: 1000))
    }

    @Test func twentyConcurrentRequests() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(maxConnections: 4))
        let results = try await withThrowingTaskGroup(of: (Int, HTTPResponse).self) { group in
            for i in 0..<20 {
                group.addTask {
                    let response = try await transport.send(
                        HTTPRequest(method: "POST", url: fx.plainBase + "/echo?i=\(i)", body: Array("body \(i)".utf8)))
                    return (i, response)
                }
            }
            var results: [Int: HTTPResponse] = [:]
            for try await (i, response) in group { results[i] = response }
            return results
        }
        #expect(results.count == 20)
        for (i, response) in results {
            #expect(response.status == 200)
            let echo = try decodeEcho(response)
            #expect(echo.body == "body \(i)")
            #expect(echo.path == "/echo?i=\(i)")
        }
        #expect(transport.idleHandleCount <= 4)
        // Pooled handles are reused afterwards.
        let again = try await transport.send(HTTPRequest(url: fx.plainBase + "/echo"))
        #expect(again.status == 200)
    }

    @Test func explicitProxyAndNoProxy() async throws {
        let fx = try Fixtures.get()
        let closed = try ClosedPort()
        let proxyURL = "http://127.0.0.1:\(closed.port)"
        let bypassing = try makeTransport(
            CurlTransportConfiguration(proxy: .explicit(url: proxyURL, noProxy: "127.0.0.1")))
        let direct = try await bypassing.send(HTTPRequest(url: fx.plainBase + "/echo"))
        #expect(direct.status == 200)
        let proxied = try makeTransport(CurlTransportConfiguration(proxy: .explicit(url: proxyURL, noProxy: nil)))
        let error = await caught { try await proxied.send(HTTPRequest(url: fx.plainBase + "/echo")) }
        #expect(kind(error) == "connectFailed")
    }
}

@Suite struct BearerTokenTests {
    @Test func tokenValueIsSent() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(bearerToken: .value("abc.def")))
        let echo = try decodeEcho(try await transport.send(HTTPRequest(url: fx.plainBase + "/echo")))
        #expect(echo.values("Authorization") == ["Bearer abc.def"])
        // An explicit Authorization header wins.
        let explicit = try decodeEcho(
            try await transport.send(HTTPRequest(url: fx.plainBase + "/echo", headers: ["authorization": "Basic eA=="])))
        #expect(explicit.values("Authorization") == ["Basic eA=="])
    }

    @Test func tokenFileRotationIsPickedUp() async throws {
        let fx = try Fixtures.get()
        let path = fx.directory + "/token-\(UUID().uuidString)"
        try "first-token\n".write(toFile: path, atomically: true, encoding: .utf8)
        let transport = try makeTransport(CurlTransportConfiguration(bearerToken: .file(path)))
        let first = try decodeEcho(try await transport.send(HTTPRequest(url: fx.plainBase + "/echo")))
        #expect(first.values("Authorization") == ["Bearer first-token"])
        // Rotate like the kubelet does (new file swapped in atomically).
        try "second-token\n".write(toFile: path, atomically: true, encoding: .utf8)
        let rotated = try await eventually(timeout: .seconds(5)) {
            let echo = try decodeEcho(try await transport.send(HTTPRequest(url: fx.plainBase + "/echo")))
            return echo.values("Authorization") == ["Bearer second-token"]
        }
        #expect(rotated)
    }

    @Test func missingTokenFileIsACredentialsError() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(bearerToken: .file(fx.directory + "/missing")))
        let error = await caught { try await transport.send(HTTPRequest(url: fx.plainBase + "/echo")) }
        #expect(kind(error) == "credentials")
    }

    @Test func errorsNeverContainTheToken() async throws {
        let fx = try Fixtures.get()
        let secret = "s3cr3t-t0ken-value"
        let closed = try ClosedPort()
        let transport = try makeTransport(CurlTransportConfiguration(bearerToken: .value(secret)))
        let connect = await caught {
            try await transport.send(HTTPRequest(url: "http://user:hunter2@127.0.0.1:\(closed.port)/x"))
        }
        let tls = await caught { try await transport.send(HTTPRequest(url: fx.tlsBase + "/echo")) }
        let invalid = await caught {
            try await transport.send(HTTPRequest(url: fx.plainBase + "/echo", headers: ["X-Token": secret + "\n"]))
        }
        #expect(kind(connect) == "connectFailed")
        #expect(kind(tls) == "tls")
        #expect(kind(invalid) == "invalidRequest")
        for error in [connect, tls, invalid] {
            let text = "\(String(describing: error)) \(String(reflecting: error))"
            #expect(!text.contains(secret))
            #expect(!text.contains("hunter2"))
        }
        #expect("\(String(describing: connect))".contains("127.0.0.1:\(closed.port)"))
    }
}

@Suite struct TimeoutAndCancellationTests {
    @Test func connectToClosedPortFailsFast() async throws {
        let closed = try ClosedPort()
        let transport = try makeTransport(CurlTransportConfiguration(connectTimeout: .seconds(5)))
        let start = ContinuousClock.now
        let error = await caught { try await transport.send(HTTPRequest(url: "http://127.0.0.1:\(closed.port)/")) }
        #expect(kind(error) == "connectFailed")
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect("\(String(describing: error))".contains("127.0.0.1:\(closed.port)"))
    }

    @Test func requestTimeout() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(requestTimeout: .milliseconds(300)))
        let start = ContinuousClock.now
        let error = await caught { try await transport.send(HTTPRequest(url: fx.plainBase + "/slow?ms=10000")) }
        #expect(kind(error) == "timedOut")
        #expect(ContinuousClock.now - start < .seconds(5))
        // The per-request timeout overrides the default.
        let ok = try await transport.send(HTTPRequest(url: fx.plainBase + "/slow?ms=500", timeout: .seconds(10)))
        #expect(ok.status == 200)
    }

    @Test func cancellingSendAbortsPromptly() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let tag = UUID().uuidString
        let task = Task { try await transport.send(HTTPRequest(url: fx.plainBase + "/slow?ms=20000&tag=\(tag)")) }
        // Cancel only once the server is handling the request.
        let started = try await eventually { try await fx.stats(transport)["slow_started:\(tag)"] == 1 }
        #expect(started)
        let start = ContinuousClock.now
        task.cancel()
        let error = await caught { try await task.value }
        #expect(kind(error) == "cancelled")
        #expect(ContinuousClock.now - start < .seconds(3))
    }
}

@Suite struct StreamingTests {
    @Test func streamDeliversBodyThenEnds() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let response = try await transport.stream(HTTPRequest(url: fx.plainBase + "/stream?n=5&delay_ms=30"))
        #expect(response.status == 200)
        #expect(response.header("transfer-encoding") == "chunked")
        var received: [UInt8] = []
        for try await chunk in response.body { received += chunk }
        #expect(String(decoding: received, as: UTF8.self) == (0..<5).map { "line \($0)\n" }.joined())
    }

    @Test func bodyIsDeliveredBeforeTheResponseEnds() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let tag = UUID().uuidString
        // The server sends one SSE event and then keeps the response open until we go away.
        let response = try await transport.stream(
            HTTPRequest(url: fx.plainBase + "/hold?tag=\(tag)&first=data:%20hello%0A%0A"))
        var iterator = response.body.makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first.map { String(decoding: $0, as: UTF8.self) } == "data: hello\n\n")
        let consumer = Task { [iterator] in
            var iterator = iterator
            return try await iterator.next()
        }
        consumer.cancel()
        _ = await caught { try await consumer.value }
        let closed = try await eventually { try await fx.stats(transport)["hold_closed:\(tag)"] == 1 }
        #expect(closed)
    }

    @Test func headArrivesBeforeAnyBodyAndCancellationEndsTransfer() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let tag = UUID().uuidString
        // The server sends only the head and then waits for the client to go away.
        let response = try await transport.stream(HTTPRequest(url: fx.plainBase + "/hold?tag=\(tag)"))
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/event-stream")
        let consumer = Task {
            var count = 0
            for try await chunk in response.body { count += chunk.count }
            return count
        }
        let start = ContinuousClock.now
        consumer.cancel()
        // Like any AsyncThrowingStream, a cancelled consumer's iteration ends (here: by throwing
        // HTTPError.cancelled or by finishing early); either way it ends promptly.
        let error = await caught { try await consumer.value }
        #expect(["cancelled", "none"].contains(kind(error)))
        #expect(ContinuousClock.now - start < .seconds(2))
        let closed = try await eventually {
            try await fx.stats(transport)["hold_closed:\(tag)"] == 1
        }
        #expect(closed)
    }

    @Test func cancellingAConsumerMidStreamAbortsTheTransfer() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let tag = UUID().uuidString
        let response = try await transport.stream(
            HTTPRequest(url: fx.plainBase + "/stream?n=100000&delay_ms=20&tag=\(tag)"))
        let (gotData, gotDataContinuation) = AsyncStream.makeStream(of: Void.self)
        let consumer = Task {
            var total = 0
            for try await chunk in response.body {
                total += chunk.count
                gotDataContinuation.yield()
            }
            return total
        }
        var iterator = gotData.makeAsyncIterator()
        _ = await iterator.next()
        consumer.cancel()
        let error = await caught { try await consumer.value }
        #expect(["cancelled", "none"].contains(kind(error)))
        let aborted = try await eventually {
            try await fx.stats(transport)["stream_aborted:\(tag)"] == 1
        }
        #expect(aborted)
    }

    @Test func droppingTheBodyAbortsTheTransfer() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let tag = UUID().uuidString
        do {
            let response = try await transport.stream(HTTPRequest(url: fx.plainBase + "/hold?tag=\(tag)"))
            #expect(response.status == 200)
        }
        let closed = try await eventually {
            try await fx.stats(transport)["hold_closed:\(tag)"] == 1
        }
        #expect(closed)
    }

    @Test func connectionClosedMidStreamThrows() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let response = try await transport.stream(HTTPRequest(url: fx.plainBase + "/close-mid"))
        #expect(response.status == 200)
        var received: [UInt8] = []
        let error = await caught {
            for try await chunk in response.body { received += chunk }
        }
        #expect(String(decoding: received, as: UTF8.self) == "partial\n")
        #expect(kind(error) == "curl(18)")
        #expect("\(String(describing: error))".contains("/close-mid"))
    }

    @Test func streamFailuresBeforeTheHeadAreThrownByStream() async throws {
        let closed = try ClosedPort()
        let transport = try makeTransport()
        let error = await caught { try await transport.stream(HTTPRequest(url: "http://127.0.0.1:\(closed.port)/")) }
        #expect(kind(error) == "connectFailed")
    }

    @Test func slowConsumerGetsEveryByteWithBackpressure() async throws {
        let fx = try Fixtures.get()
        // A tiny buffer forces the transfer to pause and resume many times.
        let transport = try makeTransport(streamBufferLimit: 16 * 1024)
        let blocks = 64
        let response = try await transport.stream(HTTPRequest(url: fx.plainBase + "/bigstream?blocks=\(blocks)"))
        let pattern = (0..<65536).map { UInt8(($0 * 7 + 3) % 256) }
        var offset = 0
        var mismatches = 0
        for try await chunk in response.body {
            for byte in chunk {
                if byte != pattern[offset % 65536] { mismatches += 1 }
                offset += 1
            }
        }
        #expect(offset == blocks * 65536)
        #expect(mismatches == 0)
    }
}

@Suite struct TLSTests {
    @Test func verifiesWithCAFile() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(tls: TLSConfiguration(caFile: fx.caFile)))
        let response = try await transport.send(HTTPRequest(url: fx.tlsBase + "/echo"))
        #expect(response.status == 200)
    }

    @Test func verifiesWithCAData() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(
            CurlTransportConfiguration(tls: TLSConfiguration(caData: try fx.read(fx.caFile))))
        let response = try await transport.send(HTTPRequest(url: fx.tlsBase + "/echo"))
        #expect(response.status == 200)
        let streamed = try await transport.stream(HTTPRequest(url: fx.tlsBase + "/stream?n=3"))
        var received: [UInt8] = []
        for try await chunk in streamed.body { received += chunk }
        #expect(String(decoding: received, as: UTF8.self) == "line 0\nline 1\nline 2\n")
    }

    @Test func failsWithoutTheCA() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let error = await caught { try await transport.send(HTTPRequest(url: fx.tlsBase + "/echo")) }
        #expect(kind(error) == "tls")
    }

    @Test func insecureSkipVerify() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(
            CurlTransportConfiguration(tls: TLSConfiguration(insecureSkipVerify: true)))
        let response = try await transport.send(HTTPRequest(url: "https://127.0.0.1:\(fx.tls.port)/echo"))
        #expect(response.status == 200)
    }

    @Test func serverNameOverridesTheVerifiedName() async throws {
        let fx = try Fixtures.get()
        let url = "https://127.0.0.1:\(fx.tls.port)/echo"
        // The certificate does not name 127.0.0.1 ...
        let plain = try makeTransport(CurlTransportConfiguration(tls: TLSConfiguration(caFile: fx.caFile)))
        let error = await caught { try await plain.send(HTTPRequest(url: url)) }
        #expect(kind(error) == "tls")
        // ... but it names kubernetes.test.
        let named = try makeTransport(
            CurlTransportConfiguration(tls: TLSConfiguration(caFile: fx.caFile, serverName: "kubernetes.test")))
        let response = try await named.send(HTTPRequest(url: url))
        #expect(response.status == 200)
        #expect(try decodeEcho(response).values("Host") == ["127.0.0.1:\(fx.tls.port)"])
    }

    @Test func mutualTLSWithCertificateFiles() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(
            CurlTransportConfiguration(
                tls: TLSConfiguration(caFile: fx.caFile, clientCertFile: fx.clientCertFile, clientKeyFile: fx.clientKeyFile)))
        let response = try await transport.send(HTTPRequest(url: fx.mtlsBase + "/echo"))
        #expect(response.status == 200)
        #expect(try decodeEcho(response).peer == "fleet-client")
    }

    @Test func mutualTLSWithCertificateData() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(
            CurlTransportConfiguration(
                tls: TLSConfiguration(
                    caData: try fx.read(fx.caFile), clientCertData: try fx.read(fx.clientCertFile),
                    clientKeyData: try fx.read(fx.clientKeyFile))))
        let response = try await transport.send(HTTPRequest(url: fx.mtlsBase + "/echo"))
        #expect(response.status == 200)
        #expect(try decodeEcho(response).peer == "fleet-client")
    }

    @Test func mutualTLSWithoutClientCertificateFails() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(tls: TLSConfiguration(caFile: fx.caFile)))
        let error = await caught { try await transport.send(HTTPRequest(url: fx.mtlsBase + "/echo")) }
        // TLS 1.3 servers reject a missing client certificate after the handshake: depending on timing
        // libcurl reports the server's alert (-> .tls) or just a failed send/receive on the connection.
        #expect(["tls", "curl(55)", "curl(56)"].contains(kind(error)), "\(String(describing: error))")
    }
}

@Suite struct HeaderTypeTests {
    @Test func caseInsensitiveOrderedMultiValue() {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        headers.add(name: "Warning", value: "one")
        headers.add(name: "warning", value: "two")
        #expect(headers.first(name: "ACCEPT") == "application/json")
        #expect(headers.values(for: "WARNING") == ["one", "two"])
        headers.replaceOrAdd(name: "WARNING", value: "three")
        #expect(headers.values(for: "warning") == ["three"])
        headers.remove(name: "accept")
        #expect(!headers.contains(name: "Accept"))
        #expect(headers.count == 1)
        var secret = HTTPHeaders()
        secret.add(name: "Authorization", value: "Bearer xyz")
        #expect(!secret.description.contains("xyz"))
    }
}

/// One event loop per transport: many transfers and long-lived streams share its thread.
@Suite(.serialized) struct EventLoopTests {
    /// Threads of this process named like the transport's loop thread.
    static func loopThreads() -> Int {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.filter { tid in
            let comm = (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? ""
            return comm.hasPrefix("mcpfleet-http")
        }.count
    }

    @Test func threeHundredConcurrentRequestsShareOneThread() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport(CurlTransportConfiguration(maxConnections: 16))
        _ = try await transport.send(HTTPRequest(url: fx.plainBase + "/echo"))  // the loop's thread is up
        let before = Self.loopThreads()
        let peak = PeakCounter()
        let sampler = Task {
            while !Task.isCancelled {
                peak.observe(Self.loopThreads(), inFlight: transport.activeTransferCount)
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<300 {
                group.addTask {
                    try await transport.send(HTTPRequest(url: fx.plainBase + "/slow?ms=400&i=\(i)", timeout: .seconds(60))).status
                }
            }
            var out: [Int] = []
            for try await s in group { out.append(s) }
            return out
        }
        sampler.cancel()
        #expect(statuses.count == 300 && statuses.allSatisfy { $0 == 200 })
        // Hundreds of transfers were in flight at once on this transport's single loop thread (other
        // suites' transports may add a few threads of their own meanwhile; one thread per transfer would
        // have added hundreds).
        #expect(peak.maxInFlight >= 100, "\(peak.maxInFlight)")
        #expect(peak.maxThreads - before < 20, "\(before) → \(peak.maxThreads)")
        #expect(transport.activeTransferCount == 0)
        #expect(transport.idleHandleCount <= 16)
    }

    @Test func aWatchHeldOpenWhileOtherRequestsComplete() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        let tag = UUID().uuidString
        do {
            let watch = try await transport.stream(HTTPRequest(url: fx.plainBase + "/stream?n=100000&delay_ms=50&tag=\(tag)"))
            var lines = watch.body.makeAsyncIterator()
            #expect(try await lines.next() != nil)
            // Fifty requests come and go while the stream stays open on the same loop.
            for i in 0..<50 {
                let echo = try decodeEcho(try await transport.send(HTTPRequest(method: "POST", url: fx.plainBase + "/echo?i=\(i)", body: Array("\(i)".utf8))))
                #expect(echo.body == "\(i)")
            }
            #expect(transport.activeTransferCount == 1)
            // The stream kept delivering meanwhile.
            var later: [UInt8] = []
            while !String(decoding: later, as: UTF8.self).contains("line 2\n"), let chunk = try await lines.next() { later += chunk }
            #expect(String(decoding: later, as: UTF8.self).contains("line 2\n"))
        }
        // Dropping the stream ends the transfer.
        let aborted = try await eventually { try await fx.stats(transport)["stream_aborted:\(tag)"] == 1 }
        #expect(aborted)
        let drained = try await eventually { transport.activeTransferCount == 0 }
        #expect(drained)
    }

    @Test func fiftyOpenWatchesDoNotPinThreads() async throws {
        let fx = try Fixtures.get()
        let transport = try makeTransport()
        _ = try await transport.send(HTTPRequest(url: fx.plainBase + "/echo"))
        let before = Self.loopThreads()
        let tag = UUID().uuidString
        var streams: [HTTPStreamingResponse] = []
        for i in 0..<50 {
            streams.append(try await transport.stream(HTTPRequest(url: fx.plainBase + "/hold?tag=\(tag)-\(i)")))
        }
        #expect(transport.activeTransferCount == 50)
        #expect(Self.loopThreads() - before < 10)
        // Requests still go through, promptly.
        let start = ContinuousClock.now
        for _ in 0..<20 { #expect(try await transport.send(HTTPRequest(url: fx.plainBase + "/echo")).status == 200) }
        #expect(ContinuousClock.now - start < .seconds(10))
        streams.removeAll()  // dropping the bodies aborts the transfers
        let closed = try await eventually(timeout: .seconds(15)) {
            let stats = try await fx.stats(transport)
            return (0..<50).allSatisfy { stats["hold_closed:\(tag)-\($0)"] == 1 }
        }
        #expect(closed)
    }

    @Test func aStreamOutlivesItsTransport() async throws {
        let fx = try Fixtures.get()
        var transport: CurlTransport? = try makeTransport()
        let response = try await transport!.stream(HTTPRequest(url: fx.plainBase + "/stream?n=20&delay_ms=20"))
        transport = nil  // the loop keeps running until its last transfer is done
        var received: [UInt8] = []
        for try await chunk in response.body { received += chunk }
        #expect(String(decoding: received, as: UTF8.self) == (0..<20).map { "line \($0)\n" }.joined())
    }
}

final class PeakCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var threads = 0
    private var inFlight = 0
    func observe(_ t: Int, inFlight f: Int) { lock.withLock { threads = max(threads, t); inFlight = max(inFlight, f) } }
    var maxThreads: Int { lock.withLock { threads } }
    var maxInFlight: Int { lock.withLock { inFlight } }
}
