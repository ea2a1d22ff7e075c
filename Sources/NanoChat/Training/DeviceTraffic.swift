import Foundation
import NanoTensor

/// What a training step on a GPU costs besides its arithmetic, for the run's report: the host <-> device copies of one
/// step (its inputs and targets in, its loss out once, nothing else), the caching allocator's device allocations after the
/// first step and after the last (equal: a steady step allocates nothing), and the peak of bytes handed out. Does
/// nothing on the CPU.
final class DeviceTraffic {
    let gpu: GPU?
    private var mark = (uploads: 0, downloads: 0, upBytes: 0, downBytes: 0)
    /// The copies of the latest step.
    private(set) var lastStep = (uploads: 0, downloads: 0, upBytes: 0, downBytes: 0)
    private var allocations: (afterFirstStep: Int64, afterLatest: Int64)?
    /// Device bytes in use when the latest forward started, and what that forward left for its backward (the activations
    /// the tape keeps, the loss's saved state): the memory that grows with tokens and layers.
    private var forwardStart: Int64 = 0
    private var kept: (bytes: Int64, tokens: Int, width: Int, layers: Int)?

    init(_ gpu: GPU?) { self.gpu = gpu }

    func stepStarts() {
        guard let gpu else { return }
        mark = (gpu.uploads, gpu.downloads, gpu.uploadedBytes, gpu.downloadedBytes)
        gpu.profileStart()
    }

    func stepEnds() {
        guard let gpu else { return }
        lastStep = (gpu.uploads - mark.uploads, gpu.downloads - mark.downloads, gpu.uploadedBytes - mark.upBytes,
                    gpu.downloadedBytes - mark.downBytes)
        let n = (try? gpu.allocatorStats().deviceAllocations) ?? -1
        allocations = (allocations?.afterFirstStep ?? n, n)
    }

    /// Around one micro-batch's forward: `forwardEnds` records the device memory it left for the backward.
    func forwardStarts() {
        guard let gpu, let s = try? gpu.allocatorStats() else { return }
        forwardStart = s.inUse
    }

    func forwardEnds(tokens: Int, width: Int, layers: Int) {
        guard let gpu, let s = try? gpu.allocatorStats() else { return }
        kept = (s.inUse - forwardStart, tokens, width, layers)
    }

    var peakMemoryGB: Double? { gpu.flatMap { try? $0.memoryInfo().peak }.map { Double($0) / 1e9 } }

    /// The report's lines (none on the CPU).
    func report() -> [String] {
        guard let gpu else { return [] }
        var lines = [String(format: "peak device memory: %.2f GB", peakMemoryGB ?? 0)]
        lines.append("host<->device per step: \(lastStep.uploads) copies in (\(lastStep.upBytes) bytes: token ids and targets), "
                     + "\(lastStep.downloads) out (\(lastStep.downBytes) bytes: the loss)")
        if let a = allocations, let s = try? gpu.allocatorStats() {
            lines.append(String(format: "device allocations: %lld after the first step, %lld after the last (%@); %.2f GB handed out at the most, %.2f GB held",
                                a.afterFirstStep, a.afterLatest, a.afterLatest == a.afterFirstStep ? "none in the steps after the first" : "more in later steps",
                                Double(s.peak) / 1e9, Double(s.reserved) / 1e9))
        }
        if let k = kept, k.tokens > 0, k.layers > 0 {
            let perToken = Double(k.bytes) / Double(k.tokens)
            lines.append(String(format: "kept from a forward for its backward: %.2f GB, %.0f bytes per token: %.1f x %d floats per token and layer",
                                Double(k.bytes) / 1e9, perToken, perToken / Double(4 * k.width * k.layers), k.width))
        }
        if gpu.profiling { lines.append("GPU time by op (NANOCHAT_CUDA_PROFILE=1: each op waited for):\n" + gpu.profileReport()) }
        return lines
    }
}
