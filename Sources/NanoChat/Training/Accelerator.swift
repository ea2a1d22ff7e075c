import Foundation

/// What the training loops need from an accelerator. NanoCUDA's `CUDATrainer` is one; the executable builds it
/// (through an `AcceleratorFactory`) when `--device-type` picks the GPU, and without one the loops train on the CPU.
/// The CPU `GPT` and `MuonAdamW` stay the source of truth between the two: the accelerator is filled from them and
/// writes back into them before a checkpoint or a sample, so checkpoints keep today's format and load anywhere.
public protocol TrainingAccelerator: AnyObject {
    /// "NVIDIA H100 80GB HBM3, bf16", for the console.
    var description: String { get }
    /// The peak rate MFU is reported against (upstream: 989e12 bf16 FLOP/s for an H100 or H200).
    var peakFLOPS: Double { get }
    /// Device memory in use at the most so far, bytes.
    var peakMemoryBytes: Int64 { get }
    /// Where the time went, when the device was asked to measure it (printed at the end of a run).
    var report: String? { get }
    /// One micro-batch: adds the gradient of (mean loss · lossScale) to the gradients; returns the mean loss.
    func forwardBackward(inputs: [Int32], targets: [Int32], lossScale: Float) throws -> Float
    /// One optimizer step with `groups`' current hyperparameters; the gradients are zeroed after it.
    func step(groups: [OptimizerGroupSpec]) throws
    /// Per-position losses (0 where the target is -1), for bits per byte.
    func lossPerToken(inputs: [Int32], targets: [Int32]) throws -> [Float]
    /// Weights and optimizer state into the CPU objects (checkpoints, samples) ...
    func download(into model: GPT, optimizer: MuonAdamW) throws
    /// ... and from them (start, resume).
    func upload(from model: GPT, optimizer: MuonAdamW) throws
}

/// Builds the accelerator for a model, its optimizer and batches of `batch` rows of `time` tokens.
public typealias AcceleratorFactory = (_ model: GPT, _ optimizer: MuonAdamW, _ batch: Int, _ time: Int) throws -> TrainingAccelerator
