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

    /// Every file under `folder` that `keep` accepts, recursively, sorted by path relative to the folder (so a
    /// folder lists the same on every machine). Symbolic links are followed, to folders as well as files (data
    /// kept on a bigger disk and linked in); a folder reached twice through links is listed once.
    public static func files(under folder: URL, where keep: (URL) -> Bool) -> [URL] {
        var found: [(relative: String, url: URL)] = []
        var visited = Set<String>()
        func walk(_ dir: URL, _ relative: String) {
            guard let real = realpath(dir.path, nil) else { return }
            defer { free(real) }
            guard visited.insert(String(cString: real)).inserted else { return }
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
            for name in names {
                let url = dir.appendingPathComponent(name)
                let rel = relative.isEmpty ? name : relative + "/" + name
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else { continue }  // a dangling link
                if isDir.boolValue { walk(url, rel) } else if keep(url) { found.append((rel, url)) }
            }
        }
        walk(folder, "")
        return found.sorted { $0.relative < $1.relative }.map(\.url)
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
