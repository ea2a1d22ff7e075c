import Foundation
import NanoTensor
import NanoChat
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A load test of a running server: `clients` concurrent streaming clients on /v1/chat/completions for a while,
/// each request greedy (temperature 0) on one of a few prompts whose answers were fetched one at a time first. A
/// streamed answer that differs from its reference is a lost or mixed-up token. Measures requests/s, tokens/s
/// and time to first token; samples the server's resident memory when its pid is known.
public struct LoadTest: Sendable {
    public var baseURL: URL
    public var clients = 16
    public var seconds = 60.0
    public var maxTokens = 64
    public var prompts = 8
    public var serverPID: Int32?

    public init(baseURL: URL) { self.baseURL = baseURL }

    public struct Report: Sendable {
        public var requests = 0, tokens = 0, errors = 0, mismatches = 0
        public var wall = 0.0
        public var ttft: [Double] = [], latency: [Double] = []
        public var rssMB: [(t: Double, mb: Double)] = []
        public var firstErrors: [String] = []
        public var serverRequestsServed = 0, serverTokensServed = 0
        /// How many different reference answers the prompts have (mix-ups between equal answers go unseen).
        public var distinctAnswers = 0

        public var requestsPerSecond: Double { Double(requests) / wall }
        public var tokensPerSecond: Double { Double(tokens) / wall }
        public func percentile(_ xs: [Double], _ p: Double) -> Double {
            guard !xs.isEmpty else { return .nan }
            let s = xs.sorted()  // nearest rank
            let rank = Int((p / 100 * Double(s.count)).rounded(.up))
            return s[min(s.count - 1, max(0, rank - 1))]
        }
        /// Resident memory over the first and the last fifth of the run (after warm-up), in MB.
        public var rssEarlyLate: (Double, Double)? {
            guard rssMB.count >= 5 else { return nil }
            let n = max(1, rssMB.count / 5)
            let early = rssMB[n..<min(rssMB.count, 2 * n)].map(\.mb), late = rssMB.suffix(n).map(\.mb)
            return (early.reduce(0, +) / Double(early.count), late.reduce(0, +) / Double(late.count))
        }
    }

    public static let promptTexts = [
        "Tell me about the weather in London.", "What is a linked list?", "Write a short poem about the sea.",
        "Who wrote Pride and Prejudice?", "How do I sort a list in Python?", "What is the capital of France?",
        "Explain what a compiler does.", "Give me three names for a cat.", "What is 12 times 7?",
        "Describe a sunrise.", "Why is the sky blue?", "What does HTTP stand for?",
        "Summarise the plot of Hamlet.", "What is a prime number?", "How are you today?", "Name a famous painter.",
    ]

    func body(prompt: Int, stream: Bool) -> Data {
        let obj: [String: Any] = ["model": "nanochat", "messages": [["role": "user", "content": Self.promptTexts[prompt % Self.promptTexts.count]]],
                                  "temperature": 0, "max_tokens": maxTokens, "stream": stream]
        return try! JSONSerialization.data(withJSONObject: obj)
    }

    func request(_ path: String, body: Data? = nil) -> URLRequest {
        var r = URLRequest(url: baseURL.appendingPathComponent(path))
        r.timeoutInterval = 600
        if let body { r.httpMethod = "POST"; r.httpBody = body; r.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        return r
    }

    /// Waits until /health answers 200; `alive` says whether the server process still runs (2 minutes at most).
    public func waitUntilReady(alive: () -> Bool = { true }) throws {
        var req = request("health")
        req.timeoutInterval = 2
        for _ in 0..<600 {
            guard alive() else { throw LoadTestError("the server exited before it was ready") }
            if blockingHTTP(req).status == 200 { return }
            Thread.sleep(forTimeInterval: 0.2)
        }
        throw LoadTestError("the server at \(baseURL) did not become ready within 2 minutes")
    }

    public func stats(_ session: URLSession) -> [String: Int] {
        let (code, data, _) = blockingHTTP(request("stats"), session: session)
        guard code == 200 else { return [:] }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Int] ?? [:]
    }

    /// Fetches the reference answers, then runs the load. `progress` gets one line every few seconds.
    public func run(progress: (String) -> Void = { _ in }) throws -> Report {
        let config = URLSessionConfiguration.default
        config.httpMaximumConnectionsPerHost = clients + 4
        config.timeoutIntervalForRequest = 600
        let plain = URLSession(configuration: config)
        // references, one at a time, not streamed: the OpenAI JSON answer
        var expected: [String] = []
        for p in 0..<prompts {
            let (code, data, _) = blockingHTTP(request("v1/chat/completions", body: body(prompt: p, stream: false)), session: plain)
            guard code == 200, let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let choices = obj["choices"] as? [[String: Any]], let msg = choices.first?["message"] as? [String: Any],
                  let text = msg["content"] as? String else {
                throw LoadTestError("the reference request for prompt \(p) failed: HTTP \(code) \(String(decoding: data.prefix(300), as: UTF8.self))")
            }
            expected.append(text)
        }
        let before = stats(plain)
        let streams = StreamingSessions(maxConnections: clients + 4)
        let shared = Shared()
        let start = DispatchTime.now().uptimeNanoseconds
        let now: @Sendable () -> Double = { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        let (deadline, prompts, references) = (seconds, self.prompts, expected)
        // memory sampler
        let sampling = DispatchSemaphore(value: 0)
        if let pid = serverPID {
            Thread {
                while !shared.locked({ $0.stopSampling }) {
                    if let mb = residentMB(pid: pid) { shared.locked { $0.report.rssMB.append((now(), mb)) } }
                    Thread.sleep(forTimeInterval: 0.5)
                }
                sampling.signal()
            }.start()
        }
        let group = DispatchGroup()
        for c in 0..<clients {
            group.enter()
            Thread {
                var i = 0
                while now() < deadline {
                    let p = (c + i * 3) % prompts
                    i += 1
                    let t0 = now()
                    let r = streams.stream(request("v1/chat/completions", body: body(prompt: p, stream: true)))
                    let t1 = now()
                    shared.locked { s in
                        if let err = r.error {
                            s.report.errors += 1
                            if s.report.firstErrors.count < 5 { s.report.firstErrors.append(err) }
                        } else if r.text != references[p] {
                            s.report.mismatches += 1
                            if s.report.firstErrors.count < 5 {
                                s.report.firstErrors.append("prompt \(p): streamed \(r.text.debugDescription.prefix(120)) != \(references[p].debugDescription.prefix(120))")
                            }
                        } else {
                            s.report.requests += 1
                            s.report.tokens += r.chunks
                            if let f = r.firstToken { s.report.ttft.append(f) }
                            s.report.latency.append(t1 - t0)
                        }
                    }
                }
                group.leave()
            }.start()
        }
        var next = 5.0
        while group.wait(timeout: .now() + 0.25) == .timedOut {
            if now() >= next {
                let line = shared.locked { s in
                    String(format: "  %3.0f s: %d requests, %d errors, %d mismatches%@", now(), s.report.requests, s.report.errors,
                           s.report.mismatches, s.report.rssMB.last.map { String(format: ", server RSS %.0f MB", $0.mb) } ?? "")
                }
                progress(line)
                next += 5
            }
        }
        shared.locked { $0.stopSampling = true }
        if serverPID != nil { sampling.wait() }
        var report = shared.locked { $0.report }
        report.distinctAnswers = Set(expected).count
        report.wall = now()
        let after = stats(plain)
        report.serverRequestsServed = (after["requests_served"] ?? 0) - (before["requests_served"] ?? 0)
        report.serverTokensServed = (after["tokens_served"] ?? 0) - (before["tokens_served"] ?? 0)
        return report
    }
}

/// What the client threads share, behind one lock.
final class Shared: @unchecked Sendable {
    private let lock = Mutex()
    var report = LoadTest.Report()
    var stopSampling = false
    func locked<T>(_ body: (Shared) -> T) -> T { lock.lock(); defer { lock.unlock() }; return body(self) }
}

public struct LoadTestError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// Resident set size of a process from /proc (Linux), in MB.
public func residentMB(pid: Int32) -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
    return kb / 1024
}

/// Streams server-sent events through one URLSession whose delegate sees the bytes as they arrive; each
/// caller blocks on its own request. Records when the first content chunk came.
final class StreamingSessions: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    struct Result { var text = "", chunks = 0, firstToken: Double?, error: String? }
    final class Pending {
        var buffer = Data(), result = Result(), sawDone = false, finish: String?, status = 0
        let done = DispatchSemaphore(value: 0)
    }
    private var session: URLSession!
    private var pending: [Int: Pending] = [:]
    private let lock = Mutex()

    init(maxConnections: Int) {
        super.init()
        let config = URLSessionConfiguration.default
        config.httpMaximumConnectionsPerHost = maxConnections
        config.timeoutIntervalForRequest = 600
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        session = URLSession(configuration: config, delegate: self, delegateQueue: queue)
    }

    /// Blocks until the stream ends; `firstToken` is the seconds from sending to the first content chunk.
    func stream(_ req: URLRequest) -> (text: String, chunks: Int, firstToken: Double?, error: String?) {
        let task = session.dataTask(with: req)
        let p = Pending()
        lock.lock(); pending[task.taskIdentifier] = p; lock.unlock()
        let t0 = DispatchTime.now().uptimeNanoseconds
        task.resume()
        p.done.wait()
        var r = p.result
        if r.error == nil && p.status != 200 { r.error = "HTTP \(p.status): \(String(decoding: p.buffer.prefix(200), as: UTF8.self))" }
        if r.error == nil && !p.sawDone { r.error = "the stream ended without data: [DONE]" }
        if r.error == nil && p.finish == nil { r.error = "no chunk carried a finish_reason" }
        return (r.text, r.chunks, r.firstToken.map { $0 - Double(t0) / 1e9 }, r.error)
    }

    private func get(_ task: URLSessionTask) -> Pending? { lock.lock(); defer { lock.unlock() }; return pending[task.taskIdentifier] }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        get(dataTask)?.status = (response as? HTTPURLResponse)?.statusCode ?? 0
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard let p = get(dataTask) else { return }
        p.buffer.append(data)
        guard p.status == 200 else { return }
        // consume complete events ("data: ...\n\n")
        while let r = p.buffer.firstRange(of: Data("\n\n".utf8)) {
            let event = String(decoding: p.buffer[p.buffer.startIndex..<r.lowerBound], as: UTF8.self)
            p.buffer.removeSubrange(p.buffer.startIndex..<r.upperBound)
            guard event.hasPrefix("data: ") else { continue }
            let payload = event.dropFirst(6)
            if payload == "[DONE]" { p.sawDone = true; continue }
            if p.sawDone { p.result.error = "data after [DONE]"; continue }
            guard let obj = (try? JSONSerialization.jsonObject(with: Data(payload.utf8))) as? [String: Any],
                  let choice = (obj["choices"] as? [[String: Any]])?.first else {
                p.result.error = "an event that is not a chat.completion.chunk: \(payload.prefix(120))"; continue
            }
            if let f = choice["finish_reason"] as? String { p.finish = f }
            if let content = (choice["delta"] as? [String: Any])?["content"] as? String, !content.isEmpty {
                if p.result.firstToken == nil { p.result.firstToken = Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
                p.result.text += content
                p.result.chunks += 1
            }
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        lock.lock(); let p = pending.removeValue(forKey: task.taskIdentifier); lock.unlock()
        guard let p else { return }
        if let error { p.result.error = "\(error)" }
        p.done.signal()
    }
}
