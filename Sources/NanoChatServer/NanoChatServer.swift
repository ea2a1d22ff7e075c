import Foundation
import Hummingbird
import NanoChat
import NanoTensor

/// The web layer: the chat page, upstream's streaming route and the OpenAI-compatible API. Requests pass the
/// `AdmissionQueue` (HTTP admission: at most one request per batcher row in flight, a bounded wait, 503 past it)
/// and are then decoded by the engine's `Batcher` (compute). It knows nothing about training.
public enum NanoChatServer {
    public static let defaultHost = "0.0.0.0"  // upstream's: every interface (--host 127.0.0.1 keeps it local)
    public static let defaultPort = 8000
    public static let maxBodyBytes = 1 << 20
    public static let modelName = "nanochat"

    public struct Defaults: Sendable {
        public var temperature: Float = 0.8, topK = 50, maxTokens = 512
        public init(temperature: Float = 0.8, topK: Int = 50, maxTokens: Int = 512) {
            self.temperature = temperature; self.topK = topK; self.maxTokens = maxTokens
        }
    }

    /// The chat page: one self-contained HTML file shipped as a resource.
    public static let page: String = {
        guard let url = Bundle.module.url(forResource: "ui", withExtension: "html"),
              let s = try? String(contentsOf: url, encoding: .utf8) else { return "<!doctype html><title>nanochat</title>" }
        return s
    }()

    static func json(_ status: HTTPResponse.Status, _ obj: Any, headers: HTTPFields = [:]) -> Response {
        let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: status, headers: h, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String, type: String = "invalid_request_error", headers: HTTPFields = [:]) -> Response {
        json(status, ["error": ["message": message, "type": type, "code": Int(status.code)], "detail": message], headers: headers)
    }

    /// Routes. `admission` holds the engine once the model has loaded.
    public static func router(admission: AdmissionQueue, defaults: Defaults, log: @escaping @Sendable (String) -> Void = { _ in }) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: page)))
        }
        router.get("/health") { _, _ -> Response in
            let s = admission.stats
            guard admission.isReady else {
                return json(.serviceUnavailable, ["status": "loading", "ready": false, "num_workers": s["total_workers"]!], headers: [.retryAfter: "5"])
            }
            return json(.ok, ["status": "ok", "ready": true, "num_workers": s["total_workers"]!, "available_workers": s["available_workers"]!])
        }
        router.get("/stats") { _, _ in json(.ok, admission.stats) }
        router.get("/v1/models") { _, _ in
            json(.ok, ["object": "list", "data": [["id": modelName, "object": "model", "created": 0, "owned_by": "nanochat"]]])
        }
        router.post("/chat/completions") { request, _ in
            try await complete(request, openAI: false, admission: admission, defaults: defaults, log: log)
        }
        router.post("/v1/chat/completions") { request, _ in
            try await complete(request, openAI: true, admission: admission, defaults: defaults, log: log)
        }
        // a known path with the wrong method: 405, not 404
        let known: [(String, HTTPRequest.Method)] = [("/", .get), ("/health", .get), ("/stats", .get), ("/v1/models", .get),
                                                     ("/chat/completions", .post), ("/v1/chat/completions", .post)]
        for (path, allowed) in known {
            for m in [HTTPRequest.Method.get, .post, .put, .delete, .patch] where m != allowed {
                router.on(RouterPath(path), method: m) { _, _ in
                    error(.methodNotAllowed, "\(m.rawValue) is not allowed on \(path); use \(allowed.rawValue)", headers: [.allow: allowed.rawValue])
                }
            }
        }
        return router
    }

    /// Unknown routes answer 404 with a JSON body naming the path.
    public struct NotFoundMiddleware: RouterMiddleware {
        public init() {}
        public func handle(_ request: Request, context: BasicRequestContext,
                           next: (Request, BasicRequestContext) async throws -> Response) async throws -> Response {
            do {
                return try await next(request, context)
            } catch let e as HTTPError where e.status == .notFound {
                return NanoChatServer.error(.notFound, "no route \(request.method.rawValue) \(request.uri.path)")
            }
        }
    }

    static func complete(_ request: Request, openAI: Bool, admission: AdmissionQueue, defaults: Defaults,
                         log: @escaping @Sendable (String) -> Void) async throws -> Response {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: maxBodyBytes)
        } catch {
            return NanoChatServer.error(.contentTooLarge, "the request body is larger than \(maxBodyBytes) bytes")
        }
        let req: ChatRequest
        do {
            req = try ChatRequest.parse(Data(buffer.readableBytesView), openAI: openAI,
                                        defaults: (defaults.temperature, defaults.topK, defaults.maxTokens))
        } catch let e as ChatRequest.Invalid {
            return NanoChatServer.error(.badRequest, e.message)
        }
        guard let batcher = admission.batcher else {
            return NanoChatServer.error(.serviceUnavailable, "the model is still loading", type: "unavailable", headers: [.retryAfter: "5"])
        }
        let engine = batcher.engine, tok = engine.tokenizer
        // the conversation that fits the model's context with room for the answer: the oldest turns dropped, said in
        // the reply (a `nanochat` object: OpenAI clients keep unknown fields; an event on upstream's route)
        let prompt: [Int], trimNote: String?, droppedTurns: Int
        do {
            (prompt, trimNote, droppedTurns) = try req.fittedPrompt(tok, config: engine.model.config)
        } catch {
            return NanoChatServer.error(.badRequest, "messages: \(error)")
        }
        let request = Batcher.Request(prompt: prompt, maxTokens: req.maxTokens, sampling: req.sampling,
                                      seed: req.seed ?? UInt64.random(in: 0..<(1 << 31)))
        if let refusal = engine.refusal(prompt: request.prompt, maxTokens: request.maxTokens) {  // e.g. the conversation no longer fits the model's positions
            return NanoChatServer.error(.badRequest, "messages: \(refusal)")
        }
        let worker: Int
        do {
            worker = try await admission.acquire()
        } catch {
            return NanoChatServer.error(.serviceUnavailable, "all workers are busy and the queue is full; retry shortly", type: "overloaded", headers: [.retryAfter: "2"])
        }
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let cancel = CancelFlag()
        continuation.onTermination = { _ in cancel.cancel() }
        let id = "chatcmpl-\(UUID().uuidString.prefix(12))"
        let created = Int(Date().timeIntervalSince1970)
        let trimmed: [String: Any]? = trimNote.map { ["trimmed_messages": droppedTurns, "note": $0] }
        @Sendable func chunk(_ delta: [String: Any], finish: String?) -> ByteBuffer {
            var obj: [String: Any] = ["id": id, "object": "chat.completion.chunk", "created": created, "model": modelName,
                                      "choices": [["index": 0, "delta": delta, "finish_reason": finish.map { $0 as Any } ?? NSNull()]]]
            if let trimmed, delta["role"] != nil { obj["nanochat"] = trimmed }
            let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return ByteBuffer(string: "data: " + String(decoding: d, as: UTF8.self) + "\n\n")
        }
        @Sendable func event(_ obj: [String: Any]) -> ByteBuffer {
            let d = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return ByteBuffer(string: "data: " + String(decoding: d, as: UTF8.self) + "\n\n")
        }
        let assistantEnd = tok.specialID("<|assistant_end|>")
        let bos = tok.bosID
        // The batcher decodes this answer together with the others in flight; its callbacks run on the
        // batcher's thread, one at a time, and stream what they produce.
        let answer = AnswerState(tokenizer: tok)
        if openAI && req.stream { continuation.yield(chunk(["role": "assistant", "content": ""], finish: nil)) }
        if !openAI, let trimNote { continuation.yield(event(["note": trimNote, "trimmed_messages": droppedTurns])) }
        answer.stops = StopMatcher(req.stop)
        batcher.submit(request, onToken: { t in
            if t == assistantEnd || t == bos { answer.finish = "stop"; return false }
            answer.count += 1
            let piece = answer.stops.push(answer.decoder.push(t))
            if answer.stops.stopped { answer.finish = "stop" }
            if !piece.isEmpty {
                answer.text += piece
                if req.stream {
                    continuation.yield(openAI ? chunk(["content": piece], finish: nil) : event(["token": piece, "worker": worker]))
                }
            }
            return !cancel.isCancelled && !answer.stops.stopped
        }, finished: { error in
            if let error, req.stream { continuation.yield(event(["error": "\(error)"])) }
            let rest = answer.stops.stopped ? "" : answer.stops.push(answer.decoder.flush()) + answer.stops.flush()
            answer.text += rest
            if req.stream {
                if !rest.isEmpty { continuation.yield(openAI ? chunk(["content": rest], finish: nil) : event(["token": rest, "worker": worker])) }
                if openAI {
                    continuation.yield(chunk([:], finish: answer.finish))
                    continuation.yield(ByteBuffer(string: "data: [DONE]\n\n"))
                } else {
                    continuation.yield(event(["done": true]))
                }
            } else {
                var obj: [String: Any] = [
                    "id": id, "object": "chat.completion", "created": created, "model": modelName,
                    "choices": [["index": 0, "message": ["role": "assistant", "content": answer.text], "finish_reason": answer.finish]],
                    "usage": ["prompt_tokens": prompt.count, "completion_tokens": answer.count, "total_tokens": prompt.count + answer.count],
                ]
                if let trimmed { obj["nanochat"] = trimmed }
                continuation.yield(ByteBuffer(bytes: (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])) ?? Data()))
            }
            // Count and free the worker before the response ends, so a client that reads /stats right after
            // its answer already sees this request counted.
            admission.release(worker, tokens: answer.count)
            continuation.finish()
            log("\(openAI ? "/v1/chat/completions" : "/chat/completions"): \(req.messages.count) messages, \(prompt.count) prompt tokens, \(answer.count) generated, worker \(worker)\(cancel.isCancelled ? " (client went away)" : "")")
        })
        let headers: HTTPFields = req.stream
            ? [.contentType: "text/event-stream; charset=utf-8", .cacheControl: "no-cache"]
            : [.contentType: "application/json"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            do {
                for await b in stream { try await writer.write(b) }
                try await writer.finish(nil)
            } catch {
                cancel.cancel()  // the client went away: free the worker at the next token
                throw error
            }
        })
    }

    /// Runs the server until interrupted; the model loads in the background (/health is 503 until then).
    public static func run(host: String, port: Int, workers: Int, queueLimit: Int = 64, defaults: Defaults,
                           loadEngine: @escaping @Sendable () throws -> Engine) async throws {
        Tensor.gradEnabled = false  // inference only: no op records a graph, on any thread
        let admission = AdmissionQueue(size: workers, queueLimit: queueLimit)
        let router = Self.router(admission: admission, defaults: defaults) { print($0) }
        router.middlewares.add(NotFoundMiddleware())
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "nanochat"))
        Thread {
            do {
                admission.setEngine(try loadEngine())
                print("model loaded; chat at http://\(host):\(port)/ (OpenAI API at http://\(host):\(port)/v1)")
            } catch {
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
                exit(1)
            }
        }.start()
        try await app.runService()
    }
}

/// One answer's progress, touched only by the batcher's thread (its callbacks run one at a time).
final class AnswerState: @unchecked Sendable {
    var decoder: StreamingDecoder
    var text = ""
    var count = 0
    var finish = "length"
    /// The request's stop sequences over the streamed text.
    var stops = StopMatcher([])
    init(tokenizer: Tokenizer) { decoder = StreamingDecoder(tokenizer: tokenizer) }
}
