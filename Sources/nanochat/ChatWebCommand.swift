import ArgumentParser
import Foundation
import NanoChat
import NanoChatServer

struct ChatWebCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-web",
        abstract: "Serve the chat page, upstream's streaming API and an OpenAI-compatible API.",
        discussion: """
        GET / (the page), POST /chat/completions (upstream's event stream), POST /v1/chat/completions and \\
        GET /v1/models (OpenAI format, streaming or not), GET /health (503 until the model is loaded), GET /stats. \\
        Requests beyond --num-workers wait in a bounded queue (503 with Retry-After when it is full).
        """,
        aliases: ["chat_web"]
    )
    @Option(help: "Address to bind: 0.0.0.0 (upstream's default) serves every interface, 127.0.0.1 keeps it to this machine.") var host = NanoChatServer.defaultHost
    @Option(name: [.customShort("p"), .long], help: "Port.") var port = NanoChatServer.defaultPort
    @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "GPUs to serve from (upstream: one model per GPU). One device per server here: run a server per GPU (CUDA_VISIBLE_DEVICES) to use more.") var numGpus = 1
    @Option(parsing: .unconditional, help: "Concurrent answers, decoded together in one batch per token (continuous batching).") var numWorkers = 4
    @Option(help: "Requests that may wait for a worker before new ones get 503.") var queueLimit = 64
    @OptionGroup var model: ModelSource
    @Option(name: [.customShort("t"), .long], parsing: .unconditional, help: "Default temperature.") var temperature: Float = 0.8
    @Option(name: [.customShort("k"), .long], parsing: .unconditional, help: "Default top-k.") var topK = 50
    @Option(name: [.customShort("m"), .long], parsing: .unconditional, help: "Default max tokens per answer.") var maxTokens = 512

    func validate() throws {
        guard numGpus == 1 else {
            throw ValidationError("--num-gpus \(numGpus): this server runs its model on one device; start one server per GPU (CUDA_VISIBLE_DEVICES=i nanochat chat-web --port 800i) behind a proxy")
        }
    }

    func run() async throws {
        let model = self.model
        print("nanochat server on http://\(host):\(port)/ (loading the model...)")
        if host == "0.0.0.0" {
            print("serving every network interface (upstream's default): open http://127.0.0.1:\(port)/ here; --host 127.0.0.1 keeps it to this machine")
        }
        do {
            try await NanoChatServer.run(host: host, port: port, workers: numWorkers, queueLimit: queueLimit,
                                         defaults: .init(temperature: temperature, topK: topK, maxTokens: maxTokens)) {
                let loaded = try model.load()
                return Engine(model: loaded.model, tokenizer: loaded.tokenizer)
            }
        } catch let e as NanoChatError {
            FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
            throw ExitCode(1)
        }
    }
}
