import Foundation
import NanoChat
import XCTest

/// Split pattern semantics, round trips on hostile text, special tokens, long chunks.
final class TokenizerPropertyTests: XCTestCase {
    static let sharedTokenizer = Shared<Tokenizer> {
        let text = try Fixtures.text("corpus_austen_700k.txt")
        let docs = text.components(separatedBy: "\n\n").map { Array($0.utf8) }
        let (tok, _) = try TokTrain.train(documents: { body in for d in docs { if try !body(d) { return } } },
                                           vocabSize: 600, maxChars: 300_000, docCap: 10_000)
        return tok
    }

    func chunks(_ s: String, _ scanner: SplitScanner = SplitScanner()) -> [String] {
        let b = Array(s.utf8)
        return scanner.split(b).map { String(decoding: b[$0], as: UTF8.self) }
    }

    func testReferenceSplitsFromSpec() {
        XCTAssertEqual(chunks("Hello world! I'm 12345 ok.\n\n  def f(x):\n    return x"),
                       ["Hello", " world", "!", " I", "'m", " ", "12", "34", "5", " ok", ".\n\n", " ", " def", " f", "(x",
                        "):\n", "   ", " return", " x"])
        XCTAssertEqual(chunks("You'RE  there...\r\n"), ["You", "'RE", " ", " there", "...\r\n"])
        XCTAssertEqual(chunks("price: $1,234.56!!"), ["price", ":", " $", "1", ",", "23", "4", ".", "56", "!!"])
        XCTAssertEqual(chunks("price 1234", SplitScanner(maxDigits: 3)), ["price", " ", "123", "4"])
    }

    func testSplitEdgeCases() {
        XCTAssertEqual(chunks("a  \n\n  b"), ["a", "  \n\n", " ", " b"])
        XCTAssertEqual(chunks("x   "), ["x", "   "])
        XCTAssertEqual(chunks("\ttabs"), ["\ttabs"])
        XCTAssertEqual(chunks("and\u{a0}nbsp"), ["and", "\u{a0}nbsp"])
        XCTAssertEqual(chunks("it'll 'LL 'ſ 'x"), ["it", "'ll", " '", "LL", " '", "ſ", " '", "x"])
        XCTAssertEqual(chunks("'ſx"), ["'ſ", "x"])
        XCTAssertEqual(chunks("٣٤٥ Ⅻ ½"), ["٣٤", "٥", " ", "Ⅻ", " ", "½"])  // Nd, Nl, No are all \p{N}
        XCTAssertEqual(chunks("中文字符"), ["中文字符"])
        XCTAssertEqual(chunks(" 👍🏽!\r\n\r\nx"), [" 👍🏽!\r\n\r\n", "x"])
        XCTAssertEqual(chunks("\u{2003}\u{3000}word"), ["\u{2003}", "\u{3000}word"])
        XCTAssertEqual(chunks(""), [])
    }

    func testInvalidUTF8SplitsAndRoundTrips() throws {
        let tok = try Self.sharedTokenizer.get()
        let bytes: [UInt8] = [0x66, 0xFF, 0xC3, 0x28, 0xE2, 0x82, 0x20, 0xF0, 0x9F, 0x98, 0x80, 0xED, 0xA0, 0x80, 0xC0, 0xAF]
        let ranges = SplitScanner().split(bytes)
        XCTAssertEqual(ranges.first?.lowerBound, 0)
        XCTAssertEqual(ranges.last?.upperBound, bytes.count)
        for (r, s) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(r.upperBound, s.lowerBound) }
        XCTAssertEqual(try tok.decodeBytes(tok.encode(bytes: bytes)), bytes)
    }

    func testRandomBytesRoundTrip() throws {
        let tok = try Self.sharedTokenizer.get()
        var rng = SplitMix(seed: 1)
        for _ in 0..<300 {
            let n = Int(rng.next() % 200)
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let ids = tok.encode(bytes: bytes)
            XCTAssertEqual(try tok.decodeBytes(ids), bytes)
            XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 < tok.mergeableCount })
        }
    }

    func testRandomUnicodeRoundTrip() throws {
        let tok = try Self.sharedTokenizer.get()
        let pieces = ["👩🏽‍💻", "👍🏿", "🇫🇷", "e\u{301}", "a\u{308}\u{323}", "中文", "日本語", "한국어", "שלום", "مرحبا",
                      "\u{200F}", "\u{a0}", "\r\n", "\n", "\r", "\t", "    ", "          ", "0123456789", "12",
                      "'s", "'LL", "don't", "Hello", " world", "!!!", "...", "$", "£", "∑", "ǅ", "ſ", "\u{feff}",
                      "\u{2028}", "\u{85}", "x", "Ⅻ", "½", "\u{0}", "<|bos|>", "<|", "|>"]
        var rng = SplitMix(seed: 7)
        for _ in 0..<400 {
            let k = Int(rng.next() % 30)
            let s = (0..<k).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
            XCTAssertEqual(try tok.decode(tok.encode(s)), s)
            // chunking is a partition into valid pieces
            let b = Array(s.utf8)
            XCTAssertEqual(SplitScanner().split(b).reduce(0) { $0 + $1.count }, b.count)
        }
    }

    func testLongChunksMergeLikeShortOnes() throws {
        let tok = try Self.sharedTokenizer.get()
        // Chunks above the threshold go through the heap; the result must equal the linear scan.
        var rng = SplitMix(seed: 3)
        let saved = Tokenizer.heapMergeThreshold
        defer { Tokenizer.heapMergeThreshold = saved }
        for _ in 0..<200 {
            let n = 2 + Int(rng.next() % 120)
            let alphabet: [UInt8] = Array("etaoinshr".utf8)
            let word = (0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
            Tokenizer.heapMergeThreshold = 1_000_000
            let linear = tok.encode(bytes: word)
            Tokenizer.heapMergeThreshold = 1
            let heap = tok.encode(bytes: word)
            XCTAssertEqual(linear, heap, String(decoding: word, as: UTF8.self))
        }
        Tokenizer.heapMergeThreshold = saved
        let spaces = [UInt8](repeating: 0x20, count: 200_000) + Array("x".utf8)
        let ids = tok.encode(bytes: spaces)
        XCTAssertEqual(try tok.decodeBytes(ids), spaces)
    }

    func testSpecialTokensInsideOrdinaryText() throws {
        let tok = try Self.sharedTokenizer.get()
        let text = "hi <|bos|> there<|assistant_end|><|unknown|>"
        let plain = tok.encode(text)
        XCTAssertFalse(plain.contains { $0 >= tok.mergeableCount }, "encode must treat special strings as text")
        let special = tok.encodeAllowingSpecial(text)
        XCTAssertEqual(special.filter { $0 >= tok.mergeableCount }, [tok.bosID, tok.specialID("<|assistant_end|>")!])
        XCTAssertEqual(try tok.decode(special), text)
        XCTAssertEqual(try tok.decode(plain), text)
        XCTAssertEqual(tok.encodeAllowingSpecial("<|bos|>"), [tok.bosID])
        XCTAssertThrowsError(try tok.decode([tok.vocabSize]))
        XCTAssertThrowsError(try tok.decode([-1]))
    }

    func testDecodeReplacesInvalidUTF8() throws {
        let tok = try Self.sharedTokenizer.get()
        let ids = tok.encode(bytes: [0x61, 0xFF, 0x62])
        XCTAssertEqual(try tok.decode(ids), "a\u{FFFD}b")
    }
}

/// Small deterministic RNG for property tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
