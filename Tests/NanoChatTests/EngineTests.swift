import Foundation
import NanoChat
import NanoTensor
import XCTest

final class EngineTests: XCTestCase {
    /// The tiny fixture model: GQA (2 query heads, 1 KV head) and an 8-token window on layer 0.
    func fixtureModel() throws -> GPT {
        let file = try SafeTensorsFile(url: Fixtures.url("gpt_tiny_gqa_window.safetensors"))
        let model = try GPT(config: GPTConfig(sequence_len: 64, vocab_size: 300, n_layer: 3, n_head: 2, n_kv_head: 1,
                                              n_embd: 64, window_pattern: "SL"))
        model.windows = [8, 64, 64]
        try CheckpointManager.loadParameters(model, from: file, prefix: "param.")
        return model
    }

    func testCachedDecodingEqualsFullForwardPastTheWindow() throws {
        let model = try fixtureModel()
        var rng = SplitMix(seed: 5)
        let t = 40
        let ids = (0..<t).map { _ in Int32(rng.next() % 300) }
        let full = Tensor.withoutGrad { model.forward(ids, batch: 1, time: t) }  // [1, T, V]
        let v = 300
        for prefill in [1, 10, 33] {
            let cache = KVCache(config: model.config, batch: 1, capacity: t)
            var rows: [[Float]] = []
            let first = model.forward(Array(ids[0..<prefill]), batch: 1, time: prefill, cache: cache)
            for p in 0..<prefill { rows.append(Array(UnsafeBufferPointer(start: first.data + p * v, count: v))) }
            for p in prefill..<t { rows.append(model.forward([ids[p]], batch: 1, time: 1, cache: cache).array) }
            for p in 0..<t {
                let ref = Array(UnsafeBufferPointer(start: full.data + p * v, count: v))
                let err = Verify.relativeError(rows[p].withUnsafeBufferPointer { $0 }, ref)
                XCTAssertLessThan(err, 1e-5, "prefill \(prefill), position \(p): relative error \(err)")
            }
        }
    }

    /// int8 weights decode over a bf16 KV cache (`useWeights` asks for one): half the cache's bytes, and logits that
    /// follow the full forward (which keeps float32 keys and values) within the cache's rounding, past the window.
    /// Going back to float32 weights brings back a float32 cache and the exact equality.
    func testQuantizedDecodingOverABF16CacheFollowsTheFullForward() throws {
        let model = try fixtureModel()
        var rng = SplitMix(seed: 6)
        let (t, v, prefill) = (40, 300, 10)
        let ids = (0..<t).map { _ in Int32(rng.next() % 300) }
        for format in [WeightFormat.int8, .f32] {
            model.useWeights(format)
            XCTAssertEqual(model.kvCacheBF16, format != .f32)
            let full = Tensor.withoutGrad { model.forward(ids, batch: 1, time: t) }
            let cache = KVCache(for: model, batch: 1, capacity: t)
            let f32Bytes = KVCache(config: model.config, batch: 1, capacity: t).bytes
            XCTAssertEqual(cache.bytes, format == .f32 ? f32Bytes : f32Bytes / 2)
            _ = model.forward(Array(ids[0..<prefill]), batch: 1, time: prefill, cache: cache)
            var worst = 0.0
            for p in prefill..<t {
                let row = model.forward([ids[p]], batch: 1, time: 1, cache: cache).array
                let ref = Array(UnsafeBufferPointer(start: full.data + p * v, count: v))
                worst = max(worst, Verify.relativeError(row.withUnsafeBufferPointer { $0 }, ref))
            }
            // bf16 keeps 8 bits of each key and value (and one-row int8 products round activations to int16): 2.9e-4 here
            XCTAssertLessThan(worst, format == .f32 ? 1e-5 : 2e-3, "\(format): worst relative error of the cached logits \(worst)")
        }
    }

    /// Rows at different positions decoded in one pass (the continuous batcher): each row's logits equal a full
    /// forward of its own sequence, past the 8-token window, with an idle row and rows in any order; a prompt
    /// longer than the cache grows it.
    func testRaggedRowsDecodeLikeTheirOwnSequences() throws {
        let model = try fixtureModel()
        var rng = SplitMix(seed: 9)
        let v = 300
        let seqs = [30, 22].map { n in (0..<n).map { _ in Int32(rng.next() % 300) } }
        let prompts = [3, 14]  // prefilled lengths: the rows are 11 positions apart
        let cache = KVCache(config: model.config, batch: 3, capacity: 4)  // row 1 stays idle
        let slots = [2, 0]
        for (i, slot) in slots.enumerated() {
            let one = KVCache(config: model.config, batch: 1, capacity: prompts[i])
            _ = model.forward(Array(seqs[i][0..<prompts[i]]), batch: 1, time: prompts[i], cache: one, lastOnly: true)
            cache.load(row: slot, from: one)
        }
        XCTAssertGreaterThanOrEqual(cache.capacity, 14)
        XCTAssertEqual(cache.rowPositions, [14, 0, 3])
        var got = [[[Float]]](repeating: [], count: 2)
        for step in 0..<8 {
            let order = step % 2 == 0 ? [0, 1] : [1, 0]  // the batch order changes between steps
            let ids = order.map { seqs[$0][prompts[$0] + step] }
            let out = model.forward(ids, batch: 2, time: 1, cache: cache, rows: order.map { slots[$0] })
            for (bi, i) in order.enumerated() { got[i].append(Array(UnsafeBufferPointer(start: out.data + bi * v, count: v))) }
        }
        XCTAssertEqual(cache.rowPositions, [22, 0, 11])
        for i in 0..<2 {
            let n = prompts[i] + 8
            let full = Tensor.withoutGrad { model.forward(Array(seqs[i][0..<n]), batch: 1, time: n) }
            for step in 0..<8 {
                let ref = Array(UnsafeBufferPointer(start: full.data + (prompts[i] + step) * v, count: v))
                let err = Verify.relativeError(got[i][step].withUnsafeBufferPointer { $0 }, ref)
                XCTAssertLessThan(err, 1e-5, "sequence \(i), step \(step): relative error \(err)")
            }
        }
    }

    /// The continuous batcher: requests of different lengths, more than its rows, arriving together and
    /// prefilled in chunks between decoding steps, each get exactly the greedy answer the Engine gives them
    /// alone; a request that stops early frees its row; a refused one is told why.
    func testBatcherAnswersEachRequestAsTheEngineAlone() throws {
        let model = try fixtureModel()
        let tok = try Tokenizer(mergeable: (0..<256).map { [UInt8($0)] } + [[0x61, 0x62]] + (0..<34).map { [0x7A, UInt8($0)] },
                                specialTokens: specialTokenNames)
        let engine = Engine(model: model, tokenizer: tok)
        let prompts = (0..<7).map { i in [tok.bosID] + (0..<(2 + 5 * i)).map { 40 + ($0 * 7 + i * 13) % 80 } }
        let expected = try prompts.map { p -> [Int] in
            var out: [Int] = []
            try engine.generate(p, maxTokens: 12, temperature: 0) { col, _ in out.append(col[0]); return true }
            return out
        }
        let batcher = Batcher(engine: engine, slots: 3, prefillChunk: 8)  // prompts of up to 33 tokens: up to 5 chunks
        final class Box: @unchecked Sendable { var got: [[Int]] = Array(repeating: [], count: 8); var errors: [Error?] = Array(repeating: nil, count: 8) }
        let box = Box()
        let done = DispatchGroup()
        for (i, p) in prompts.enumerated() {
            done.enter()
            batcher.submit(.init(prompt: p, maxTokens: 12, temperature: 0, topK: nil, seed: 1),
                           onToken: { box.got[i].append($0); return true }, finished: { box.errors[i] = $0; done.leave() })
        }
        // one that stops after 3 tokens, and one too long for the model's positions
        done.enter()
        batcher.submit(.init(prompt: prompts[2], maxTokens: 12, temperature: 0, topK: nil, seed: 1),
                       onToken: { box.got[7].append($0); return box.got[7].count < 3 }, finished: { _ in done.leave() })
        let refused = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var refusal: Error?
        batcher.submit(.init(prompt: Array(repeating: 65, count: 700), maxTokens: 10, temperature: 0, topK: nil, seed: 1),
                       onToken: { _ in true }, finished: { refusal = $0; refused.signal() })
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(refused.wait(timeout: .now() + 60), .success)
        for i in 0..<prompts.count {
            XCTAssertNil(box.errors[i])
            XCTAssertEqual(box.got[i], expected[i], "request \(i) (prompt of \(prompts[i].count) tokens)")
        }
        XCTAssertEqual(box.got[7], Array(expected[2].prefix(3)))
        XCTAssertNotNil(refusal)
    }

    func testGreedyIsDeterministicAndMatchesTheUncachedGenerator() throws {
        let model = try fixtureModel()
        let tok = try Tokenizer(mergeable: (0..<256).map { [UInt8($0)] } + [[0x61, 0x62]] + (0..<34).map { [0x7A, UInt8($0)] },
                                specialTokens: specialTokenNames)
        XCTAssertEqual(tok.vocabSize, 300)
        let engine = Engine(model: model, tokenizer: tok)
        let prompt = [tok.bosID, 72, 105, 33]
        let a = try engine.generateBatch(prompt, numSamples: 2, maxTokens: 20, temperature: 0)
        let b = try engine.generateBatch(prompt, numSamples: 1, maxTokens: 20, temperature: 0)
        XCTAssertEqual(a.sequences[0], a.sequences[1], "greedy rows agree")
        XCTAssertEqual(a.sequences[0], b.sequences[0], "greedy is deterministic")
        let naive = model.generate(prompt, maxTokens: 20, temperature: 0)
        let stop = naive.firstIndex { $0 == tok.bosID || $0 == tok.specialID("<|assistant_end|>") } ?? naive.count
        XCTAssertEqual(Array(a.sequences[0].dropFirst(prompt.count)), Array(naive.prefix(stop)))
        XCTAssertEqual(a.masks[0].prefix(prompt.count).reduce(0, +), 0)
        // sampling with a seed is reproducible, different seeds differ somewhere
        let s1 = try engine.generateBatch(prompt, numSamples: 3, maxTokens: 15, temperature: 1, topK: 50, seed: 1)
        let s2 = try engine.generateBatch(prompt, numSamples: 3, maxTokens: 15, temperature: 1, topK: 50, seed: 1)
        XCTAssertEqual(s1.sequences, s2.sequences)
        // too long a prompt, or an id outside the vocabulary, is an error, not a crash
        XCTAssertThrowsError(try engine.generateBatch(Array(repeating: 65, count: 700), maxTokens: 10))
        XCTAssertThrowsError(try engine.generateBatch([tok.bosID, 300], maxTokens: 2))
    }

    func testCalculatorFollowsPythonSemantics() {
        let cases: [(String, String?)] = [
            ("12/60", "0.2"), ("4/2", "2.0"), ("0.1+0.2", "0.30000000000000004"), ("2**3", nil), ("1/0", nil),
            ("012", nil), ("2(3)", nil), ("7//2", "3"), ("-7//2", "-4"), ("1,000*3", "3000"), ("(1+2)*3", "9"),
            ("3.0*2", "6.0"), ("-(-5)", "5"), ("1e5", nil), ("", nil), ("2 +", nil), ("10/4", "2.5"), ("00", "0"),
            ("'strawberry'.count('r')", "3"), ("\"banana\".count(\"an\")", "2"), ("'abc'.count('')", "4"),
            ("__import__('os')", nil), ("open('x').count('a')", nil), ("'a'.upper()", nil),
            ("1/3", "0.3333333333333333"), ("2/3*3", "2.0"), ("100000000000000000*10", "1000000000000000000"),
        ]
        for (expr, want) in cases { XCTAssertEqual(Calculator.evaluate(expr), want, expr) }
    }

    func testStreamingDecoderNeverSplitsACharacter() throws {
        let tok = try Tokenizer(mergeable: (0..<256).map { [UInt8($0)] }, specialTokens: specialTokenNames)
        let text = "héllo 🙂 中文 ok"
        var dec = StreamingDecoder(tokenizer: tok)
        var pieces: [String] = []
        for b in text.utf8 { pieces.append(dec.push(Int(b))) }
        pieces.append(dec.flush())
        XCTAssertEqual(pieces.joined(), text)
        XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") })
        XCTAssertEqual(pieces.filter { !$0.isEmpty }.count, text.count, "one piece per character")
    }
}
