import Foundation
import XCTest
import NanoChat
import NanoTensor

/// Upstream's own files (Tests/Fixtures/upstream_checkpoint, made by tools/make_upstream_checkpoint_fixture.py with
/// upstream's code: its tokenizer.pkl and token_bytes.pt, base/SFT/RL checkpoints saved by its save_checkpoint) load
/// here and give upstream's numbers; hostile and broken files are refused without running anything.
final class UpstreamCheckpointTests: XCTestCase {
    var root: URL { Fixtures.dir.appendingPathComponent("upstream_checkpoint") }
    func reference() throws -> [String: Any] { try Fixtures.json("upstream_checkpoint/reference.json") }

    func testTokenizerPickleGivesUpstreamsIds() throws {
        let tok = try Tokenizer.load(from: root.appendingPathComponent("tokenizer"))
        let ref = try reference()
        XCTAssertEqual(tok.vocabSize, 512)
        let ids = [tok.bosID] + tok.encode("It is a truth universally acknowledged, that a single man in possession")
        XCTAssertEqual(ids, ref["text_ids"] as? [Int])
        // upstream's render_conversation, token by token and mask by mask
        let conv = try JSONDecoder().decode(Conversation.self, from: JSONSerialization.data(withJSONObject: ref["conversation"]!))
        let (cids, mask) = try tok.renderConversation(conv)
        XCTAssertEqual(cids, ref["conversation_ids"] as? [Int])
        XCTAssertEqual(mask, ref["conversation_mask"] as? [Int])
        // token_bytes.pt (torch.save of an int32 tensor) holds the byte counts we compute
        let tb = try TorchFile(url: root.appendingPathComponent("tokenizer/token_bytes.pt"))
        guard case .tensor(let t) = tb.root else { return XCTFail("token_bytes.pt holds a \(tb.root.kind)") }
        XCTAssertEqual(try tb.ints(t, name: "token_bytes"), tok.tokenByteCounts.map(Int.init))
    }

    func testBaseCheckpointGivesUpstreamsLogitsAndSFTLoss() throws {
        let ref = try reference()
        let dir = root.appendingPathComponent("base_checkpoints/d2")
        XCTAssertEqual(CheckpointManager.latestStep(in: dir), 5)
        let (model, meta) = try CheckpointManager.loadModel(directory: dir, step: 5)
        XCTAssertEqual(meta.format, "torch")
        XCTAssertEqual(meta.model_config, GPTConfig(sequence_len: 128, vocab_size: 512, n_layer: 2, n_head: 2, n_kv_head: 1, n_embd: 64, window_pattern: "SL"))
        XCTAssertEqual(meta.user_config["depth"], "2")
        XCTAssertEqual(meta.max_seq_len, 128)
        XCTAssertEqual(meta.val_bpb, 3.25)
        XCTAssertEqual(meta.dataloader_state_dict, LoaderState(pq_idx: 0, rg_idx: 1, epoch: 1))
        let ids = (ref["text_ids"] as! [Int]).map { Int32($0) }
        let logits = model.forward(ids, batch: 1, time: ids.count).hostArray()
        let want = (ref["logits"] as! [[Double]]).flatMap { $0 }
        XCTAssertEqual(logits.count, want.count)
        let maxDiff = zip(logits, want).map { abs(Double($0) - $1) }.max()!
        XCTAssertLessThan(maxDiff, 1e-5, "logits differ from upstream's by up to \(maxDiff)")
        // the first SFT step's loss from this checkpoint: upstream's chat_sft loss of one rendered conversation
        let cids = ref["conversation_ids"] as! [Int], mask = ref["conversation_mask"] as! [Int]
        let inputs = cids.dropLast().map { Int32($0) }
        let targets = (1..<cids.count).map { mask[$0] == 1 ? Int32(cids[$0]) : -1 }
        let loss = Double(model.forward(inputs, batch: 1, time: inputs.count, targets: targets).hostArray()[0])
        XCTAssertEqual(loss, ref["sft_loss"] as! Double, accuracy: 1e-5 * max(1, loss))
    }

    func testChatCheckpointsLoadBySource() throws {
        setenv("NANOCHAT_BASE_DIR", root.path, 1)
        defer { unsetenv("NANOCHAT_BASE_DIR") }
        let sft = try CheckpointManager.loadModel(source: "sft")
        XCTAssertEqual(sft.step, 3)
        XCTAssertEqual(sft.meta.user_config["model_step"], "")  // upstream's None
        let rl = try CheckpointManager.loadModel(source: "rl")
        XCTAssertEqual(rl.step, 1)  // RL's meta has only model_config: the step comes from the file name
        XCTAssertEqual(rl.meta.step, 1)
        // the optimizer shards of upstream's checkpoints are not read: said, so chat-sft starts fresh
        let opt = try sft.model.setupOptimizer(unembeddingLR: 0.004, embeddingLR: 0.2, matrixLR: 0.02, weightDecay: 0, scalarLR: 0.5)
        XCTAssertThrowsError(try CheckpointManager.loadOptimizer(opt, directory: sft.directory, step: 3, meta: sft.meta)) {
            XCTAssertTrue("\($0)".contains("upstream's checkpoint"))
        }
    }

    /// Upstream's meta as older and other checkpoints have it: no window_pattern is "L" (upstream's patch); a model_config
    /// key this build has no architecture for is refused with its name.
    func testMetaVariants() throws {
        let url = URL(fileURLWithPath: "/x/meta_000007.json")
        let old = #"{"model_config": {"sequence_len": 64, "vocab_size": 300, "n_layer": 2, "n_head": 2, "n_kv_head": 2, "n_embd": 64}, "user_config": {"depth": 2, "run": null, "fp8": false}}"#
        let meta = try CheckpointManager.upstreamMeta(Data(old.utf8), step: 7, url: url)
        XCTAssertEqual(meta.model_config.window_pattern, "L")
        XCTAssertEqual(meta.step, 7)
        XCTAssertEqual(meta.user_config["fp8"], "0")  // a JSON boolean as Foundation reads it, text as ours are
        let moe = #"{"model_config": {"sequence_len": 64, "vocab_size": 300, "n_layer": 2, "n_head": 2, "n_kv_head": 2, "n_embd": 64, "n_experts": 8}}"#
        XCTAssertThrowsError(try CheckpointManager.upstreamMeta(Data(moe.utf8), step: 7, url: url)) {
            XCTAssertTrue("\($0)".contains("n_experts, an architecture variant this build cannot run"), "\($0)")
        }
        let bad = #"{"model_config": {"sequence_len": 64, "vocab_size": 300, "n_layer": 2, "n_head": 3, "n_kv_head": 2, "n_embd": 64}}"#
        XCTAssertThrowsError(try CheckpointManager.upstreamMeta(Data(bad.utf8), step: 7, url: url))
    }

    /// Hostile and broken files: each refused with a message that says what is wrong; none runs anything.
    func testHostileAndBrokenFilesAreRefused() throws {
        let marker = "/tmp/nanochat-pickle-ran"
        try? FileManager.default.removeItem(atPath: marker)
        let hostile = root.appendingPathComponent("hostile")
        func refused(_ what: String, _ expected: String, _ body: () throws -> Void) {
            XCTAssertThrowsError(try body(), what) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(what): \(error)")
            }
        }
        func loadInto(_ name: String) throws {
            let model = try GPT(config: GPTConfig(sequence_len: 128, vocab_size: 512, n_layer: 2, n_head: 2, n_kv_head: 1, n_embd: 64, window_pattern: "SL"))
            try CheckpointManager.loadParameters(model, from: try TorchFile(url: hostile.appendingPathComponent(name)))
        }
        // 1-4: callables (os.system, builtins.eval, subprocess.call) and a tokenizer pickle that is not an Encoding
        refused("os.system", "posix.system") { _ = try TorchFile(url: hostile.appendingPathComponent("os_system.pt")) }
        refused("eval", "builtins.eval") { _ = try Tokenizer.loadUpstreamPickle(hostile.appendingPathComponent("eval_tokenizer.pkl")) }
        // (protocol 2 writes Python 2's name for subprocess)
        refused("subprocess", "commands.call") { _ = try Tokenizer.loadUpstreamPickle(hostile.appendingPathComponent("subprocess.pkl")) }
        refused("dict tokenizer", "expected a pickled tiktoken Encoding") { _ = try Tokenizer.loadUpstreamPickle(hostile.appendingPathComponent("dict_tokenizer.pkl")) }
        // 5-8: wrong dtype, wrong shape, deflated entries, torch.save's legacy format
        refused("int64 weight", "expected a floating-point tensor") { try loadInto("int64_weight.pt") }
        refused("wrong shape", "lm_head.weight has shape [512, 32]") { try loadInto("wrong_shape.pt") }
        refused("deflated", "compressed") { _ = try TorchFile(url: hostile.appendingPathComponent("deflated.pt")) }
        refused("legacy", "legacy format") { _ = try TorchFile(url: hostile.appendingPathComponent("legacy.pt")) }

        // 9-11: the good checkpoint truncated, with one storage byte flipped, and without its end record
        let good = try Data(contentsOf: root.appendingPathComponent("base_checkpoints/d2/model_000005.pt"))
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("upstream-broken-\(getpid())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let truncated = tmp.appendingPathComponent("truncated.pt")
        try good.prefix(good.count / 2).write(to: truncated)
        refused("truncated", "truncated") { _ = try TorchFile(url: truncated) }
        var flipped = good
        let file = try TorchFile(url: root.appendingPathComponent("base_checkpoints/d2/model_000005.pt"))
        let entry = file.entries["data/0"]!
        flipped[entry.offset] ^= 0x40
        let flippedURL = tmp.appendingPathComponent("flipped.pt")
        try flipped.write(to: flippedURL)
        refused("flipped byte", "CRC-32") {
            let model = try GPT(config: GPTConfig(sequence_len: 128, vocab_size: 512, n_layer: 2, n_head: 2, n_kv_head: 1, n_embd: 64, window_pattern: "SL"))
            try CheckpointManager.loadParameters(model, from: try TorchFile(url: flippedURL))
        }
        let noEnd = tmp.appendingPathComponent("noend.pt")
        try good.dropLast(22).write(to: noEnd)
        refused("no end record", "no zip end record") { _ = try TorchFile(url: noEnd) }

        // 12-17: hand-made pickles: a huge declared length, a memo read before it is written, an opcode torch.save
        // never writes (INST, which calls), a tensor reaching past its storage, a stack underflow, a GLOBAL at protocol 0
        func pickle(_ bytes: [UInt8]) throws -> PickleValue { try SafePickle(bytes, what: "test").read() }
        refused("huge length", "declares") { _ = try pickle([0x80, 2, 0x58, 0xF0, 0xFF, 0xFF, 0xFF, 0x61, 0x2E]) }
        refused("unset memo", "read before it is written") { _ = try pickle([0x80, 2, 0x68, 7, 0x2E]) }
        refused("INST", "opcode 0x69") { _ = try pickle(Array("i os\nsystem\n(S'ls'\n.".utf8)) }
        refused("stack underflow", "empty stack") { _ = try pickle([0x80, 2, 0x73, 0x2E]) }
        refused("protocol 0 GLOBAL", "os.system") { _ = try pickle(Array("cos\nsystem\n(S'ls'\ntR.".utf8)) }
        let pastEnd: [UInt8] = [0x80, 2] + Array("ctorch._utils\n_rebuild_tensor_v2\n((X".utf8) + [7, 0, 0, 0] + Array("storagectorch\nFloatStorage\nX".utf8)
            + [1, 0, 0, 0] + Array("0X".utf8) + [3, 0, 0, 0] + Array("cpuK".utf8) + [4, 0x74, 0x51, 0x4B, 2, 0x4B, 4, 0x85, 0x4B, 1, 0x85, 0x89, 0x74, 0x52, 0x2E]
        refused("tensor past its storage", "reaches element 5 of a storage of 4") { _ = try pickle(pastEnd) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "a hostile pickle ran code")
    }
}
