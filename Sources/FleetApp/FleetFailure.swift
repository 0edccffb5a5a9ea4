/// A failure a command reports as one line (and, before it, `details` such as rendered diagnostics) and
/// an exit code: 2 unless stated (the CLI's `CommandFailure`).
public struct FleetFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32
    /// Printed on stderr before the message (e.g. a catalog's diagnostics with their file:line:col).
    public var details: String?

    public init(message: String, exitCode: Int32 = 2, details: String? = nil) {
        self.message = message
        self.exitCode = exitCode
        self.details = details
    }

    public var description: String { message }
}
