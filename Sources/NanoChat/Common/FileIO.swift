import Foundation

/// File helpers shared by every command: atomic writes and readable errors.
public enum FileIO {
    /// Writes `data` to `url` atomically: a temporary file in the same folder, fsync'd, then renamed over the
    /// target, so a crash never leaves a half-written file under the real name. Creates parent folders.
    public static func writeAtomically(_ data: Data, to url: URL) throws {
        let dir = url.deletingLastPathComponent()
        do {
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        } catch {
            throw NanoChatError("cannot create directory \(dir.path): \(error.localizedDescription)")
        }
        let tmp = dir.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil) else {
            throw NanoChatError("cannot write \(tmp.path): permission denied or disk full")
        }
        do {
            let handle = try FileHandle(forWritingTo: tmp)
            try handle.write(contentsOf: data)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw NanoChatError("cannot write \(url.path): \(error.localizedDescription)")
        }
        if rename(tmp.path, url.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: tmp)
            throw NanoChatError("cannot move \(tmp.path) into place as \(url.path): \(reason)")
        }
    }

    public static func writeAtomically(_ text: String, to url: URL) throws {
        try writeAtomically(Data(text.utf8), to: url)
    }

    /// Reads a whole file, with an error that names it.
    public static func read(_ url: URL, what: String = "file") throws -> Data {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw NanoChatError("\(what) \(url.path) does not exist")
        }
        if isDir.boolValue { throw NanoChatError("\(what) \(url.path) is a directory, expected a file") }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw NanoChatError("cannot read \(what) \(url.path): \(error.localizedDescription)")
        }
    }
}

/// Where data, tokenizers and checkpoints live: `NANOCHAT_BASE_DIR`, else `~/.cache/nanochat` (as upstream).
public enum BaseDir {
    public static var url: URL {
        if let s = ProcessInfo.processInfo.environment["NANOCHAT_BASE_DIR"], !s.isEmpty {
            return URL(fileURLWithPath: s, isDirectory: true)
        }
        return FileManager.default.homeDirectoryForCurrentUser
            .appendingPathComponent(".cache/nanochat", isDirectory: true)
    }

    public static var tokenizer: URL { url.appendingPathComponent("tokenizer", isDirectory: true) }
    /// Pretraining shards (upstream's name; parquet, or .txt/.jsonl until the parquet reader lands).
    public static var pretrainData: URL { url.appendingPathComponent("base_data_climbmix", isDirectory: true) }
}
