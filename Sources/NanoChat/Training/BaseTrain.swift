import ArgumentParser
import Foundation
import NanoTensor

/// `base-train`'s flags, with upstream's names and defaults, written once: the command line fills this struct
/// (`nanochat base-train --help`), training reads it, and `userConfig` records it in every checkpoint.
/// From Swift: `try BaseTrainOptions.parse(["--depth", "4"])`, then change fields as needed.
public struct BaseTrainOptions: ParsableArguments {
    @OptionGroup public var runName: RunName
    @Flag(help: "FP8 products (upstream: H100 and newer). Not in our CUDA library yet: the run says so and trains with --gpu-precision; on a CPU it is ignored, as upstream ignores it.") public var fp8 = false
    @Option(help: "FP8 scaling recipe: tensorwise or rowwise (with --fp8).") public var fp8Recipe: FP8Recipe = .tensorwise
    @Option(parsing: .unconditional, help: "Depth of the Transformer: the one knob every other size follows from.") public var depth = 20
    @Option(parsing: .unconditional, help: "model_dim = depth * aspect-ratio, rounded up to a multiple of head-dim.") public var aspectRatio = 64
    @Option(parsing: .unconditional, help: "Target head dimension for attention.") public var headDim = 128
    @Option(parsing: .unconditional, help: "Max context length (tokens per row).") public var maxSeqLen = 2048
    @Option(help: "Sliding-window pattern tiled over layers: L = full context, S = quarter context (rounded up to 128); the last layer is always L.") public var windowPattern = "SSSL"
    @Option(parsing: .unconditional, help: "Explicit number of optimization steps (-1 = derive).") public var numIterations = -1
    @Option(parsing: .unconditional, help: "Compute budget in FLOPs to derive the number of steps from (-1 = off).") public var targetFlops = -1.0
    @Option(parsing: .unconditional, help: "Tokens per scaling parameter for the horizon (Chinchilla-style ratio).") public var targetParamDataRatio = 12.0
    @Option(parsing: .unconditional, help: "Rows per forward/backward pass.") public var deviceBatchSize = 32
    @Option(parsing: .unconditional, help: "Tokens per optimizer step (-1 = derived from the depth).") public var totalBatchSize = -1
    @Option(parsing: .unconditional, help: "AdamW learning rate of the embedding tables.") public var embeddingLR = 0.3
    @Option(parsing: .unconditional, help: "AdamW learning rate of lm_head.") public var unembeddingLR = 0.008
    @Option(parsing: .unconditional, help: "Muon learning rate of the matrices.") public var matrixLR = 0.02
    @Option(parsing: .unconditional, help: "AdamW learning rate of the scalar parameters.") public var scalarLR = 0.5
    @Option(parsing: .unconditional, help: "Muon weight decay at the reference size (scaled with batch and horizon, cosine to zero).") public var weightDecay = 0.28
    @Option(parsing: .unconditional, help: "Linear LR warmup steps.") public var warmupSteps = 40
    @Option(parsing: .unconditional, help: "Fraction of the run spent in the final linear LR decay.") public var warmdownRatio = 0.65
    @Option(parsing: .unconditional, help: "Final LR as a fraction of the initial LR.") public var finalLRFrac = 0.05
    @Option(parsing: .unconditional, help: "Resume from this step's checkpoint (-1 = start fresh).") public var resumeFromStep = -1
    @Option(parsing: .unconditional, help: "Evaluate validation bits per byte every N steps and at the end (-1 = never).") public var evalEvery = 250
    @Option(parsing: .unconditional, help: "Tokens of validation data per evaluation.") public var evalTokens = 80 * 524_288
    @Option(parsing: .unconditional, help: "Score CORE every N steps (step > 0) and at the end (-1 = never); needs the task bundle (`nanochat dataset tasks`).") public var coreMetricEvery = 2000
    @Option(parsing: .unconditional, help: "CORE during training: examples per task (-1 = all).") public var coreMetricMaxPerTask = 500
    @Option(parsing: .unconditional, help: "Print samples every N steps and at the end (-1 = never).") public var sampleEvery = 2000
    @Option(parsing: .unconditional, help: "Save a checkpoint every N steps (-1 = only at the end).") public var saveEvery = -1
    @Option(help: "Checkpoint directory name (default d<depth>).") public var modelTag: String?
    @Option(help: "Shard directory (default $NANOCHAT_BASE_DIR/base_data_climbmix).") public var dataDir: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") public var tokenizerDir: String?
    @Option(help: "Where checkpoints and the metrics log go (default $NANOCHAT_BASE_DIR/base_checkpoints/<model-tag>).") public var checkpointDir: String?
    @Option(help: "Seed of the weight initialisation.") public var seed: UInt64 = 42
    @OptionGroup public var device: DeviceFlags

    public init() {}

    /// Every flag by upstream's snake_case name (as upstream's meta `user_config`), values as text.
    public var userConfig: [String: String] { flagValues(self) }

    /// Upstream's optimizer for these flags: `setupOptimizer` with each learning rate times the plan's batch LR
    /// scale, and the plan's weight decay.
    public func optimizer(for model: GPT, plan: DepthPlan, comm: Communicator = SingleProcess()) throws -> MuonAdamW {
        let s = plan.batchLRScale
        return try model.setupOptimizer(unembeddingLR: unembeddingLR * s, embeddingLR: embeddingLR * s,
                                        matrixLR: matrixLR * s, weightDecay: plan.weightDecay, scalarLR: scalarLR * s, comm: comm)
    }

    /// Sets the optimizer's hyperparameters for `step` of the plan's run (warmup, warmdown, Muon momentum and
    /// weight decay); returns the learning-rate multiplier.
    public func applySchedule(to optimizer: MuonAdamW, step: Int, plan: DepthPlan) -> Double {
        optimizer.applySchedule(step: step, total: plan.numIterations, warmup: warmupSteps, warmdownRatio: warmdownRatio,
                                finalFrac: finalLRFrac, muonWeightDecay: plan.weightDecay)
    }
}

/// `--fp8-recipe`: upstream's two FP8 scalings.
public enum FP8Recipe: String, ExpressibleByArgument, CaseIterable, Sendable { case tensorwise, rowwise }

/// Upstream's sampling prompts for base models.
public let baseSamplePrompts = [
    "The capital of France is", "The chemical symbol of gold is", "If yesterday was Friday, then tomorrow will be",
    "The opposite of hot is", "The planets of the solar system are:", "My favorite color is", "If 5*x + 3 = 13, then x is",
]

/// Pretraining (upstream's base_train): the loop from flags to optimizer steps, with evaluation, sampling, checkpoints and
/// a JSON Lines metrics log. `log` receives every console line (rank 0's; the other ranks stay quiet).
///
/// Data parallelism (`comm` with W ranks): each optimizer step is the same total batch, read in data lanes
/// (`Communicator.lanes`): lane l reads the shards as upstream's loader does for rank l of all lanes (row groups l,
/// l+L, ...), so W ranks with A accumulation steps see the batches one process with W·A accumulation steps sees.
///
/// On a GPU (`--device-type`) the same loop runs: the model's parameters and the optimizer's state move there, and
/// every op of the forward, the backward and the optimizer runs its device body. A step copies its inputs and targets
/// to the device and its loss back, nothing else (the report counts it).
public func baseTrain(_ o: BaseTrainOptions, comm: Communicator = SingleProcess(),
                      log: (String) -> Void) throws -> (finalLoss: Double, valBPB: Double?, losses: [Double]) {
    func say(_ line: String) { if comm.isMain { log(line) } }
    let world = comm.worldSize
    let tokenizer = try Tokenizer.load(from: o.tokenizerDir.map(directoryURL) ?? BaseDir.tokenizer)
    let vocab = tokenizer.vocabSize
    let dataDir = o.dataDir.map(directoryURL) ?? BaseDir.pretrainData
    let trainShards = try ShardSet(directory: dataDir, split: "train")
    let valShards = try ShardSet(directory: dataDir, split: "val")

    let plan = DepthPlan(o, vocabSize: vocab)
    let t = o.maxSeqLen
    let tokensPerMicro = o.deviceBatchSize * t
    guard plan.totalBatchSize % (tokensPerMicro * world) == 0 else {
        throw NanoChatError("total batch size \(plan.totalBatchSize) is not a multiple of device batch x seq len x ranks = \(o.deviceBatchSize) x \(t) x \(world) = \(tokensPerMicro * world); change --total-batch-size or --device-batch-size")
    }
    let gradAccum = plan.totalBatchSize / (tokensPerMicro * world)
    let n = plan.numIterations
    guard n > 0 else { throw NanoChatError("the run has \(n) iterations; set --num-iterations or a larger --target-param-data-ratio") }
    let tag = o.modelTag ?? "d\(o.depth)"
    let dir = o.checkpointDir.map(directoryURL) ?? CheckpointManager.directory(phase: "base", tag: tag)

    // model, optimizer, loader: fresh or resumed. Rank 0 reads the checkpoint and hands the meta and the weights to the
    // others, so only it needs the model file; every rank needs its own optimizer shard.
    var model = try GPT(config: plan.config, seed: o.seed)
    var startStep = 0
    var meta: CheckpointMeta? = nil
    if o.resumeFromStep >= 0 {
        var metaJSON = ""
        if comm.isMain {
            do {
                (model, meta) = try CheckpointManager.loadModel(directory: dir, step: o.resumeFromStep)
                metaJSON = String(decoding: try CheckpointManager.encodeMeta(meta!), as: UTF8.self)
            } catch {
                if world == 1 { throw error }
                say("error: \(error)")  // the others learn it from the empty meta below
            }
        }
        metaJSON = comm.broadcast(metaJSON)
        guard let decoded = try? JSONDecoder().decode(CheckpointMeta.self, from: Data(metaJSON.utf8)) else {
            throw NanoChatError("rank 0 could not load checkpoint \(dir.path) step \(o.resumeFromStep)")
        }
        meta = decoded
        if !comm.isMain { model = try GPT(config: decoded.model_config) }
        guard model.config == plan.config else {
            throw NanoChatError("checkpoint \(dir.path) step \(o.resumeFromStep) has model config \(model.config), the flags give \(plan.config)")
        }
        try CheckpointManager.checkWorldSize(decoded, directory: dir, comm: comm)
        startStep = o.resumeFromStep
    }
    comm.broadcastParameters(model)
    let device = try placeModel(model, o.device, comm: comm, say: say)
    let gpu = device.gpu
    let optimizer = try o.optimizer(for: model, plan: plan, comm: comm)
    if let meta { try CheckpointManager.loadOptimizer(optimizer, directory: dir, step: startStep, meta: meta) }
    let resumed = try comm.resumedLanes(meta?.loader_lanes, legacy: meta?.loader_exact, microSteps: gradAccum,
                                        checkpoint: "checkpoint \(dir.path) step \(startStep)")
    let loaders = try zip(comm.lanes(microSteps: gradAccum), resumed).map { lane, exact in
        PrefetchingLoader(try BestFitLoader(tokenizer: tokenizer, shards: trainShards, batch: o.deviceBatchSize, seqLen: t,
                                            rank: lane, worldSize: gradAccum * world, resume: meta?.dataloader_state_dict,
                                            exact: exact))
    }
    defer { loaders.forEach { $0.stop() } }
    let tokenBytes = tokenizer.tokenByteCounts
    // the job's peak: the GPU's bf16 rate, or every rank's CPU peak on the threads it has (its spec-sheet rate;
    // the sgemm rate measured here is printed beside it, as what the BLAS reaches of that peak on this machine now)
    let cpuPeak = CPUPeak.current(threads: Threading.workers)
    let peak = gpu != nil ? GPU.peakBF16FLOPS : comm.sum(cpuPeak.flops)
    let sgemm = gpu == nil ? comm.sum(measureSgemmGFLOPS() * 1e9) : 0
    let accumulator = GradientAccumulator(model: model, parts: gradAccum)

    say("model d\(o.depth): n_embd \(plan.config.n_embd), heads \(plan.config.n_head), head dim \(plan.config.headDim), windows \(model.windows), vocab \(vocab)")
    say(String(format: "parameters %d (scaling %d), %.3e FLOPs/token; batch %d tokens = %d x %d x %d accumulation steps x %d rank(s); %d iterations",
               plan.params.total, plan.scalingParams, Double(plan.flopsPerToken), plan.totalBatchSize, o.deviceBatchSize, t, gradAccum, world, n))
    if gpu != nil {
        say("device: \(device.description) (MFU against \(String(format: "%.0f", peak / 1e12)) TFLOP/s)")
    } else {
        say("CPU: \(CPUInfo.current.description); our kernels \(ourKernelSet); \(OpenBLASCore.description)")
        say("CPU peak: \(cpuPeak.description) per rank, \(world) rank(s) (MFU is reported against the peak)")
        say(String(format: "sgemm: %.1f GFLOP/s measured over %d rank(s) of %d thread(s), %.0f%% of the peak", sgemm / 1e9, world, Threading.workers, 100 * sgemm / peak))
    }
    if o.fp8 {
        say(gpu == nil ? "warning: FP8 training requires CUDA; ignoring --fp8 (as upstream does on a CPU)"
                       : "warning: --fp8: our CUDA library has no FP8 products yet; training with --gpu-precision \(o.device.gpuPrecision.rawValue)")
    }
    // CORE during training (--core-metric-every): the task bundle is read once here; without one in the default
    // place the run says so and trains on
    var coreBundle: EvalBundle? = nil
    if o.coreMetricEvery > 0 {
        let dir = EvalBundle.defaultDirectory
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("core.yaml").path) {
            coreBundle = try EvalBundle(directory: dir)
        } else {
            say("CORE during training: not scored, no task bundle at \(dir.path) (`nanochat dataset tasks` makes one; --core-metric-every -1 turns this off)")
        }
    }
    let traffic = DeviceTraffic(gpu)
    let stepLossSum = StepLoss(gpu)

    let run = try TrainingRun(directory: dir, startStep: startStep, resumed: meta, saveEvery: o.saveEvery, name: o.runName, comm: comm)
    var losses: [Double] = []
    var lastLoss = Double.nan

    for step in startStep...n {
        let last = step == n
        if o.evalEvery > 0 && (last || step % o.evalEvery == 0) {
            let evalSteps = max(1, o.evalTokens / tokensPerMicro)
            let valLoader = try BestFitLoader(tokenizer: tokenizer, shards: valShards, batch: o.deviceBatchSize, seqLen: t)
            let bpb = try evaluateBPB(model: model, loader: valLoader, steps: evalSteps, tokenBytes: tokenBytes, comm: comm)
            run.recordValidation(bpb, step: step)
            say(String(format: "step %05d | val bpb %.4f", step, bpb))
        }
        if let coreBundle, last || (step > 0 && step % o.coreMetricEvery == 0) {
            var results: [CoreEval.TaskResult] = []
            for task in coreBundle.tasks {
                results.append(try CoreEval.evaluate(model: model, tokenizer: tokenizer, task: task, items: try coreBundle.items(for: task),
                                                     maxPerTask: o.coreMetricMaxPerTask, comm: comm))
            }
            let core = CoreEval.core(results)
            say(String(format: "Step %05d | CORE metric: %.4f", step, core))
            run.metrics?.write(["step": step, "core_metric": core,
                                "centered_results": Dictionary(uniqueKeysWithValues: results.map { ($0.label, $0.centered) })])
        }
        if comm.isMain && o.sampleEvery > 0 && (last || (step > 0 && step % o.sampleEvery == 0)) {
            for prompt in baseSamplePrompts {
                let ids = [tokenizer.bosID] + tokenizer.encode(prompt)
                let out = model.generate(ids, maxTokens: 16)
                say("sample: \(prompt)\((try? tokenizer.decode(out)) ?? "")")
            }
        }
        if run.shouldSave(step: step, last: last) {
            let lanePositions = try comm.gatherLanes(loaders.map(\.consumedState))
            var m = CheckpointMeta(step: step, val_bpb: run.valBPB, model_config: model.config, user_config: o.userConfig,
                                   device_batch_size: o.deviceBatchSize, max_seq_len: t, total_batch_size: plan.totalBatchSize,
                                   dataloader_state_dict: loaders[0].consumedApproximate, loop_state: run.loopState, stage: "base")
            m.loader_lanes = lanePositions
            try CheckpointManager.save(directory: dir, step: step, model: model, optimizer: optimizer, meta: m, comm: comm)
            say("saved checkpoint \(dir.path) step \(step)")
        }
        if last { break }

        // one optimizer step: gradAccum micro-batches on each rank, each loss scaled by 1/gradAccum; the optimizer
        // averages the gradients over the ranks
        let t0 = DispatchTime.now().uptimeNanoseconds
        traffic.stepStarts()
        var dataWait = 0.0
        for micro in 0..<gradAccum {
            let batch = try loaders[micro].next()
            dataWait += loaders[micro].lastWait
            traffic.forwardStarts()
            let loss = model.forward(batch.inputs, batch: o.deviceBatchSize, time: t, targets: batch.targets)
            traffic.forwardEnds(tokens: o.deviceBatchSize * t, width: model.config.n_embd, layers: model.config.n_layer)
            stepLossSum.add(loss, over: gradAccum)
            loss.backward(seed: 1 / Float(gradAccum), leafDone: accumulator.overlapHook(optimizer, lastPart: micro == gradAccum - 1))
            accumulator.collect()
        }
        let lrm = o.applySchedule(to: optimizer, step: step, plan: plan)
        accumulator.install()
        optimizer.step()
        model.zeroGrad()
        var stepLoss = stepLossSum.take()
        traffic.stepEnds()
        stepLoss = comm.sum(stepLoss) / Double(world)
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        guard stepLoss.isFinite else {
            throw NanoChatError("the loss became \(stepLoss) at step \(step); lower the learning rates")
        }
        lastLoss = stepLoss
        losses.append(stepLoss)
        let debiased = run.recordStep(step, loss: stepLoss, seconds: dt)
        let totalTime = run.totalTime
        let tps = Double(plan.totalBatchSize) / dt
        let flops = Double(plan.flopsPerToken) * Double(plan.totalBatchSize) / dt
        let timedSteps = step - 10
        let eta: Double? = timedSteps > 0 ? totalTime / Double(timedSteps) * Double(n - step - 1) : nil
        let pct = 100 * Double(step + 1) / Double(n)
        // collectives: the time they cost this rank (starting them, waiting for what the backward did not hide) and the
        // share of the bytes whose reduction started inside the backward
        let comms = optimizer.transport != nil
            ? String(format: " | comm: %.1fms, %.0f%% overlapped", optimizer.lastCommunicationSeconds * 1000,
                     100 * Double(optimizer.lastBytesStartedInBackward) / Double(max(optimizer.lastCommunicationBytes, 1))) : ""
        say(String(format: "step %05d/%05d (%.2f%%) | loss: %.6f | lrm: %.2f | dt: %.2fms | data wait: %.1fms%@ | tok/sec: %@ | mfu: %.2f | epoch: %d | total time: %.2fm%@",
                   step + 1, n, pct, debiased, lrm, dt * 1000, dataWait * 1000, comms, formatThousands(Int(tps)), 100 * flops / peak,
                   loaders[0].consumedApproximate.epoch, totalTime / 60, eta.map { String(format: " | eta: %.1fm", $0 / 60) } ?? ""))
        run.metrics?.write(["step": step + 1, "loss": stepLoss, "smooth_loss": debiased, "lrm": lrm, "dt": dt, "tok_per_sec": tps,
                        "mfu": 100 * flops / peak, "flops_per_sec": flops, "data_wait": dataWait,
                        "comm_seconds": optimizer.lastCommunicationSeconds, "comm_bytes": optimizer.lastCommunicationBytes,
                        "comm_bytes_in_backward": optimizer.lastBytesStartedInBackward, "epoch": loaders[0].consumedApproximate.epoch]
                        .merging(traffic.peakMemoryGB.map { ["peak_device_memory_gb": $0] } ?? [:]) { a, _ in a })
    }
    traffic.report().forEach(say)
    if let nccl = device.gpu?.nccl { say(nccl.summary) }
    if comm.isMain {
        try Report.log(section: "Base model training", arguments: o.userConfig, data: [
            ("Number of parameters", formatThousands(plan.params.total)), ("Scaling parameters", formatThousands(plan.scalingParams)),
            ("FLOPs per token", String(format: "%.3e", Double(plan.flopsPerToken))), ("Iterations", "\(n)"),
            ("Ranks", "\(world)"),
            ("Training tokens", formatThousands(n * plan.totalBatchSize)),
            ("Tokens : scaling params ratio", String(format: "%.2f", Double(n * plan.totalBatchSize) / Double(max(plan.scalingParams, 1)))),
            ("Minimum validation bpb", run.minValBPB.map { String(format: "%.4f", $0) } ?? "-"),
            ("Final validation bpb", run.valBPB.map { String(format: "%.4f", $0) } ?? "-"),
            ("Final training loss", String(format: "%.4f", lastLoss)),
            ("Training time", String(format: "%.2fm", run.totalTime / 60)),
            ("Total FLOPs", String(format: "%.3e", Double(plan.flopsPerToken) * Double(n * plan.totalBatchSize)))])
    }
    return (lastLoss, run.valBPB, losses)
}

public func formatThousands(_ v: Int) -> String {
    let s = String(v)
    var out = ""
    for (i, ch) in s.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(ch)
    }
    return String(out.reversed())
}
