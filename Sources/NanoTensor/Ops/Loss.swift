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
        let out = Tensor(shape: Array(x.shape.dropLast()) + [vocab], zeroed: false)
        weightProduct(m: n, n: vocab, k: c, a: x.data, lda: c, w: w, c: out.data, ldc: vocab)
        // the softcap in C (AVX2): 32768 logits a row each decode step, split between the threads
        let total = n * vocab, parts = Threading.ranges(total, parts: total >= 1 << 14 ? Threading.workers : 1)
        Threading.parallelFor(parts.count) { p in nc_softcap(out.data + parts[p].lowerBound, parts[p].count, softcap) }
        return out
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
