import CKernels
import Foundation

/// Parameter-free RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps), eps float32's machine epsilon (PyTorch's
/// F.rms_norm default, which upstream uses). The rows go to the C kernels of
/// elementwise.c (AVX-512 or AVX2 where the CPU has them), split over the cores when there are enough of them.
/// `bf16OnGPU`: on a GPU in bf16 mode the output is a bf16 activation (for a caller whose readers are bf16 products:
/// the MLP's input), written once in bf16 from the fp32 math; its backward reads those values.
public func rmsNorm(_ x: Tensor, bf16OnGPU: Bool = false) -> Tensor {
    let c = x.shape.last!
    let rows = x.count / c
    let out = Tensor(shape: x.shape, zeroed: false, on: x.gpu, bf16: bf16OnGPU && x.gpu?.bf16 == true)
    let rstd = Tensor(shape: [rows], zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        gpu.run(gpu.api.nc_rmsnorm_forward(gpu.ctx, out.deviceBytes, out.isBF16 ? 1 : 0, rstd.gpuData, x.gpuData, Int64(rows), Int64(c)), "rmsnorm")
        recordRMSNormGPU(gpu, out, of: x, rstd: rstd)
        return out
    }
    let px = x.data, po = out.data, pr = rstd.data
    let parts = rowParts(rows, width: c)
    Threading.parallelFor(parts.count) { p in
        for r in parts[p] { pr[r] = nc_rmsnorm_row(px + r * c, po + r * c, Int32(c)) }
    }
    Tensor.record(out, [x], op: "rmsNorm") { out in
        let g = out.grad!.data, y = out.data
        let pr = rstd.data  // captures rstd: the saved statistics must outlive the forward call
        let gx = x.gradData()
        Threading.parallelFor(parts.count) { p in
            for r in parts[p] { nc_rmsnorm_backward_row(g + r * c, y + r * c, pr[r], Int32(c), gx + r * c) }
        }
    }
    return out
}

/// The device backward of `out` = RMSNorm(x) with its saved `rstd`.
private func recordRMSNormGPU(_ gpu: GPU, _ out: Tensor, of x: Tensor, rstd: Tensor) {
    let c = x.shape.last!, rows = x.count / c
    Tensor.record(out, [x], op: "rmsNorm") { out in
        let (gx, fresh) = x.gradForWrite()
        gpu.run(gpu.api.nc_rmsnorm_backward(gpu.ctx, gx, out.grad!.gpuData, out.deviceBytes, out.isBF16 ? 1 : 0, rstd.gpuData, Int64(rows),
                                            Int64(c), fresh ? 0 : 1), "rmsnorm backward")
    }
}

/// alpha[ia] a + beta[ib] b and its RMSNorm: `scalarMix` then `rmsNorm` (each layer's input: the residual stream that
/// the branch adds to, and the norm the branch reads). On a GPU one pass over the rows writes both
/// (`nc_mix_rmsnorm_forward`); each keeps its own backward, as the two ops' are. `bf16NormOnGPU`: the norm as
/// `rmsNorm(_:bf16OnGPU:)` writes it (the attention's input, read by bf16 products and the value-embedding gate).
public func scalarMixNorm(_ alpha: Tensor, _ ia: Int, _ a: Tensor, _ beta: Tensor, _ ib: Int, _ b: Tensor,
                          bf16NormOnGPU: Bool = false) -> (mixed: Tensor, normed: Tensor) {
    guard let gpu = a.gpu else {
        let mixed = scalarMix(alpha, ia, a, beta, ib, b)
        return (mixed, rmsNorm(mixed))
    }
    precondition(a.shape == b.shape && b.gpu === gpu && alpha.gpu === gpu && beta.gpu === gpu, "scalarMixNorm: \(a.shape) vs \(b.shape) on one GPU")
    let c = a.shape.last!, rows = a.count / c
    let mixed = Tensor(shape: a.shape, zeroed: false, on: gpu)
    let normed = Tensor(shape: a.shape, zeroed: false, on: gpu, bf16: bf16NormOnGPU && gpu.bf16)
    let rstd = Tensor(shape: [rows], zeroed: false, on: gpu)
    gpu.run(gpu.api.nc_mix_rmsnorm_forward(gpu.ctx, mixed.gpuData, normed.deviceBytes, normed.isBF16 ? 1 : 0, rstd.gpuData, a.gpuData, b.gpuData,
                                           alpha.gpuData, Int64(ia), beta.gpuData, Int64(ib), Int64(rows), Int64(c)), "scalar mix + rmsnorm")
    recordScalarMixGPU(gpu, mixed, alpha, ia, a, beta, ib, b)
    recordRMSNormGPU(gpu, normed, of: mixed, rstd: rstd)
    return (mixed, normed)
}

/// Row ranges for the threads: one range (this thread) when the rows are too few to repay waking another.
func rowParts(_ rows: Int, width: Int) -> [Range<Int>] {
    Threading.ranges(rows, parts: rows * width >= 1 << 16 ? Threading.workers : 1)
}

/// Rotary embedding tables for positions 0..<length: cos and sin, each [length, headDim/2], float32 as upstream
/// (inv_freq = 1/base^(2j/D), angle = t * inv_freq).
public func rotaryTables(length: Int, headDim: Int, base: Float = 100_000) -> (cos: Tensor, sin: Tensor) {
    let half = headDim / 2
    let cosT = Tensor(shape: [length, half], zeroed: false), sinT = Tensor(shape: [length, half], zeroed: false)
    for j in 0..<half {
        let inv = 1 / powf(base, Float(2 * j) / Float(headDim))
        for t in 0..<length {
            let angle = Float(t) * inv
            cosT.data[t * half + j] = cosf(angle)
            sinT.data[t * half + j] = sinf(angle)
        }
    }
    return (cosT, sinT)
}

/// An attention layer's inputs from its normed input x [B, T, C]: q = rotaryNorm(x W_q^T), k = rotaryNorm(x W_k^T) (rotary
/// embeddings then QK-norm times `gain`, [B, T, heads, D] and [B, T, kvHeads, D]) and v = x W_v^T [B, T, kvHeads * D].
/// The same as `linear(x, [wq, wk, wv])` followed by `rotaryNorm` of q and of k, which it is on the CPU, in fp32, and
/// for rows at different positions. On a GPU in bf16 mode it is one op:
/// - forward: x rounded to bf16 once for the three products (not at all when x is a bf16 activation), q and k before
///   the rotation written in bf16 (as upstream's autocast does) to scratch that is freed when the op returns (the
///   rotation's backward reads its output, not its input: two of a layer's activations of width C fewer), the rotation
///   and norm of q and k in one launch, and q, k and v written as bf16 activations (attention reads them in bf16 anyway);
/// - backward: the three projections are one product [q | k | v] = x [W_q; W_k; W_v]^T as the backward sees it: q's and
///   k's rotation backwards and v's gradient write their parts of its gradient G [rows, Wq + Wk + Wv] in bf16 (what the
///   products read), then x's gradient is one product G [W_q; W_k; W_v] (written once, instead of three products adding
///   into it in fp32) and the three weights' gradients one product G^T x.
public func rotaryProjections(_ x: Tensor, q wq: Tensor, k wk: Tensor, v wv: Tensor, heads: Int, kvHeads: Int, cos: Tensor, sin: Tensor,
                              gain: Float, rowOffsets: [Int]? = nil) -> (q: Tensor, k: Tensor, v: Tensor) {
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    let d = wq.shape[0] / heads
    precondition(wq.shape == [heads * d, c] && wk.shape == [kvHeads * d, c] && wv.shape == wk.shape,
                 "rotaryProjections: input \(x.shape), weights \(wq.shape) \(wk.shape) \(wv.shape) for \(heads) and \(kvHeads) heads")
    let offset = rowOffsets?.first ?? 0
    guard let gpu = x.gpu, gpu.bf16, Set(rowOffsets ?? [0]).count == 1 else {
        let p = linear(x, [wq, wk, wv])
        return (rotaryNorm(p[0].reshaped([b, t, heads, d]), cos: cos, sin: sin, gain: gain, rowOffsets: rowOffsets),
                rotaryNorm(p[1].reshaped([b, t, kvHeads, d]), cos: cos, sin: sin, gain: gain, rowOffsets: rowOffsets), p[2])
    }
    precondition(wq.gpu === gpu && wk.gpu === gpu && wv.gpu === gpu && cos.gpu === gpu && sin.gpu === gpu,
                 "rotaryProjections: the input is on the GPU, a weight or the rotary tables are not")
    precondition(offset + t <= cos.shape[0] && cos.shape[1] == d / 2, "rotary tables too short")
    let n = b * t
    let (wqWidth, wkWidth, wvWidth) = (heads * d, kvHeads * d, kvHeads * d)
    let width = wqWidth + wkWidth + wvWidth
    // the weights' bf16 copies as one block [W_q; W_k; W_v]: the forward's products read their parts, the backward's the whole
    _ = Tensor.stackedBF16Weights([wq, wk, wv], on: gpu)
    let x16 = gpuBF16Operand(gpu, x)
    defer { withExtendedLifetime(x16.scratch) {} }
    let q = Tensor(shape: [b, t, heads, d], zeroed: false, on: gpu, bf16: true), k = Tensor(shape: [b, t, kvHeads, d], zeroed: false, on: gpu, bf16: true)
    let v = Tensor(shape: [b, t, wvWidth], zeroed: false, on: gpu, bf16: true)
    for out in [q, k, v] { out.acceptsBF16Gradient = true }  // attention writes their gradients in bf16; the backwards below read them so
    let rstdQ = Tensor(shape: [n * heads], zeroed: false, on: gpu), rstdK = Tensor(shape: [n * kvHeads], zeroed: false, on: gpu)
    gpu.run(gpu.api.nc_matmul_bf16_out(gpu.ctx, v.bf16Data, x16.pointer, 1, wv.bf16Weights(on: gpu), 1, Int64(n), Int64(wvWidth), Int64(c), 0, 1),
            "v = x \(wv.name)^T into bf16")
    do {  // q and k before the rotation, in bf16 (as upstream's autocast writes them): scratch, back to the allocator when this block ends
        let qRaw = Storage(count: (n * wqWidth + 1) / 2, on: gpu), kRaw = Storage(count: (n * wkWidth + 1) / 2, on: gpu)
        for (raw, w, width, what) in [(qRaw, wq, wqWidth, "q"), (kRaw, wk, wkWidth, "k")] {
            gpu.run(gpu.api.nc_matmul_bf16_out(gpu.ctx, raw.pointer, x16.pointer, 1, w.bf16Weights(on: gpu), 1, Int64(n), Int64(width), Int64(c), 0, 1),
                    "\(what) = x \(w.name)^T into bf16")
        }
        gpu.run(gpu.api.nc_rotary_norm_qk_forward(gpu.ctx, q.bf16Data, rstdQ.gpuData, qRaw.pointer, Int64(heads), k.bf16Data, rstdK.gpuData,
                                                  kRaw.pointer, Int64(kvHeads), cos.gpuData, sin.gpuData, Int64(b), Int64(t), Int64(d),
                                                  Int64(offset), gain, 1), "rotary+norm of q and k, into bf16")
    }
    guard Tensor.gradEnabled && [x, wq, wk, wv].contains(where: { $0.requiresGrad }) else { return (q, k, v) }
    // The joint output [q | k | v] as the tape sees it: q, k and v are its parts, and its backward runs after theirs.
    // It has no values of its own (the forward wrote q, k and v directly): a one-element view of x's buffer, which its
    // backward keeps anyway and never reads through it. Its gradient is the bf16 G that the parts write.
    let joint = Tensor(shape: [1], sharing: x.storage)
    joint.acceptsBF16Gradient = true
    let parts = JointGradientParts()
    Tensor.record(joint, [x, wq, wk, wv], op: "qkvProjections") { joint in
        let g16 = joint.grad!.bf16Data
        // a part whose backward did not run (its output reached no loss) has a zero gradient
        for (column, part) in [(0, wqWidth), (wqWidth, wkWidth), (wqWidth + wkWidth, wvWidth)] where !parts.written.contains(column) {
            gpu.run(gpu.api.nc_to_bf16_rows(gpu.ctx, g16 + 2 * column, Int64(width), nil, 0, Int64(n), Int64(part)), "zero gradient part")
        }
        if x.requiresGrad {
            let (gx, fresh) = x.gradForWrite()
            gpuBF16Product(gpu, gx, g16, Tensor.stackedBF16Weights([wq, wk, wv], on: gpu), m: n, n: c, k: width, beta: fresh ? 0 : 1,
                           "dX of the q, k, v projections (one product)")
        }
        if wq.requiresGrad || wk.requiresGrad || wv.requiresGrad {
            let gw = Storage(count: width * c, on: gpu)  // [dW_q; dW_k; dW_v], then added to each weight's gradient
            let xs = gpuBF16Operand(gpu, x)
            gpuBF16Product(gpu, gw.pointer, g16, xs.pointer, m: width, n: c, k: n, transA: true, "dW of the q, k, v projections (one product)")
            withExtendedLifetime(xs.scratch) {}
            // (a weight whose part reached no loss gets no gradient, as it would from its own product)
            for (w, row) in [(wq, 0), (wk, wqWidth), (wv, wqWidth + wkWidth)] where w.requiresGrad && parts.written.contains(row) {
                gpuAddGrad(gpu, w, gw.pointer + row * c)
            }
        }
    }
    /// G's bf16 buffer, made by the first part's backward to run
    func jointGradient() -> UnsafeMutableRawPointer {
        if joint.grad == nil { joint.grad = Tensor(shape: [n, width], zeroed: false, on: gpu, bf16: true) }
        return joint.grad!.bf16Data
    }
    for (out, rstd, h, column) in [(q, rstdQ, heads, 0), (k, rstdK, kvHeads, wqWidth)] {
        Tensor.record(out, [joint], op: "rotaryProjection") { out in
            let dy = out.grad!
            gpu.run(gpu.api.nc_rotary_norm_backward_bf16_rows(gpu.ctx, jointGradient() + 2 * column, Int64(width), dy.deviceBytes, dy.isBF16 ? 1 : 0,
                                                              out.bf16Data, 1, rstd.gpuData, cos.gpuData, sin.gpuData, Int64(b), Int64(t), Int64(h), Int64(d),
                                                              Int64(offset), gain), "rotary+norm backward into the joint gradient")
            parts.written.insert(column)
        }
    }
    Tensor.record(v, [joint], op: "rotaryProjection") { v in
        let dv = v.grad!
        gpu.run(gpu.api.nc_to_bf16_rows(gpu.ctx, jointGradient() + 2 * (wqWidth + wkWidth), Int64(width), dv.deviceBytes, dv.isBF16 ? 1 : 0, Int64(n),
                                        Int64(wvWidth)), "v's gradient into the joint gradient")
        parts.written.insert(wqWidth + wkWidth)
    }
    return (q, k, v)
}

/// Which column blocks of rotaryProjections' joint gradient its parts' backwards have written.
private final class JointGradientParts { var written: Set<Int> = [] }

/// Rotary embedding followed by RMSNorm over the head dimension and a constant gain (upstream's QK-norm with
/// its 1.2 scale), fused: x is [B, T, H, D]; position t uses row `positionOffset + t` of the tables.
/// Rotation (half-split layout): y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos.
public func rotaryNorm(_ x: Tensor, cos: Tensor, sin: Tensor, gain: Float, positionOffset: Int = 0,
                       rowOffsets: [Int]? = nil) -> Tensor {
    let (b, t, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let half = d / 2
    // each batch row starts at its own position when `rowOffsets` is given (rows decoded at different lengths)
    let offsets = rowOffsets ?? [Int](repeating: positionOffset, count: b)
    precondition(offsets.count == b && cos.shape[1] == half && (offsets.max() ?? 0) + t <= cos.shape[0], "rotary tables too short")
    let rows = b * t * h
    let out = Tensor(shape: x.shape, zeroed: false, on: x.gpu)
    let rstd = Tensor(shape: [rows], zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        precondition(cos.gpu === gpu && sin.gpu === gpu, "rotaryNorm: the rotary tables are not on the input's GPU")
        // one launch for the batch when its rows share their start, else one per row (decoding rows of different lengths)
        let uniform = Set(offsets).count <= 1
        let launches: [(first: Int, rows: Int, offset: Int)] = uniform ? [(0, b, offsets.first ?? 0)] : (0..<b).map { ($0, 1, offsets[$0]) }
        for l in launches {
            let e = l.first * t * h * d
            gpu.run(gpu.api.nc_rotary_norm_forward(gpu.ctx, out.gpuData + e, rstd.gpuData + l.first * t * h, x.gpuData + e, cos.gpuData, sin.gpuData,
                                                   Int64(l.rows), Int64(t), Int64(h), Int64(d), Int64(l.offset), gain), "rotary+norm")
        }
        Tensor.record(out, [x], op: "rotaryNorm") { out in
            let (gx, fresh) = x.gradForWrite()
            for l in launches {
                let e = l.first * t * h * d
                gpu.run(gpu.api.nc_rotary_norm_backward(gpu.ctx, gx + e, out.grad!.gpuData + e, out.gpuData + e, rstd.gpuData + l.first * t * h,
                                                        cos.gpuData, sin.gpuData, Int64(l.rows), Int64(t), Int64(h), Int64(d), Int64(l.offset),
                                                        gain, fresh ? 0 : 1), "rotary+norm backward")
            }
        }
        return out
    }
    let px = x.data, po = out.data, pr = rstd.data, pc = cos.data, ps = sin.data
    let parts = rowParts(rows, width: d)
    Threading.parallelFor(parts.count) { p in
        for r in parts[p] {
            let pos = offsets[r / (t * h)] + (r / h) % t
            pr[r] = nc_rotary_norm_row(px + r * d, po + r * d, pc + pos * half, ps + pos * half, Int32(d), gain)
        }
    }
    Tensor.record(out, [x], op: "rotaryNorm") { out in
        let g = out.grad!.data, o = out.data
        let pr = rstd.data  // captures rstd
        let gx = x.gradData()
        Threading.parallelFor(parts.count) { p in
            for r in parts[p] {
                let pos = offsets[r / (t * h)] + (r / h) % t
                nc_rotary_norm_backward_row(g + r * d, o + r * d, pc + pos * half, ps + pos * half, pr[r], gain, Int32(d), gx + r * d)
            }
        }
    }
    return out
}
