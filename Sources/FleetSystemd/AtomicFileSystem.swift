import FleetCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// File writes that a crash can never leave half done: temp file in the same directory, fsync,
/// rename over the target, fsync the directory (so the rename itself is durable).
enum AtomicFileSystem {
    static func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    static func makeDirectory(_ path: String, mode: Int = 0o755) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
        } catch {
            throw DriverError(path, "cannot create directory: \(error.localizedDescription)")
        }
    }

    /// Writes `contents` unless the file already holds exactly that; returns whether it wrote.
    @discardableResult
    static func write(_ path: String, _ contents: String, mode: mode_t = 0o644) throws -> Bool {
        if let existing = FileManager.default.contents(atPath: path), existing == Data(contents.utf8), permissions(path) == mode {
            return false
        }
        let dir = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        try makeDirectory(dir)
        var template = Array("\(dir)/.\(name).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw DriverError(path, "cannot create a temporary file: \(String(cString: strerror(errno)))") }
        let tmp = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        // mkstemp creates 0600; set the final mode before any byte is written.
        guard fchmod(fd, mode) == 0 else { close(fd); throw DriverError(path, "cannot set the file mode: \(String(cString: strerror(errno)))") }
        let bytes = Array(contents.utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = String(cString: strerror(errno)); close(fd)
                throw DriverError(path, "cannot write: \(e)")
            }
            written += n
        }
        guard fsync(fd) == 0 else { let e = String(cString: strerror(errno)); close(fd); throw DriverError(path, "fsync failed: \(e)") }
        close(fd)
        guard rename(tmp, path) == 0 else { throw DriverError(path, "cannot rename into place: \(String(cString: strerror(errno)))") }
        ok = true
        syncDirectory(dir)
        return true
    }

    /// Removes a file if present; returns whether it existed.
    @discardableResult
    static func remove(_ path: String) throws -> Bool {
        if unlink(path) == 0 {
            syncDirectory((path as NSString).deletingLastPathComponent)
            return true
        }
        if errno == ENOENT { return false }
        throw DriverError(path, "cannot remove: \(String(cString: strerror(errno)))")
    }

    static func removeTree(_ path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        do { try FileManager.default.removeItem(atPath: path) } catch { throw DriverError(path, "cannot remove: \(error.localizedDescription)") }
    }

    static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        if fd >= 0 { fsync(fd); close(fd) }
    }

    static func permissions(_ path: String) -> mode_t? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return st.st_mode & 0o7777
    }

    /// Regular files (not the masking symlinks to /dev/null) in a directory.
    static func regularFiles(in dir: String) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return names.filter { name in
            var st = stat()
            return lstat(dir + "/" + name, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        }.sorted()
    }
}
