import Foundation

/// A chat as the engine is prompted with it: BOS, each turn in its special tokens (a system message merged into the
/// first user turn, as chat rendering does), then <|assistant_start|>. A conversation longer than the model holds is
/// trimmed from its oldest turns: the prompt must leave room for the answer in the model's context (sequence_len):
/// prompt + max_tokens, with at most half the context kept for the answer. The system message is kept while the rest
/// fits beside it; the last message alone must fit, or the request is refused.
public struct ChatPrompt {
    public var system: String?
    /// user and assistant turns, oldest first; the last is the user's.
    public var turns: [(role: String, content: String)]

    public init(system: String?, turns: [(role: String, content: String)]) {
        self.system = system
        self.turns = turns
    }

    /// The most prompt tokens that leave room for `maxTokens` of answer in `config`'s context.
    public static func budget(_ config: GPTConfig, maxTokens: Int) -> Int {
        config.sequence_len - min(maxTokens, config.sequence_len / 2)
    }

    /// The prompt of turns `from...` (with the system message when `withSystem`).
    public func tokens(_ tok: Tokenizer, from start: Int = 0, withSystem: Bool = true) -> [Int] {
        var ids = [tok.bosID]
        var system = withSystem ? self.system : nil
        for (role, content) in turns[start...] {
            if role == "user" {
                let text = system.map { $0 + "\n\n" + content } ?? content
                system = nil
                ids += [tok.specialID("<|user_start|>")!] + tok.encode(text) + [tok.specialID("<|user_end|>")!]
            } else {
                ids += [tok.specialID("<|assistant_start|>")!] + tok.encode(content) + [tok.specialID("<|assistant_end|>")!]
            }
        }
        return ids + [tok.specialID("<|assistant_start|>")!]
    }

    /// The prompt that fits `budget` tokens: all of it, else from the oldest user turn that fits on (the system
    /// message kept), else the last message alone. Returns the turns dropped and whether the system message was.
    public func fitted(_ tok: Tokenizer, budget: Int) throws -> (ids: [Int], droppedTurns: Int, droppedSystem: Bool) {
        for start in turns.indices where turns[start].role == "user" || start == 0 {
            let ids = tokens(tok, from: start)
            if ids.count <= budget { return (ids, start, false) }
        }
        let last = turns.count - 1
        let alone = tokens(tok, from: last, withSystem: false)
        if alone.count <= budget { return (alone, last, system != nil) }
        throw NanoChatError("the last message alone is \(alone.count) prompt tokens, more than the \(budget) the prompt may take (the model's context less room for the answer); shorten it or ask for fewer max_tokens")
    }

    /// What a reply says when turns were dropped, or nil.
    public static func trimNote(droppedTurns: Int, droppedSystem: Bool, context: Int) -> String? {
        guard droppedTurns > 0 || droppedSystem else { return nil }
        var s = "the conversation is longer than the model's \(context)-token context: the \(droppedTurns) oldest message\(droppedTurns == 1 ? "" : "s") were left out"
        if droppedSystem { s += ", and the system message" }
        return s
    }
}
