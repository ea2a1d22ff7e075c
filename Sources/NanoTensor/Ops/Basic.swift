/// Element-wise ops and matrix products with their gradients.

/// a + b (same shape).
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.count == b.count, "add: \(a.shape) vs \(b.shape)")
    let out = Tensor(shape: a.shape, zeroed: false)
    let n = a.count
    let pa = a.data, pb = b.data, po = out.data
    for i in 0..<n { po[i] = pa[i] + pb[i] }
    Tensor.record(out, [a, b], op: "add") { out in
        let g = out.grad!.data
        if a.requiresGrad { let ga = a.gradData(); for i in 0..<n { ga[i] += g[i] } }
        if b.requiresGrad { let gb = b.gradData(); for i in 0..<n { gb[i] += g[i] } }
    }
    return out
}

/// s * a for a constant s.
public func scale(_ a: Tensor, _ s: Float) -> Tensor {
    let out = Tensor(shape: a.shape, zeroed: false)
    let n = a.count
    let pa = a.data, po = out.data
    for i in 0..<n { po[i] = pa[i] * s }
    Tensor.record(out, [a], op: "scale") { out in
        let g = out.grad!.data, ga = a.gradData()
        for i in 0..<n { ga[i] += g[i] * s }
    }
    return out
}

/// alpha[ia] * a + beta[ib] * b, where alpha and beta are parameter vectors (learned scalars, one per layer).
/// With `b == nil` it is alpha[ia] * a.
public func scalarMix(_ alpha: Tensor, _ ia: Int, _ a: Tensor, _ beta: Tensor? = nil, _ ib: Int = 0, _ b: Tensor? = nil) -> Tensor {
    let out = Tensor(shape: a.shape, zeroed: false)
    let n = a.count
    let sa = alpha.data[ia]
    let pa = a.data, po = out.data
    if let b, let beta {
        let sb = beta.data[ib]
        let pb = b.data
        for i in 0..<n { po[i] = sa * pa[i] + sb * pb[i] }
    } else {
        for i in 0..<n { po[i] = sa * pa[i] }
    }
    var inputs = [alpha, a]
    if let b, let beta { inputs += [beta, b] }
    Tensor.record(out, inputs, op: "scalarMix") { out in
        let g = out.grad!.data
        if a.requiresGrad { let ga = a.gradData(); for i in 0..<n { ga[i] += sa * g[i] } }
        if alpha.requiresGrad { alpha.gradData()[ia] += dot(g, pa, n) }
        if let b, let beta {
            let sb = beta.data[ib]
            if b.requiresGrad { let gb = b.gradData(); for i in 0..<n { gb[i] += sb * g[i] } }
            if beta.requiresGrad { beta.gradData()[ib] += dot(g, b.data, n) }
        }
    }
    return out
}

/// Sum of x[i] * y[i], accumulated in double precision across 8 float lanes.
@inline(__always)
public func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>()
    var i = 0
    var total: Double = 0
    while i + 8 <= n {
        acc += UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            * UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
        i += 8
        if i & 1023 == 0 { total += Double(acc.sum()); acc = SIMD8<Float>() }
    }
    total += Double(acc.sum())
    while i < n { total += Double(x[i] * y[i]); i += 1 }
    return Float(total)
}

/// y = x W^T for x [..., in] and W [out, in] (PyTorch's Linear without bias), through BLAS.
public func linear(_ x: Tensor, _ w: Tensor) -> Tensor {
    let inF = w.shape[1], outF = w.shape[0]
    precondition(x.shape.last == inF, "linear: input \(x.shape) vs weight \(w.shape)")
    let n = x.count / inF
    let out = Tensor(shape: Array(x.shape.dropLast()) + [outF], zeroed: false)
    if w.quantized != nil || !Tensor.gradEnabled {  // inference: float32 or quantized weights, nothing to record
        precondition(w.quantized == nil || !Tensor.gradEnabled || !x.requiresGrad,
                     "linear: quantized weights are for inference (no gradient)")
        weightProduct(m: n, n: outF, k: inF, a: x.data, lda: inF, w: w, c: out.data, ldc: outF)
        return out
    }
    sgemmWeights(m: n, n: outF, k: inF, a: x.data, lda: inF, b: w.data, ldb: inF, c: out.data, ldc: outF)
    Tensor.record(out, [x, w], op: "linear") { out in
        let g = out.grad!.data
        if x.requiresGrad {
            let (gx, fresh) = x.gradForWrite()
            sgemm(transA: false, transB: false, m: n, n: inF, k: outF, a: g, lda: outF, b: w.data, ldb: inF,
                  beta: fresh ? 0 : 1, c: gx, ldc: inF)
        }
        if w.requiresGrad {
            let (gw, fresh) = w.gradForWrite()
            sgemm(transA: true, transB: false, m: outF, n: inF, k: n, a: g, lda: outF, b: x.data, ldb: inF,
                  beta: fresh ? 0 : 1, c: gw, ldc: inF)
        }
    }
    return out
}

/// relu(x)^2 (the MLP's activation).
public func reluSquared(_ x: Tensor) -> Tensor {
    let out = Tensor(shape: x.shape, zeroed: false)
    let n = x.count
    let px = x.data, po = out.data
    for i in 0..<n { let r = max(px[i], 0); po[i] = r * r }
    Tensor.record(out, [x], op: "reluSquared") { out in
        let g = out.grad!.data
        let (gx, fresh) = x.gradForWrite()
        if fresh { for i in 0..<n { gx[i] = 2 * max(px[i], 0) * g[i] } }
        else { for i in 0..<n { gx[i] += 2 * max(px[i], 0) * g[i] } }
    }
    return out
}

/// Rows of `table` [V, C] picked by `ids` (N of them): [N, C]. The gradient scatters back into the rows.
public func embedding(_ table: Tensor, _ ids: [Int32], shape: [Int]? = nil) -> Tensor {
    let c = table.shape[1], v = table.shape[0]
    let n = ids.count
    let out = Tensor(shape: shape.map { $0 + [c] } ?? [n, c], zeroed: false)
    let pt = table.data, po = out.data
    for (i, id) in ids.enumerated() {
        precondition(id >= 0 && Int(id) < v, "token id \(id) outside the embedding table of \(v) rows")
        (po + i * c).update(from: pt + Int(id) * c, count: c)
    }
    Tensor.record(out, [table], op: "embedding") { out in
        let g = out.grad!.data, gt = table.gradData()
        for (i, id) in ids.enumerated() {
            let dst = gt + Int(id) * c, src = g + i * c
            for j in 0..<c { dst[j] += src[j] }
        }
    }
    return out
}

/// The last position of each row: [B, T, C] -> [B, C] (inference: no gradient).
public func lastPosition(_ x: Tensor) -> Tensor {
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    precondition(!Tensor.gradEnabled || !x.requiresGrad, "lastPosition is for inference (no gradient)")
    let out = Tensor(shape: [b, c], zeroed: false)
    for bi in 0..<b { (out.data + bi * c).update(from: x.data + (bi * t + t - 1) * c, count: c) }
    return out
}
