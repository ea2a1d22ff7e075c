import Foundation
import NanoChat
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 server on 127.0.0.1 (one thread per connection, Connection: close), for download tests.
final class LocalHTTPServer {
    let fd: Int32
    private(set) var port: UInt16 = 0
    /// path -> (status, body, bytes of the body to actually send before closing)
    let handler: (String) -> (Int, [UInt8], Int?)
    private var running = true

    init(handler: @escaping (String) -> (Int, [UInt8], Int?)) throws {
        self.handler = handler
        #if canImport(Glibc)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0, listen(fd, 16) == 0 else { throw NanoChatError("test server cannot listen") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        Thread { [weak self] in self?.acceptLoop() }.start()
    }

    func acceptLoop() {
        while running {
            let c = accept(fd, nil, nil)
            if c < 0 { return }
            Thread { self.serve(c) }.start()
        }
    }

    func serve(_ c: Int32) {
        defer { close(c) }
        var req = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while !req.containsHeaderEnd {
            let n = read(c, &buf, buf.count)
            if n <= 0 { return }
            req += buf[0..<n]
        }
        let line = String(decoding: req.prefix { $0 != 0x0D }, as: UTF8.self)
        let path = line.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        let (status, body, sendOnly) = handler(path)
        let reason = [200: "OK", 404: "Not Found", 500: "Internal Server Error"][status] ?? "Status"
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Length: \(body.count)\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        let out = Array(head.utf8) + body.prefix(sendOnly ?? body.count)
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            sent += n
        }
    }

    func stop() {
        running = false
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}

extension Array where Element == UInt8 {
    var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        for i in 0...(count - 4) where self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 { return true }
        return false
    }
}

final class DownloadTests: XCTestCase {
    func testDownloadsRetriesAndRefusesPartialFiles() throws {
        let src = try temporaryDirectory()
        var shards: [String: [UInt8]] = [:]
        for i in [0, 1, 6542] {
            let url = src.appendingPathComponent("s\(i).parquet")
            try ParquetWriter.writeTextShard((0..<(300 + i % 7)).map { Array("shard \(i) document \($0) ".utf8) + [UInt8](repeating: 0x61, count: $0 % 50) }, to: url)
            shards[ShardDownloader.shardName(i)] = [UInt8](try Data(contentsOf: url))
        }
        let lock = NSLock()
        var hits: [String: Int] = [:]
        let server = try LocalHTTPServer { path in
            let name = String(path.dropFirst())
            lock.lock(); hits[name, default: 0] += 1; let n = hits[name]!; lock.unlock()
            if name == "shard_00002.parquet" { return (404, Array("no such shard".utf8), nil) }
            if name == "shard_00003.parquet" { return (500, Array("server error".utf8), nil) }
            guard let body = shards[name] else { return (404, [], nil) }
            if name == "shard_00001.parquet" && n == 1 { return (200, body, body.count / 2) }  // drop mid-file once
            return (200, body, nil)
        }
        defer { server.stop() }
        let dest = try temporaryDirectory().appendingPathComponent("base_data_climbmix")
        var last = ShardDownloader.Progress()
        let failed = try ShardDownloader.download(indices: ShardDownloader.indices(4), baseURL: "http://127.0.0.1:\(server.port)",
                                                  directory: dest, workers: 3, attempts: 3, backoff: 0.05, timeout: 5) { p in
            lock.lock(); last = p; lock.unlock()
        }
        XCTAssertEqual(failed.count, 2, "\(failed)")
        XCTAssertTrue(failed[0].contains("shard_00002") && failed[0].contains("404"), failed[0])
        XCTAssertTrue(failed[1].contains("shard_00003") && failed[1].contains("500"), failed[1])
        XCTAssertEqual(hits["shard_00001.parquet"], 2, "the dropped file is fetched again")
        XCTAssertEqual(hits["shard_00002.parquet"], 3, "errors are retried up to the attempt limit")
        for (name, body) in shards {
            XCTAssertEqual([UInt8](try Data(contentsOf: dest.appendingPathComponent(name))), body, name)
        }
        let present = try FileManager.default.contentsOfDirectory(atPath: dest.path).sorted()
        XCTAssertEqual(present, ["shard_00000.parquet", "shard_00001.parquet", "shard_06542.parquet"], "no .tmp or partial files")
        XCTAssertEqual(last.filesDone, 5)
        XCTAssertEqual(last.failed, 2)
        XCTAssertGreaterThan(last.bytes, Int64(shards.values.reduce(0) { $0 + $1.count }))
        // a second run skips what is already there
        lock.lock(); hits = [:]; lock.unlock()
        _ = try ShardDownloader.download(indices: [0, 1, 6542], baseURL: "http://127.0.0.1:\(server.port)", directory: dest,
                                         workers: 2, attempts: 1, backoff: 0, timeout: 5) { _ in }
        XCTAssertEqual(hits, [:])
        // the downloaded shards feed the loader
        let files = try ShardSet(directory: dest, split: "train").files.map(\.lastPathComponent)
        XCTAssertEqual(files, ["shard_00000.parquet", "shard_00001.parquet"])
    }

    func testShardIndices() {
        XCTAssertEqual(ShardDownloader.indices(2), [0, 1, 6542])
        XCTAssertEqual(ShardDownloader.indices(-1).count, 6543)
        XCTAssertEqual(ShardDownloader.indices(99999).count, 6543)
    }
}
