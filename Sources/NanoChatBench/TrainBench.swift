import Foundation
import NanoChat
import NanoTensor

/// Steady-state training throughput of one configuration on random tokens (the data does not change the
/// arithmetic): median tokens/s over timed steps, model FLOP/s against this machine's sgemm rate, and a per-op
/// breakdown of one profiled step.
public struct TrainBenchResult {
    public var depth: Int
    public var tokensPerSecond: [Double]
    public var medianTokensPerSecond: Double
    public var modelGFLOPS: Double
    public var sgemmGFLOPS: Double
    public var breakdown: [(String, Double, Int)]
    public var stepSeconds: Double
    public var peakRSSMB: Double
    public var freshAllocationsPerStep: Int
    /// Ranks of the job, and per step: seconds in the optimizer's collectives and the bytes each rank sent into them.
    public var ranks: Int
    public var communicationSeconds: Double
    public var communicationBytes: Int
    /// Of those bytes, the share of gradient bytes whose reduction started inside the backward (the overlap).
    public var bytesStartedInBackward: Int
}

/// `o` is base-train's options for the configuration (the bench sets depth, sizes and window pattern; the
/// learning rates and schedule are base-train's own defaults); `vocab` replaces a tokenizer.
/// With `comm` of W ranks the same total batch is split over them (base-train's data parallelism); the rates are
/// the whole job's.
public func benchTrain(_ o: BaseTrainOptions, vocab: Int, steps: Int, warmup: Int = 2,
                       comm: Communicator = SingleProcess()) throws -> TrainBenchResult {
    let plan = DepthPlan(o, vocabSize: vocab)
    let (deviceBatch, seqLen, totalBatch) = (o.deviceBatchSize, o.maxSeqLen, plan.totalBatchSize)
    let model = try GPT(config: plan.config, seed: o.seed)
    let device = try o.device.open(say: { if comm.isMain { print($0) } })
    guard device.gpu == nil || comm.worldSize == 1 else { throw NanoChatError("bench train on the GPU runs in one process") }
    model.useDevice(device)
    let opt = try o.optimizer(for: model, plan: plan, comm: comm)
    guard totalBatch % (deviceBatch * seqLen * comm.worldSize) == 0 else {
        throw NanoChatError("total batch \(totalBatch) is not a multiple of device batch x seq x ranks = \(deviceBatch * seqLen * comm.worldSize)")
    }
    let accum = totalBatch / (deviceBatch * seqLen * comm.worldSize)
    var rng = RNG(seed: 1 + UInt64(comm.rank))
    // inputs and targets of each micro-batch, made once: the timed steps do only the training work
    let batches = (0..<accum).map { _ -> (x: [Int32], y: [Int32]) in
        let b = (0..<(deviceBatch * (seqLen + 1))).map { _ in Int32(rng.next() % UInt64(vocab)) }
        var x = [Int32](), y = [Int32]()
        for r in 0..<deviceBatch {
            x += b[(r * (seqLen + 1))..<(r * (seqLen + 1) + seqLen)]
            y += b[(r * (seqLen + 1) + 1)..<((r + 1) * (seqLen + 1))]
        }
        return (x, y)
    }
    func step(_ it: Int) {
        for (micro, (x, y)) in batches.enumerated() {
            Profiler.mark()
            let loss = model.forward(x, batch: deviceBatch, time: seqLen, targets: y)
            // the last micro-step hands each finished gradient to the optimizer, whose reduction then overlaps the backward
            let hook: ((Tensor) -> Void)? = micro == accum - 1 && opt.transport != nil ? { opt.gradientReady($0) } : nil
            Profiler.measure("backward (total)") { loss.backward(seed: 1 / Float(accum), leafDone: hook) }
        }
        _ = o.applySchedule(to: opt, step: it, plan: plan)
        Profiler.measure("optimizer") { opt.step() }
        model.zeroGrad()
        device.gpu?.synchronize()  // a step on the GPU ends when its kernels have
    }
    for i in 0..<warmup { step(i) }
    let allocBefore = BufferPool.freshAllocations
    var rates: [Double] = []
    var commSeconds = 0.0
    comm.barrier()
    for i in 0..<steps {
        let t0 = DispatchTime.now().uptimeNanoseconds
        step(warmup + i)
        comm.barrier()  // the step ends when the slowest rank's does
        rates.append(Double(totalBatch) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9))
        commSeconds += opt.lastCommunicationSeconds
    }
    let fresh = (BufferPool.freshAllocations - allocBefore) / max(steps, 1)
    Profiler.reset()
    Profiler.enabled = true
    let t0 = DispatchTime.now().uptimeNanoseconds
    step(warmup + steps)
    let stepSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    Profiler.enabled = false
    let breakdown = Profiler.report
    let median = rates.sorted()[rates.count / 2]
    return TrainBenchResult(depth: o.depth, tokensPerSecond: rates, medianTokensPerSecond: median,
                            modelGFLOPS: median * Double(plan.flopsPerToken) / 1e9, sgemmGFLOPS: measureSgemmGFLOPS(),
                            breakdown: breakdown, stepSeconds: stepSeconds, peakRSSMB: peakRSSMegabytes(),
                            freshAllocationsPerStep: fresh, ranks: comm.worldSize,
                            communicationSeconds: comm.sum(commSeconds / Double(max(steps, 1))) / Double(comm.worldSize),
                            communicationBytes: opt.lastCommunicationBytes, bytesStartedInBackward: opt.lastBytesStartedInBackward)
}

/// Peak resident set size of this process (VmHWM), in MB.
public func peakRSSMegabytes() -> Double {
    guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kb / 1024
    }
    return 0
}
