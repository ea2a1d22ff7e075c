import Foundation
import XCTest
import NanoChat
import NanoTensor

/// top_p, the penalties, stop sequences and trimming a conversation to the model's context.
final class SamplingOptionsTests: XCTestCase {
    func testTopPKeepsTheSmallestSetReachingP() {
        // probabilities 0.5, 0.3, 0.15, 0.05 (at temperature 1): top_p 0.75 keeps the first two, 0.5 only the first
        let probs: [Float] = [0.3, 0.05, 0.5, 0.15]
        let logits = probs.map { logf($0) }
        var rng = RNG(seed: 1)
        var seen = Set<Int>()
        for _ in 0..<400 {
            seen.insert(logits.withUnsafeBufferPointer { sampleToken($0, options: SamplingOptions(temperature: 1, topP: 0.75), rng: &rng) })
        }
        XCTAssertEqual(seen, [2, 0])
        for _ in 0..<50 {
            XCTAssertEqual(logits.withUnsafeBufferPointer { sampleToken($0, options: SamplingOptions(temperature: 1, topP: 0.5), rng: &rng) }, 2)
        }
        // without top-p the options path is the plain one, random stream included
        var a = RNG(seed: 9), b = RNG(seed: 9)
        for _ in 0..<20 {
            let x = logits.withUnsafeBufferPointer { sampleToken($0, options: SamplingOptions(temperature: 0.7, topK: 3), rng: &a) }
            XCTAssertEqual(x, sampleToken(logits, temperature: 0.7, topK: 3, rng: &b))
        }
    }

    func testStopMatcherHoldsBackPrefixesAndCutsBeforeTheSequence() {
        var m = StopMatcher(["END", "\n\n"])
        var shown = ""
        for piece in ["Hello", " E", "N", "ough", " then\n", "x", " E", "ND", " more"] { shown += m.push(piece) }
        XCTAssertTrue(m.stopped)
        XCTAssertEqual(shown, "Hello ENough then\nx ")
        XCTAssertEqual(m.push("later"), "")
        var n = StopMatcher(["zz"])
        XCTAssertEqual(n.push("abz"), "ab")
        XCTAssertEqual(n.flush(), "z")
        XCTAssertFalse(n.stopped)
    }

    func testConversationIsTrimmedFromItsOldestTurns() throws {
        let tok = try Tokenizer.load(from: Fixtures.dir.appendingPathComponent("upstream_checkpoint/tokenizer"))
        var turns: [(role: String, content: String)] = []
        for i in 0..<6 { turns += [("user", "Question number \(i) about Emma?"), ("assistant", "An answer about Highbury, number \(i).")] }
        turns.append(("user", "And the last one?"))
        let chat = ChatPrompt(system: "Be terse.", turns: turns)
        let whole = chat.tokens(tok)
        let fit = try chat.fitted(tok, budget: whole.count)
        XCTAssertEqual(fit.droppedTurns, 0)
        XCTAssertEqual(fit.ids, whole)
        let smaller = try chat.fitted(tok, budget: whole.count - 10)
        XCTAssertGreaterThan(smaller.droppedTurns, 0)
        XCTAssertEqual(smaller.droppedTurns % 2, 0, "whole exchanges are dropped, so the prompt starts with a user turn")
        XCTAssertFalse(smaller.droppedSystem)
        XCTAssertLessThanOrEqual(smaller.ids.count, whole.count - 10)
        XCTAssertEqual(smaller.ids, chat.tokens(tok, from: smaller.droppedTurns))
        XCTAssertTrue(try tok.decode(smaller.ids).contains("Be terse."), "the system message is kept")
        let lastAlone = chat.tokens(tok, from: turns.count - 1, withSystem: false)
        let tight = try chat.fitted(tok, budget: lastAlone.count)
        XCTAssertEqual(tight.ids, lastAlone)
        XCTAssertTrue(tight.droppedSystem)
        XCTAssertNotNil(ChatPrompt.trimNote(droppedTurns: tight.droppedTurns, droppedSystem: true, context: 128))
        XCTAssertThrowsError(try chat.fitted(tok, budget: lastAlone.count - 1)) { XCTAssertTrue("\($0)".contains("last message alone")) }
        // the budget leaves room for the answer: at most half the context
        let config = GPTConfig(sequence_len: 128, vocab_size: 512, n_layer: 2, n_head: 2, n_kv_head: 1, n_embd: 64, window_pattern: "L")
        XCTAssertEqual(ChatPrompt.budget(config, maxTokens: 16), 112)
        XCTAssertEqual(ChatPrompt.budget(config, maxTokens: 512), 64)
    }
}
