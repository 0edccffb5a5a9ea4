/// More read-only routes on the operational HTTP stack, beside `/metrics` and `/healthz`: the
/// dashboard (`/ui`, `/api/v1/*`, docs/designs/0011-dashboard.md) plugs in here, so it is served by the
/// same server, on the same addresses, with the same connection limits and timeouts — no second server.
/// GET and HEAD only; anything else is refused with 405 before `respond` is asked.
public struct OpsRoutes: Sendable {
    /// An answer: a whole body, or a stream of server-sent events (each string written as it comes,
    /// the response open until the stream ends or the client goes). The stream is made only once the
    /// response head is written (never for HEAD, nor for a client already gone), so nothing is left
    /// producing for nobody.
    public enum Reply: Sendable {
        case body(status: Int, contentType: String, body: [UInt8], headers: [(String, String)])
        case events(@Sendable () -> AsyncStream<String>, headers: [(String, String)])
    }

    /// The paths these routes answer (asked after the operational endpoints and, on an MCP listener,
    /// after the MCP routes: a server or tenant named `ui` keeps its endpoint).
    public var handles: @Sendable (_ path: String) -> Bool
    /// `query`: the part after `?`, if any.
    public var respond: @Sendable (_ path: String, _ query: String?) async -> Reply

    public init(handles: @escaping @Sendable (_ path: String) -> Bool, respond: @escaping @Sendable (_ path: String, _ query: String?) async -> Reply) {
        self.handles = handles
        self.respond = respond
    }
}
