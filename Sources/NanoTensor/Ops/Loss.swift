import Foundation
import CKernels

/// The language-model head fused with the logit softcap and the cross-entropy, computed in row chunks: a chunk's
/// logits are made by BLAS, softcapped, reduced to losses and (when training) turned into their gradient while
/// they are still hot, so the B*T x V logits are never all alive at once.
///
/// logits = softcap * tanh((x W^T)[:, 0..<vocab] / softcap); W may have padded rows past `vocab` (never used).
public enum LMHead {
    static let chunkRows = 256

    /// Mean cross-entropy over targets that are not -1 (a scalar tensor), with its gradient into x and W.
    /// With `weights` and `divisor` it is the weighted sum `sum_i weights[i] * CE_i / divisor` instead (RL's
    /// token-level policy-gradient objective: each token's weight is its sequence's advantage).
    public static func loss(_ x: Tensor, _ w: Tensor, targets: [Int32], vocab: Int, softcap: Float,
                            weights: [Float]? = nil, divisor: Float? = nil) -> Tensor {
        let c = w.shape[1]
        let n = x.count / c
        precondition(targets.count == n, "loss: \(targets.count) targets for \(n) rows")
        precondition(weights == nil || weights!.count == n, "loss: \(weights?.count ?? 0) weights for \(n) rows")
        let valid = targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        let wantGrad = Tensor.gradEnabled && (x.requiresGrad || w.requiresGrad)
        let invCount: Float = divisor.map { 1 / $0 } ?? (valid > 0 ? 1 / Float(valid) : .nan)
        if let gpu = x.gpu {
            return lossOnGPU(gpu, x, w, targets: targets, vocab: vocab, softcap: softcap, weights: weights, invCount: invCount, wantGrad: wantGrad)
        }
        let dx = wantGrad ? Tensor(shape: x.shape, zeroed: false) : nil
        let dw = wantGrad ? Tensor(shape: [vocab, c], zeroed: true) : nil
        var total: Double = 0
        forEachChunk(x, w, targets: targets, vocab: vocab, softcap: softcap, gradScale: wantGrad ? invCount : nil, weights: weights) { r0, rows, chunk, losses in
            for i in 0..<rows where targets[r0 + i] >= 0 { total += Double(losses[i]) * Double(weights?[r0 + i] ?? 1) }
            if let dx, let dw {
                // dX rows = G W ; dW += G^T X   (G is the chunk's logit gradient, already scaled)
                Profiler.measure("lmHead.dx sgemm") {
                    sgemm(transA: false, transB: false, m: rows, n: c, k: vocab, a: chunk, lda: vocab,
                          b: w.data, ldb: c, c: dx.data + r0 * c, ldc: c)
                }
                Profiler.measure("lmHead.dw sgemm") {
                    sgemm(transA: true, transB: false, m: vocab, n: c, k: rows, a: chunk, lda: vocab,
                          b: x.data + r0 * c, ldb: c, beta: 1, c: dw.data, ldc: c)
                }
            }
        }
        let out = Tensor(shape: [1], values: [Float(total) * invCount])
        if let dx, let dw {
            Tensor.record(out, [x, w], op: "lmHeadLoss") { out in
                let s = out.grad!.data[0]
                if x.requiresGrad {
                    let gx = x.gradData()
                    for i in 0..<x.count { gx[i] += s * dx.data[i] }
                }
                if w.requiresGrad {
                    let gw = w.gradData()  // rows past `vocab` (padding) get no gradient
                    for i in 0..<(vocab * c) { gw[i] += s * dw.data[i] }
                }
            }
        }
        return out
    }

    /// Per-row losses (0 where the target is -1), no gradient: what bits-per-byte evaluation needs.
    public static func lossPerRow(_ x: Tensor, _ w: Tensor, targets: [Int32], vocab: Int, softcap: Float) -> [Float] {
        if let gpu = x.gpu {
            let (losses, _, _) = chunksOnGPU(gpu, x, w, targets: TokenIds(targets, on: gpu), vocab: vocab, softcap: softcap, weights: nil,
                                             gradScale: 0)
            return losses.hostArray()
        }
        var result = [Float](repeating: 0, count: targets.count)
        forEachChunk(x, w, targets: targets, vocab: vocab, softcap: softcap, gradScale: nil) { r0, rows, _, losses in
            for i in 0..<rows { result[r0 + i] = targets[r0 + i] >= 0 ? losses[i] : 0 }
        }
        return result
    }

    /// Walks the rows in chunks: `body(firstRow, rows, chunk, losses)` sees each chunk's per-row losses and
    /// its logits (or, with `gradScale`, its logit gradient) while they are in cache.
    static func forEachChunk(_ x: Tensor, _ w: Tensor, targets: [Int32], vocab: Int, softcap: Float, gradScale: Float?,
                             weights: [Float]? = nil, _ body: (Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
        let c = w.shape[1]
        let n = x.count / c
        precondition(targets.count == n, "lm head: \(targets.count) targets for \(n) rows")
        let chunk = Tensor(shape: [min(chunkRows, n) * vocab], zeroed: false)
        let losses = Tensor(shape: [min(chunkRows, n)], zeroed: false)
        var r0 = 0
        while r0 < n {
            let rows = min(chunkRows, n - r0)
            forwardChunk(x.data + r0 * c, rows: rows, w: w, c: c, vocab: vocab, softcap: softcap,
                         targets: Array(targets[r0..<(r0 + rows)]), logits: chunk.data, losses: losses.data, gradScale: gradScale,
                         weights: weights.map { Array($0[r0..<(r0 + rows)]) })
            body(r0, rows, chunk.data, losses.data)
            r0 += rows
        }
    }

    /// Softcapped logits [N, vocab], no gradient (evaluation, sampling, fixtures).
    public static func logits(_ x: Tensor, _ w: Tensor, vocab: Int, softcap: Float) -> Tensor {
        let c = w.shape[1]
        let n = x.count / c
        let out = Tensor(shape: Array(x.shape.dropLast()) + [vocab], zeroed: false, on: x.gpu)
        if let gpu = x.gpu {
            gpuWeightProduct(gpu, out.gpuData, x.gpuData, w, m: n, n: vocab, k: c, transB: true)  // W's first `vocab` rows
            gpu.run(gpu.api.nc_softcap(gpu.ctx, out.gpuData, Int64(out.count), softcap), "softcap")
            return out
        }
        weightProduct(m: n, n: vocab, k: c, a: x.data, lda: c, w: w, c: out.data, ldc: vocab)
        // the softcap in C (AVX2): 32768 logits a row each decode step, split between the threads
        let total = n * vocab, parts = Threading.ranges(total, parts: total >= 1 << 14 ? Threading.workers : 1)
        Threading.parallelFor(parts.count) { p in nc_softcap(out.data + parts[p].lowerBound, parts[p].count, softcap) }
        return out
    }

    /// Rows per chunk on the GPU: about 64M logits (256 MB) at a time, as llm.c's classifier bounds its buffer.
    static func gpuChunkRows(_ ld: Int) -> Int { max(1, (64 << 20) / ld) }

    /// The device body of `loss`: per chunk, the logits by cuBLASLt, softcap + cross-entropy with the gradient written
    /// over them (classifier.cu), then dX and dW from that gradient; the loss is summed on the device, so nothing
    /// comes back to the host unless the caller reads it (`scalar`).
    static func lossOnGPU(_ gpu: GPU, _ x: Tensor, _ w: Tensor, targets: [Int32], vocab: Int, softcap: Float, weights: [Float]?,
                          invCount: Float, wantGrad: Bool) -> Tensor {
        let weightTensor = weights.map { Tensor(shape: [$0.count], values: $0).to(.gpu(gpu)) }
        let (losses, dx, dw) = chunksOnGPU(gpu, x, w, targets: TokenIds(targets, on: gpu), vocab: vocab, softcap: softcap,
                                           weights: weightTensor, gradScale: wantGrad ? invCount : 0)
        let out = Tensor(shape: [1], zeroed: false, on: gpu)
        gpu.run(gpu.api.nc_dot(gpu.ctx, out.gpuData, losses.gpuData, weightTensor?.gpuData, Int64(losses.count), 0), "loss sum")
        gpuAxpy(gpu, out.gpuData, out.gpuData, invCount, 1, accumulate: false)
        if let dx, let dw {
            Tensor.record(out, [x, w], op: "lmHeadLoss") { out in
                // scaled by the loss's incoming gradient, read on the device
                if x.requiresGrad { gpuAddGrad(gpu, x, dx.gpuData, scale: out.grad!.gpuData) }
                if w.requiresGrad { gpuAddGrad(gpu, w, dw.gpuData, scale: out.grad!.gpuData) }
            }
        }
        return out
    }

    /// The chunks on the GPU: per-row losses and, with `gradScale` != 0, dX [rows, C] and dW [paddedVocab, C] (the
    /// padding rows' gradient is zero, the kernel writes it so). When the GPU trains in bf16 the logits are bf16, as
    /// upstream's come out of its bf16 product: the product writes them in bf16, the loss reads them and writes their
    /// gradient back in bf16, and the two gradient products read that as it is; every pass over the step's largest
    /// activation moves half the bytes, with no rounding pass before the products.
    static func chunksOnGPU(_ gpu: GPU, _ x: Tensor, _ w: Tensor, targets: TokenIds, vocab: Int, softcap: Float, weights: Tensor?,
                            gradScale: Float) -> (losses: Tensor, dx: Tensor?, dw: Tensor?) {
        let (ld, c) = (w.shape[0], w.shape[1])
        let n = x.count / c
        precondition(targets.values.count == n, "lm head: \(targets.values.count) targets for \(n) rows")
        let losses = Tensor(shape: [n], zeroed: false, on: gpu)
        let dx = gradScale != 0 ? Tensor(shape: x.shape, zeroed: false, on: gpu) : nil
        let dw = gradScale != 0 ? Tensor(shape: w.shape, zeroed: false, on: gpu) : nil
        let chunkRows = min(n, gpuChunkRows(ld))
        // bf16 logits: two to a float of the buffer
        let logits = Tensor(shape: gpu.bf16 ? [(chunkRows * ld + 1) / 2] : [chunkRows, ld], zeroed: false, on: gpu)
        var r0 = 0
        while r0 < n {
            let rows = min(chunkRows, n - r0)
            let xr = x.gpuData + r0 * c
            let (dims, target, rowWeights) = ((Int64(rows), Int64(vocab), Int64(ld)), targets.device! + r0, weights.map { $0.gpuData + r0 })
            if gpu.bf16 {
                let wb = w.bf16Weights(on: gpu)
                gpu.run(gpu.api.nc_matmul_bf16_out(gpu.ctx, logits.gpuData, xr, 0, wb, 1, dims.0, dims.2, Int64(c), 0, 1),
                        "lm_head logits \(rows)x\(ld)x\(c) in bf16")
                gpu.run(gpu.api.nc_softcap_cross_entropy_bf16(gpu.ctx, logits.gpuData, losses.gpuData + r0, target, rowWeights,
                                                              dims.0, dims.1, dims.2, softcap, gradScale), "softcap cross-entropy (bf16)")
                if let dx, let dw {
                    // dX rows = G W ; dW (+)= G^T X, G read in bf16 as the loss wrote it
                    gpu.run(gpu.api.nc_matmul_mixed(gpu.ctx, dx.gpuData + r0 * c, logits.gpuData, 1, wb, 1, dims.0, Int64(c), dims.2, 0, 0, 1, 0),
                            "lm_head dX from bf16 logits")
                    gpu.run(gpu.api.nc_matmul_mixed(gpu.ctx, dw.gpuData, logits.gpuData, 1, xr, 0, dims.2, Int64(c), dims.0, 1, 0, 1, r0 == 0 ? 0 : 1),
                            "lm_head dW from bf16 logits")
                }
            } else {
                gpuWeightProduct(gpu, logits.gpuData, xr, w, m: rows, n: ld, k: c, transB: true)
                gpu.run(gpu.api.nc_softcap_cross_entropy(gpu.ctx, logits.gpuData, losses.gpuData + r0, target, rowWeights,
                                                         dims.0, dims.1, dims.2, softcap, gradScale), "softcap cross-entropy")
                if let dx, let dw {
                    gpuWeightProduct(gpu, dx.gpuData + r0 * c, logits.gpuData, w, m: rows, n: c, k: ld, transB: false)
                    gpu.matmul(dw.gpuData, logits.gpuData, xr, m: ld, n: c, k: rows, transA: true, beta: r0 == 0 ? 0 : 1)
                }
            }
            r0 += rows
        }
        return (losses, dx, dw)
    }

    /// One chunk: logits by BLAS, then per row (split over the cores) softcap, log-sum-exp, loss and, when
    /// `gradScale` is set, the logit gradient (softmax - onehot) * (1 - tanh^2) * gradScale in place (C: nc_softcap_xent_row,
    /// AVX-512 or AVX2 where the CPU has them).
    static func forwardChunk(_ x: UnsafePointer<Float>, rows: Int, w: Tensor, c: Int, vocab: Int,
                             softcap: Float, targets: [Int32], logits: UnsafeMutablePointer<Float>,
                             losses: UnsafeMutablePointer<Float>, gradScale: Float?, weights: [Float]? = nil) {
        Profiler.measure("lmHead.logits sgemm") {
            if w.quantized != nil {
                weightProduct(m: rows, n: vocab, k: c, a: x, lda: c, w: w, c: logits, ldc: vocab)
            } else {
                sgemm(transA: false, transB: true, m: rows, n: vocab, k: c, a: x, lda: c, b: w.data, ldb: c, c: logits, ldc: vocab)
            }
        }
        let parts = Threading.ranges(rows, parts: Threading.workers)
        Profiler.measure("lmHead.softcap+softmax") { Threading.parallelFor(parts.count) { pi in
            let scratch = Tensor(shape: [vocab], zeroed: false)  // exp of each softcapped logit, L2-resident
            let ex = scratch.data
            for i in parts[pi] {
                let t = targets[i]
                let gs = (gradScale ?? 0) * (weights?[i] ?? 1)
                losses[i] = nc_softcap_xent_row(logits + i * vocab, vocab, softcap, t, gradScale == nil ? 0 : 1, gs, ex)
            }
        } }
    }
}
