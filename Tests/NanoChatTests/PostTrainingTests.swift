import Foundation
import NanoChat
import NanoTensor
import XCTest

final class PostTrainingTests: XCTestCase {
    /// Bytes plus nanochat's special tokens: every conversation renders.
    func byteTokenizer() throws -> Tokenizer {
        try Tokenizer(mergeable: (0..<256).map { [UInt8($0)] }, specialTokens: specialTokenNames)
    }

    func tinyModel(vocab: Int, seed: UInt64 = 3) throws -> GPT {
        try GPT(config: GPTConfig(sequence_len: 32, vocab_size: vocab, n_layer: 2, n_head: 2, n_kv_head: 2, n_embd: 32,
                                  window_pattern: "L"), seed: seed)
    }

    func conv(_ turns: String...) -> Conversation {
        Conversation(messages: turns.enumerated().map { ChatMessage(role: $0.offset % 2 == 0 ? "user" : "assistant", $0.element) })
    }

    // MARK: RL objective

    /// The RL loss as the formula states it, computed independently of `ChatRL.accumulate`: for each pass of rows,
    /// sum over supervised tokens of advantage * cross-entropy, divided by (supervised tokens in the pass * passes *
    /// questions); summed over passes. Double accumulation over per-token losses from a plain forward.
    func referenceRLLoss(_ model: GPT, _ r: ChatRL.Rollout, rowsPerPass: Int, questions: Int) -> Double {
        let passes = (r.rows + rowsPerPass - 1) / rowsPerPass
        var total = 0.0
        for p in 0..<passes {
            let lo = p * rowsPerPass, hi = min(r.rows, lo + rowsPerPass)
            let range = (lo * r.time)..<(hi * r.time)
            let targets = Array(r.targets[range])
            let ce = Tensor.withoutGrad {
                model.forward(Array(r.inputs[range]), batch: hi - lo, time: r.time, targets: targets, reduction: .none).array
            }
            let valid = targets.filter { $0 >= 0 }.count
            var s = 0.0
            for (i, t) in targets.enumerated() where t >= 0 { s += Double(r.advantages[lo + i / r.time]) * Double(ce[i]) }
            total += s / Double(valid * passes * questions)
        }
        return total
    }

    func testRLObjectiveGradientMatchesFiniteDifferences() throws {
        let model = try tinyModel(vocab: 265)
        // three samples of one question: prompt (mask 0), sampled tokens (1), one forced tool-output token (0)
        let prompt = [256, 257, 72, 105, 258, 259]
        let seqs = [prompt + [65, 66, 67, 68], prompt + [69, 70], prompt + [71, 72, 73, 74, 75, 76]]
        let masks = seqs.enumerated().map { i, s in [Int](repeating: 0, count: prompt.count) + (0..<(s.count - prompt.count)).map { j in i == 2 && j == 2 ? 0 : 1 } }
        let rollout = ChatRL.rollout(sequences: seqs, masks: masks, rewards: [1, 0, 1], pad: 260)
        XCTAssertEqual(rollout.advantages, [Float(1) - 2 / 3, -2 / 3, Float(1) - 2 / 3])
        XCTAssertEqual(rollout.time, seqs.map(\.count).max()! - 1)
        // targets: the next token only where it was sampled
        XCTAssertEqual(rollout.targets[0..<rollout.time].filter { $0 >= 0 }, [65, 66, 67, 68])
        XCTAssertEqual(rollout.targets[(2 * rollout.time)...].filter { $0 >= 0 }, [71, 72, 74, 75, 76])

        model.zeroGrad()
        let loss = ChatRL.accumulate(model: model, rollout: rollout, rowsPerPass: 2, questions: 2)
        XCTAssertEqual(loss, referenceRLLoss(model, rollout, rowsPerPass: 2, questions: 2), accuracy: 1e-5, "the loss value by hand")
        // central differences on elements of lm_head, a transformer matrix and the embedding
        var checked = 0
        for name in ["lm_head.weight", "transformer.h.0.attn.c_q.weight", "transformer.h.1.mlp.c_fc.weight", "transformer.wte.weight"] {
            let p = model.param(name)
            let g = p.grad!.array
            // the elements with the largest gradients, where float32 differences are well above rounding
            let top = g.indices.sorted { abs(g[$0]) > abs(g[$1]) }.prefix(3)
            for i in top {
                let eps: Float = 1e-2
                let old = p.data[i]
                p.data[i] = old + eps
                let up = referenceRLLoss(model, rollout, rowsPerPass: 2, questions: 2)
                p.data[i] = old - eps
                let down = referenceRLLoss(model, rollout, rowsPerPass: 2, questions: 2)
                p.data[i] = old
                let numeric = (up - down) / Double(2 * eps)
                XCTAssertEqual(Double(g[i]), numeric, accuracy: 0.03 * abs(numeric) + 2e-4, "\(name)[\(i)]")
                checked += 1
            }
        }
        XCTAssertEqual(checked, 12)
        // equal rewards: every advantage is zero, so is the gradient
        model.zeroGrad()
        ChatRL.accumulate(model: model, rollout: ChatRL.rollout(sequences: seqs, masks: masks, rewards: [1, 1, 1], pad: 260),
                          rowsPerPass: 2, questions: 1)
        XCTAssertEqual(model.param("lm_head.weight").grad.map { $0.array.map(abs).max()! } ?? 0, 0)
    }

    // MARK: conversation loader

    func testConversationLoaderPacksWholeConversationsAndMasks() throws {
        let tok = try byteTokenizer()
        let convs = [conv("hi", "hello!"), conv("2+2?", "4"), conv("name?", "nanochat", "size?", "small"), conv("a", "b")]
        let mixture = try TaskMixture([ConversationTask(name: "t", count: convs.count) { convs[$0] }])
        let rendered = try (0..<mixture.count).map { try tok.renderConversation(mixture[$0]) }
        let seqLen = 40
        let loader = ConversationLoader(mixture: mixture, tokenizer: tok, batch: 3, seqLen: seqLen, supervision: .assistant)
        let (x, y) = try loader.next()
        let bos = Int32(tok.bosID)
        for b in 0..<3 {
            let row = Array(x[(b * seqLen)..<((b + 1) * seqLen)]), tgt = Array(y[(b * seqLen)..<((b + 1) * seqLen)])
            XCTAssertEqual(row[0], bos, "every row starts with a conversation's BOS")
            // the row is whole conversations back to back, then BOS padding
            var t = 0
            while t < seqLen, let r = rendered.first(where: { r in t + r.ids.count <= seqLen + 1 && r.ids.count > 0
                && zip(r.ids.prefix(seqLen - t), row[t...]).allSatisfy { Int32($0) == $1 } && row[t] == bos }) {
                // supervised targets are exactly the masked tokens of this conversation
                for k in 0..<min(r.ids.count - 1, seqLen - t - 1) {
                    XCTAssertEqual(tgt[t + k], r.mask[k + 1] == 1 ? Int32(r.ids[k + 1]) : -1, "row \(b) position \(t + k)")
                }
                t += r.ids.count
            }
            XCTAssertTrue(row[min(t, seqLen)...].allSatisfy { $0 == bos }, "row \(b): only padding after the conversations")
            XCTAssertTrue(tgt[max(0, min(t, seqLen) - 1)...].allSatisfy { $0 == -1 }, "row \(b): padding is never a target")
        }
        // mid-training supervises every token but the padding
        let all = ConversationLoader(mixture: mixture, tokenizer: tok, batch: 1, seqLen: seqLen, supervision: .everything)
        let (x2, y2) = try all.next()
        let content = rendered.first { r in zip(r.ids, x2).allSatisfy { Int32($0) == $1 } }!.ids.count
        XCTAssertTrue(y2[0..<(content - 1)].allSatisfy { $0 >= 0 })
        // resuming from a saved state gives the same next batch
        let a = ConversationLoader(mixture: mixture, tokenizer: tok, batch: 2, seqLen: 16, supervision: .assistant)
        _ = try a.next()
        let b = ConversationLoader(mixture: mixture, tokenizer: tok, batch: 2, seqLen: 16, supervision: .assistant, resume: a.state)
        let (ax, ay) = try a.next(), (bx, by) = try b.next()
        XCTAssertEqual(ax, bx); XCTAssertEqual(ay, by)
    }

    // MARK: tasks and mixtures

    func testConversationFormatChecksAndMixture() throws {
        XCTAssertNotNil(ConversationTasks.validated(conv("q", "a").messages))
        XCTAssertNil(ConversationTasks.validated([ChatMessage(role: "assistant", "a"), ChatMessage(role: "user", "q")]), "must start with user")
        XCTAssertNil(ConversationTasks.validated([ChatMessage(role: "user", "q"), ChatMessage(role: "user", "q2")]), "must alternate")
        XCTAssertNil(ConversationTasks.validated(conv("q", "").messages), "empty content")
        XCTAssertEqual(ConversationTasks.validated(conv("q", "a", "trailing").messages)?.messages.count, 2, "a trailing user turn is dropped")
        XCTAssertNotNil(ConversationTasks.validated([ChatMessage(role: "system", "be brief")] + conv("q", "a").messages))

        let root = FileManager.default.temporaryDirectory.appendingPathComponent("posttrain-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var good = TaskExample(id: "1", kind: "chat"); good.messages = [["role": "user", "content": "hi"], ["role": "assistant", "content": "hello"]]
        var bad = TaskExample(id: "2", kind: "chat"); bad.messages = [["role": "assistant", "content": "hello"], ["role": "assistant", "content": "x"]]
        try TaskData.write([good, bad, good], task: "chatty", split: "train", to: root)
        let chat = try ConversationTasks.chat("chatty", root: root)
        XCTAssertEqual(chat.count, 2); XCTAssertEqual(chat.skipped, 1, "the broken row is skipped and counted")
        XCTAssertTrue(try TaskMixture([chat]).summary.contains("1 skipped"))

        // the mixture: every (task, row) once per listing, shuffled with random.Random(42)
        let t = ConversationTask(name: "n", count: 5) { self.conv("q\($0)", "a") }
        let mixture = try TaskMixture(t.repeated(2))
        XCTAssertEqual(mixture.count, 10)
        let firsts = (0..<10).map { i -> String in guard case .text(let s) = mixture[i].messages[0].content else { return "" }; return s }
        XCTAssertEqual(Dictionary(grouping: firsts, by: { $0 }).mapValues(\.count), ["q0": 2, "q1": 2, "q2": 2, "q3": 2, "q4": 2])
        XCTAssertNotEqual(firsts, (0..<10).map { "q\($0 % 5)" }, "shuffled")
        XCTAssertThrowsError(try TaskMixture([])) { XCTAssertTrue("\($0)".contains("mixture is empty")) }

        // CustomJSON: a broken line is refused with its line number
        let file = root.appendingPathComponent("custom.jsonl")
        try Data("[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]\n\n[{\"role\":\"assistant\",\"content\":\"x\"}]\n".utf8).write(to: file)
        XCTAssertThrowsError(try ConversationTasks.customJSON(file)) { XCTAssertTrue("\($0)".contains("line 3"), "\($0)") }

        // SimpleSpelling, as upstream's
        let spell = ConversationTasks.simpleSpelling(size: 3, words: ["cat", "horse", "apple", "zebra"])
        let c = spell[1]
        guard case .text(let q) = c.messages[0].content, case .text(let a) = c.messages[1].content else { return XCTFail() }
        let word = String(q.dropFirst("Spell the word: ".count))
        XCTAssertEqual(a, word + ":" + word.map(String.init).joined(separator: ","))
    }

    func testIdentityConversationsAreVariedValidAndDeterministic() throws {
        let facts = IdentityConversations.Facts(depth: 4, parameters: 37_000_000)
        let a = IdentityConversations.generate(count: 400, seed: 0, facts: facts)
        XCTAssertEqual(a, IdentityConversations.generate(count: 400, seed: 0, facts: facts), "the same for the same seed")
        XCTAssertNotEqual(a, IdentityConversations.generate(count: 400, seed: 1, facts: facts))
        XCTAssertTrue(a.allSatisfy { ConversationTasks.validated($0) != nil && $0.count % 2 == 0 })
        XCTAssertGreaterThan(Set(a.map { String(describing: $0) }).count, 300, "varied")
        let text = a.flatMap { $0 }.compactMap { m -> String? in if case .text(let s) = m.content { return s }; return nil }.joined(separator: "\n")
        XCTAssertTrue(text.contains("nanochat")); XCTAssertTrue(text.contains("depth-4")); XCTAssertTrue(text.contains("37 million"))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("identity-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: url) }
        try IdentityConversations.write(a, to: url)
        XCTAssertEqual(try ConversationTasks.customJSON(url).count, 400, "written in CustomJSON format and read back")
    }

    func testChatSchedules() {
        // SFT: flat, then linear to 0 over the last half
        XCTAssertEqual(ChatSchedule.lrMultiplier(progress: 0.3, warmupRatio: 0, warmdownRatio: 0.5, finalFrac: 0), 1)
        XCTAssertEqual(ChatSchedule.lrMultiplier(progress: 0.75, warmupRatio: 0, warmdownRatio: 0.5, finalFrac: 0), 0.5, accuracy: 1e-12)
        XCTAssertEqual(ChatSchedule.lrMultiplier(progress: 1, warmupRatio: 0, warmdownRatio: 0.5, finalFrac: 0.1), 0.1, accuracy: 1e-12)
        // mid-training: constant to 80%, then to zero
        XCTAssertEqual(ChatSchedule.lrMultiplier(progress: 0.9, warmupRatio: 0, warmdownRatio: 0.2, finalFrac: 0), 0.5, accuracy: 1e-12)
        XCTAssertEqual(ChatSchedule.lrMultiplier(progress: 0.05, warmupRatio: 0.1, warmdownRatio: 0.5, finalFrac: 0), 0.5, accuracy: 1e-6)
        XCTAssertEqual(ChatSchedule.muonMomentum(step: 0), 0.85); XCTAssertEqual(ChatSchedule.muonMomentum(step: 150), 0.9, accuracy: 1e-12)
        XCTAssertEqual(ChatSchedule.muonMomentum(step: 1000), 0.95)
    }

    // MARK: checkpoints of the wrong kind, and the report

    func withBaseDir(_ body: (URL) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nc-\(UUID().uuidString)", isDirectory: true)
        let old = ProcessInfo.processInfo.environment["NANOCHAT_BASE_DIR"]
        setenv("NANOCHAT_BASE_DIR", dir.path, 1)
        defer {
            if let old { setenv("NANOCHAT_BASE_DIR", old, 1) } else { unsetenv("NANOCHAT_BASE_DIR") }
            try? FileManager.default.removeItem(at: dir)
        }
        try body(dir)
    }

    func testWrongKindOfCheckpointIsRefused() throws {
        try withBaseDir { _ in
            let tok = try byteTokenizer()
            try tok.save(to: BaseDir.tokenizer)
            let model = try tinyModel(vocab: tok.vocabSize)
            var meta = CheckpointMeta(step: 1, val_bpb: nil, model_config: model.config, user_config: [:])
            meta.stage = "rl"
            try CheckpointManager.save(directory: CheckpointManager.directory(phase: "chatsft", tag: "d2"), step: 1, model: model,
                                       optimizer: nil, meta: meta)
            XCTAssertThrowsError(try CheckpointManager.loadModel(source: "sft")) {
                XCTAssertTrue("\($0)".contains("holds a rl checkpoint, not a sft one"), "\($0)")
            }
            XCTAssertThrowsError(try CheckpointManager.loadModel(source: "mid", fallbackToBase: false)) {
                XCTAssertTrue("\($0)".contains("no mid_checkpoints"), "\($0)")
            }
            var options = try ChatRLOptions.parse(["-i", "base"])
            options.numIterations = 1
            XCTAssertThrowsError(try chatRL(options) { _ in }) { XCTAssertTrue("\($0)".contains("starts from sft or mid"), "\($0)") }
            meta.stage = "sft"
            try CheckpointManager.save(directory: CheckpointManager.directory(phase: "chatsft", tag: "d2"), step: 1, model: model,
                                       optimizer: nil, meta: meta)
            XCTAssertEqual(try CheckpointManager.loadModel(source: "sft").step, 1)
        }
    }

    func testReportHasTheSummaryTableAndCharts() throws {
        try withBaseDir { dir in
            try Report.reset()
            try Report.log(section: "Base model evaluation", data: [("Model", "d4 step 60"), ("CORE", "0.0123")])
            try Report.log(section: "Chat evaluation sft", data: [("ARC-Easy", "0.3000"), ("GSM8K", "0.0500"), ("ChatCORE", "0.0400")])
            try Report.log(section: "Chat evaluation rl", data: [("GSM8K", "0.0800")])
            let metrics = dir.appendingPathComponent("chatsft_checkpoints/d4/metrics.jsonl")
            try FileManager.default.createDirectory(at: metrics.deletingLastPathComponent(), withIntermediateDirectories: true)
            let lines = (0..<20).map { "{\"step\":\($0),\"smooth_loss\":\(3.0 - Double($0) * 0.05),\"lrm\":1}" } + ["{\"step\":20,\"val_bpb\":1.5}"]
            try Data((lines.joined(separator: "\n") + "\n").utf8).write(to: metrics)
            let url = try Report.generate()
            let md = try String(contentsOf: url, encoding: .utf8)
            XCTAssertTrue(md.contains("| Metric | BASE | SFT | RL |"), md)
            XCTAssertTrue(md.contains("| CORE | 0.0123 | - | - |"))
            XCTAssertTrue(md.contains("| GSM8K | - | 0.0500 | 0.0800 |"))
            XCTAssertTrue(md.contains("![SFT: training loss"), "the SFT chart is linked")
            let svg = try Data(contentsOf: Report.directory.appendingPathComponent("chatsft-loss.svg"))
            let text = String(decoding: svg, as: UTF8.self)
            XCTAssertTrue(text.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\"") && text.hasSuffix("</svg>\n"))
            XCTAssertTrue(text.contains("<polyline"), "the loss curve is drawn")
            XCTAssertTrue(text.contains(">SFT: loss</text>"), "titled")
            let html = try String(contentsOf: Report.directory.appendingPathComponent("report.html"), encoding: .utf8)
            XCTAssertTrue(html.contains("<img src=\"chatsft-loss.svg\""))
            XCTAssertTrue(html.contains("<th>Metric</th>"))
        }
    }
}
