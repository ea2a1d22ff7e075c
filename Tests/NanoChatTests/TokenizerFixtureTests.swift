import Foundation
import NanoChat
import XCTest

/// The tokenizer against upstream's golden outputs (fixtures/tokenizer_1024.*).
final class TokenizerFixtureTests: XCTestCase {
    static var trained: (Tokenizer, URL)?

    /// Trains once on the Austen corpus, as the fixture was made: documents = the corpus split on blank lines.
    func trainedTokenizer() throws -> (Tokenizer, URL) {
        if let t = Self.trained { return t }
        let docs = try TextDocuments(paths: [Fixtures.url("corpus_austen_700k.txt")], splitBlankLines: true)
        let (tok, stats) = try TokTrain.train(documents: docs.forEach, vocabSize: 1024, maxChars: 2_000_000_000, docCap: 10_000)
        XCTAssertGreaterThan(stats.documents, 1000)
        let dir = try temporaryDirectory()
        try tok.save(to: dir)
        Self.trained = (tok, dir)
        return (tok, dir)
    }

    func testTrainingReproducesRankFileByteForByte() throws {
        let (_, dir) = try trainedTokenizer()
        let ours = try Data(contentsOf: dir.appendingPathComponent("tokenizer.tiktoken"))
        let golden = try Data(contentsOf: Fixtures.url("tokenizer_1024.tiktoken"))
        XCTAssertEqual(ours.count, golden.count)
        XCTAssertTrue(ours == golden, "trained ranks differ from upstream's rustbpe ranks")
    }

    func testSpecialTokenIdsAndPattern() throws {
        let (tok, _) = try trainedTokenizer()
        let fx = try Fixtures.json("tokenizer_1024.json")
        XCTAssertEqual(tok.pattern, fx["split_pattern"] as? String)
        XCTAssertEqual(tok.vocabSize, fx["vocab_size"] as? Int)
        for (name, id) in fx["special_tokens"] as! [String: Int] {
            XCTAssertEqual(tok.specialID(name), id, name)
        }
        XCTAssertEqual(tok.bosID, 1015)
    }

    func testEncodeOrdinaryCases() throws {
        // Load the golden rank file itself, so encoding is checked independently of training.
        let dir = try temporaryDirectory()
        let (tok0, _) = try trainedTokenizer()
        try FileManager.default.copyItem(at: Fixtures.url("tokenizer_1024.tiktoken"), to: dir.appendingPathComponent("tokenizer.tiktoken"))
        try FileManager.default.copyItem(at: Self.trained!.1.appendingPathComponent("tokenizer.json"), to: dir.appendingPathComponent("tokenizer.json"))
        let tok = try Tokenizer.load(from: dir)
        XCTAssertEqual(tok.vocabSize, tok0.vocabSize)
        let fx = try Fixtures.json("tokenizer_1024.json")
        let cases = fx["encode_ordinary"] as! [[String: Any]]
        XCTAssertGreaterThan(cases.count, 10)
        for c in cases {
            let text = c["text"] as! String
            let ids = c["ids"] as! [Int]
            XCTAssertEqual(tok.encode(text), ids, "encode(\(text.debugDescription))")
            XCTAssertEqual(try tok.decode(ids), text)
        }
        // the batched, parallel path gives the same ids
        let texts = cases.map { $0["text"] as! String }
        XCTAssertEqual(tok.encodeBatch(texts), cases.map { $0["ids"] as! [Int] })
        let framed = tok.encodeBatch(texts, prepend: tok.bosID, append: tok.specialID("<|assistant_end|>"))
        XCTAssertEqual(framed[0].first, tok.bosID)
        XCTAssertEqual(framed[0].last, 1019)
    }

    func testConversationRendering() throws {
        let (tok, _) = try trainedTokenizer()
        let fx = try Fixtures.json("tokenizer_1024.json")
        let convData = try JSONSerialization.data(withJSONObject: fx["conversation"]!)
        let conv = try JSONDecoder().decode(Conversation.self, from: convData)
        let (ids, mask) = try tok.renderConversation(conv)
        XCTAssertEqual(ids, fx["conversation_ids"] as! [Int])
        XCTAssertEqual(mask, fx["conversation_mask"] as! [Int])
        // truncation keeps the first max_tokens entries of both
        let (tids, tmask) = try tok.renderConversation(conv, maxTokens: 10)
        XCTAssertEqual(tids, Array(ids.prefix(10)))
        XCTAssertEqual(tmask, Array(mask.prefix(10)))

        let compData = try JSONSerialization.data(withJSONObject: fx["completion_conversation"]!)
        let comp = try JSONDecoder().decode(Conversation.self, from: compData)
        XCTAssertEqual(try tok.renderForCompletion(comp), fx["completion_ids"] as! [Int])
    }

    func testRenderingRejectsMalformedConversations() throws {
        let (tok, _) = try trainedTokenizer()
        let bad: [[ChatMessage]] = [
            [],
            [ChatMessage(role: "assistant", "hi")],
            [ChatMessage(role: "user", "a"), ChatMessage(role: "user", "b")],
            [ChatMessage(role: "system", "s")],
            [ChatMessage(role: "system", "s"), ChatMessage(role: "assistant", "x")],
            [ChatMessage(role: "user", "a"),
             ChatMessage(role: "assistant", content: .parts([MessagePart(type: "image", text: "x")]))],
            [ChatMessage(role: "user", content: .parts([MessagePart(type: "text", text: "x")]))],
        ]
        for messages in bad {
            XCTAssertThrowsError(try tok.renderConversation(Conversation(messages: messages)), "\(messages)")
        }
        XCTAssertThrowsError(try tok.renderForCompletion(Conversation(messages: [ChatMessage(role: "user", "a")])))
    }

    func testTokenByteCounts() throws {
        let (tok, _) = try trainedTokenizer()
        let counts = tok.tokenByteCounts
        XCTAssertEqual(counts.count, 1024)
        XCTAssertTrue(counts[0..<256].allSatisfy { $0 == 1 })
        XCTAssertTrue(counts[1015...].allSatisfy { $0 == 0 })
        for id in 256..<1015 { XCTAssertEqual(Int(counts[id]), tok.tokenBytes(id)!.count) }
    }
}
