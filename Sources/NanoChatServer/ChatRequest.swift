import Foundation
import NanoChat

/// A validated chat request, from upstream's route or the OpenAI one; errors name the field (HTTP 400).
public struct ChatRequest {
    public var messages: [(role: String, content: String)]
    public var temperature: Float
    public var topK: Int
    public var maxTokens: Int
    public var stream: Bool
    /// Sampling seed (OpenAI's `seed`): the same seed and request give the same answer; nil draws one.
    public var seed: UInt64?

    public struct Invalid: Error { public let message: String }

    public static let maxMessages = 500, maxMessageChars = 8000, maxTotalChars = 32000

    /// Parses and validates a JSON body. `openAI` accepts system messages (merged into the first user message,
    /// as chat rendering does), content given as a list of text parts, max_completion_tokens and `stream`.
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
        if !system.isEmpty, messages[0].0 == "user" { messages[0].1 = system.joined(separator: "\n\n") + "\n\n" + messages[0].1 }
        // typed decoding tells a number from a boolean (JSONSerialization on Linux cannot)
        struct Params: Decodable {
            var temperature: Double?, top_k: Double?, max_tokens: Double?, max_completion_tokens: Double?, n: Double?, seed: Double?
            var stream: Bool?
        }
        let params: Params
        do {
            params = try JSONDecoder().decode(Params.self, from: body)
        } catch DecodingError.typeMismatch(let type, let ctx) {
            let key = ctx.codingPath.last?.stringValue ?? "parameter"
            throw Invalid(message: "\(key): must be \(type == Bool.self ? "true or false" : "a number")")
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
        return ChatRequest(messages: messages, temperature: Float(temperature), topK: Int(topK), maxTokens: Int(maxTokens), stream: stream, seed: seed)
    }

    /// Upstream's prompt: BOS, each turn in its special tokens, then <|assistant_start|>.
    public func promptTokens(_ tok: Tokenizer) -> [Int] {
        var ids = [tok.bosID]
        for (role, content) in messages {
            if role == "user" {
                ids += [tok.specialID("<|user_start|>")!] + tok.encode(content) + [tok.specialID("<|user_end|>")!]
            } else {
                ids += [tok.specialID("<|assistant_start|>")!] + tok.encode(content) + [tok.specialID("<|assistant_end|>")!]
            }
        }
        return ids + [tok.specialID("<|assistant_start|>")!]
    }
}
