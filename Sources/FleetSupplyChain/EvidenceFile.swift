import Foundation

/// Reading of evidence files (signatures, SBOMs, scan reports, provenance): small documents read
/// whole, with a size cap so a wrong path cannot make the gate slurp a multi-gigabyte file.
public enum EvidenceFile {
    public static let maxSize = 64 << 20

    static func unreadableReason(_ path: String) -> String {
        var isDir: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDir) { return "\(path) does not exist" }
        if isDir.boolValue { return "\(path) is a directory, not a file" }
        return "\(path) is not readable"
    }

    /// The bytes of `path`; `what` names the file in errors ("SBOM", "signature", ...).
    public static func read(_ path: String, what: String) throws(SupplyChainError) -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SupplyChainError("\(what) file \(unreadableReason(path))")
        }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: maxSize + 1) ?? Data() } catch {
            throw SupplyChainError("\(what) file \(path) cannot be read: \(error.localizedDescription)")
        }
        if data.count > maxSize {
            throw SupplyChainError("\(what) file \(path) is larger than \(maxSize >> 20) MiB")
        }
        return data
    }

    /// Parse JSON into a dictionary, with an error that names the file and what it should have been.
    static func jsonObject(_ data: Data, what: String, path: String) throws(SupplyChainError) -> [String: Any] {
        let obj: Any
        do { obj = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) } catch {
            throw SupplyChainError("\(what) \(path) is not valid JSON")
        }
        guard let dict = obj as? [String: Any] else {
            throw SupplyChainError("\(what) \(path) is not a JSON object")
        }
        return dict
    }
}
