public import FleetCore
public import FleetHTTP

/// A failed API call, naming the object it concerned and carrying the API server's `Status`.
public struct KubeError: Error, Sendable, CustomStringConvertible {
    /// One conflicting field of a server-side apply (`409`, reason `Conflict`).
    public struct FieldConflict: Sendable, Hashable, CustomStringConvertible {
        /// The field path as the API server reports it, e.g. `.spec.replicas`.
        public var field: String
        /// The field manager that owns it, e.g. `kubectl-edit`.
        public var manager: String?
        public var message: String

        public var description: String { manager.map { "\(field) (owned by \"\($0)\")" } ?? field }
    }

    public var object: ObjectReference
    /// The verb: get, list, create, replace, apply, delete, watch.
    public var verb: String
    /// HTTP status, or 0 when no response arrived (connection failure).
    public var status: Int
    /// `Status.reason`: NotFound, AlreadyExists, Conflict, Invalid, Forbidden, Expired, TooManyRequests...
    public var reason: String?
    /// `Status.message` (never includes credentials: the API server does not echo them).
    public var message: String
    public var conflicts: [FieldConflict]
    /// The transport failure, when there was no response.
    public var transportError: HTTPError?

    public init(object: ObjectReference, verb: String, status: Int, reason: String? = nil, message: String, conflicts: [FieldConflict] = [], transportError: HTTPError? = nil) {
        self.object = object
        self.verb = verb
        self.status = status
        self.reason = reason
        self.message = message
        self.conflicts = conflicts
        self.transportError = transportError
    }

    public var isNotFound: Bool { status == 404 }
    public var isAlreadyExists: Bool { status == 409 && reason == "AlreadyExists" }
    /// A resourceVersion precondition failed, or server-side apply found conflicting field owners.
    public var isConflict: Bool { status == 409 && reason != "AlreadyExists" }
    public var isGone: Bool { status == 410 }

    public var description: String {
        var text = "\(object): \(verb) failed"
        text += status == 0 ? ": " : " (HTTP \(status)\(reason.map { " \($0)" } ?? "")): "
        text += message
        if !conflicts.isEmpty {
            text += "; conflicting fields: " + conflicts.map(\.description).joined(separator: ", ")
            text += " (re-apply with force to take ownership)"
        }
        return text
    }

    /// The runtime-neutral error the controller handles: bad input (422, 400, 403, conflicts) is terminal.
    public var driverError: DriverError {
        let terminal = [400, 403, 422].contains(status) || (status == 409 && !conflicts.isEmpty)
        return DriverError(object.description, String(description.dropFirst(object.description.count + 2)), terminal: terminal)
    }

    /// Reads a `Status` body (`{"kind":"Status","reason":...,"message":...,"details":{"causes":[...]}}`).
    static func from(response: HTTPResponse, object: ObjectReference, verb: String) -> KubeError {
        let status = (try? JSONValue.parse(response.body)) ?? .null
        var message = status["message"]?.string ?? ""
        if message.isEmpty {
            let text = String(decoding: response.body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            message = text.isEmpty ? "HTTP \(response.status)" : text
        }
        var conflicts: [FieldConflict] = []
        for cause in status[["details", "causes"]]?.array ?? [] where cause["reason"]?.string == "FieldManagerConflict" || cause["type"]?.string == "FieldManagerConflict" {
            let text = cause["message"]?.string ?? ""
            conflicts.append(FieldConflict(field: cause["field"]?.string ?? "", manager: managerName(in: text), message: text))
        }
        return KubeError(object: object, verb: verb, status: response.status, reason: status["reason"]?.string, message: message, conflicts: conflicts)
    }

    /// `conflict with "kubectl-client-side-apply" using apps/v1` → `kubectl-client-side-apply`.
    static func managerName(in message: String) -> String? {
        guard let start = message.range(of: "conflict with \"") else { return nil }
        let rest = message[start.upperBound...]
        guard let end = rest.firstIndex(of: "\"") else { return nil }
        return String(rest[..<end])
    }
}
