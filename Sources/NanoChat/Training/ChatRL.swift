import ArgumentParser
import Foundation
import NanoTensor

/// `chat-rl` flags, upstream's names and defaults (chat_rl.py).
public struct ChatRLOptions: ParsableArguments {
    @OptionGroup public var runName: RunName
    @Option(name: [.customShort("i"), .customLong("source")], help: "Start from this model source: sft or mid.") public var source = "sft"
    @Option(help: "Tag of the model to start from (default: the largest d<N>); also the tag the result is saved under.") public var modelTag: String?
    @Option(parsing: .unconditional, help: "Step of the model to start from (default: its latest).") public var modelStep: Int?
    @Option(help: "Train task: gsm8k (upstream; needs `nanochat dataset tasks --online`) or arithmetic (offline; default when GSM8K train is absent).") public var task: String?
    @Option(parsing: .unconditional, help: "Epochs over the train task.") public var numEpochs = 1
    @Option(parsing: .unconditional, help: "Optimizer steps (-1: the epochs decide).") public var numIterations = -1
    @Option(parsing: .unconditional, help: "Samples per engine call and rows per forward/backward pass.") public var deviceBatchSize = 8
    @Option(parsing: .unconditional, help: "Questions per optimizer step.") public var examplesPerStep = 16
    @Option(parsing: .unconditional, help: "Samples per question (a multiple of the device batch size).") public var numSamples = 16
    @Option(parsing: .unconditional, help: "Max new tokens per sample.") public var maxNewTokens = 256
    @Option(parsing: .unconditional, help: "Sampling temperature.") public var temperature: Float = 1.0
    @Option(parsing: .unconditional, help: "Top-k for sampling (0: the whole vocabulary).") public var topK = 50
    @Option(parsing: .unconditional, help: "AdamW LR of the embeddings.") public var embeddingLR = 0.2
    @Option(parsing: .unconditional, help: "AdamW LR of lm_head.") public var unembeddingLR = 0.004
    @Option(parsing: .unconditional, help: "Muon LR of the matrices.") public var matrixLR = 0.02
    @Option(parsing: .unconditional, help: "AdamW LR of the scalars.") public var scalarLR = 0.5
    @Option(parsing: .unconditional, help: "Muon weight decay.") public var weightDecay = 0.0
    @Option(parsing: .unconditional, help: "Every LR times this at the start (then linear to zero).") public var initLRFrac = 0.05
    @Option(parsing: .unconditional, help: "Evaluate pass@k every N steps and at the end (-1: never).") public var evalEvery = 60
    @Option(parsing: .unconditional, help: "Held-out questions per evaluation.") public var evalExamples = 400
    @Option(parsing: .unconditional, help: "Save a checkpoint every N steps (step > 0) and at the end.") public var saveEvery = 60
    @Option(parsing: .unconditional, help: "Resume from this stage's checkpoint at this step (-1: start fresh).") public var resumeFromStep = -1
    @Option(help: "Task data directory (default $NANOCHAT_BASE_DIR/task_data).") public var taskData: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") public var tokenizerDir: String?
    @OptionGroup public var device: DeviceFlags

    public init() {}
    public var userConfig: [String: String] { flagValues(self) }
}

/// RL on math word problems, as upstream's chat_rl (simplified GRPO, on-policy REINFORCE): sample answers with the
/// engine (the calculator live), reward 1 when the `####` answer is right, advantage = reward − the mean reward of
/// the question's samples, and a token-level objective over the sampled tokens. No KL term, no ratio clipping, no
/// reference model.
public enum ChatRL {
    /// One question's rollouts made ready for training: rows right-padded with `<|assistant_end|>` to the longest,
    /// inputs = ids[:-1], targets = ids[1:] with -1 wherever the next token was not sampled (prompt, forced tool
    /// output, padding).
    public struct Rollout {
        public var inputs: [Int32], targets: [Int32]
        public var rows: Int, time: Int
        public var advantages: [Float]
        public var rewards: [Float]
        public var meanLength: Double
    }

    public static func rollout(sequences: [[Int]], masks: [[Int]], rewards: [Float], pad: Int) -> Rollout {
        let longest = sequences.map(\.count).max() ?? 1
        let time = max(1, longest - 1)
        var inputs = [Int32](repeating: Int32(pad), count: sequences.count * time)
        var targets = [Int32](repeating: -1, count: sequences.count * time)
        for (r, (seq, mask)) in zip(sequences, masks).enumerated() {
            for t in 0..<time {
                inputs[r * time + t] = Int32(t < seq.count ? seq[t] : pad)
                if t + 1 < seq.count && mask[t + 1] == 1 { targets[r * time + t] = Int32(seq[t + 1]) }
            }
        }
        let mean = rewards.reduce(0, +) / Float(max(1, rewards.count))
        return Rollout(inputs: inputs, targets: targets, rows: sequences.count, time: time,
                       advantages: rewards.map { $0 - mean }, rewards: rewards,
                       meanLength: Double(sequences.map(\.count).reduce(0, +)) / Double(max(1, sequences.count)))
    }

    /// Accumulates the gradient of −objective for one question's rollout, `rowsPerPass` rows per forward and
    /// backward; the objective of a pass is `sum(logp * advantage) / (valid tokens in the pass * passes * questions)`.
    /// Returns the loss summed over passes.
    @discardableResult
    public static func accumulate(model: GPT, rollout r: Rollout, rowsPerPass: Int, questions: Int) -> Double {
        let passes = (r.rows + rowsPerPass - 1) / rowsPerPass
        var total = 0.0
        for p in 0..<passes {
            let lo = p * rowsPerPass, hi = min(r.rows, lo + rowsPerPass)
            let range = (lo * r.time)..<(hi * r.time)
            let targets = Array(r.targets[range])
            let valid = targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
            guard valid > 0 else { continue }
            var weights = [Float](repeating: 0, count: targets.count)
            for row in lo..<hi { for t in 0..<r.time { weights[(row - lo) * r.time + t] = r.advantages[row] } }
            let hidden = model.hiddenStates(Array(r.inputs[range]), batch: hi - lo, time: r.time)
            // −sum(adv * logp) = sum(adv * CE): the weighted cross-entropy
            let loss = LMHead.loss(hidden, model.lm_head, targets: targets, vocab: model.config.vocab_size, softcap: GPT.softcap,
                                   weights: weights, divisor: Float(valid * passes * questions))
            total += Double(loss.scalar)
            loss.backward()
        }
        return total
    }

    /// The train or evaluation problems: GSM8K (train/test) or the arithmetic problems, as (conversation, answer).
    public static func problems(task: String, split: String, root: URL) throws -> [(Conversation, String)] {
        guard ["gsm8k", "arithmetic"].contains(task) else { throw NanoChatError("--task must be gsm8k or arithmetic, got \(task)") }
        let t = try ConversationTasks.gsm8k(task, split: split, root: root)
        return try (0..<t.count).map { i in
            let c = t[i]
            guard case .parts(let parts)? = c.messages.last?.content, let last = parts.last(where: { $0.type == "text" }),
                  let answer = ChatTasks.extractAnswer(last.text) else {
                throw NanoChatError("\(task)/\(split) row \(i): the solution has no #### answer")
            }
            return (c, answer)
        }
    }

    /// pass@k for k = 1...samples over `problems` (the fraction with a right answer among their first k samples,
    /// as upstream), and the fraction of all samples that are right (the same expectation as pass@1, with
    /// `samples` times the draws, so a small held-out set still shows a change).
    public static func passAtK(engine: Engine, problems: [(Conversation, String)], samples: Int, maxTokens: Int,
                               temperature: Float, topK: Int, seed: UInt64,
                               comm: Communicator = SingleProcess()) throws -> (passAtK: [Double], sampleAccuracy: Double) {
        var hits = [Int](repeating: 0, count: samples), right = 0
        // rank r of W takes problems r, r+W, ...; the counts are summed across ranks
        for i in stride(from: comm.rank, to: problems.count, by: comm.worldSize) {
            let (conv, answer) = problems[i]
            let prompt = try engine.tokenizer.renderForCompletion(conv)
            let out = try engine.generateBatch(prompt, numSamples: samples, maxTokens: maxTokens, temperature: temperature,
                                               topK: topK > 0 ? topK : nil, seed: seed &+ UInt64(i))
            let ok = try out.sequences.map { ChatTasks.extractAnswer(try engine.tokenizer.decode(Array($0[prompt.count...]))) == answer }
            if let first = ok.firstIndex(of: true) { for k in first..<samples { hits[k] += 1 } }
            right += ok.filter { $0 }.count
        }
        let counts = comm.sum(hits.map(Double.init) + [Double(right)])
        return (counts.dropLast().map { $0 / Double(max(1, problems.count)) }, counts.last! / Double(max(1, problems.count * samples)))
    }
}

/// The RL loop: rollouts, rewards, advantages, one optimizer step per `examplesPerStep` questions, pass@k on
/// held-out problems, checkpoints, a metrics log and a report section.
/// With W ranks each rank rolls out questions e ≡ rank (mod W) of the step's `examplesPerStep`, and the optimizer
/// averages the gradients, so the step is the one a single process takes over all of them.
public func chatRL(_ o: ChatRLOptions, comm: Communicator = SingleProcess(), log: (String) -> Void) throws -> [Double] {
    func say(_ line: String) { if comm.isMain { log(line) } }
    let world = comm.worldSize
    guard ["sft", "mid"].contains(o.source) else { throw NanoChatError("chat-rl starts from sft or mid, not \(o.source) (-i)") }
    guard o.deviceBatchSize > 0, o.numSamples % o.deviceBatchSize == 0 else {
        throw NanoChatError("--num-samples \(o.numSamples) must be a multiple of --device-batch-size \(o.deviceBatchSize)")
    }
    guard o.examplesPerStep > 0, o.examplesPerStep % world == 0 else {
        throw NanoChatError("--examples-per-step \(o.examplesPerStep) must be a positive multiple of the number of ranks (\(world))")
    }
    let root = o.taskData.map(directoryURL) ?? TaskData.directory
    let task = o.task ?? (ConversationTasks.exists("gsm8k", "train", root) ? "gsm8k" : "arithmetic")
    let train = try ChatRL.problems(task: task, split: "train", root: root)
    let heldOut = try ChatRL.problems(task: task, split: "test", root: root)
    guard !train.isEmpty else { throw NanoChatError("\(task)/train has no problems; run `nanochat dataset tasks`") }
    let start = try CheckpointManager.loadModel(source: o.source, tag: o.modelTag, step: o.modelStep, fallbackToBase: false,
                                                tokenizerDir: o.tokenizerDir.map(directoryURL))
    var model = start.model
    let tokenizer = start.tokenizer
    let tag = o.modelTag ?? start.directory.lastPathComponent
    let dir = CheckpointManager.directory(phase: "chatrl", tag: tag)
    var startStep = 0
    var resumeMeta: CheckpointMeta? = nil
    if o.resumeFromStep >= 0 {
        (model, resumeMeta) = try CheckpointManager.loadModel(directory: dir, step: o.resumeFromStep)
        try CheckpointManager.checkWorldSize(resumeMeta!, directory: dir, comm: comm)
        startStep = o.resumeFromStep
    }
    comm.broadcastParameters(model)
    _ = try placeModel(model, o.device, comm: comm, say: say)
    let optimizer = try model.setupOptimizer(unembeddingLR: o.unembeddingLR, embeddingLR: o.embeddingLR, matrixLR: o.matrixLR,
                                             weightDecay: o.weightDecay, scalarLR: o.scalarLR, comm: comm)
    for i in optimizer.groups.indices {
        optimizer.groups[i].lr *= o.initLRFrac
        optimizer.groups[i].initialLR = optimizer.groups[i].lr
    }
    if let resumeMeta { try CheckpointManager.loadOptimizer(optimizer, directory: dir, step: startStep, meta: resumeMeta) }
    let numSteps = o.numIterations > 0 ? o.numIterations : (train.count / o.examplesPerStep) * o.numEpochs
    guard numSteps > 0 else { throw NanoChatError("no RL steps: \(train.count) problems / \(o.examplesPerStep) per step x \(o.numEpochs) epochs") }
    let engine = Engine(model: model, tokenizer: tokenizer)
    let pad = tokenizer.specialID("<|assistant_end|>") ?? tokenizer.bosID
    let evalSet = Array(heldOut.prefix(o.evalExamples))
    say("RL from \(o.source) \(start.label) on \(task): \(train.count) train problems, \(evalSet.count) held out; \(numSteps) steps of \(o.examplesPerStep) questions x \(o.numSamples) samples")

    let run = try TrainingRun(directory: dir, startStep: startStep, resumed: resumeMeta, saveEvery: o.saveEvery, name: o.runName, comm: comm)
    var passHistory: [(passAtK: [Double], sampleAccuracy: Double)] = []
    let started = Date()
    var rewardHistory: [Double] = []
    let accumulator = GradientAccumulator(model: model, parts: o.examplesPerStep / world)
    for step in startStep...numSteps {
        let last = step == numSteps
        if o.evalEvery > 0 && (last || step % o.evalEvery == 0) && !evalSet.isEmpty {
            let t0 = Date()
            let eval = try ChatRL.passAtK(engine: engine, problems: evalSet, samples: o.deviceBatchSize, maxTokens: o.maxNewTokens,
                                          temperature: o.temperature, topK: o.topK, seed: 1_000_000, comm: comm)
            passHistory.append(eval)
            say(String(format: "step %05d | ", step) + eval.passAtK.enumerated().map { String(format: "pass@%d: %.4f", $0 + 1, $1) }.joined(separator: ", ")
                + String(format: " | all samples: %.4f (%.1fs)", eval.sampleAccuracy, Date().timeIntervalSince(t0)))
            var m: [String: Any] = ["step": step, "sample_accuracy": eval.sampleAccuracy]
            for (k, v) in eval.passAtK.enumerated() { m["pass@\(k + 1)"] = v }
            run.metrics?.write(m)
        }
        if run.shouldSave(step: step, last: last) {
            var meta = CheckpointMeta(step: step, val_bpb: nil, model_config: model.config, user_config: o.userConfig,
                                      device_batch_size: o.deviceBatchSize, max_seq_len: start.meta.max_seq_len, total_batch_size: nil)
            meta.stage = "rl"
            try CheckpointManager.save(directory: dir, step: step, model: model, optimizer: optimizer, meta: meta, comm: comm)
            say("saved checkpoint \(dir.path) step \(step)")
        }
        if last { break }

        let t0 = DispatchTime.now().uptimeNanoseconds
        var rewards: [Float] = [], lengths: [Double] = []
        for e in stride(from: comm.rank, to: o.examplesPerStep, by: world) {
            let index = (step * o.examplesPerStep + e) % train.count
            let (conv, answer) = train[index]
            let prompt = try tokenizer.renderForCompletion(conv)
            var seqs: [[Int]] = [], masks: [[Int]] = []
            for call in 0..<(o.numSamples / o.deviceBatchSize) {
                // a distinct seed per (step, question, call), as upstream's hash((step, index, call))
                let seed = UInt64(truncatingIfNeeded: (step &* 1_000_003 &+ index) &* 8191 &+ call) & 0x7FFF_FFFF
                let out = try engine.generateBatch(prompt, numSamples: o.deviceBatchSize, maxTokens: o.maxNewTokens,
                                                   temperature: o.temperature, topK: o.topK > 0 ? o.topK : nil, seed: seed)
                seqs += out.sequences; masks += out.masks
            }
            let r = try seqs.map { ChatTasks.extractAnswer(try tokenizer.decode(Array($0[prompt.count...]))) == answer ? Float(1) : 0 }
            let rollout = ChatRL.rollout(sequences: seqs, masks: masks, rewards: r, pad: pad)
            ChatRL.accumulate(model: model, rollout: rollout, rowsPerPass: o.deviceBatchSize, questions: o.examplesPerStep / world)
            accumulator.collect()  // question by question, as the ranks' all-reduce sums them
            rewards += r
            lengths.append(rollout.meanLength)
        }
        accumulator.install()
        let lrm = 1 - Double(step) / Double(numSteps)
        for i in optimizer.groups.indices { optimizer.groups[i].lr = optimizer.groups[i].initialLR * lrm }
        optimizer.step()
        model.zeroGrad()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let sums = comm.sum([Double(rewards.reduce(0, +)), Double(rewards.count), lengths.reduce(0, +), Double(lengths.count)])
        let reward = sums[0] / max(1, sums[1])
        rewardHistory.append(reward)
        let meanLength = sums[2] / max(1, sums[3])
        say(String(format: "step %05d/%05d | reward: %.4f | sequence length: %.1f | lrm: %.3f | dt: %.2fs", step + 1, numSteps, reward, meanLength, lrm, dt))
        run.metrics?.write(["step": step + 1, "reward": reward, "sequence_length": meanLength, "lrm": lrm, "dt": dt])
    }
    var data: [(String, String)] = [("Source", "\(o.source) \(start.label)"), ("Task", task), ("Steps", "\(numSteps - startStep)"),
                                    ("Mean reward over the steps", String(format: "%.4f", rewardHistory.reduce(0, +) / Double(max(1, rewardHistory.count)))),
                                    ("Training time", String(format: "%.2fm", Date().timeIntervalSince(started) / 60))]
    if let first = passHistory.first, let end = passHistory.last, passHistory.count > 1 {
        let k = end.passAtK.count
        data += [("Held-out problems", "\(evalSet.count) x \(k) samples"),
                 ("Right samples before", String(format: "%.4f", first.sampleAccuracy)), ("Right samples after", String(format: "%.4f", end.sampleAccuracy)),
                 ("pass@1 before", String(format: "%.4f", first.passAtK[0])), ("pass@1 after", String(format: "%.4f", end.passAtK[0])),
                 ("pass@\(k) before", String(format: "%.4f", first.passAtK[k - 1])), ("pass@\(k) after", String(format: "%.4f", end.passAtK[k - 1]))]
    }
    if comm.isMain { try Report.log(section: "Chat RL", arguments: o.userConfig, data: data) }
    return passHistory.last?.passAtK ?? []
}
