import Foundation
import NanoChat
import XCTest

/// Bad input gives a clear error naming the problem and the file, and leaves nothing half-written.
final class TokenizerErrorTests: XCTestCase {
    func oneDoc(_ s: String) -> (([UInt8]) throws -> Bool) throws -> Void {
        { body in _ = try body(Array(s.utf8)) }
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch let e as NanoChatError { return e.description } catch { return "\(error)" }
        XCTFail("expected an error")
        return ""
    }

    func testVocabTooSmall() {
        let m = message { _ = try TokTrain.train(documents: oneDoc("hello"), vocabSize: 264, maxChars: 100, docCap: 100) }
        XCTAssertTrue(m.contains("265"), m)
    }

    func testEmptyCorpus() {
        let m = message { _ = try TokTrain.train(documents: oneDoc(""), vocabSize: 300, maxChars: 100, docCap: 100) }
        XCTAssertTrue(m.contains("empty"), m)
    }

    func testMissingAndUnreadableInputs() throws {
        XCTAssertTrue(message { _ = try TextDocuments(paths: [URL(fileURLWithPath: "/nonexistent/x.txt")]) }.contains("/nonexistent/x.txt"))
        let dir = try temporaryDirectory()
        XCTAssertTrue(message { _ = try TextDocuments(paths: [dir]) }.contains("has no .parquet, .txt or .jsonl files"))
        let pdf = dir.appendingPathComponent("a.pdf")
        try Data("x".utf8).write(to: pdf)
        XCTAssertTrue(message { _ = try TextDocuments(paths: [pdf]) }.contains("a.pdf"))
        let bad = dir.appendingPathComponent("bad.jsonl")
        try Data("\"ok\"\nnot json\n".utf8).write(to: bad)
        let docs = try TextDocuments(paths: [bad])
        let m = message { try docs.forEach { _ in true } }
        XCTAssertTrue(m.contains("bad.jsonl line 2"), m)
    }

    func testTokenizerDirectoryErrors() throws {
        XCTAssertTrue(message { _ = try Tokenizer.load(from: URL(fileURLWithPath: "/nonexistent/tok")) }.contains("does not exist"))
        let (tok, _) = try TokTrain.train(documents: oneDoc("the cat sat on the mat, the cat sat."), vocabSize: 270,
                                          maxChars: 1000, docCap: 1000)
        let dir = try temporaryDirectory()
        try tok.save(to: dir)
        XCTAssertEqual(try Tokenizer.load(from: dir).vocabSize, tok.vocabSize)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "temporary files left behind")

        let ranks = dir.appendingPathComponent("tokenizer.tiktoken")
        let config = dir.appendingPathComponent("tokenizer.json")
        let good = try String(contentsOf: ranks, encoding: .utf8)
        let goodConfig = try Data(contentsOf: config)

        // a duplicate rank
        try (good + "YWJj 5\n").write(to: ranks, atomically: true, encoding: .utf8)
        var m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertTrue(m.contains("rank 5 appears twice") && m.contains("tokenizer.tiktoken"), m)
        // bad base64
        try (good + "!!!! 300\n").write(to: ranks, atomically: true, encoding: .utf8)
        m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertTrue(m.contains("base64"), m)
        // a gap in the ranks
        try good.replacingOccurrences(of: " 7\n", with: " 9999\n").write(to: ranks, atomically: true, encoding: .utf8)
        m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertTrue(m.contains("missing"), m)
        // duplicate bytes under two ranks
        try (good + "YQ== \(tok.mergeableCount)\n").write(to: ranks, atomically: true, encoding: .utf8)
        m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertTrue(m.contains("same bytes") || m.contains("do not belong together"), m)
        // truncated rank file
        try String(good.prefix(good.count / 2)).write(to: ranks, atomically: true, encoding: .utf8)
        m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertFalse(m.isEmpty)
        try good.write(to: ranks, atomically: true, encoding: .utf8)
        // corrupt config
        try Data("{not json".utf8).write(to: config)
        m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertTrue(m.contains("tokenizer.json") && m.contains("corrupt"), m)
        // missing config
        try FileManager.default.removeItem(at: config)
        m = message { _ = try Tokenizer.load(from: dir) }
        XCTAssertTrue(m.contains("tokenizer.json") && m.contains("does not exist"), m)
        try goodConfig.write(to: config)
        XCTAssertEqual(try Tokenizer.load(from: dir).vocabSize, tok.vocabSize)
    }

    func testJSONStringLines() throws {
        func dec(_ s: String) throws -> String {
            let b = Array(s.utf8)
            return String(decoding: try b.withUnsafeBufferPointer { try JSONText.decodeString($0) }, as: UTF8.self)
        }
        XCTAssertEqual(try dec(#""a\nb\u00e9\ud83d\ude00\"\\""#), "a\nbé😀\"\\")
        XCTAssertEqual(try dec(#""\ud800x""#), "\u{FFFD}x")
        XCTAssertThrowsError(try dec("abc"))
        XCTAssertThrowsError(try dec(#""abc"#))
        XCTAssertThrowsError(try dec(#""a" "b""#))
        XCTAssertThrowsError(try dec(#""\q""#))
        var out: [UInt8] = []
        JSONText.appendString(Array("x\"\n\u{1}é".utf8), to: &out)
        XCTAssertEqual(String(decoding: out, as: UTF8.self), #""x\"\n\u0001é""#)
    }
}
