import CKernels
import Foundation

/// Causal self-attention with a sliding window and grouped KV heads, computed in query tiles so the T x T score
/// matrix never exists: each tile of 64 queries meets only the keys its window allows (at most 64 + window),
/// its softmax is exact over that span, and the backward pass recomputes the tile's probabilities from the
/// saved log-sum-exp (the FlashAttention recipe, with BLAS doing the tile products and the C kernels of
/// attention_rows.c the softmax rows).
///
/// q: [B, T, H, D]; k, v: [B, T, Hkv, D] with H a multiple of Hkv. The query at position t attends keys
/// j with t - window <= j <= t (window >= T means plain causal). Output: [B, T, H, D].
public func causalAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, window: Int) -> Tensor {
    let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let hkv = k.shape[2]
    precondition(k.shape == [b, t, hkv, d] && v.shape == k.shape && h % hkv == 0, "attention shapes \(q.shape) \(k.shape) \(v.shape)")
    let group = h / hkv
    let w = min(window, t)
    let scale = 1 / Float(d).squareRoot()
    let tile = 64
    let maxKeys = min(t, tile + w)
    if let gpu = q.gpu { return attentionOnGPU(gpu, q, k, v, window: window) }
    let out = Tensor(shape: q.shape, zeroed: false)
    let lse = Tensor(shape: [b, h, t], zeroed: false)
    let pq = q.data, pk = k.data, pv = v.data, po = out.data, pl = lse.data
    let qStride = h * d, kStride = hkv * d

    Threading.parallelFor(b * hkv) { task in
        let bi = task / hkv, kh = task % hkv
        let scratch = Tensor(shape: [tile * maxKeys], zeroed: false)
        let s = scratch.data
        for hh in (kh * group)..<((kh + 1) * group) {
            var q0 = 0
            while q0 < t {
                let q1 = min(q0 + tile, t), nq = q1 - q0
                let k0 = max(0, q0 - w), nk = q1 - k0
                let qb = pq + (bi * t + q0) * qStride + hh * d
                let kb = pk + (bi * t + k0) * kStride + kh * d
                let vb = pv + (bi * t + k0) * kStride + kh * d
                sgemm(transA: false, transB: true, m: nq, n: nk, k: d, alpha: scale, a: qb, lda: qStride,
                      b: kb, ldb: kStride, c: s, ldc: nk)
                for i in 0..<nq {
                    let qi = q0 + i
                    let lo = max(k0, qi - w) - k0, hi = qi - k0  // inclusive
                    pl[(bi * h + hh) * t + qi] = nc_softmax_window(s + i * nk, Int32(nk), Int32(lo), Int32(hi))
                }
                sgemm(transA: false, transB: false, m: nq, n: d, k: nk, a: s, lda: nk, b: vb, ldb: kStride,
                      c: po + (bi * t + q0) * qStride + hh * d, ldc: qStride)
                q0 = q1
            }
        }
    }

    Tensor.record(out, [q, k, v], op: "attention") { out in
        let pg = out.grad!.data
        let pl = lse.data  // captures the saved log-sum-exp
        let gq = q.gradData(), gk = k.gradData(), gv = v.gradData()
        Threading.parallelFor(b * hkv) { task in
            let bi = task / hkv, kh = task % hkv
            let scratch = Tensor(shape: [2 * tile * maxKeys + tile], zeroed: false)
            let p = scratch.data, dp = scratch.data + tile * maxKeys, rowDot = scratch.data + 2 * tile * maxKeys
            for hh in (kh * group)..<((kh + 1) * group) {
                var q0 = 0
                while q0 < t {
                    let q1 = min(q0 + tile, t), nq = q1 - q0
                    let k0 = max(0, q0 - w), nk = q1 - k0
                    let qOff = (bi * t + q0) * qStride + hh * d
                    let kOff = (bi * t + k0) * kStride + kh * d
                    let qb = pq + qOff, kb = pk + kOff, vb = pv + kOff
                    let ob = po + qOff, gob = pg + qOff
                    sgemm(transA: false, transB: true, m: nq, n: nk, k: d, alpha: scale, a: qb, lda: qStride,
                          b: kb, ldb: kStride, c: p, ldc: nk)
                    for i in 0..<nq {
                        let qi = q0 + i
                        let lo = max(k0, qi - w) - k0, hi = qi - k0
                        nc_softmax_window_recompute(p + i * nk, Int32(nk), Int32(lo), Int32(hi), pl[(bi * h + hh) * t + qi])
                        rowDot[i] = dot(gob + i * qStride, ob + i * qStride, d)
                    }
                    // dV += P^T dO
                    sgemm(transA: true, transB: false, m: nk, n: d, k: nq, a: p, lda: nk, b: gob, ldb: qStride,
                          beta: 1, c: gv + kOff, ldc: kStride)
                    // dP = dO V^T, then dS = P (dP - rowDot) * scale
                    sgemm(transA: false, transB: true, m: nq, n: nk, k: d, a: gob, lda: qStride, b: vb, ldb: kStride,
                          c: dp, ldc: nk)
                    for i in 0..<nq { nc_softmax_backward_row(p + i * nk, dp + i * nk, Int32(nk), rowDot[i], scale) }
                    // dQ += dS K ; dK += dS^T Q
                    sgemm(transA: false, transB: false, m: nq, n: d, k: nk, a: dp, lda: nk, b: kb, ldb: kStride,
                          beta: 1, c: gq + qOff, ldc: qStride)
                    sgemm(transA: true, transB: false, m: nk, n: d, k: nq, a: dp, lda: nk, b: qb, ldb: qStride,
                          beta: 1, c: gk + kOff, ldc: kStride)
                    q0 = q1
                }
            }
        }
    }
    return out
}

/// The device body: attention.cu (exact fp32) or, when the GPU trains in bf16, attention_bf16.cu (cuDNN or the tensor-core
/// kernels) over bf16 q, k and v (rotaryProjections writes them so; float32 ones are rounded here, and again for the
/// backward), its output a bf16 activation (what the bf16 kernels write; c_proj reads it as it is). In the backward the
/// bf16 kernels read a bf16 output gradient as it is (c_proj writes it so), and write bf16 gradients for inputs that
/// take them (`acceptsBF16Gradient`: rotaryProjections' q, k and v, the value-embedding mix) when all three are fresh,
/// as cuDNN makes them: no fp32 copy of dq, dk, dv and no rounding of dO.
func attentionOnGPU(_ gpu: GPU, _ q: Tensor, _ k: Tensor, _ v: Tensor, window: Int) -> Tensor {
    let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let hkv = k.shape[2]
    let heads: Set<Int> = gpu.bf16 ? [64, 128] : [32, 64, 128]
    precondition(heads.contains(d), "the CUDA attention kernels take head dim \(heads.sorted()) \(gpu.bf16 ? "in bf16" : "in fp32"), this model has \(d)")
    let out = Tensor(shape: q.shape, zeroed: false, on: gpu, bf16: gpu.bf16)
    out.acceptsBF16Gradient = gpu.bf16
    let lse = Tensor(shape: [b, h, t], zeroed: false, on: gpu)
    let dims = (Int64(b), Int64(t), Int64(h), Int64(hkv), Int64(d), Int64(window))
    if gpu.bf16 {
        let (q16, k16, v16) = (gpuBF16Operand(gpu, q), gpuBF16Operand(gpu, k), gpuBF16Operand(gpu, v))
        gpu.run(gpu.api.nc_attention_forward_bf16(gpu.ctx, out.bf16Data, lse.gpuData, q16.pointer, k16.pointer, v16.pointer, dims.0, dims.1,
                                                  dims.2, dims.3, dims.4, dims.5), "attention (bf16)")
        withExtendedLifetime((q16.scratch, k16.scratch, v16.scratch)) {}
    } else {
        gpu.run(gpu.api.nc_attention_forward(gpu.ctx, out.gpuData, lse.gpuData, q.gpuData, k.gpuData, v.gpuData, dims.0, dims.1, dims.2, dims.3,
                                             dims.4, dims.5), "attention")
    }
    Tensor.record(out, [q, k, v], op: "attention") { out in
        let delta = Tensor(shape: [b, h, t], zeroed: false, on: gpu)
        if gpu.bf16, [q, k, v].allSatisfy({ $0.isBF16 && $0.acceptsBF16Gradient && $0.grad == nil }) {
            let dout = out.grad!
            let (q16, k16, v16) = (gpuBF16Operand(gpu, q), gpuBF16Operand(gpu, k), gpuBF16Operand(gpu, v))
            gpu.run(gpu.api.nc_attention_backward_bf16(gpu.ctx, q.bf16GradientForWrite(), k.bf16GradientForWrite(), v.bf16GradientForWrite(), 1,
                                                       delta.gpuData, q16.pointer, k16.pointer, v16.pointer, out.bf16Data, dout.deviceBytes,
                                                       dout.isBF16 ? 1 : 0, lse.gpuData, dims.0, dims.1, dims.2, dims.3, dims.4, dims.5, 0),
                    "attention backward (bf16 gradients)")
            return
        }
        // fresh gradients (the usual case: q and k come from rotaryNorm, v from its product) are written, with no zero-fill
        // first; if one already holds a gradient, the fresh ones are zeroed and all three added into
        let (dq, dk, dv) = (q.gradForWrite(), k.gradForWrite(), v.gradForWrite())
        let write = dq.fresh && dk.fresh && dv.fresh
        if !write {
            for (t, g) in [(q, dq), (k, dk), (v, dv)] where g.fresh { gpu.zero(g.0, floats: t.count) }
        }
        if gpu.bf16 {
            let (q16, k16, v16) = (gpuBF16Operand(gpu, q), gpuBF16Operand(gpu, k), gpuBF16Operand(gpu, v))
            let dout = out.grad!
            gpu.run(gpu.api.nc_attention_backward_bf16(gpu.ctx, dq.0, dk.0, dv.0, 0, delta.gpuData, q16.pointer, k16.pointer, v16.pointer,
                                                       out.bf16Data, dout.deviceBytes, dout.isBF16 ? 1 : 0, lse.gpuData, dims.0, dims.1, dims.2,
                                                       dims.3, dims.4, dims.5, write ? 0 : 1), "attention backward (bf16)")
            withExtendedLifetime((q16.scratch, k16.scratch, v16.scratch)) {}
        } else {
            gpu.run(gpu.api.nc_attention_backward(gpu.ctx, dq.0, dk.0, dv.0, delta.gpuData, q.gpuData, k.gpuData, v.gpuData, out.gpuData,
                                                  out.grad!.gpuData, lse.gpuData, dims.0, dims.1, dims.2, dims.3, dims.4, dims.5, write ? 0 : 1),
                    "attention backward")
        }
    }
    return out
}

/// The same attention for inference against a KV cache: each row's new queries (q: [B, T, H, D], row i at
/// positions starts[i] ..< +T) over the keys and values cached for them (already appended), those the window
/// allows. The cache is head-major, [rows, Hkv, capacity, D] per layer, so each head's positions are contiguous
/// and stream; `cacheRows[i]` is the cache row of batch row i. Its elements are float32, or bf16 with `bf16`.
/// `scratch` holds `capacity` floats per thread.
public func cachedAttention(_ q: Tensor, keys kc: UnsafeRawPointer, values vc: UnsafeRawPointer, bf16: Bool,
                            capacity cap: Int, kvHeads hkv: Int, cacheRows: [Int], starts: [Int], window: Int,
                            scratch: UnsafeMutablePointer<Float>) -> Tensor {
    let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let group = h / hkv
    let out = Tensor(shape: q.shape, zeroed: false)
    let scale = 1 / Float(d).squareRoot()
    let elementBytes = bf16 ? 2 : 4
    // contiguous runs of (row, head) pairs per thread: one scratch buffer each, no per-pair dispatch
    let span = min((starts.max() ?? 0) + t, window + 1)
    precondition(span <= cap, "attention span \(span) past the cache's \(cap) positions")
    // a few short rows are cheaper on this thread than sharing (the pool's threads are awake: sharing costs ~1 us)
    let parts = Threading.ranges(b * h, parts: b * h * t * span * d >= 1 << 16 ? Threading.workers : 1)
    Threading.parallelFor(parts.count) { part in
        let scores = scratch + part * cap
        for task in parts[part] {
            let bi = task / h, hh = task % h, kh = hh / group
            let slot = cacheRows[bi]
            for i in 0..<t {
                let p = starts[bi] + i
                let lo = max(0, p - window)
                let offset = ((slot * hkv + kh) * cap + lo) * d * elementBytes
                let (qi, oi) = (q.data + ((bi * t + i) * h + hh) * d, out.data + ((bi * t + i) * h + hh) * d)
                if bf16 {
                    nc_attend_one_bf16(qi, (kc + offset).assumingMemoryBound(to: UInt16.self), (vc + offset).assumingMemoryBound(to: UInt16.self),
                                       Int32(p - lo + 1), Int32(d), scale, scores, oi)
                } else {
                    nc_attend_one(qi, (kc + offset).assumingMemoryBound(to: Float.self), (vc + offset).assumingMemoryBound(to: Float.self),
                                  Int32(p - lo + 1), Int32(d), scale, scores, oi)
                }
            }
        }
    }
    return out
}
