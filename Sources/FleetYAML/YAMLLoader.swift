import FleetCore
internal import CYAML

/// Loads YAML into position-carrying `Node` trees on libyaml's event API.
///
/// Scalars are kept as text with their style and explicit tag; typing is the decoder's job.
/// Aliases share the anchored `Node` (copy-on-write), and the expanded size is accounted for so an
/// alias bomb is rejected after bounded work.
public enum YAMLLoader {
    public static func parse(_ bytes: [UInt8], file: String, limits: YAMLLimits = .default) -> YAMLParseResult {
        bytes.withUnsafeBufferPointer { parse(buffer: $0, file: file, limits: limits) }
    }

    public static func parse(_ text: String, file: String, limits: YAMLLimits = .default) -> YAMLParseResult {
        var text = text
        return text.withUTF8 { parse(buffer: $0, file: file, limits: limits) }
    }

    /// Raw libyaml event parse, building nothing: the benchmark baseline. Returns the event count
    /// (stopping at the first error).
    public static func rawEventCount(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { buffer in
            guard let stream = EventStream(input: stripBOM(buffer)) else { return 0 }
            defer { stream.close() }
            var count = 0
            while yaml_parser_parse(stream.parser, stream.event) == 1 {
                count += 1
                let done = stream.event.pointee.type == YAML_STREAM_END_EVENT
                yaml_event_delete(stream.event)
                if done { break }
            }
            return count
        }
    }

    static func parse(buffer: UnsafeBufferPointer<UInt8>, file: String, limits: YAMLLimits) -> YAMLParseResult {
        if buffer.count > limits.maxBytes {
            return YAMLParseResult(diagnostics: [.error(
                "yaml-size-limit",
                "file is \(buffer.count) bytes, over the limit of \(limits.maxBytes) bytes",
                at: SourceLocation(file: file, line: 1, column: 1))])
        }
        var builder = DocumentBuilder(file: file, limits: limits)
        builder.run(stripBOM(buffer))
        return YAMLParseResult(documents: builder.documents, diagnostics: builder.diagnostics)
    }

    /// A leading UTF-8 byte order mark is dropped so it doesn't shift the first line's columns.
    static func stripBOM(_ buffer: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        if buffer.count >= 3, buffer[0] == 0xEF, buffer[1] == 0xBB, buffer[2] == 0xBF {
            return UnsafeBufferPointer(rebasing: buffer[3...])
        }
        return buffer
    }
}

/// Owns a libyaml parser reading from a caller-owned buffer, which must outlive it.
struct EventStream {
    let parser: UnsafeMutablePointer<yaml_parser_t>
    let event: UnsafeMutablePointer<yaml_event_t>
    private let empty: UnsafeMutablePointer<UInt8>

    init?(input: UnsafeBufferPointer<UInt8>) {
        parser = .allocate(capacity: 1)
        event = .allocate(capacity: 1)
        empty = .allocate(capacity: 1)
        empty.initialize(to: 0)
        guard yaml_parser_initialize(parser) == 1 else {
            parser.deallocate()
            event.deallocate()
            empty.deallocate()
            return nil
        }
        // Forcing UTF-8 makes UTF-16 input an invalid-UTF-8 error rather than silently accepted.
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        yaml_parser_set_input_string(parser, input.baseAddress ?? UnsafePointer(empty), input.count)
    }

    func close() {
        yaml_parser_delete(parser)
        parser.deallocate()
        event.deallocate()
        empty.deallocate()
    }
}
