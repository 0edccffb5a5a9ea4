// Configuration of `CurlTransport`.

/// TLS settings. By default the system CA bundle is used and peers are verified.
public struct TLSConfiguration: Sendable, Equatable {
    /// PEM CA bundle file. Replaces the system bundle when set (as does `caData`).
    public var caFile: String?
    /// PEM CA bundle in memory (CURLOPT_CAINFO_BLOB). Takes precedence over `caFile`.
    public var caData: [UInt8]?
    /// PEM client certificate / key files for mutual TLS.
    public var clientCertFile: String?
    public var clientKeyFile: String?
    /// PEM client certificate / key in memory (CURLOPT_SSLCERT_BLOB / CURLOPT_SSLKEY_BLOB); take
    /// precedence over the file variants.
    public var clientCertData: [UInt8]?
    public var clientKeyData: [UInt8]?
    /// Disables certificate and host name verification. Only for tests and explicit user opt-in.
    public var insecureSkipVerify: Bool
    /// The name to verify the server certificate against and to send as SNI, instead of the URL's host
    /// (kubeconfig `tls-server-name`). The connection still goes to the URL's host and port, and the
    /// `Host` header still names the URL's host.
    public var serverName: String?

    public init(
        caFile: String? = nil, caData: [UInt8]? = nil, clientCertFile: String? = nil, clientKeyFile: String? = nil,
        clientCertData: [UInt8]? = nil, clientKeyData: [UInt8]? = nil, insecureSkipVerify: Bool = false,
        serverName: String? = nil
    ) {
        self.caFile = caFile
        self.caData = caData
        self.clientCertFile = clientCertFile
        self.clientKeyFile = clientKeyFile
        self.clientCertData = clientCertData
        self.clientKeyData = clientKeyData
        self.insecureSkipVerify = insecureSkipVerify
        self.serverName = serverName
    }
}

/// A bearer token sent as `Authorization: Bearer <token>` unless the request sets `Authorization` itself.
public enum BearerToken: Sendable, Equatable {
    case value(String)
    /// A file holding the token (surrounding whitespace is trimmed). The file's identity (mtime, size,
    /// inode) is checked at most once per second and the token re-read when it changed, so rotated
    /// Kubernetes service-account tokens are picked up. If a re-read fails, the last good token is used.
    case file(String)
}

/// Proxy selection.
public enum ProxyConfiguration: Sendable, Equatable {
    /// libcurl's own environment handling (the default): `http_proxy` (lower case only, for http URLs),
    /// `HTTPS_PROXY`/`https_proxy`, `ALL_PROXY`/`all_proxy`, and `NO_PROXY`/`no_proxy` (comma-separated
    /// host names, domain suffixes, IP addresses/CIDR ranges, or `*`) which are reached directly.
    /// Note that libcurl ignores upper-case `HTTP_PROXY` on purpose (the "httpoxy" CGI issue).
    case environment
    /// Never use a proxy, whatever the environment says.
    case none
    /// Use `url` for every request except hosts matched by `noProxy` (same syntax as `NO_PROXY`).
    case explicit(url: String, noProxy: String?)
}

public struct CurlTransportConfiguration: Sendable, Equatable {
    public var tls: TLSConfiguration
    public var bearerToken: BearerToken?
    /// Limit for DNS + TCP connect + TLS handshake.
    public var connectTimeout: Duration
    /// Default whole-request limit for `send` when the request has no `timeout`. Not applied to
    /// `stream` (watches are long-lived): give a streaming request its own `timeout` if it needs one.
    public var requestTimeout: Duration?
    public var proxy: ProxyConfiguration
    public var userAgent: String
    /// How many idle libcurl handles (each with its connection cache) are kept for reuse. This bounds
    /// idle connections, not concurrency: additional concurrent transfers get fresh handles that are
    /// discarded afterwards.
    public var maxConnections: Int
    /// `send` fails with `HTTPError.responseTooLarge` beyond this many body bytes (`nil`: no limit).
    /// Streams are not limited (they apply backpressure instead).
    public var maxResponseBodyBytes: Int?

    public init(
        tls: TLSConfiguration = TLSConfiguration(), bearerToken: BearerToken? = nil,
        connectTimeout: Duration = .seconds(5), requestTimeout: Duration? = nil,
        proxy: ProxyConfiguration = .environment, userAgent: String = "mcpfleet/0.1", maxConnections: Int = 8,
        maxResponseBodyBytes: Int? = 256 * 1024 * 1024
    ) {
        self.tls = tls
        self.bearerToken = bearerToken
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.proxy = proxy
        self.userAgent = userAgent
        self.maxConnections = maxConnections
        self.maxResponseBodyBytes = maxResponseBodyBytes
    }
}
