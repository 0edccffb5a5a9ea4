import Foundation

/// A JSON value inside a contract (a tool's input or output schema, its annotations). Objects are
/// unordered maps: the canonical form sorts their keys, so the same schema is always the same bytes
/// whatever order a server lists its keys in. Integral numbers stay integers (`"minimum": 0`, not `0.0`).
public indirect enum ContractValue: Codable, Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([ContractValue])
    case object([String: ContractValue])

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null; return }
        if let b = try? c.decode(Bool.self) { self = .bool(b); return }
        if let i = try? c.decode(Int64.self) { self = .int(i); return }
        if let d = try? c.decode(Double.self) { self = Int64(exactly: d).map(ContractValue.int) ?? .double(d); return }
        if let s = try? c.decode(String.self) { self = .string(s); return }
        if let a = try? c.decode([ContractValue].self) { self = .array(a); return }
        if let o = try? c.decode([String: ContractValue].self) { self = .object(o); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "not a JSON value")
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let b): try c.encode(b)
        case .int(let i): try c.encode(i)
        case .double(let d): try c.encode(d)
        case .string(let s): try c.encode(s)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        }
    }

    public subscript(key: String) -> ContractValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var object: [String: ContractValue]? { if case .object(let o) = self { return o } else { return nil } }
    public var array: [ContractValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }

    /// The value as compact JSON with sorted keys, for messages (`["a","b"]`, `"x"`, `3`).
    public var compact: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return String(b)
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .string(let s): return ContractValue.quote(s)
        case .array(let a): return "[" + a.map(\.compact).joined(separator: ",") + "]"
        case .object(let o): return "{" + o.keys.sorted().map { ContractValue.quote($0) + ":" + o[$0]!.compact }.joined(separator: ",") + "}"
        }
    }

    /// A JSON string literal (JSONEncoder's escaping, `/` left alone).
    static func quote(_ s: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return (try? encoder.encode(s)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
    }
}
