import ArgumentParser
import Foundation
import NanoTensor

/// The two conversation-training stages. They share one loop and differ, as upstream's, in what they start from,
/// what they supervise and their defaults:
/// - mid-training (upstream's seed-era `mid_train`): from the base model, every token of the conversation trained
///   (only padding is ignored), a large mixture, LR constant to 80% then linear to zero;
/// - SFT (`chat_sft`): from mid (when present) or base, only the assistant's tokens trained, LR flat then a linear
///   warmdown over the last half, the base optimizer's momentum loaded.
public enum ChatStage: String, Sendable {
    case mid, sft
    /// The checkpoint folder prefix (`mid_checkpoints`, `chatsft_checkpoints`) and the model source name.
    public var phase: String { self == .mid ? "mid" : "chatsft" }
    public var title: String { self == .mid ? "Midtraining" : "Chat SFT" }
}

/// `mid-train` and `chat-sft` flags with upstream's names. A flag left unset takes the stage's upstream default
/// (named in its help) or, for the sizes and learning rates, the value the base checkpoint was trained with.
public struct ChatTrainOptions: ParsableArguments {
    @OptionGroup public var runName: RunName
    @Option(name: [.customShort("i"), .customLong("source")], help: "Start from this model source: base or mid (default: mid-train base; chat-sft mid when it exists, else base).") public var source: String?
    @Option(help: "Tag of the model to start from (default: the largest d<N>); also the tag the result is saved under.") public var modelTag: String?
    @Option(parsing: .unconditional, help: "Step of the model to start from (default: its latest).") public var modelStep: Int?
    @Option(parsing: .unconditional, help: "Load the starting checkpoint's optimizer state, 1 or 0 (default: chat-sft 1, mid-train 0).") public var loadOptimizer: Int?
    @Option(parsing: .unconditional, help: "Optimizer steps (-1: one epoch of the mixture).") public var numIterations = -1
    @Option(parsing: .unconditional, help: "Tokens per row (default: the checkpoint's).") public var maxSeqLen: Int?
    @Option(parsing: .unconditional, help: "Rows per forward/backward pass (default: the checkpoint's).") public var deviceBatchSize: Int?
    @Option(parsing: .unconditional, help: "Tokens per optimizer step (default: the checkpoint's).") public var totalBatchSize: Int?
    @Option(parsing: .unconditional, help: "AdamW LR of the embeddings (default: chat-sft the checkpoint's, mid-train 0.2), times sqrt(total batch / 524288) as in base-train.") public var embeddingLR: Double?
    @Option(parsing: .unconditional, help: "AdamW LR of lm_head (default: chat-sft the checkpoint's, mid-train 0.004), times sqrt(total batch / 524288) as in base-train.") public var unembeddingLR: Double?
    @Option(parsing: .unconditional, help: "Muon LR of the matrices (default: chat-sft the checkpoint's, mid-train 0.02), times sqrt(total batch / 524288) as in base-train.") public var matrixLR: Double?
    @Option(parsing: .unconditional, help: "AdamW LR of the scalars, times sqrt(total batch / 524288) as in base-train.") public var scalarLR = 0.5
    @Option(parsing: .unconditional, help: "Every LR times this at the start (default: chat-sft 0.8, mid-train 1.0).") public var initLRFrac: Double?
    @Option(parsing: .unconditional, help: "Fraction of progress spent warming up.") public var warmupRatio = 0.0
    @Option(parsing: .unconditional, help: "Fraction of progress spent in the final linear decay (default: chat-sft 0.5, mid-train 0.2).") public var warmdownRatio: Double?
    @Option(parsing: .unconditional, help: "Final LR as a fraction of the initial LR.") public var finalLRFrac = 0.0
    @Option(parsing: .unconditional, help: "Validation bits per byte every N steps and at the end (-1: never; default: chat-sft 200, mid-train 150).") public var evalEvery: Int?
    @Option(parsing: .unconditional, help: "Validation tokens per evaluation (default: chat-sft 40*524288, mid-train 20*524288).") public var evalTokens: Int?
    @Option(parsing: .unconditional, help: "ChatCORE every N steps (step > 0) and at the end (-1: only at the end, -2: never; default: chat-sft 200, mid-train -2).") public var chatcoreEvery: Int?
    @Option(parsing: .unconditional, help: "Problems per categorical task in ChatCORE (-1: all).") public var chatcoreMaxCat = -1
    @Option(parsing: .unconditional, help: "Problems per generative task in ChatCORE.") public var chatcoreMaxSample = 24
    @Option(parsing: .unconditional, help: "Times the multiple-choice train set is in the mixture (default: chat-sft 3, mid-train 1).") public var mmluEpochs: Int?
    @Option(parsing: .unconditional, help: "Times the math train set (GSM8K, or the arithmetic problems offline) is in the mixture (default: chat-sft 4, mid-train 1).") public var gsm8kEpochs: Int?
    @Option(parsing: .unconditional, help: "Times the identity conversations are in the mixture.") public var identityEpochs = 2
    @Option(parsing: .unconditional, help: "SpellingBee rows (default: chat-sft 300, mid-train 80000).") public var spellingBeeSize: Int?
    @Option(parsing: .unconditional, help: "SimpleSpelling rows (default: chat-sft 300, mid-train 200000).") public var simpleSpellingSize: Int?
    @Option(parsing: .unconditional, help: "At most this many rows of each general-chat, multiple-choice and math source (-1: all); a short CPU run uses it to keep the identity rows a visible share.") public var rowsPerTask = -1
    @Option(parsing: .unconditional, help: "Save a checkpoint every N steps (-1: only at the end).") public var saveEvery = -1
    @Option(parsing: .unconditional, help: "Resume this stage from its own checkpoint at this step (-1: start fresh).") public var resumeFromStep = -1
    @Option(help: "Task data directory (default $NANOCHAT_BASE_DIR/task_data).") public var taskData: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") public var tokenizerDir: String?
    @OptionGroup public var device: DeviceFlags

    public init() {}
    public var userConfig: [String: String] { flagValues(self) }
}

/// The training and validation mixtures of a stage (upstream's, with the offline substitutes where the upstream
/// source was not downloaded; see `ConversationTasks`).
public func chatMixtures(stage: ChatStage, options o: ChatTrainOptions, root: URL) throws -> (train: TaskMixture, val: TaskMixture) {
    let cap = o.rowsPerTask
    // the spelling tasks need Debian's word list; without it they are left out of the mixture (its summary shows it)
    let words = FileManager.default.fileExists(atPath: root.appendingPathComponent("words_alpha.txt").path) ? try SpellingBee.words(root: root) : []
    var general = try ConversationTasks.generalChat(split: "train", root: root)
    var valChat = try ConversationTasks.generalChat(split: "test", root: root)
    if valChat.isEmpty {
        // no test split offline: every 20th conversation of each chat source is held out for validation
        valChat = general.map { t in ConversationTask(name: t.name + " (held out)", count: t.count / 20) { t[$0 * 20 + 19] } }
        general = general.map { t in ConversationTask(name: t.name, count: t.count - t.count / 20, skipped: t.skipped) { t[$0 + $0 / 19] } }
    }
    let mc = try ConversationTasks.multipleChoiceTrain(root: root)
    let math = try ConversationTasks.mathTrain(root: root)
    let identity = try ConversationTasks.customJSON(ConversationTasks.identityFile, name: "identity")
    let mid = stage == .mid
    var train: [ConversationTask] = general.map { $0.prefix(cap) }
    for t in mc { train += t.prefix(cap).repeated(o.mmluEpochs ?? (mid ? 1 : 3)) }
    train += math.prefix(cap).repeated(o.gsm8kEpochs ?? (mid ? 1 : 4))
    train += identity.repeated(o.identityEpochs)
    if !words.isEmpty {
        train.append(ConversationTasks.simpleSpelling(size: o.simpleSpellingSize ?? (mid ? 200_000 : 300), words: words))
        train.append(ConversationTasks.spellingBee(size: o.spellingBeeSize ?? (mid ? 80_000 : 300), words: words))
    }
    train = train.filter { $0.count > 0 }
    // validation, as upstream: chat test, MMLU test (first 5200), GSM8K test (first 420)
    var val = valChat.map { $0.prefix(cap < 0 ? -1 : max(1, cap / 10)) }
    if ConversationTasks.exists("mmlu", "test", root) { val.append(try ConversationTasks.multipleChoice("mmlu", split: "test", root: root).prefix(5200)) }
    if ConversationTasks.exists("gsm8k", "test", root) { val.append(try ConversationTasks.gsm8k("gsm8k", split: "test", root: root).prefix(420)) }
    // with none of those sources, the generated arithmetic test problems still give a validation loss
    if val.allSatisfy({ $0.count == 0 }) && ConversationTasks.exists("arithmetic", "test", root) {
        val.append(try ConversationTasks.gsm8k("arithmetic", split: "test", root: root).prefix(420))
    }
    return (try TaskMixture(train), try TaskMixture(val.filter { $0.count > 0 }))
}

/// The model source a conversation stage starts from (-i, or its default), refusing one of the wrong kind.
public func startingSource(stage: ChatStage, options o: ChatTrainOptions) throws -> String {
    let allowed = stage == .mid ? ["base"] : ["base", "mid"]
    let source = o.source ?? (stage == .mid ? "base" : ((try? CheckpointManager.defaultTag(phase: "mid")) != nil ? "mid" : "base"))
    guard allowed.contains(source) else {
        throw NanoChatError("\(stage == .mid ? "mid-train" : "chat-sft") starts from \(allowed.joined(separator: " or ")), not \(source) (-i)")
    }
    return source
}

/// Loads the model a conversation stage starts from.
public func loadStartingModel(stage: ChatStage, options o: ChatTrainOptions) throws -> (LoadedModel, source: String) {
    let source = try startingSource(stage: stage, options: o)
    let loaded = try CheckpointManager.loadModel(source: source, tag: o.modelTag, step: o.modelStep, fallbackToBase: false,
                                                 tokenizerDir: o.tokenizerDir.map(directoryURL))
    return (loaded, source)
}

/// Mid-training or SFT: the loop from flags to optimizer steps, with validation bits per byte (supervised tokens
/// only), ChatCORE, checkpoints, a metrics log and a report section.
/// Data parallelism as base-train's: lane = micro-step · ranks + rank takes conversations lane, lane+L, ... of the
/// mixture (L lanes in all), so N ranks see the batches one process with N times the accumulation steps sees.
public func chatTrain(stage: ChatStage, _ o: ChatTrainOptions, comm: Communicator = SingleProcess(),
                      log: (String) -> Void) throws -> (valBPB: Double?, chatCORE: Double?) {
    func say(_ line: String) { if comm.isMain { log(line) } }
    let world = comm.worldSize
    let root = o.taskData.map(directoryURL) ?? TaskData.directory
    _ = try startingSource(stage: stage, options: o)  // a wrong -i fails before anything is read
    let (mixtures, (start, source)) = (try chatMixtures(stage: stage, options: o, root: root), try loadStartingModel(stage: stage, options: o))
    var model = start.model
    let tokenizer = start.tokenizer
    let baseMeta = start.meta
    let mid = stage == .mid
    let user = baseMeta.user_config
    // sizes and learning rates: the flag, else (SFT) the checkpoint's, else upstream's fallback
    let t = o.maxSeqLen ?? baseMeta.max_seq_len ?? 2048
    let batch = o.deviceBatchSize ?? baseMeta.device_batch_size ?? 32
    let totalBatch = o.totalBatchSize ?? baseMeta.total_batch_size ?? 524_288
    func inherited(_ flag: Double?, _ key: String, mid midDefault: Double, fallback: Double) -> Double {
        flag ?? (mid ? midDefault : user[key].flatMap(Double.init) ?? fallback)
    }
    // Learning rates are scaled by sqrt(total batch / 524288) as base-train scales them. Upstream reuses the raw
    // values, which is the same at its 524288-token batch; at a CPU run's few thousand tokens the raw values
    // are 10x too large and the loss diverges.
    let batchLRScale = (Double(totalBatch) / Double(DepthPlan.referenceBatch)).squareRoot()
    let embeddingLR = inherited(o.embeddingLR, "embedding_lr", mid: 0.2, fallback: 0.3) * batchLRScale
    let unembeddingLR = inherited(o.unembeddingLR, "unembedding_lr", mid: 0.004, fallback: 0.004) * batchLRScale
    let matrixLR = inherited(o.matrixLR, "matrix_lr", mid: 0.02, fallback: 0.02) * batchLRScale
    let initLRFrac = o.initLRFrac ?? (mid ? 1.0 : 0.8)
    let warmdownRatio = o.warmdownRatio ?? (mid ? 0.2 : 0.5)
    let evalEvery = o.evalEvery ?? (mid ? 150 : 200)
    let evalTokens = o.evalTokens ?? (mid ? 20 : 40) * 524_288
    let chatcoreEvery = o.chatcoreEvery ?? (mid ? -2 : 200)
    guard t <= model.config.sequence_len * 10 else {
        throw NanoChatError("--max-seq-len \(t) exceeds the model's \(model.config.sequence_len * 10) rotary positions")
    }
    let tokensPerMicro = batch * t
    guard totalBatch % (tokensPerMicro * world) == 0 else {
        throw NanoChatError("total batch size \(totalBatch) is not a multiple of device batch x seq len x ranks = \(batch) x \(t) x \(world) = \(tokensPerMicro * world); change --total-batch-size or --device-batch-size")
    }
    let gradAccum = totalBatch / (tokensPerMicro * world)
    let tag = o.modelTag ?? start.directory.lastPathComponent
    let dir = CheckpointManager.directory(phase: stage.phase, tag: tag)

    var startStep = 0
    var resumeMeta: CheckpointMeta? = nil
    if o.resumeFromStep >= 0 {
        (model, resumeMeta) = try CheckpointManager.loadModel(directory: dir, step: o.resumeFromStep)
        try CheckpointManager.checkWorldSize(resumeMeta!, directory: dir, comm: comm)
        startStep = o.resumeFromStep
    }
    comm.broadcastParameters(model)
    let device = try placeModel(model, o.device, comm: comm, say: say)
    let optimizer = try model.setupOptimizer(unembeddingLR: unembeddingLR, embeddingLR: embeddingLR, matrixLR: matrixLR,
                                             weightDecay: 0, scalarLR: o.scalarLR * batchLRScale, comm: comm)
    if let resumeMeta {
        try CheckpointManager.loadOptimizer(optimizer, directory: dir, step: startStep, meta: resumeMeta)
    } else if o.loadOptimizer ?? (mid ? 0 : 1) == 1 {
        // the momentum and Adam moments of the starting model; the learning rates stay the fresh ones
        do { try CheckpointManager.loadOptimizer(optimizer, directory: start.directory, step: start.step, meta: baseMeta) }
        catch { say("note: no optimizer state loaded (\(error)); starting with fresh moments") }
    }
    for i in optimizer.groups.indices {
        optimizer.groups[i].lr *= initLRFrac
        optimizer.groups[i].initialLR = optimizer.groups[i].lr
    }

    let resumed = try comm.resumedLanes(resumeMeta?.conversation_lanes, legacy: resumeMeta?.conversation_loader,
                                        microSteps: gradAccum, checkpoint: "checkpoint \(dir.path) step \(startStep)")
    let loaders = zip(comm.lanes(microSteps: gradAccum), resumed).map { lane, state in
        ConversationLoader(mixture: mixtures.train, tokenizer: tokenizer, batch: batch, seqLen: t,
                           supervision: mid ? .everything : .assistant, rank: lane, world: gradAccum * world, resume: state)
    }
    // how far through the mixture the run is: the furthest lane, agreed by every rank
    func mixtureProgress() -> Double { comm.max(loaders.map(\.progress).max()!) }
    let tokenBytes = tokenizer.tokenByteCounts
    let flopsPerToken = DepthPlan.flopsPerToken(model.config)
    // MFU against the GPU's bf16 peak or the CPU's spec-sheet peak, as base-train
    let peak = device.gpu != nil ? GPU.peakBF16FLOPS : comm.sum(CPUPeak.current(threads: Threading.workers).flops)
    let traffic = DeviceTraffic(device.gpu)
    let stepLossSum = StepLoss(device.gpu)
    let numIterations = o.numIterations
    say("\(stage.title) from \(source) \(start.label): \(model.config)")
    say("train mixture: \(mixtures.train.summary)")
    say("val mixture: \(mixtures.val.summary)")
    say(String(format: "batch %d tokens = %d x %d x %d accumulation steps; LRs (batch scale %.3f) embedding %.4g, unembedding %.4g, matrix %.4g, x %.2f; %@",
               totalBatch, batch, t, gradAccum, batchLRScale, embeddingLR, unembeddingLR, matrixLR, initLRFrac,
               numIterations > 0 ? "\(numIterations) iterations" : "one epoch of \(mixtures.train.count) conversations"))

    let run = try TrainingRun(directory: dir, startStep: startStep, resumed: resumeMeta, saveEvery: o.saveEvery, name: o.runName, comm: comm)

    func validationBPB() throws -> Double {
        let valLoader = ConversationLoader(mixture: mixtures.val, tokenizer: tokenizer, batch: batch, seqLen: t, supervision: .assistant)
        return try evaluateBPB(model: model, batch: batch, seqLen: t, steps: max(1, evalTokens / tokensPerMicro),
                               tokenBytes: tokenBytes, comm: comm) {
            try valLoader.next()
        }
    }
    func chatCORE() throws -> (Double, [ChatEval.TaskResult])? {
        var problems: [String: [ChatProblem]] = [:]
        for name in ChatEval.chatCORETasks {
            guard let all = try? ChatTasks.load(name, root: root) else { return nil }
            let cap = ChatTasks.categorical.contains(name) ? o.chatcoreMaxCat : o.chatcoreMaxSample
            problems[name] = cap < 0 ? all : Array(all.prefix(cap))
        }
        let results = try ChatEval.run(model: model, tokenizer: tokenizer, names: ChatEval.chatCORETasks, problems: problems, batch: batch,
                                       maxTokens: 512, comm: comm)
        return (ChatEval.chatCORE(results), results)
    }

    let accumulator = GradientAccumulator(model: model, parts: gradAccum)
    var lastChatCORE: Double? = nil
    var step = startStep
    var progress = numIterations > 0 ? Double(step) / Double(numIterations) : mixtureProgress()
    var valBPBBefore: Double? = nil  // the starting model's, the stage's baseline
    let started = Date()
    while true {
        let lastStep = numIterations > 0 ? step >= numIterations : mixtureProgress() >= 1
        if evalEvery > 0 && (lastStep || step % evalEvery == 0) {
            let bpb = try validationBPB()
            run.recordValidation(bpb, step: step)
            if step == 0 { valBPBBefore = bpb }
            say(String(format: "step %05d | validation bpb: %.4f", step, bpb))
        }
        if chatcoreEvery != -2 && (lastStep || (chatcoreEvery > 0 && step > 0 && step % chatcoreEvery == 0)) {
            if let (score, per) = try chatCORE() {
                lastChatCORE = score
                say(String(format: "step %05d | ChatCORE: %.4f | ", step, score) + per.map { String(format: "%@ %.4f", $0.task, $0.accuracy) }.joined(separator: " | "))
                var m: [String: Any] = ["step": step, "chatcore": score]
                for r in per { m["chat_\(r.task)"] = r.accuracy }
                run.metrics?.write(m)
            } else {
                say("ChatCORE skipped: the chat-evaluation tasks are missing (nanochat dataset tasks)")
            }
        }
        if run.shouldSave(step: step, last: lastStep) {
            var m = CheckpointMeta(step: step, val_bpb: run.valBPB, model_config: model.config, user_config: o.userConfig,
                                   device_batch_size: batch, max_seq_len: t, total_batch_size: totalBatch, loop_state: run.loopState)
            m.stage = stage.rawValue
            m.conversation_lanes = try comm.gatherLanes(loaders.map(\.state))
            m.conversation_loader = m.conversation_lanes![0]
            try CheckpointManager.save(directory: dir, step: step, model: model, optimizer: optimizer, meta: m, comm: comm)
            say("saved checkpoint \(dir.path) step \(step)")
        }
        if lastStep { break }

        let t0 = DispatchTime.now().uptimeNanoseconds
        traffic.stepStarts()
        // the step's batches first: the progress they make is agreed between ranks (a collective) before any gradient
        // reduction starts, as every rank must start collectives in one order
        let batches = try loaders.map { try $0.next() }
        progress = max(progress, numIterations > 0 ? Double(step + 1) / Double(numIterations) : mixtureProgress())
        for micro in 0..<gradAccum {
            let (x, y) = batches[micro]
            // a batch with no supervised token has no loss (the mean of nothing): it adds neither loss nor gradient
            if y.contains(where: { $0 >= 0 }) {
                let loss = model.forward(x, batch: batch, time: t, targets: y)
                stepLossSum.add(loss, over: gradAccum)
                loss.backward(seed: 1 / Float(gradAccum), leafDone: accumulator.overlapHook(optimizer, lastPart: micro == gradAccum - 1))
            }
            accumulator.collect()
        }
        accumulator.install()
        let lrm = ChatSchedule.lrMultiplier(progress: progress, warmupRatio: o.warmupRatio, warmdownRatio: warmdownRatio, finalFrac: o.finalLRFrac)
        for i in optimizer.groups.indices {
            optimizer.groups[i].lr = optimizer.groups[i].initialLR * lrm
            if optimizer.groups[i].kind == .muon { optimizer.groups[i].momentum = ChatSchedule.muonMomentum(step: step) }
        }
        optimizer.step()
        model.zeroGrad()
        var stepLoss = stepLossSum.take()
        traffic.stepEnds()
        stepLoss = comm.sum(stepLoss) / Double(world)
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard stepLoss.isFinite else { throw NanoChatError("the loss became \(stepLoss) at step \(step); lower the learning rates") }
        let debiased = run.recordStep(step, loss: stepLoss, seconds: dt)
        let tps = Double(totalBatch) / dt
        let mfu = 100 * Double(flopsPerToken) * Double(totalBatch) / dt / peak
        step += 1
        say(String(format: "step %05d (%.2f%%) | loss: %.6f | lrm: %.2f | dt: %.2fms | tok/sec: %@ | mfu: %.2f | epoch: %d | total time: %.2fm",
                   step, 100 * min(progress, 1), debiased, lrm, dt * 1000, formatThousands(Int(tps)), mfu, loaders[0].currentEpoch, run.totalTime / 60))
        run.metrics?.write(["step": step, "loss": stepLoss, "smooth_loss": debiased, "lrm": lrm, "dt": dt, "tok_per_sec": tps, "mfu": mfu,
                       "progress": progress, "epoch": loaders[0].currentEpoch, "comm_seconds": optimizer.lastCommunicationSeconds])
    }
    traffic.report().forEach(say)
    if let nccl = device.gpu?.nccl { say(nccl.summary) }
    let renderFailures = Int(comm.sum(Double(loaders.map(\.renderFailures).reduce(0, +))))
    if renderFailures > 0 { say("\(renderFailures) conversations could not be rendered and were skipped") }
    var section: [(String, String)] = [("Source", "\(source) \(start.label)"), ("Train mixture", mixtures.train.summary),
                                       ("Iterations", "\(step - startStep)"), ("Tokens per step", formatThousands(totalBatch)),
                                       ("Training time", String(format: "%.2fm", Date().timeIntervalSince(started) / 60))]
    if let b = valBPBBefore { section.append(("Validation bpb before", String(format: "%.4f", b))) }
    if let valBPB = run.valBPB { section.append(("Validation bpb", String(format: "%.4f", valBPB))) }
    if let minVal = run.minValBPB { section.append(("Minimum validation bpb", String(format: "%.4f", minVal))) }
    if let lastChatCORE { section.append(("ChatCORE", String(format: "%.4f", lastChatCORE))) }
    if comm.isMain { try Report.log(section: stage == .mid ? "Midtraining" : "Chat SFT", arguments: o.userConfig, data: section) }
    return (run.valBPB, lastChatCORE)
}

/// The schedules of the conversation stages (upstream's chat_sft): the LR multiplier over progress in [0, 1] and
/// Muon's momentum over steps.
public enum ChatSchedule {
    /// Warmup to 1 over `warmupRatio`, flat, then linear to `finalFrac` over the last `warmdownRatio`.
    public static func lrMultiplier(progress p: Double, warmupRatio: Double, warmdownRatio: Double, finalFrac: Double) -> Double {
        if p < warmupRatio { return (p + 1e-8) / warmupRatio }
        if p <= 1 - warmdownRatio { return 1 }
        let d = min(1, (p - (1 - warmdownRatio)) / warmdownRatio)
        return (1 - d) + d * finalFrac
    }

    /// 0.85 -> 0.95 linearly over the first 300 steps, then 0.95.
    public static func muonMomentum(step: Int) -> Double {
        let f = min(Double(step) / 300, 1)
        return (1 - f) * 0.85 + f * 0.95
    }
}
