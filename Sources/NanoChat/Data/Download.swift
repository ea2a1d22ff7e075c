import Foundation
import NanoTensor
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Upstream's pretraining shards: shard_00000 .. shard_06542.parquet; the last is the validation shard
/// and is always fetched. Downloads run in parallel with retries and exponential backoff; each goes to a
/// temporary name, is checked (size against Content-Length, parquet magic at both ends) and only then renamed,
/// so a partial file is never taken for a whole one. Existing complete files are skipped.
public enum ShardDownloader {
    public static let defaultBaseURL = "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
    public static let maxShard = 6542

    /// `--base-url`, else `NANOCHAT_DATA_URL`, else upstream's.
    public static func baseURL(_ flag: String?) -> String {
        flag ?? ProcessInfo.processInfo.environment["NANOCHAT_DATA_URL"] ?? defaultBaseURL
    }

    public static func shardName(_ i: Int) -> String { String(format: "shard_%05d.parquet", i) }

    /// Shard indices for `-n N`: 0..<min(N, maxShard), plus the validation shard; N = -1 means all.
    public static func indices(_ n: Int) -> [Int] {
        let count = n < 0 ? maxShard : min(n, maxShard)
        return Array(0..<count) + [maxShard]
    }

    public struct Progress {
        public var filesDone = 0, filesTotal = 0, bytes: Int64 = 0, failed = 0
        public init(filesDone: Int = 0, filesTotal: Int = 0) { self.filesDone = filesDone; self.filesTotal = filesTotal }
    }

    /// Downloads the shards into `directory` with `workers` in parallel. Returns the names that failed after
    /// `attempts` tries. `report` is called with progress (from any thread, serialised).
    public static func download(indices: [Int], baseURL: String, directory: URL, workers: Int = 4, attempts: Int = 5,
                                backoff: Double = 1, timeout: Double = 30,
                                report: @escaping (Progress) -> Void) throws -> [String] {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let lock = Mutex()
        nonisolated(unsafe) var progress = Progress(filesDone: 0, filesTotal: indices.count)  // guarded by `lock`
        nonisolated(unsafe) var failures: [String] = []  // guarded by `lock`
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = max(1, workers)
        for i in indices {
            queue.addOperation {
                let name = shardName(i)
                let dest = directory.appendingPathComponent(name)
                if !FileManager.default.fileExists(atPath: dest.path) {
                    do {
                        _ = try fetchRetrying(URL(string: "\(baseURL)/\(name)")!, to: dest, attempts: attempts, backoff: backoff,
                                              timeout: timeout, onBytes: { delta in
                            lock.lock(); progress.bytes += delta; let p = progress; lock.unlock(); report(p)
                        })
                    } catch {
                        lock.lock(); failures.append("\(name): \(error)"); progress.failed += 1; lock.unlock()
                    }
                }
                lock.lock(); progress.filesDone += 1; let p = progress; lock.unlock()
                report(p)
            }
        }
        queue.waitUntilAllOperationsAreFinished()
        return failures.sorted()
    }

    /// `fetch` tried up to `attempts` times, waiting `backoff`, then twice, four times as long between tries
    /// (`onRetry` hears each failure that is tried again). Throws the last failure.
    static func fetchRetrying(_ url: URL, to dest: URL, attempts: Int, backoff: Double, timeout: Double,
                              onRetry: (Int, Error) -> Void = { _, _ in }, verify: ((URL, Int) throws -> Void)? = nil,
                              onBytes: @escaping (Int64) -> Void = { _ in }) throws -> Int {
        for attempt in 1... {
            do {
                return try fetch(url, to: dest, timeout: timeout, onBytes: onBytes, verify: verify)
            } catch {
                guard attempt < max(1, attempts) else { throw error }
                onRetry(attempt, error)
                Thread.sleep(forTimeInterval: backoff * pow(2, Double(attempt - 1)))
            }
        }
        fatalError("unreachable")
    }

    /// One attempt: GET into `<dest>.tmp`, verify, rename. Throws on HTTP errors, short bodies, bad magic.
    /// `verify(tmp, size)` checks the body (default: a whole parquet file, PAR1 at both ends).
    static func fetch(_ url: URL, to dest: URL, timeout: Double, onBytes: @escaping (Int64) -> Void,
                      verify: ((URL, Int) throws -> Void)? = nil) throws -> Int {
        let tmp = dest.appendingPathExtension("tmp")
        try? FileManager.default.removeItem(at: tmp)
        defer { try? FileManager.default.removeItem(at: tmp) }
        _ = FileManager.default.createFile(atPath: tmp.path, contents: nil)  // failure shows in the next line
        guard let out = FileHandle(forWritingAtPath: tmp.path) else { throw NanoChatError("cannot write \(tmp.path)") }
        let delegate = StreamDelegate(out: out, onBytes: onBytes)
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = timeout
        let session = URLSession(configuration: config, delegate: delegate, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: url)
        task.resume()
        delegate.done.wait()
        try out.close()
        if let e = delegate.error { throw NanoChatError("\(url.absoluteString): \(e.localizedDescription)") }
        guard let http = delegate.response as? HTTPURLResponse else { throw NanoChatError("\(url.absoluteString): no HTTP response") }
        guard http.statusCode == 200 else { throw NanoChatError("\(url.absoluteString): HTTP \(http.statusCode)") }
        let size = Int((try FileManager.default.attributesOfItem(atPath: tmp.path)[.size] as? NSNumber)?.intValue ?? -1)
        if http.expectedContentLength >= 0 && Int64(size) != http.expectedContentLength {
            throw NanoChatError("\(url.absoluteString): got \(size) of \(http.expectedContentLength) bytes (connection dropped?)")
        }
        if let verify { try verify(tmp, size) } else {
            let h = try FileHandle(forReadingFrom: tmp)
            let head = try h.read(upToCount: 4) ?? Data()
            try h.seek(toOffset: UInt64(max(0, size - 4)))
            let tail = try h.read(upToCount: 4) ?? Data()
            try h.close()
            guard size >= 12, head == Data("PAR1".utf8), tail == Data("PAR1".utf8) else {
                throw NanoChatError("\(url.absoluteString): the body (\(size) bytes) is not a whole parquet file")
            }
        }
        guard rename(tmp.path, dest.path) == 0 else { throw NanoChatError("cannot rename \(tmp.path) to \(dest.path)") }
        return size
    }

    /// Its fields are written on the session's delegate queue and read after `done` is signalled.
    final class StreamDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let out: FileHandle
        let onBytes: (Int64) -> Void
        let done = DispatchSemaphore(value: 0)
        var response: URLResponse?
        var error: Error?
        init(out: FileHandle, onBytes: @escaping (Int64) -> Void) { self.out = out; self.onBytes = onBytes }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            self.response = response
            completionHandler(.allow)
        }
        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            out.write(data)
            onBytes(Int64(data.count))
        }
        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            self.error = error
            done.signal()
        }
    }
}
