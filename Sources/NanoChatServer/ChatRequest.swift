import Foundation
import NanoChat

/// A validated chat request, from upstream's route or the OpenAI one; errors name the field (HTTP 400).
public struct ChatRequest {
    public var messages: [(role: String, content: String)]
    /// The system (or developer) messages, joined (OpenAI route only): kept when the conversation is trimmed.
    public var system: String?
    public var temperature: Float
    public var topK: Int
    /// OpenAI's top_p (nil or 1: off), frequency_penalty and presence_penalty (-2 to 2), stop (up to 4 strings).
    public var topP: Float?
    public var frequencyPenalty: Float = 0, presencePenalty: Float = 0
    public var stop: [String] = []
    public var maxTokens: Int
    public var stream: Bool
    /// Sampling seed (OpenAI's `seed`): the same seed and request give the same answer; nil draws one.
    public var seed: UInt64?

    public struct Invalid: Error { public let message: String }

    public static let maxMessages = 500, maxMessageChars = 8000, maxTotalChars = 32000

    /// Parses and validates a JSON body. `openAI` accepts system messages (merged into the first user message,
    /// as chat rendering does), content given as a list of text parts, max_completion_tokens and `stream`. Both routes
    /// take top_p, stop, frequency_penalty and presence_penalty.
    public static func parse(_ body: Data, openAI: Bool, defaults: (temperature: Float, topK: Int, maxTokens: Int)) throws -> ChatRequest {
        guard let obj = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            throw Invalid(message: "the body must be a JSON object")
        }
        guard let raw = obj["messages"] as? [Any] else { throw Invalid(message: "messages: required, a list of {role, content}") }
        guard !raw.isEmpty else { throw Invalid(message: "messages: at least one message is required") }
        guard raw.count <= maxMessages else { throw Invalid(message: "messages: at most \(maxMessages) messages, got \(raw.count)") }
        var messages: [(String, String)] = []
        var total = 0
        var system: [String] = []
        for (i, m) in raw.enumerated() {
            guard let d = m as? [String: Any], let role = d["role"] as? String else {
                throw Invalid(message: "messages[\(i)].role: required, a string")
            }
            var content: String
            if let s = d["content"] as? String {
                content = s
            } else if openAI, let parts = d["content"] as? [[String: Any]] {
                content = parts.compactMap { $0["type"] as? String == "text" ? $0["text"] as? String : nil }.joined()
            } else {
                throw Invalid(message: "messages[\(i)].content: required, a string")
            }
            guard !content.isEmpty else { throw Invalid(message: "messages[\(i)].content: must not be empty") }
            let chars = content.unicodeScalars.count
            guard chars <= maxMessageChars else { throw Invalid(message: "messages[\(i)].content: at most \(maxMessageChars) characters, got \(chars)") }
            total += chars
            if openAI && (role == "system" || role == "developer") { system.append(content); continue }
            guard role == "user" || role == "assistant" else {
                throw Invalid(message: "messages[\(i)].role: must be user or assistant\(openAI ? " (or system)" : ""), got \(role)")
            }
            messages.append((role, content))
        }
        guard total <= maxTotalChars else { throw Invalid(message: "messages: at most \(maxTotalChars) characters in total, got \(total)") }
        guard !messages.isEmpty else { throw Invalid(message: "messages: at least one user message is required") }
        // typed decoding tells a number from a boolean (JSONSerialization on Linux cannot)
        struct Stop: Decodable {
            var values: [String]
            init(from decoder: Decoder) throws {
                let c = try decoder.singleValueContainer()
                if c.decodeNil() { values = [] } else if let s = try? c.decode(String.self) { values = [s] } else {
                    do { values = try c.decode([String].self) } catch {
                        throw DecodingError.typeMismatch(Stop.self, .init(codingPath: decoder.codingPath, debugDescription: "a string or a list of strings"))
                    }
                }
            }
        }
        struct Params: Decodable {
            var temperature: Double?, top_k: Double?, max_tokens: Double?, max_completion_tokens: Double?, n: Double?, seed: Double?
            var top_p: Double?, frequency_penalty: Double?, presence_penalty: Double?, stop: Stop?
            var stream: Bool?
        }
        let params: Params
        do {
            params = try JSONDecoder().decode(Params.self, from: body)
        } catch DecodingError.typeMismatch(let type, let ctx) {
            let key = ctx.codingPath.last?.stringValue ?? "parameter"
            throw Invalid(message: "\(key): must be \(type == Bool.self ? "true or false" : type == Stop.self ? "a string or a list of up to 4 strings" : "a number")")
        } catch {
            throw Invalid(message: "the body must be a JSON object")
        }
        let temperature = params.temperature ?? Double(defaults.temperature)
        guard temperature >= 0 && temperature <= 2 else { throw Invalid(message: "temperature: must be between 0 and 2, got \(temperature)") }
        let topK = params.top_k ?? Double(defaults.topK)
        guard topK >= 0 && topK <= 200 && topK == topK.rounded() else { throw Invalid(message: "top_k: must be an integer between 0 and 200, got \(topK)") }
        let maxTokens = params.max_tokens ?? params.max_completion_tokens ?? Double(defaults.maxTokens)
        guard maxTokens >= 1 && maxTokens <= 4096 && maxTokens == maxTokens.rounded() else {
            throw Invalid(message: "max_tokens: must be an integer between 1 and 4096, got \(maxTokens)")
        }
        var stream = !openAI
        if openAI, let b = params.stream { stream = b }
        if openAI, let n = params.n, n != 1 { throw Invalid(message: "n: only 1 is supported") }
        var seed: UInt64?
        if let s = params.seed {
            guard s >= 0 && s < 9.0e15 && s == s.rounded() else { throw Invalid(message: "seed: must be a non-negative integer, got \(s)") }
            seed = UInt64(s)
        }
        var req = ChatRequest(messages: messages, system: system.isEmpty ? nil : system.joined(separator: "\n\n"),
                              temperature: Float(temperature), topK: Int(topK), maxTokens: Int(maxTokens), stream: stream, seed: seed)
        if let p = params.top_p {
            guard p > 0 && p <= 1 else { throw Invalid(message: "top_p: must be greater than 0 and at most 1, got \(p)") }
            req.topP = p < 1 ? Float(p) : nil
        }
        for (name, value) in [("frequency_penalty", params.frequency_penalty), ("presence_penalty", params.presence_penalty)] {
            guard let v = value else { continue }
            guard v >= -2 && v <= 2 else { throw Invalid(message: "\(name): must be between -2 and 2, got \(v)") }
            if name == "frequency_penalty" { req.frequencyPenalty = Float(v) } else { req.presencePenalty = Float(v) }
        }
        if let stop = params.stop?.values {
            guard stop.count <= 4 else { throw Invalid(message: "stop: at most 4 sequences, got \(stop.count)") }
            guard stop.allSatisfy({ !$0.isEmpty && $0.count <= 200 }) else { throw Invalid(message: "stop: each sequence must be 1 to 200 characters") }
            req.stop = stop
        }
        return req
    }

    /// How the answer's tokens are drawn.
    public var sampling: SamplingOptions {
        SamplingOptions(temperature: temperature, topK: topK > 0 ? topK : nil, topP: topP, frequencyPenalty: frequencyPenalty,
                        presencePenalty: presencePenalty)
    }

    /// The conversation as the engine is prompted with it (system message kept apart for trimming).
    public var prompt: ChatPrompt { ChatPrompt(system: system, turns: messages) }

    /// The prompt that fits the model's context with room for the answer, oldest turns dropped as needed, and the
    /// note that says so (nil when nothing was dropped).
    public func fittedPrompt(_ tok: Tokenizer, config: GPTConfig) throws -> (ids: [Int], note: String?, droppedTurns: Int) {
        let fit = try prompt.fitted(tok, budget: ChatPrompt.budget(config, maxTokens: maxTokens))
        return (fit.ids, ChatPrompt.trimNote(droppedTurns: fit.droppedTurns, droppedSystem: fit.droppedSystem, context: config.sequence_len),
                fit.droppedTurns)
    }

}
