import Foundation
import Hummingbird
import NanoChat
import NanoChatBench
import NanoChatServer
import NanoTensor
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The server in-process on a free port of 127.0.0.1, with a tiny random model: every route and every error.
final class ServerTests: XCTestCase {
    /// A random model; `long` makes it big enough that answers take seconds, and greedy decoding never picks a
    /// special token (their lm_head rows are zero, so some byte always scores higher), so answers run to max_tokens.
    /// `varied` also fills the zero-initialised projections, so that the answer depends on the prompt.
    static func engine(long: Bool = false, varied: Bool = false) throws -> Engine {
        let tok = try Tokenizer(mergeable: (0..<256).map { [UInt8($0)] }, specialTokens: specialTokenNames)
        let model = try GPT(config: GPTConfig(sequence_len: long ? 512 : 256, vocab_size: tok.vocabSize, n_layer: long ? 4 : 2,
                                              n_head: 2, n_kv_head: 2, n_embd: long ? 256 : 32, window_pattern: "L"))
        let head = model.param("lm_head.weight")
        for v in 0..<head.shape[0] { for j in 0..<head.shape[1] { head.data[v * head.shape[1] + j] = v >= 256 ? 0 : Float((v * 7 + j * 13) % 17) - 8 } }
        if varied {
            var rng = RNG(seed: 11)
            for (name, p) in model.parameters where name.hasSuffix("c_proj.weight") {
                for i in 0..<p.count { p.data[i] = Float(rng.next() % 2001) / 1000 - 1 }
            }
        }
        return Engine(model: model, tokenizer: tok)
    }

    func withServer(workers: Int = 1, queueLimit: Int = 4, ready: Bool = true, long: Bool = false, varied: Bool = false,
                    _ body: (Int, AdmissionQueue) async throws -> Void) async throws {
        Tensor.gradEnabled = false
        defer { Tensor.gradEnabled = true }
        let admission = AdmissionQueue(size: workers, queueLimit: queueLimit)
        if ready { admission.setEngine(try Self.engine(long: long, varied: varied)) }
        let router = NanoChatServer.router(admission: admission, defaults: .init(temperature: 0, topK: 50, maxTokens: 16))
        router.middlewares.add(NanoChatServer.NotFoundMiddleware())
        let portBox = PortBox()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                              onServerRunning: { ch in portBox.set(ch.localAddress?.port ?? 0) })
        let task = Task { try await app.runService() }
        defer { task.cancel() }
        var port = 0
        for _ in 0..<200 where port == 0 { try await Task.sleep(nanoseconds: 10_000_000); port = portBox.get() }
        XCTAssertGreaterThan(port, 0)
        try await body(port, admission)
    }

    /// A raw HTTP client: sends a POST, reads at least `bytes` bytes of the answer, waits `hold` seconds without
    /// reading, then closes the socket (a browser's Stop does the same). Returns what it read.
    static func readThenHangUp(port: Int, path: String, body: String, bytes: Int, hold: Double) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw URLError(.cannotConnectToHost) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard ok == 0 else { throw URLError(.cannotConnectToHost) }
        let request = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while got.count < bytes {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            got += buffer[0..<n]
        }
        Thread.sleep(forTimeInterval: hold)
        return String(decoding: got, as: UTF8.self)
    }

    final class PortBox: @unchecked Sendable {
        let lock = NSLock(); var port = 0
        func set(_ p: Int) { lock.lock(); port = p; lock.unlock() }
        func get() -> Int { lock.lock(); defer { lock.unlock() }; return port }
    }

    func request(_ port: Int, _ path: String, method: String = "GET", body: String? = nil, timeout: Double = 30) async throws -> (Int, String, [String: String]) {
        var r = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        r.httpMethod = method
        r.timeoutInterval = timeout
        if let body { r.httpBody = Data(body.utf8); r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let (data, resp) = try await URLSession.shared.data(for: r)
        guard let http = resp as? HTTPURLResponse else { throw URLError(.badServerResponse) }
        var headers: [String: String] = [:]  // Sendable, so tasks can hand it back
        for (k, v) in http.allHeaderFields { headers["\(k)"] = "\(v)" }
        return (http.statusCode, String(decoding: data, as: UTF8.self), headers)
    }

    func testRoutesAndErrors() async throws {
        try await withServer { port, admission in
            var (code, text, _) = try await request(port, "/health")
            XCTAssertEqual(code, 200); XCTAssertTrue(text.contains("\"ready\":true"))
            (code, text, _) = try await request(port, "/")
            XCTAssertEqual(code, 200); XCTAssertTrue(text.contains("<textarea") && !text.contains("http://") , "self-contained page")
            (code, text, _) = try await request(port, "/v1/models")
            XCTAssertEqual(code, 200); XCTAssertTrue(text.contains("\"nanochat\""))
            // upstream's stream: token events then done
            (code, text, _) = try await request(port, "/chat/completions", method: "POST", body: #"{"messages":[{"role":"user","content":"hi"}],"max_tokens":5}"#)
            XCTAssertEqual(code, 200)
            XCTAssertTrue(text.hasPrefix("data: {\"token\":") && text.hasSuffix("data: {\"done\":true}\n\n"), text)
            // OpenAI, not streaming: usage, finish_reason
            (code, text, _) = try await request(port, "/v1/chat/completions", method: "POST",
                                                body: #"{"model":"nanochat","messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"}],"max_tokens":4}"#)
            XCTAssertEqual(code, 200)
            let obj = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
            XCTAssertEqual((obj["usage"] as! [String: Int])["completion_tokens"].map { $0 <= 4 }, true)
            XCTAssertNotNil(((obj["choices"] as! [[String: Any]])[0]["message"] as! [String: Any])["content"] as? String)
            // OpenAI streaming: chunks, a finish_reason, [DONE]
            (code, text, _) = try await request(port, "/v1/chat/completions", method: "POST",
                                                body: #"{"messages":[{"role":"user","content":"hi"}],"max_tokens":3,"stream":true}"#)
            XCTAssertEqual(code, 200)
            XCTAssertTrue(text.contains("chat.completion.chunk") && text.contains("\"finish_reason\":\"length\"") && text.hasSuffix("data: [DONE]\n\n"), text)
            // errors
            for (body, field) in [(#"{"messages":[]}"#, "messages"), (#"{"messages":[{"role":"user","content":"x"}],"temperature":5}"#, "temperature"),
                                  (#"{"messages":[{"role":"user","content":"x"}],"top_k":true}"#, "top_k"), ("nonsense", "JSON"),
                                  (#"{"messages":[{"role":"robot","content":"x"}]}"#, "role"),
                                  (#"{"messages":[{"role":"user","content":"x"}],"max_tokens":5000}"#, "max_tokens")] {
                (code, text, _) = try await request(port, "/chat/completions", method: "POST", body: body)
                XCTAssertEqual(code, 400, body); XCTAssertTrue(text.contains(field), text)
            }
            (code, _, _) = try await request(port, "/chat/completions", method: "POST", body: String(repeating: "x", count: 2 << 20))
            XCTAssertEqual(code, 413)
            (code, _, _) = try await request(port, "/health", method: "DELETE")
            XCTAssertEqual(code, 405)
            (code, text, _) = try await request(port, "/nowhere")
            XCTAssertEqual(code, 404); XCTAssertTrue(text.contains("/nowhere"))
            (code, text, _) = try await request(port, "/stats")
            XCTAssertEqual(code, 200); XCTAssertTrue(text.contains("\"requests_served\":3"), text)
            XCTAssertEqual(admission.stats["available_workers"], 1)
        }
    }

    func testNotReadyIs503() async throws {
        try await withServer(ready: false) { port, _ in
            let (code, _, headers) = try await request(port, "/health")
            XCTAssertEqual(code, 503)
            XCTAssertNotNil(headers["Retry-After"])
        }
    }

    func testQueueFullIs503AndDisconnectFreesTheWorker() async throws {
        try await withServer(workers: 1, queueLimit: 1, long: true) { port, admission in
            let long = #"{"messages":[{"role":"user","content":"hi"}],"max_tokens":4000,"temperature":0}"#
            // a client that reads the start of a long streamed answer, stays 1 s, then closes its connection
            let started = Date()
            let first = Task.detached { try Self.readThenHangUp(port: port, path: "/chat/completions", body: long, bytes: 200, hold: 1) }
            try await Task.sleep(nanoseconds: 300_000_000)
            XCTAssertEqual(admission.stats["busy_workers"], 1)
            let second = Task { try await self.request(port, "/chat/completions", method: "POST",
                                                       body: #"{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}"#) }
            try await Task.sleep(nanoseconds: 200_000_000)
            XCTAssertEqual(admission.stats["queued"], 1)
            let (code, _, headers) = try await request(port, "/chat/completions", method: "POST", body: #"{"messages":[{"role":"user","content":"x"}]}"#)
            XCTAssertEqual(code, 503, "queue full")
            XCTAssertNotNil(headers["Retry-After"])
            let received = try await first.value
            XCTAssertTrue(received.contains("200 OK"), received)
            let (code2, text2, _) = try await second.value
            // freed at the hang-up (1 s), long before the 4000-token answer could have finished (about 10 s here)
            XCTAssertLessThan(Date().timeIntervalSince(started), 4, "the worker was not freed when its client went away")
            XCTAssertEqual(code2, 200, "the queued request runs once the disconnected client's worker is freed")
            XCTAssertTrue(text2.contains("\"done\":true"))
            try await Task.sleep(nanoseconds: 200_000_000)
            XCTAssertEqual(admission.stats["available_workers"], 1)
        }
    }

    /// Concurrent streaming clients against 2 workers: every streamed answer equals the same prompt's answer
    /// fetched alone (no lost or mixed-up token), and the server counts exactly the requests the clients saw.
    func testConcurrentStreamsKeepTheirOwnTokens() async throws {
        try await withServer(workers: 2, queueLimit: 16, varied: true) { port, admission in
            var test = LoadTest(baseURL: URL(string: "http://127.0.0.1:\(port)/")!)
            test.clients = 6; test.seconds = 3; test.maxTokens = 24; test.prompts = 6
            let report = try await Task.detached { try test.run() }.value
            XCTAssertEqual(report.errors, 0, report.firstErrors.joined(separator: "\n"))
            XCTAssertEqual(report.mismatches, 0, report.firstErrors.joined(separator: "\n"))
            XCTAssertGreaterThan(report.requests, 6)
            XCTAssertGreaterThan(report.distinctAnswers, 1, "the prompts must give different answers for mix-ups to show")
            XCTAssertEqual(report.serverRequestsServed, report.requests)
            XCTAssertEqual(report.ttft.count, report.requests)
            XCTAssertEqual(admission.stats["available_workers"], 2)
        }
    }
}
