import Foundation
import NanoChat

/// Training on one GPU for the loops in NanoChat (`TrainingAccelerator`): the model (`CUDAGPT`) and upstream's
/// optimizer (`CUDAMuonAdamW`) in device memory. Its weights and optimizer state come from, and go back to, the CPU
/// `GPT` and `MuonAdamW` under the same names, so checkpoints are today's files.
public final class CUDATrainer: TrainingAccelerator {
    public let model: CUDAGPT
    public let optimizer: CUDAMuonAdamW
    let device: CUDALibrary.Device

    /// Upstream's peak for MFU on an H100 / H200 (bf16 dense).
    public static let peakBF16FLOPS = 989e12

    public init(cuda: CUDALibrary, model cpuModel: GPT, optimizer cpuOptimizer: MuonAdamW, batch: Int, time: Int,
                precision: GPUPrecision) throws {
        device = try cuda.device()
        model = try CUDAGPT(cpuModel, cuda: cuda, batch: batch, time: time, bf16: precision == .bf16)
        optimizer = try CUDAMuonAdamW(model: model, groups: cpuOptimizer.groups)
        try upload(from: cpuModel, optimizer: cpuOptimizer)
    }

    /// A factory for `baseTrain(accelerator:)`.
    public static func factory(cuda: CUDALibrary, precision: GPUPrecision) -> AcceleratorFactory {
        { model, optimizer, batch, time in
            try CUDATrainer(cuda: cuda, model: model, optimizer: optimizer, batch: batch, time: time, precision: precision)
        }
    }

    public var description: String { "\(device.name), \(model.bf16 ? "bf16 products and attention, fp32 weights" : "exact fp32")" }
    public var peakFLOPS: Double { Self.peakBF16FLOPS }
    public var peakMemoryBytes: Int64 { (try? model.cuda.memoryInfo().peak) ?? 0 }
    /// The caching allocator's device allocations after the first optimizer step and after the latest one: a steady
    /// step makes none (every buffer it frees is handed out again), which the two being equal shows.
    var allocations: (afterFirstStep: Int64, afterLatest: Int64)?

    public var report: String? {
        var lines: [String] = []
        if let a = allocations, let s = try? model.cuda.allocatorStats() {
            lines.append(String(format: "device allocations: %lld after the first step, %lld after the last (%@); %.2f GB handed out at the most, %.2f GB held",
                                a.afterFirstStep, a.afterLatest, a.afterLatest == a.afterFirstStep ? "none in the steps after the first" : "more in later steps",
                                Double(s.peak) / 1e9, Double(s.reserved) / 1e9))
        }
        if model.cuda.profiling { lines.append("GPU time by op (NANOCHAT_CUDA_PROFILE=1: each op waited for):\n" + model.cuda.profileReport()) }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }

    public func forwardBackward(inputs: [Int32], targets: [Int32], lossScale: Float) throws -> Float {
        try model.loss(inputs: inputs, targets: targets, backward: true, lossScale: lossScale)
    }

    public func step(groups: [OptimizerGroupSpec]) throws {
        model.cuda.profileStart()
        optimizer.groups = groups
        try optimizer.step()
        try model.zeroGradients()
        let n = try model.cuda.allocatorStats().deviceAllocations
        allocations = (allocations?.afterFirstStep ?? n, n)
    }

    public func lossPerToken(inputs: [Int32], targets: [Int32]) throws -> [Float] {
        try model.lossPerToken(inputs: inputs, targets: targets)
    }

    public func download(into cpuModel: GPT, optimizer cpuOptimizer: MuonAdamW) throws {
        try model.storeWeights(into: cpuModel)
        for (name, t) in cpuOptimizer.stateTensors().tensors {
            try model.cuda.download(try optimizer.stateBuffer(name).pointer, count: t.count, into: t.data)
        }
        cpuOptimizer.setAdamSteps(optimizer.adamStep)
    }

    public func upload(from cpuModel: GPT, optimizer cpuOptimizer: MuonAdamW) throws {
        try model.loadWeights(from: cpuModel)
        let (tensors, steps) = cpuOptimizer.stateTensors()
        for (name, t) in tensors { try model.cuda.upload(t.data, count: t.count, to: try optimizer.stateBuffer(name).pointer) }
        optimizer.adamStep = steps
    }
}
