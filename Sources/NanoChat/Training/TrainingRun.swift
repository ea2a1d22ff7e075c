import Foundation
import NanoTensor

/// What every training loop (base, mid, SFT, RL) shares: its checkpoint folder and the step it starts from (a resume
/// or 0), the metrics log (trimmed to what came before a resume), the loop state a checkpoint carries (the smoothed
/// training loss, the training time, the latest and best validation bpb) and when to save. Each loop keeps what is
/// its own: its data, its evaluations, its step line.
final class TrainingRun {
    let directory: URL
    let startStep: Int
    let saveEvery: Int
    /// Rank 0's metrics log (nil on the other ranks).
    let metrics: MetricsLog?
    /// The exponential moving average of the step losses (0.9), not yet debiased.
    private(set) var smoothLoss: Double
    /// Seconds of training after the first 10 steps (upstream's total_training_time: compilation and warm-up excluded).
    private(set) var totalTime: Double
    private(set) var valBPB: Double?, minValBPB: Double?

    /// A run writing into `directory`, starting at `startStep`; `resumed` is the checkpoint meta of that step when
    /// the run resumes, whose loop state it carries on.
    init(directory: URL, startStep: Int, resumed: CheckpointMeta?, saveEvery: Int, name: RunName, comm: Communicator) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.directory = directory
        self.startStep = startStep
        self.saveEvery = saveEvery
        metrics = try MetricsLog.open(directory.appendingPathComponent("metrics.jsonl"), resumingAt: startStep, run: name.recorded, comm: comm)
        smoothLoss = resumed?.loop_state?.smooth_train_loss ?? 0
        totalTime = resumed?.loop_state?.total_training_time ?? 0
        minValBPB = resumed?.loop_state?.min_val_bpb
        valBPB = resumed?.val_bpb
    }

    /// A validation bpb at `step`: kept as the latest and the best, and logged.
    func recordValidation(_ bpb: Double, step: Int) {
        valBPB = bpb
        minValBPB = min(minValBPB ?? bpb, bpb)
        metrics?.write(["step": step, "val_bpb": bpb])
    }

    /// Step `step`'s loss and seconds: into the smoothed loss and the training time. Returns the smoothed loss,
    /// debiased (divided by 1 - 0.9^(step+1)) as upstream prints it.
    func recordStep(_ step: Int, loss: Double, seconds: Double) -> Double {
        smoothLoss = 0.9 * smoothLoss + 0.1 * loss
        if step > 10 { totalTime += seconds }
        return smoothLoss / (1 - pow(0.9, Double(step + 1)))
    }

    /// A checkpoint at the last step, and every `saveEvery` steps after the one the run started from.
    func shouldSave(step: Int, last: Bool) -> Bool { last || (saveEvery > 0 && step > startStep && step % saveEvery == 0) }

    /// What a checkpoint carries for the run to resume where it stopped.
    var loopState: CheckpointMeta.LoopState {
        .init(min_val_bpb: minValBPB, smooth_train_loss: smoothLoss, total_training_time: totalTime)
    }
}

/// Keeps the metrics of what happened before resuming at `keepBelow`: training lines up to that many completed
/// steps, evaluations before it (the resumed run evaluates step `keepBelow` again).
func trimMetrics(_ url: URL, keepBelow step: Int) throws {
    guard FileManager.default.fileExists(atPath: url.path) else { return }
    if step == 0 { try FileManager.default.removeItem(at: url); return }
    let lines = (try String(contentsOf: url, encoding: .utf8)).split(separator: "\n")
    let kept = lines.filter { line in
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let s = obj["step"] as? Int else { return false }
        return obj["val_bpb"] != nil || obj["core_metric"] != nil ? s < step : s <= step
    }
    try FileIO.writeAtomically(kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n"), to: url)
}

/// Appends one JSON object per line (flushed each time, so plots and the report card can read a live run).
public final class MetricsLog {
    /// A run's log at `url`, trimmed to what came before `startStep` (a resume), on rank 0; nil on the other ranks,
    /// which write nothing.
    static func open(_ url: URL, resumingAt startStep: Int, run: String?, comm: Communicator) throws -> MetricsLog? {
        guard comm.isMain else { return nil }
        try trimMetrics(url, keepBelow: startStep)
        return try MetricsLog(url: url, run: run)
    }

    let handle: FileHandle
    /// The run's name (`--run`), in every line when given.
    let run: String?
    public init(url: URL, run: String? = nil) throws {
        self.run = run
        if !FileManager.default.fileExists(atPath: url.path) { _ = FileManager.default.createFile(atPath: url.path, contents: nil) }
        guard let h = try? FileHandle(forWritingTo: url) else { throw NanoChatError("cannot write metrics log \(url.path)") }
        h.seekToEndOfFile()
        handle = h
    }
    public func write(_ obj: [String: Any]) {
        var o = obj
        o["time"] = Date().timeIntervalSince1970
        if let run { o["run"] = run }
        if let d = try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]) {
            handle.write(d + Data("\n".utf8))
        }
    }
    deinit { try? handle.close() }
}

/// Sums the micro-steps' gradients whole: each backward starts from empty gradients and its result is added to
/// the running sum afterwards, so the sum is made of whole micro-step gradients (not op by op), as the ranks'
/// all-reduce makes it. Two ranks of one micro-step and one process with two then agree to the bit; with more terms
/// the two sums are grouped differently (the all-reduce's tree against this running sum) and agree to float rounding.
/// With one part per step it does nothing at all.
final class GradientAccumulator {
    let params: [Tensor]
    let index: [ObjectIdentifier: Int]
    let parts: Int
    var sums: [Tensor?]

    /// `parts`: backward passes summed per optimizer step (micro-steps, or RL's questions on this rank).
    init(model: GPT, parts: Int) {
        params = model.parameterNames.map { model.param($0) }
        index = Dictionary(uniqueKeysWithValues: params.enumerated().map { (ObjectIdentifier($0.element), $0.offset) })
        self.parts = parts
        sums = Array(repeating: nil, count: params.count)
    }

    /// Takes the gradients of the part just run into the sum, leaving the parameters without gradients.
    func collect() {
        guard parts > 1 else { return }
        for i in params.indices { collect(i) }
    }

    /// The same for one parameter whose gradient the last part has just finished (inside its backward); returns the
    /// step's gradient of it so far, to hand to the optimizer (`MuonAdamW.gradientReady`).
    func collect(_ p: Tensor) -> Tensor? {
        guard parts > 1 else { return p.grad }
        guard let i = index[ObjectIdentifier(p)] else { return nil }
        collect(i)
        return sums[i]
    }

    private func collect(_ i: Int) {
        let p = params[i]
        guard let g = p.grad else { return }
        p.grad = nil
        guard let s = sums[i] else { sums[i] = g; return }
        if let gpu = g.gpu {
            gpu.run(gpu.api.nc_axpby(gpu.ctx, s.gpuData, g.gpuData, 1, nil, 1, Int64(g.count)), "gradient sum")
            return
        }
        let (dst, src) = (s.data, g.data)
        for j in 0..<g.count { dst[j] += src[j] }
    }

    /// The backward hook of a step's last part when the optimizer reduces gradients across ranks: each parameter's
    /// finished gradient goes to the optimizer at once, so its reduction overlaps the rest of the backward. Nil (no
    /// hook) for the other parts and in one process.
    func overlapHook(_ optimizer: MuonAdamW, lastPart: Bool) -> ((Tensor) -> Void)? {
        guard lastPart, optimizer.transport != nil else { return nil }
        return { [unowned self] p in optimizer.gradientReady(p, gradient: self.collect(p)) }
    }

    /// Gives the summed gradients back to the parameters for the optimizer step.
    func install() {
        guard parts > 1 else { return }
        for (i, p) in params.enumerated() { p.grad = sums[i] }
        sums = Array(repeating: nil, count: params.count)
    }
}

/// Opens `flags`' device for a training loop and moves `model` there (before its optimizer is made, so that the
/// optimizer's state is created beside the parameters). With several ranks each takes the GPU of its local rank and
/// joins the others through NCCL (the optimizer then reduces there: `GPU.nccl`).
func placeModel(_ model: GPT, _ flags: DeviceFlags, comm: Communicator, say: (String) -> Void) throws -> Device {
    let device = try flags.open(index: comm.localRank, say: say)
    if let gpu = device.gpu { _ = try Distributed.joinNCCL(gpu, comm: comm, say: say) }
    model.useDevice(device)
    return device
}

/// A step's loss, summed over its micro-batches where they are computed: on a GPU in a device scalar, read once at the
/// end of the step (the step's one copy back, and no wait for the GPU between micro-batches); on the CPU as it comes.
final class StepLoss {
    private let sum: Tensor?
    private var host = 0.0

    init(_ gpu: GPU?) { sum = gpu.map { Tensor(shape: [1], on: $0) } }

    /// Adds the micro-batch's loss (a scalar tensor on the model's device) divided by `parts` (the micro-batches).
    func add(_ loss: Tensor, over parts: Int) {
        if let sum, let gpu = sum.gpu {
            gpu.run(gpu.api.nc_axpby(gpu.ctx, sum.gpuData, loss.gpuData, 1 / Float(parts), nil, 1, 1), "step loss")
        } else {
            host += Double(loss.scalar) / Double(parts)
        }
    }

    /// The sum so far, which starts again from zero.
    func take() -> Double {
        defer {
            host = 0
            if let sum, let gpu = sum.gpu { gpu.zero(sum.gpuData, floats: 1) }
        }
        return sum.map { Double($0.scalar) } ?? host
    }
}
