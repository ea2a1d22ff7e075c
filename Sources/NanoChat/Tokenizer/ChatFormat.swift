import Foundation

/// One part of a structured assistant message: text, a python (calculator) call, or the tool's output.
public struct MessagePart: Codable, Equatable, Sendable {
    public var type: String
    public var text: String
    public init(type: String, text: String) { self.type = type; self.text = text }
}

/// A message's content: a string, or (assistant only) a list of parts.
public enum MessageContent: Codable, Equatable, Sendable {
    case text(String)
    case parts([MessagePart])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s); return }
        if let p = try? c.decode([MessagePart].self) { self = .parts(p); return }
        throw DecodingError.dataCorruptedError(in: c, debugDescription: "content must be a string or a list of {type, text} parts")
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .text(let s): try c.encode(s)
        case .parts(let p): try c.encode(p)
        }
    }
}

public struct ChatMessage: Codable, Equatable, Sendable {
    public var role: String
    public var content: MessageContent
    public init(role: String, content: MessageContent) { self.role = role; self.content = content }
    public init(role: String, _ text: String) { self.role = role; self.content = .text(text) }
}

public struct Conversation: Codable, Equatable, Sendable {
    public var messages: [ChatMessage]
    public init(messages: [ChatMessage]) { self.messages = messages }
}

/// Chat rendering (upstream's render_conversation): conversation -> token ids and a training mask (1 = the assistant's tokens
/// that training supervises).
extension Tokenizer {
    public func renderConversation(_ conversation: Conversation, maxTokens: Int = 2048) throws -> (ids: [Int], mask: [Int]) {
        var messages = conversation.messages
        if let first = messages.first, first.role == "system" {
            guard messages.count >= 2, messages[1].role == "user" else {
                throw NanoChatError("a system message must be followed by a user message")
            }
            guard case .text(let sys) = first.content, case .text(let user) = messages[1].content else {
                throw NanoChatError("system and user messages must have string content")
            }
            messages[1].content = .text(sys + "\n\n" + user)
            messages.removeFirst()
        }
        guard !messages.isEmpty else { throw NanoChatError("a conversation needs at least one message") }

        var ids: [Int] = []
        var mask: [Int] = []
        func add(_ toks: [Int], _ m: Int) {
            ids += toks
            mask += Array(repeating: m, count: toks.count)
        }
        func special(_ name: String) throws -> Int {
            guard let id = specialID(name) else { throw NanoChatError("the tokenizer has no special token \(name)") }
            return id
        }
        let bos = try special("<|bos|>")
        let userStart = try special("<|user_start|>"), userEnd = try special("<|user_end|>")
        let asstStart = try special("<|assistant_start|>"), asstEnd = try special("<|assistant_end|>")
        let pyStart = try special("<|python_start|>"), pyEnd = try special("<|python_end|>")
        let outStart = try special("<|output_start|>"), outEnd = try special("<|output_end|>")

        add([bos], 0)
        for (i, message) in messages.enumerated() {
            let expected = i % 2 == 0 ? "user" : "assistant"
            guard message.role == expected else {
                throw NanoChatError("message \(i) has role \(message.role), expected \(expected): roles must alternate user, assistant, ... (after an optional system message)")
            }
            if expected == "user" {
                guard case .text(let content) = message.content else {
                    throw NanoChatError("user message \(i) must have string content")
                }
                add([userStart], 0)
                add(encode(content), 0)
                add([userEnd], 0)
            } else {
                add([asstStart], 0)
                switch message.content {
                case .text(let content):
                    add(encode(content), 1)
                case .parts(let parts):
                    for part in parts {
                        let toks = encode(part.text)
                        switch part.type {
                        case "text": add(toks, 1)
                        case "python": add([pyStart], 1); add(toks, 1); add([pyEnd], 1)
                        case "python_output": add([outStart], 0); add(toks, 0); add([outEnd], 0)
                        default: throw NanoChatError("unknown assistant part type \(part.type); expected text, python or python_output")
                        }
                    }
                }
                add([asstEnd], 1)
            }
        }
        if ids.count > maxTokens {
            ids.removeLast(ids.count - maxTokens)
            mask.removeLast(mask.count - maxTokens)
        }
        return (ids, mask)
    }

    /// Renders all but the final assistant message and primes the model with `<|assistant_start|>`
    /// (what RL and evaluation sample from).
    public func renderForCompletion(_ conversation: Conversation, maxTokens: Int = 2048) throws -> [Int] {
        var c = conversation
        guard let last = c.messages.last, last.role == "assistant" else {
            throw NanoChatError("render for completion needs a conversation that ends with an assistant message")
        }
        c.messages.removeLast()
        var (ids, _) = try renderConversation(c, maxTokens: maxTokens)
        guard let start = specialID("<|assistant_start|>") else {
            throw NanoChatError("the tokenizer has no special token <|assistant_start|>")
        }
        ids.append(start)
        return ids
    }
}
