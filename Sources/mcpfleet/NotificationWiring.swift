import FleetController
import FleetCore
import FleetHTTP
import Foundation
import Logging
import Prometheus

/// The environment's `spec.notifications`, their secrets read, as a `Notifier` (docs/designs/0012).
enum NotificationWiring {
    /// Nil when the environment sends no notifications. A secret that cannot be read stops here,
    /// naming the reference and the file (never a value).
    static func notifier(_ environment: Environment, manifestRoot: String, logger: Logger, registry: PrometheusCollectorRegistry? = nil,
                         policy: NotificationRetryPolicy = NotificationRetryPolicy()) throws -> Notifier? {
        guard !environment.notifications.isEmpty else { return nil }
        let directory = GatewayWiring.secretsDirectory(environment, manifestRoot: manifestRoot)
        var targets: [ResolvedNotificationTarget] = []
        for t in environment.notifications {
            let purpose = "notification \(t.name)"
            func secret(_ ref: SecretReference) throws -> String {
                String(decoding: try GatewayWiring.readSecret(ref, directory: directory, for: purpose), as: UTF8.self)
            }
            var url: String
            if let ref = t.urlSecretRef {
                url = try secret(ref).trimmingCharacters(in: .whitespacesAndNewlines)
                let lower = url.lowercased()
                guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else {
                    throw CommandFailure(message: "\(ref) for \(purpose): the file does not hold an http(s) URL")
                }
            } else {
                url = t.url ?? t.apiURL ?? NotificationTarget.defaultGitHubAPI
            }
            if t.kind == .github { url = t.apiURL ?? NotificationTarget.defaultGitHubAPI }
            targets.append(ResolvedNotificationTarget(
                target: t, url: url, urlSecret: t.kind == .github ? nil : t.urlSecretRef,
                signingKey: try t.signingKey.map { try GatewayWiring.readSecret($0, directory: directory, for: purpose) },
                token: try t.token.map(secret)))
        }
        let transport = try CurlTransport(CurlTransportConfiguration(connectTimeout: .seconds(5)))
        return Notifier(environment: environment.name, targets: targets, transport: transport, policy: policy, logger: logger, registry: registry)
    }
}

/// Who runs an operator command, for the audit log: the Kubernetes service account (or pod) when
/// running in a cluster, else the OS user (`sudo` keeps the invoking user visible).
enum OperatorIdentity {
    static func current(environment env: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let override = env["MCPFLEET_ACTOR"], !override.isEmpty { return override }
        let tokenPath = "/var/run/secrets/kubernetes.io/serviceaccount/token"
        if env["KUBERNETES_SERVICE_HOST"] != nil, let token = try? String(contentsOfFile: tokenPath, encoding: .utf8),
           let subject = serviceAccountSubject(jwt: token) {
            return subject + (env["POD_NAME"].map { " (pod \($0))" } ?? "")
        }
        var user = env["USER"] ?? env["LOGNAME"]
        if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { user = String(cString: name) }
        let host = ProcessInfo.processInfo.hostName
        var who = "\(user ?? "uid \(geteuid())")@\(host)"
        if let sudo = env["SUDO_USER"], !sudo.isEmpty, sudo != user { who += " (sudo by \(sudo))" }
        return who
    }

    /// `system:serviceaccount:NS:NAME` from a service-account token's claims (not verified: it names
    /// who we are, it grants nothing).
    static func serviceAccountSubject(jwt: String) -> String? {
        let parts = jwt.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ".")
        guard parts.count == 3 else { return nil }
        var b64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while b64.count % 4 != 0 { b64 += "=" }
        guard let data = Data(base64Encoded: b64), let claims = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let sub = claims["sub"] as? String, !sub.isEmpty else { return nil }
        return sub
    }
}
