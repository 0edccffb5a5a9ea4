import Crypto
import Foundation

/// A server's MCP surface as reviewed, versioned data (docs/designs/0010-tool-contracts.md): its tools
/// (names, titles, descriptions, input and output JSON Schemas, annotations), prompts (and their
/// arguments) and resource templates, with the server's name and version. Normalised: lists sorted by
/// name, volatile fields (`_meta`, icons) dropped, object keys sorted by the canonical encoding. So the
/// same surface gives the same bytes (`canonicalJSON`) and the same `digest`, whichever order a server
/// lists things in and however many pages it answers in.
public struct ServerContract: Codable, Hashable, Sendable {
    public static let currentFormat = 1

    public var formatVersion: Int
    public var server: ContractServerInfo
    /// The protocol version the probe and the server agreed on (informational: not part of the surface diff).
    public var protocolVersion: String?
    public var tools: [ContractTool]
    public var prompts: [ContractPrompt]
    public var resourceTemplates: [ContractResourceTemplate]

    public init(server: ContractServerInfo, protocolVersion: String?, tools: [ContractTool], prompts: [ContractPrompt], resourceTemplates: [ContractResourceTemplate]) {
        formatVersion = Self.currentFormat
        self.server = server
        self.protocolVersion = protocolVersion
        self.tools = tools.sorted { $0.name < $1.name }
        self.prompts = prompts.sorted { $0.name < $1.name }
        self.resourceTemplates = resourceTemplates.sorted { ($0.name, $0.uriTemplate) < ($1.name, $1.uriTemplate) }
    }

    /// The file form (`contracts/SERVER.json`): pretty-printed, sorted keys, one trailing newline.
    public var canonicalJSON: String {
        // Encoding plain data with sorted keys cannot fail.
        (try? CanonicalJSON.encode(self)) ?? "{}\n"
    }

    /// `sha256:<hex>` of `canonicalJSON`: the same as `sha256sum contracts/SERVER.json`.
    public var digest: String { Self.digest(of: canonicalJSON) }

    public static func digest(of canonical: String) -> String {
        "sha256:" + SHA256.hash(data: Array(canonical.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// `sha256:` and the first 12 hex digits, as `status` shows it.
    public var shortDigest: String { String(digest.prefix(19)) }

    /// Reads a contract file; the error names what is wrong and where.
    public static func decode(_ data: Data, file: String) throws -> ServerContract {
        do {
            var c = try JSONDecoder().decode(ServerContract.self, from: data)
            guard c.formatVersion <= currentFormat else {
                throw ContractError(message: "\(file): contract format \(c.formatVersion) is newer than this mcpfleet reads (\(currentFormat))")
            }
            c = ServerContract(server: c.server, protocolVersion: c.protocolVersion, tools: c.tools, prompts: c.prompts, resourceTemplates: c.resourceTemplates)
            return c
        } catch let e as ContractError {
            throw e
        } catch let DecodingError.dataCorrupted(ctx) {
            throw ContractError(message: "\(file): not a contract (invalid JSON\(ctx.codingPath.isEmpty ? "" : " at " + ctx.codingPath.map(\.stringValue).joined(separator: "."))): \(ctx.debugDescription)")
        } catch let DecodingError.keyNotFound(key, ctx) {
            let at = (ctx.codingPath.map(\.stringValue) + [key.stringValue]).joined(separator: ".")
            throw ContractError(message: "\(file): not a contract: missing `\(at)`")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ContractError(message: "\(file): not a contract: wrong type at `\(ctx.codingPath.map(\.stringValue).joined(separator: "."))`")
        } catch {
            throw ContractError(message: "\(file): not a contract: \(error)")
        }
    }

    public var toolNames: [String] { tools.map(\.name) }
}

public struct ContractError: Error, CustomStringConvertible, Hashable, Sendable {
    public var message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

public struct ContractServerInfo: Codable, Hashable, Sendable {
    public var name: String
    public var version: String

    public init(name: String, version: String) {
        self.name = name
        self.version = version
    }
}

public struct ContractTool: Codable, Hashable, Sendable {
    public var name: String
    public var title: String?
    public var description: String?
    public var inputSchema: ContractValue
    public var outputSchema: ContractValue?
    /// The hints (`readOnlyHint`, `destructiveHint`, …) and annotation title, as the server gave them.
    public var annotations: [String: ContractValue]?

    public init(name: String, title: String? = nil, description: String? = nil, inputSchema: ContractValue = .object(["type": .string("object")]),
                outputSchema: ContractValue? = nil, annotations: [String: ContractValue]? = nil) {
        self.name = name
        self.title = title
        self.description = description
        self.inputSchema = inputSchema
        self.outputSchema = outputSchema
        self.annotations = annotations?.isEmpty == true ? nil : annotations
    }
}

public struct ContractPrompt: Codable, Hashable, Sendable {
    public struct Argument: Codable, Hashable, Sendable {
        public var name: String
        public var title: String?
        public var description: String?
        public var required: Bool

        public init(name: String, title: String? = nil, description: String? = nil, required: Bool = false) {
            self.name = name
            self.title = title
            self.description = description
            self.required = required
        }
    }

    public var name: String
    public var title: String?
    public var description: String?
    public var arguments: [Argument]

    public init(name: String, title: String? = nil, description: String? = nil, arguments: [Argument] = []) {
        self.name = name
        self.title = title
        self.description = description
        self.arguments = arguments.sorted { $0.name < $1.name }
    }
}

public struct ContractResourceTemplate: Codable, Hashable, Sendable {
    public var name: String
    public var uriTemplate: String
    public var title: String?
    public var description: String?
    public var mimeType: String?

    public init(name: String, uriTemplate: String, title: String? = nil, description: String? = nil, mimeType: String? = nil) {
        self.name = name
        self.uriTemplate = uriTemplate
        self.title = title
        self.description = description
        self.mimeType = mimeType
    }
}
