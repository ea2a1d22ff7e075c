import Foundation
import NanoChat
import NanoTensor
import XCTest

/// Pretraining end to end on a tiny model: the loss falls, resuming reproduces the uninterrupted run,
/// checkpoints round-trip and damaged ones are refused.
final class TrainingTests: XCTestCase {
    /// A base directory with a small tokenizer and text shards (train + val).
    static let sharedWorkspace = Shared<URL> {
        let dir = try temporaryDirectory()
        let text = try Fixtures.text("corpus_austen_700k.txt")
        let paragraphs = text.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        let (tok, _) = try TokTrain.train(documents: { body in for p in paragraphs.prefix(600) { if try !body(Array(p.utf8)) { return } } },
                                           vocabSize: 300, maxChars: 1_000_000, docCap: 10_000)
        try tok.save(to: dir.appendingPathComponent("tokenizer"))
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        func shard(_ docs: ArraySlice<String>, _ name: String) throws {
            var out: [UInt8] = []
            for d in docs { JSONText.appendString(Array(d.utf8), to: &out); out.append(0x0A) }
            try Data(out).write(to: data.appendingPathComponent(name))
        }
        try shard(paragraphs[0..<1500], "shard_00000.jsonl")
        try shard(paragraphs[1500..<1700], "shard_00001.jsonl")
        return dir
    }
    var workspace: URL { get throws { try Self.sharedWorkspace.get() } }

    /// base-train's flags for a tiny run, as a user would type them.
    func options(tag: String, iterations: Int) throws -> BaseTrainOptions {
        let ws = try workspace
        return try BaseTrainOptions.parse([
            "--depth", "2", "--aspect-ratio", "32", "--head-dim", "32", "--max-seq-len", "64", "--window-pattern", "SL",
            "--device-batch-size", "4", "--total-batch-size", "512", "--num-iterations", "\(iterations)",
            "--warmup-steps", "2", "--eval-every", "-1", "--eval-tokens", "1024", "--sample-every", "-1", "--core-metric-every", "-1",
            "--tokenizer-dir", ws.appendingPathComponent("tokenizer").path, "--data-dir", ws.appendingPathComponent("data").path,
            "--checkpoint-dir", ws.appendingPathComponent("ckpt-\(tag)").path])
    }

    func testLossFallsOnRepeatedText() throws {
        // one short document repeated: a model that learns anything must drive the loss down
        let dir = try temporaryDirectory()
        try FileManager.default.copyItem(at: try workspace.appendingPathComponent("tokenizer"), to: dir.appendingPathComponent("tokenizer"))
        let data = dir.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let line = Data((String(repeating: "\"the quick brown fox jumps over the lazy dog. \"\n", count: 400)).utf8)
        try line.write(to: data.appendingPathComponent("a.jsonl"))
        try line.write(to: data.appendingPathComponent("b.jsonl"))
        var o = try options(tag: "repeat", iterations: 60)
        o.tokenizerDir = dir.appendingPathComponent("tokenizer").path
        o.dataDir = data.path
        o.evalEvery = 60
        o.checkpointDir = dir.appendingPathComponent("ckpt").path
        let (final, bpb, losses) = try baseTrain(o) { _ in }
        XCTAssertEqual(losses.count, 60)
        XCTAssertLessThan(final, losses[0] * 0.6, "loss \(losses[0]) -> \(final)")
        XCTAssertNotNil(bpb)
        // the metrics log has a line per step plus the evaluation
        let log = try String(contentsOf: URL(fileURLWithPath: o.checkpointDir!).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 60 + 2)
    }

    func testResumeContinuesTheSameTrajectory() throws {
        var o = try options(tag: "resume", iterations: 8)
        o.saveEvery = 4
        let (_, _, full) = try baseTrain(o) { _ in }
        XCTAssertEqual(full.count, 8)
        o.resumeFromStep = 4
        let (_, _, resumed) = try baseTrain(o) { _ in }
        XCTAssertEqual(resumed.count, 4)
        for (a, b) in zip(full.suffix(4), resumed) { XCTAssertEqual(a, b, accuracy: 1e-6 * abs(a)) }
        // the metrics log keeps one line per step after the resume rewrote its tail
        let log = try String(contentsOf: URL(fileURLWithPath: o.checkpointDir!).appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        XCTAssertEqual(log.split(separator: "\n").count, 8)
    }

    func testCheckpointRoundTripAndDamage() throws {
        let o = try options(tag: "roundtrip", iterations: 2)
        _ = try baseTrain(o) { _ in }
        let dir = URL(fileURLWithPath: o.checkpointDir!)
        XCTAssertEqual(CheckpointManager.latestStep(in: dir), 2)
        let (model, meta) = try CheckpointManager.loadModel(directory: dir, step: 2)
        XCTAssertEqual(meta.step, 2)
        XCTAssertEqual(model.config.n_layer, 2)
        // same logits after a save/load cycle
        let again = try temporaryDirectory()
        try CheckpointManager.save(directory: again, step: 7, model: model, optimizer: nil, meta: meta)
        let (model2, _) = try CheckpointManager.loadModel(directory: again, step: 7)
        let ids: [Int32] = [1, 2, 3, 4, 5, 6]
        XCTAssertEqual(Tensor.withoutGrad { model.forward(ids, batch: 1, time: 6) }.array,
                       Tensor.withoutGrad { model2.forward(ids, batch: 1, time: 6) }.array)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: again.path).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [])

        func message(_ body: () throws -> Void) -> String {
            do { try body() } catch let e as NanoChatError { return e.description } catch { return "\(error)" }
            return ""
        }
        let modelURL = again.appendingPathComponent("model_000007.safetensors")
        let good = try Data(contentsOf: modelURL)
        // truncated (torn write)
        try good.prefix(good.count - 100).write(to: modelURL)
        var m = message { _ = try CheckpointManager.loadModel(directory: again, step: 7) }
        XCTAssertTrue(m.contains("model_000007.safetensors") && m.contains("not a valid safetensors"), m)
        // garbage header length
        var bad = good
        bad.replaceSubrange(0..<8, with: [UInt8](repeating: 0xFF, count: 8))
        try bad.write(to: modelURL)
        m = message { _ = try CheckpointManager.loadModel(directory: again, step: 7) }
        XCTAssertTrue(m.contains("header length"), m)
        // a model file that belongs to another config
        try good.write(to: modelURL)
        let metaURL = again.appendingPathComponent("meta_000007.json")
        var metaText = try String(contentsOf: metaURL, encoding: .utf8)
        metaText = metaText.replacingOccurrences(of: "\"n_embd\" : 64", with: "\"n_embd\" : 128")
        try metaText.write(to: metaURL, atomically: true, encoding: .utf8)
        m = message { _ = try CheckpointManager.loadModel(directory: again, step: 7) }
        XCTAssertTrue(m.contains("model_000007.safetensors") && m.contains("shape"), m)
        // corrupt meta
        try "{\"step\": ".write(to: metaURL, atomically: true, encoding: .utf8)
        m = message { _ = try CheckpointManager.loadModel(directory: again, step: 7) }
        XCTAssertTrue(m.contains("meta_000007.json") && m.contains("corrupt"), m)
        // resuming without an optimizer file
        var r = o
        try FileManager.default.removeItem(at: dir.appendingPathComponent("optim_000002_rank0.safetensors"))
        r.resumeFromStep = 2
        r.numIterations = 3
        m = message { _ = try baseTrain(r) { _ in } }
        XCTAssertTrue(m.contains("optim_000002_rank0.safetensors") && m.contains("does not exist"), m)
    }

    /// Ranks started by torchrun (no MPI) stop with what to run instead of each training alone; one is one process.
    func testTorchrunEnvironmentIsCheckedAndItsStoreAwaited() throws {
        // WORLD_SIZE without the rest of torchrun's variables: what to run instead
        setenv("WORLD_SIZE", "2", 1); setenv("LOCAL_RANK", "0", 1)
        let keys: [String] = ["WORLD_SIZE", "LOCAL_RANK", "RANK", "MASTER_ADDR", "MASTER_PORT", "NANOCHAT_RENDEZVOUS_TIMEOUT"]
        defer { for key in keys { unsetenv(key) } }
        XCTAssertThrowsError(try Distributed.start()) {
            XCTAssertTrue("\($0)".contains("no RANK, MASTER_ADDR, MASTER_PORT") && "\($0)".contains("mpirun -np 2"), "\($0)")
        }
        // the whole set, but no store listening there: the rendezvous gives up after its limit, naming the address
        setenv("RANK", "1", 1); setenv("MASTER_ADDR", "127.0.0.1", 1); setenv("MASTER_PORT", "1", 1); setenv("NANOCHAT_RENDEZVOUS_TIMEOUT", "1", 1)
        XCTAssertThrowsError(try Distributed.start()) {
            XCTAssertTrue("\($0)".contains("torchrun's store at 127.0.0.1:1"), "\($0)")
        }
        setenv("RANK", "2", 1)
        XCTAssertThrowsError(try Distributed.start()) { XCTAssertTrue("\($0)".contains("do not fit together"), "\($0)") }
        setenv("WORLD_SIZE", "1", 1)
        XCTAssertEqual(try Distributed.start().worldSize, 1)
    }

    func testBitsPerByteCountsOnlyRealBytes() throws {
        let tok = try Tokenizer.load(from: try workspace.appendingPathComponent("tokenizer"))
        let model = try GPT(config: GPTConfig(sequence_len: 64, vocab_size: tok.vocabSize, n_layer: 1, n_head: 2, n_kv_head: 2, n_embd: 32,
                                              window_pattern: "L"))
        let loader = try BestFitLoader(tokenizer: tok, shards: ShardSet(directory: try workspace.appendingPathComponent("data"), split: "val"),
                                       batch: 2, seqLen: 64)
        let bpb = try evaluateBPB(model: model, loader: loader, steps: 2, tokenBytes: tok.tokenByteCounts)
        // an untrained model spreads probability evenly-ish: about ln(V) nats per token, over a few bytes each
        XCTAssertGreaterThan(bpb, 0.5)
        XCTAssertLessThan(bpb, 10)
    }

    func testLoaderRowsStartWithBOSAndExactResume() throws {
        let tok = try Tokenizer.load(from: try workspace.appendingPathComponent("tokenizer"))
        let shards = try ShardSet(directory: try workspace.appendingPathComponent("data"), split: "train")
        let a = try BestFitLoader(tokenizer: tok, shards: shards, batch: 3, seqLen: 48, bufferSize: 50)
        for _ in 0..<3 { _ = try a.next() }
        let saved = a.exactState
        let expected = try (0..<3).map { _ in try a.next() }
        let b = try BestFitLoader(tokenizer: tok, shards: shards, batch: 3, seqLen: 48, exact: saved, bufferSize: 50)
        for e in expected {
            let got = try b.next()
            XCTAssertEqual(got.inputs, e.inputs)
            XCTAssertEqual(got.targets, e.targets)
            for r in 0..<3 { XCTAssertEqual(Int(got.inputs[r * 48]), tok.bosID) }
            XCTAssertEqual(Array(got.inputs[1..<48]), Array(got.targets[0..<47]))
        }
        // two ranks read disjoint row groups
        let r0 = try BestFitLoader(tokenizer: tok, shards: shards, batch: 1, seqLen: 48, rank: 0, worldSize: 2, bufferSize: 4)
        let r1 = try BestFitLoader(tokenizer: tok, shards: shards, batch: 1, seqLen: 48, rank: 1, worldSize: 2, bufferSize: 4)
        _ = try r0.next(); _ = try r1.next()
        XCTAssertEqual(r0.state.rg_idx, 0)
        XCTAssertEqual(r1.state.rg_idx, 1)
    }

    /// A file with fewer row groups than ranks: each row group is read in interleaved parts, so 3 ranks of one
    /// 1-group file read disjoint documents that together are the file, and a rank resumes exactly inside a part.
    func testSmallShardIsSplitAmongMoreRanksThanRowGroups() throws {
        let tok = try Tokenizer.load(from: try workspace.appendingPathComponent("tokenizer"))
        let dir = try temporaryDirectory()
        let docs = (0..<40).map { "document number \($0) says hello" }
        try (docs.map { "\"\($0)\"" }.joined(separator: "\n") + "\n").write(to: dir.appendingPathComponent("a.jsonl"), atomically: true, encoding: .utf8)
        let shards = ShardSet(files: [dir.appendingPathComponent("a.jsonl")])
        XCTAssertEqual(try shards.rowGroupCount(0), 1)
        var seen: [[Int]] = []
        for rank in 0..<3 {
            let l = try BestFitLoader(tokenizer: tok, shards: shards, batch: 1, seqLen: 16, rank: rank, worldSize: 3, bufferSize: 5)
            _ = try l.next()
            let read = l.exactState.buffer.map { $0[2] }
            // the buffered documents (after one row) are this rank's part: indices congruent to the rank mod 3
            XCTAssertFalse(read.isEmpty)
            XCTAssertTrue(read.allSatisfy { $0 % 3 == rank }, "rank \(rank) read \(read)")
            seen.append(read)
            // exact resume inside the part
            let saved = l.exactState
            let expected = try l.next()
            let again = try BestFitLoader(tokenizer: tok, shards: shards, batch: 1, seqLen: 16, rank: rank, worldSize: 3,
                                          exact: saved, bufferSize: 5)
            XCTAssertEqual(try again.next().inputs, expected.inputs)
        }
        XCTAssertEqual(Set(seen[0]).intersection(seen[1]).count, 0)
        XCTAssertEqual(Set(seen[1]).intersection(seen[2]).count, 0)
        // fewer documents than ranks: the rank with nothing to read is told so instead of spinning
        try "\"only one\"\n".write(to: dir.appendingPathComponent("b.jsonl"), atomically: true, encoding: .utf8)
        let tiny = ShardSet(files: [dir.appendingPathComponent("b.jsonl")])
        let starved = try BestFitLoader(tokenizer: tok, shards: tiny, batch: 1, seqLen: 16, rank: 1, worldSize: 2, bufferSize: 5)
        XCTAssertThrowsError(try starved.next()) { XCTAssertTrue("\($0)".contains("has nothing to read"), "\($0)") }
    }

    /// Data kept elsewhere and linked in: a shard folder that is a symbolic link, and a link to a folder or a
    /// file inside a folder, are read like the real thing (tok-train, base-train and the loaders list files
    /// through the same code).
    func testShardFolderThatIsASymbolicLinkIsRead() throws {
        let ws = try workspace
        let base = try temporaryDirectory()
        let link = base.appendingPathComponent("base_data_climbmix")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: ws.appendingPathComponent("data"))
        let direct = try ShardSet(directory: ws.appendingPathComponent("data"), split: "train").files.map(\.lastPathComponent)
        XCTAssertEqual(try ShardSet(directory: link, split: "train").files.map(\.lastPathComponent), direct)
        XCTAssertEqual(try ShardSet(directory: link, split: "val").files.map(\.lastPathComponent), ["shard_00001.jsonl"])
        // links inside a folder: to a folder of text, to a file, and a loop back to the folder itself
        let mixed = base.appendingPathComponent("mixed")
        try FileManager.default.createDirectory(at: mixed, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: mixed.appendingPathComponent("a_shards"), withDestinationURL: link)
        try FileManager.default.createSymbolicLink(at: mixed.appendingPathComponent("b.jsonl"),
                                                   withDestinationURL: ws.appendingPathComponent("data/shard_00001.jsonl"))
        try FileManager.default.createSymbolicLink(at: mixed.appendingPathComponent("c_loop"), withDestinationURL: mixed)
        let docs = try TextDocuments(paths: [mixed])
        XCTAssertEqual(docs.files.map(\.lastPathComponent), ["shard_00000.jsonl", "shard_00001.jsonl", "b.jsonl"])
        var count = 0
        try docs.forEach { _ in count += 1; return true }
        XCTAssertEqual(count, 1700 + 200)
    }
}
