import Foundation

// Small fused gates of nanochat's GPT, each with its gradient: the smear gate, the value-embedding gate and
// the backout subtraction. They live beside the other kernels so that a backend provides every op the model
// calls, and the model itself touches no buffer.

@inline(__always) func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

/// Smear (cheap bigram mixing): for t >= 1, out[t] = x[t] + lambda * sigmoid(gate . x[t][0..<24]) * x[t-1],
/// using the pre-smear x[t-1]. x is [B, T, C], gate [1, 24], lambda [1].
/// Position 0 is unchanged, or, with `previous` ([B, C], inference only: a chunk that continues a cached
/// sequence), mixes in row b's previous pre-smear embedding the same way (a zero row leaves it unchanged).
public func smear(_ x: Tensor, gate: Tensor, lambda: Tensor, previous: Tensor? = nil) -> Tensor {
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    let k = gate.count
    if let gpu = x.gpu { return smearOnGPU(gpu, x, gate: gate, lambda: lambda, previous: previous) }
    let out = Tensor(shape: x.shape, zeroed: false)
    let gates = Tensor(shape: [b * t], zeroed: true)  // sigmoid per position (0 at t = 0)
    let px = x.data, po = out.data, pg = gate.data, ps = gates.data
    let lam = lambda.data[0]
    for bi in 0..<b {
        let row0 = px + bi * t * c
        if let previous {
            let f = lam * sigmoid(dot(pg, row0, k)), prev = previous.data + bi * c, dst = po + bi * t * c
            for j in 0..<c { dst[j] = row0[j] + f * prev[j] }
        } else {
            (po + bi * t * c).update(from: row0, count: c)
        }
        for ti in 1..<max(t, 1) {
            let cur = row0 + ti * c, prev = cur - c, dst = po + (bi * t + ti) * c
            let s = sigmoid(dot(pg, cur, k))
            ps[bi * t + ti] = s
            let f = lam * s
            for j in 0..<c { dst[j] = cur[j] + f * prev[j] }
        }
    }
    if previous != nil {
        precondition(!Tensor.gradEnabled || !(x.requiresGrad || gate.requiresGrad), "smear with a previous embedding is for inference (no gradient)")
        return out
    }
    Tensor.record(out, [x, gate, lambda], op: "smear") { out in
        let g = out.grad!.data
        let ps = gates.data  // captures the saved gate values
        let gx = x.requiresGrad ? x.gradData() : nil
        let gg = gate.requiresGrad ? gate.gradData() : nil
        var dLambda: Float = 0
        for bi in 0..<b {
            for ti in 0..<t {
                let idx = bi * t + ti
                let go = g + idx * c
                if let gx { let d = gx + idx * c; for j in 0..<c { d[j] += go[j] } }
                guard ti > 0 else { continue }
                let cur = px + idx * c, prev = cur - c
                let s = ps[idx]
                let gp = dot(go, prev, c)  // dout . x[t-1]
                dLambda += s * gp
                if let gx {
                    let dprev = gx + (idx - 1) * c
                    let f = lam * s
                    for j in 0..<c { dprev[j] += f * go[j] }
                }
                let da = lam * gp * s * (1 - s)
                if let gg { for j in 0..<k { gg[j] += da * cur[j] } }
                if let gx { let d = gx + idx * c; for j in 0..<k { d[j] += da * pg[j] } }
            }
        }
        if lambda.requiresGrad { lambda.gradData()[0] += dLambda }
    }
    return out
}

/// The smear's device body (gates.cu). A chunk that continues a cached sequence mixes each row's previous embedding
/// into its first position: the kernel over [previous row, chunk] per batch row, whose first output is dropped.
func smearOnGPU(_ gpu: GPU, _ x: Tensor, gate: Tensor, lambda: Tensor, previous: Tensor?) -> Tensor {
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    let k = Int32(gate.count)
    let out = Tensor(shape: x.shape, zeroed: false, on: gpu)
    if let previous {
        precondition(!Tensor.gradEnabled || !(x.requiresGrad || gate.requiresGrad), "smear with a previous embedding is for inference (no gradient)")
        let joined = Tensor(shape: [1, t + 1, c], zeroed: false, on: gpu), mixed = Tensor(shape: [1, t + 1, c], zeroed: false, on: gpu)
        let gates = Tensor(shape: [t + 1], zeroed: false, on: gpu)
        for bi in 0..<b {
            gpu.copy(previous.gpuData + bi * c, to: joined.gpuData, floats: c)
            gpu.copy(x.gpuData + bi * t * c, to: joined.gpuData + c, floats: t * c)
            gpu.run(gpu.api.nc_smear_forward(gpu.ctx, mixed.gpuData, gates.gpuData, joined.gpuData, gate.gpuData, lambda.gpuData, 1,
                                             Int64(t + 1), Int64(c), k), "smear")
            gpu.copy(mixed.gpuData + c, to: out.gpuData + bi * t * c, floats: t * c)
        }
        return out
    }
    let gates = Tensor(shape: [b * t], zeroed: false, on: gpu)
    gpu.run(gpu.api.nc_smear_forward(gpu.ctx, out.gpuData, gates.gpuData, x.gpuData, gate.gpuData, lambda.gpuData, Int64(b), Int64(t),
                                     Int64(c), k), "smear")
    Tensor.record(out, [x, gate, lambda], op: "smear") { out in
        // the kernel writes all three (an unused one is dropped with the graph)
        gpu.run(gpu.api.nc_smear_backward(gpu.ctx, x.gradData(), gate.gradData(), lambda.gradData(), out.grad!.gpuData, x.gpuData, gates.gpuData,
                                          gate.gpuData, lambda.gpuData, Int64(b), Int64(t), Int64(c), k), "smear backward")
    }
    return out
}

/// Value residual: v[n, h, :] += 3 * sigmoid(gate[h] . u[n, 0..<12]) * ve[n, h, :].
/// v and ve are [N, Hkv * D] (any leading shape), u is [N, C], gate [Hkv, 12]. `inPlace`: on a GPU the result is
/// written over v's buffer (`overwriting`: v's values must be read by nothing after this op; the backward here
/// reads ve, u and the gate, not v).
public func valueEmbeddingMix(_ v: Tensor, _ ve: Tensor, u: Tensor, gate: Tensor, kvHeads: Int, inPlace: Bool = false) -> Tensor {
    let width = v.shape.last!
    let n = v.count / width
    let d = width / kvHeads
    let c = u.shape.last!
    let k = gate.shape[1]
    let sig = Tensor(shape: [n * kvHeads], zeroed: false, on: v.gpu)
    if let gpu = v.gpu {
        // v and the output in v's precision (bf16 from the bf16 path's projections), u (the normed input) in its own
        let out = inPlace ? overwriting(v) : Tensor(shape: v.shape, zeroed: false, on: gpu, bf16: v.isBF16)
        out.acceptsBF16Gradient = out.isBF16  // attention's gradient of v, read in bf16 as cuDNN makes it
        gpu.run(gpu.api.nc_value_embedding_forward(gpu.ctx, out.deviceBytes, sig.gpuData, v.deviceBytes, v.isBF16 ? 1 : 0, ve.gpuData,
                                                   u.deviceBytes, u.isBF16 ? 1 : 0, gate.gpuData, Int64(n), Int64(kvHeads), Int64(d), Int64(c),
                                                   Int32(k)), "value-embedding gate")
        Tensor.record(out, [v, ve, u, gate], op: "valueEmbeddingMix") { out in
            let grad = { (t: Tensor) in t.requiresGrad ? t.gradData() : nil }
            let dout = out.grad!
            gpu.run(gpu.api.nc_value_embedding_backward(gpu.ctx, grad(v), grad(ve), grad(u), grad(gate), dout.deviceBytes, dout.isBF16 ? 1 : 0, ve.gpuData,
                                                        u.deviceBytes, u.isBF16 ? 1 : 0, gate.gpuData, sig.gpuData, Int64(n), Int64(kvHeads),
                                                        Int64(d), Int64(c), Int32(k)), "value-embedding gate backward")
        }
        return out
    }
    let out = Tensor(shape: v.shape, zeroed: false)
    let pv = v.data, pe = ve.data, pu = u.data, pg = gate.data, po = out.data, ps = sig.data
    for i in 0..<n {
        for h in 0..<kvHeads {
            let s = sigmoid(dot(pg + h * k, pu + i * c, k))
            ps[i * kvHeads + h] = s
            let g = 3 * s
            let off = i * width + h * d
            for j in 0..<d { po[off + j] = pv[off + j] + g * pe[off + j] }
        }
    }
    Tensor.record(out, [v, ve, u, gate], op: "valueEmbeddingMix") { out in
        let go = out.grad!.data
        let ps = sig.data  // captures the saved gate values
        let gv = v.requiresGrad ? v.gradData() : nil
        let ge = ve.requiresGrad ? ve.gradData() : nil
        let gu = u.requiresGrad ? u.gradData() : nil
        let gg = gate.requiresGrad ? gate.gradData() : nil
        for i in 0..<n {
            for h in 0..<kvHeads {
                let off = i * width + h * d
                let s = ps[i * kvHeads + h]
                if let gv { for j in 0..<d { gv[off + j] += go[off + j] } }
                if let ge { let g3 = 3 * s; for j in 0..<d { ge[off + j] += g3 * go[off + j] } }
                let da = dot(go + off, pe + off, d) * 3 * s * (1 - s)
                if let gg { for j in 0..<k { gg[h * k + j] += da * pu[i * c + j] } }
                if let gu { for j in 0..<k { gu[i * c + j] += da * pg[h * k + j] } }
            }
        }
    }
    return out
}

/// Backout: x - lambda * saved (lambda a [1] parameter).
public func subtractScaled(_ x: Tensor, _ lambda: Tensor, _ saved: Tensor) -> Tensor {
    let n = x.count
    let out = Tensor(shape: x.shape, zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        gpu.run(gpu.api.nc_backout_forward(gpu.ctx, out.gpuData, x.gpuData, saved.gpuData, lambda.gpuData, Int64(n)), "backout")
        Tensor.record(out, [x, lambda, saved], op: "backout") { out in
            let g = out.grad!.gpuData
            if x.requiresGrad { gpuAddGrad(gpu, x, g) }
            if saved.requiresGrad || lambda.requiresGrad {
                gpu.run(gpu.api.nc_backout_backward(gpu.ctx, saved.requiresGrad ? saved.gradData() : nil, lambda.requiresGrad ? lambda.gradData() : nil,
                                                    g, saved.gpuData, lambda.gpuData, Int64(n)), "backout backward")
            }
        }
        return out
    }
    let lam = lambda.data[0]
    let px = x.data, ps = saved.data, po = out.data
    for i in 0..<n { po[i] = px[i] - lam * ps[i] }
    Tensor.record(out, [x, lambda, saved], op: "backout") { out in
        let g = out.grad!.data
        if x.requiresGrad { let gx = x.gradData(); for i in 0..<n { gx[i] += g[i] } }
        if saved.requiresGrad { let gs = saved.gradData(); for i in 0..<n { gs[i] -= lam * g[i] } }
        if lambda.requiresGrad { lambda.gradData()[0] -= dot(g, ps, n) }
    }
    return out
}
