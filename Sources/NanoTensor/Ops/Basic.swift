/// Element-wise ops and matrix products with their gradients. Each op has its CPU body and, for tensors on a GPU,
/// its device body: the same arithmetic as calls into the CUDA library (nanochat_cuda.h), recorded on the same tape.

/// y (+)= a * x on the GPU (`accumulate`: y += a x, else y = a x): the sums and gradient accumulations of the ops.
@inline(__always)
func gpuAxpy(_ gpu: GPU, _ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, _ n: Int, accumulate: Bool = true,
             scale: UnsafePointer<Float>? = nil) {
    gpu.run(gpu.api.nc_axpby(gpu.ctx, y, x, a, scale, accumulate ? 1 : 0, Int64(n)), "axpby")
}

/// t's gradient += a * g on the GPU (times `scale[0]` when given): written over a fresh gradient buffer rather than
/// added to a zero-filled one.
@inline(__always)
func gpuAddGrad(_ gpu: GPU, _ t: Tensor, _ g: UnsafePointer<Float>, _ a: Float = 1, scale: UnsafePointer<Float>? = nil) {
    let (gt, fresh) = t.gradForWrite()
    gpuAxpy(gpu, gt, g, a, t.count, accumulate: !fresh, scale: scale)
}

/// The residual's gradient in the backward of `out` = r + branch: r's gradient += out's. When r has none yet it takes
/// out's gradient buffer itself instead of a copy (out's backward is the last to read that buffer: `Tensor.backward`
/// drops out's gradient once it has run), so the stream's gradient passes each branch without a pass over it. Call it
/// first in out's backward, and only with an r that is none of the branch's own inputs (whose gradients the rest of the
/// backward writes while it reads out's).
func passResidualGradient(_ out: Tensor, to r: Tensor) {
    guard r.requiresGrad else { return }
    let g = out.grad!
    precondition(g.count == r.count, "passResidualGradient: gradient of \(g.shape) for \(r.shape)")
    if r.grad == nil {
        r.grad = Tensor(shape: r.shape, sharing: g.storage)
    } else if let gpu = r.gpu {
        gpuAxpy(gpu, r.grad!.gpuData, g.gpuData, 1, r.count)
    } else {
        let gr = r.grad!.data, pg = g.data
        for i in 0..<r.count { gr[i] += pg[i] }
    }
}

/// c[m, n] = a[m, k] op(W) + beta c on the GPU for a weight W ([n, k] with `transB`, else [k, n]). In bf16 mode the
/// product reads W's bf16 copy (made once, refreshed by the optimizer step) and rounds only `a` (read as it is when
/// `aIsBF16`: a bf16 activation).
@inline(__always)
func gpuWeightProduct(_ gpu: GPU, _ c: UnsafeMutablePointer<Float>, _ a: UnsafeRawPointer, aIsBF16: Bool = false, _ w: Tensor, m: Int, n: Int,
                      k: Int, transB: Bool, beta: Float = 0) {
    guard gpu.bf16 else {
        precondition(!aIsBF16, "a bf16 activation on a GPU in fp32 mode")
        return gpu.matmul(c, a.assumingMemoryBound(to: Float.self), w.gpuData, m: m, n: n, k: k, transB: transB, beta: beta)
    }
    gpu.run(gpu.api.nc_matmul_mixed(gpu.ctx, c, a, aIsBF16 ? 1 : 0, w.bf16Weights(on: gpu), 1, Int64(m), Int64(n), Int64(k), 0,
                                    transB ? 1 : 0, 1, beta),
            "matmul \(m)x\(n)x\(k) with \(w.name)'s bf16 copy")
}

/// `count` floats at `p` rounded to bf16 once, into a buffer of the caching allocator that lives as long as the returned
/// storage: for a value that several bf16 products read (a gradient that both the input's and the weight's product
/// read, one input of three projections), instead of each product rounding it again.
func gpuRoundedBF16(_ gpu: GPU, _ p: UnsafePointer<Float>, count: Int) -> Storage {
    let s = Storage(count: (count + 1) / 2, on: gpu)
    gpu.run(gpu.api.nc_to_bf16(gpu.ctx, s.pointer, p, Int64(count)), "rounding \(count) floats to bf16")
    return s
}

/// x as a bf16 product operand: its own values when it is a bf16 activation, else x rounded into a scratch (returned
/// beside the address, to be kept while the products that read it are queued).
func gpuBF16Operand(_ gpu: GPU, _ x: Tensor) -> (pointer: UnsafeRawPointer, scratch: Storage?) {
    if x.isBF16 { return (UnsafeRawPointer(x.bf16Data), nil) }
    let s = gpuRoundedBF16(gpu, x.gpuData, count: x.count)
    return (UnsafeRawPointer(s.pointer), s)
}

/// The bf16 product c = a op(b) (+ beta c) with a in bf16 and b in bf16 (`bIsBF16`) or fp32 (rounded by the call).
@inline(__always)
func gpuBF16Product(_ gpu: GPU, _ c: UnsafeMutablePointer<Float>, _ a: UnsafeRawPointer, _ b: UnsafeRawPointer, bIsBF16: Bool = true,
                    m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false, beta: Float = 0, _ what: @autoclosure () -> String) {
    gpu.run(gpu.api.nc_matmul_mixed(gpu.ctx, c, a, 1, b, bIsBF16 ? 1 : 0, Int64(m), Int64(n), Int64(k), transA ? 1 : 0, transB ? 1 : 0, 1, beta),
            what())
}

/// One input's bf16 rounding shared by the backward of the products that read it (`linear(x, ws)`): made by the
/// first of them to run, dropped after the last, so it exists only while they run (none for a bf16 activation: its
/// own values).
final class SharedRounding {
    private let x: Tensor
    private var usesLeft: Int
    private var copy: Storage?
    init(_ x: Tensor, uses: Int) { self.x = x; usesLeft = uses }
    /// The rounded input for one use; `done()` after the product.
    func take(_ gpu: GPU) -> UnsafeRawPointer {
        if x.isBF16 { return UnsafeRawPointer(x.bf16Data) }
        if copy == nil { copy = gpuRoundedBF16(gpu, x.gpuData, count: x.count) }
        return UnsafeRawPointer(copy!.pointer)
    }
    func done() {
        usesLeft -= 1
        if usesLeft == 0 { copy = nil }
    }
}

/// The output of a residual branch's last product on the GPU: a copy of the residual stream `r` (the product then adds
/// to it), or, with `inPlace`, `r`'s own buffer: the caller promises that `r`'s values are read by nothing after this op,
/// forward or backward (the transformer's stream: its mix's backward reads the mix's inputs, the norms' backwards their
/// outputs), so the stream costs one buffer per layer instead of three and no copy.
func gpuResidualOutput(_ gpu: GPU, _ r: Tensor, inPlace: Bool) -> Tensor {
    if inPlace { return overwriting(r) }
    let out = Tensor(shape: r.shape, zeroed: false, on: gpu)
    gpu.copy(r.gpuData, to: out.gpuData, floats: out.count)
    return out
}

/// An op's output written over `r`'s buffer: `r` must be another op's output whose values nothing reads after this op,
/// forward or backward (never a parameter).
func overwriting(_ r: Tensor) -> Tensor {
    precondition(r.backwardFn != nil || !r.requiresGrad, "an in-place op needs another op's output, not a parameter (\(r.name))")
    return Tensor(shape: r.shape, sharing: r.storage, bf16: r.isBF16)
}

/// a + b (same shape).
public func add(_ a: Tensor, _ b: Tensor) -> Tensor {
    precondition(a.count == b.count, "add: \(a.shape) vs \(b.shape)")
    let out = Tensor(shape: a.shape, zeroed: false, on: a.gpu)
    let n = a.count
    if let gpu = a.gpu {
        gpu.copy(a.gpuData, to: out.gpuData, floats: n)
        gpuAxpy(gpu, out.gpuData, b.gpuData, 1, n)
        Tensor.record(out, [a, b], op: "add") { out in
            if a.requiresGrad { gpuAddGrad(gpu, a, out.grad!.gpuData) }
            if b.requiresGrad { gpuAddGrad(gpu, b, out.grad!.gpuData) }
        }
        return out
    }
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
    let out = Tensor(shape: a.shape, zeroed: false, on: a.gpu)
    let n = a.count
    if let gpu = a.gpu {
        gpuAxpy(gpu, out.gpuData, a.gpuData, s, n, accumulate: false)
        Tensor.record(out, [a], op: "scale") { out in gpuAddGrad(gpu, a, out.grad!.gpuData, s) }
        return out
    }
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
    let out = Tensor(shape: a.shape, zeroed: false, on: a.gpu)
    let n = a.count
    if let gpu = a.gpu {
        precondition(b != nil, "scalarMix on the GPU mixes two tensors")
        // the lambdas stay on the device: the kernel reads alpha[ia] and beta[ib] there
        gpu.run(gpu.api.nc_scalar_mix_forward(gpu.ctx, out.gpuData, a.gpuData, b?.gpuData, alpha.gpuData, Int64(ia), beta?.gpuData,
                                              Int64(ib), Int64(n)), "scalar mix")
        recordScalarMixGPU(gpu, out, alpha, ia, a, beta!, ib, b!)
        return out
    }
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

/// The device backward of `out` = alpha[ia] a + beta[ib] b.
func recordScalarMixGPU(_ gpu: GPU, _ out: Tensor, _ alpha: Tensor, _ ia: Int, _ a: Tensor, _ beta: Tensor, _ ib: Int, _ b: Tensor) {
    let n = a.count
    Tensor.record(out, [alpha, a, beta, b], op: "scalarMix") { out in
        let grad = { (t: Tensor) in t.requiresGrad ? t.gradData() : nil }
        // a's and b's gradients written when fresh (the stream's usually is: no zero-fill and no read), else added
        let (ga, gb) = (a.requiresGrad ? a.gradForWrite() : nil, b.requiresGrad ? b.gradForWrite() : nil)
        gpu.run(gpu.api.nc_scalar_mix_backward(gpu.ctx, ga?.0, gb?.0, grad(alpha), grad(beta), out.grad!.gpuData, a.gpuData,
                                               b.gpuData, alpha.gpuData, Int64(ia), beta.gpuData, Int64(ib), Int64(n),
                                               ga?.fresh == false ? 1 : 0, gb?.fresh == false ? 1 : 0),
                "scalar mix backward")
    }
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

/// r + x W^T: a residual branch's last product added to the residual stream `r` in the product itself. On a GPU the
/// product's C input is a copy of `r` (beta 1), so the sum costs no separate pass over the stream; on the CPU `r` is
/// added to the product's output in place. Either way the arithmetic of `add(r, linear(x, w))` (the product rounded
/// to float32, then added once), without the branch's output as a second tensor that the tape keeps until the
/// backward: two activations of [B, T, C] fewer per layer.
/// `inPlace`: on a GPU the sum is written over `r`'s buffer (`gpuResidualOutput`).
public func linear(_ x: Tensor, _ w: Tensor, residual r: Tensor, inPlace: Bool = false) -> Tensor {
    let inF = w.shape[1], outF = w.shape[0]
    precondition(x.shape.last == inF && r.count == x.count / inF * outF, "linear: input \(x.shape), weight \(w.shape), residual \(r.shape)")
    let n = x.count / inF
    guard let gpu = x.gpu else {
        let out = Tensor(shape: r.shape, zeroed: false)
        let pr = r.data, po = out.data, count = out.count
        if w.quantized != nil || !Tensor.gradEnabled {
            weightProduct(m: n, n: outF, k: inF, a: x.data, lda: inF, w: w, c: po, ldc: outF)
        } else {
            sgemmWeights(m: n, n: outF, k: inF, a: x.data, lda: inF, b: w.data, ldb: inF, c: po, ldc: outF)
        }
        for i in 0..<count { po[i] = pr[i] + po[i] }
        guard Tensor.gradEnabled else { return out }
        Tensor.record(out, [r, x, w], op: "linear+residual") { out in
            let g = out.grad!.data
            if r !== x { passResidualGradient(out, to: r) } else if r.requiresGrad { cpuAddGrad(r, g) }
            linearBackwardCPU(x, w, g, rows: n)
        }
        return out
    }
    precondition(w.gpu === gpu && r.gpu === gpu, "linear: the input is on the GPU, the weight \(w.name) or the residual is not")
    let out = gpuResidualOutput(gpu, r, inPlace: inPlace)
    gpuWeightProduct(gpu, out.gpuData, x.deviceBytes, aIsBF16: x.isBF16, w, m: n, n: outF, k: inF, transB: true, beta: 1)
    Tensor.record(out, [r, x, w], op: "linear+residual") { out in
        let g = out.grad!.gpuData
        if r !== x { passResidualGradient(out, to: r) } else if r.requiresGrad { gpuAddGrad(gpu, r, g) }
        linearBackwardGPU(gpu, x, w, g, rows: n)
    }
    return out
}

/// x W^T for each of `ws` (one input, several projections). The same as `ws.map { linear(x, $0) }`; on a GPU in bf16 mode
/// x is rounded to bf16 once for all the forward products (read as it is when it is a bf16 activation), and once for
/// all their weights' gradients in the backward (made by the first, dropped after the last: not kept from the forward
/// to the backward).
public func linear(_ x: Tensor, _ ws: [Tensor]) -> [Tensor] {
    guard let gpu = x.gpu, gpu.bf16 else { return ws.map { linear(x, $0) } }
    let inF = x.shape.last!, n = x.count / inF
    let x16 = gpuBF16Operand(gpu, x)
    let shared = SharedRounding(x, uses: ws.count)
    defer { withExtendedLifetime(x16.scratch) {} }
    return ws.map { w in
        precondition(w.shape[1] == inF && w.gpu === gpu, "linear: input \(x.shape) vs weight \(w.shape) (on the input's GPU)")
        let out = Tensor(shape: Array(x.shape.dropLast()) + [w.shape[0]], zeroed: false, on: gpu)
        gpuBF16Product(gpu, out.gpuData, x16.pointer, w.bf16Weights(on: gpu), m: n, n: w.shape[0], k: inF, transB: true,
                       "\(w.name) with a shared bf16 input")
        Tensor.record(out, [x, w], op: "linear") { out in linearBackwardGPU(gpu, x, w, out.grad!.gpuData, rows: n, shared: shared) }
        return out
    }
}

/// y = x W^T for x [..., in] and W [out, in] (PyTorch's Linear without bias), through BLAS.
public func linear(_ x: Tensor, _ w: Tensor) -> Tensor {
    let inF = w.shape[1], outF = w.shape[0]
    precondition(x.shape.last == inF, "linear: input \(x.shape) vs weight \(w.shape)")
    let n = x.count / inF
    let out = Tensor(shape: Array(x.shape.dropLast()) + [outF], zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        precondition(w.gpu === gpu, "linear: the input is on the GPU, the weight \(w.name) is not (move the model with useDevice)")
        gpuWeightProduct(gpu, out.gpuData, x.deviceBytes, aIsBF16: x.isBF16, w, m: n, n: outF, k: inF, transB: true)
        Tensor.record(out, [x, w], op: "linear") { out in linearBackwardGPU(gpu, x, w, out.grad!.gpuData, rows: n) }
        return out
    }
    if w.quantized != nil || !Tensor.gradEnabled {  // inference: float32 or quantized weights, nothing to record
        precondition(w.quantized == nil || !Tensor.gradEnabled || !x.requiresGrad,
                     "linear: quantized weights are for inference (no gradient)")
        weightProduct(m: n, n: outF, k: inF, a: x.data, lda: inF, w: w, c: out.data, ldc: outF)
        return out
    }
    sgemmWeights(m: n, n: outF, k: inF, a: x.data, lda: inF, b: w.data, ldb: inF, c: out.data, ldc: outF)
    Tensor.record(out, [x, w], op: "linear") { out in linearBackwardCPU(x, w, out.grad!.data, rows: n) }
    return out
}

/// x W^T's gradients on the GPU from the output's gradient `g` [rows, out]: x's (g W, through W's bf16 copy in bf16
/// mode) and W's (g^T x), each written or added to what is there. In bf16 mode g is rounded once for both products,
/// and x comes rounded from `shared` when several products share it (else the product rounds it; a bf16 x is read as it is).
func linearBackwardGPU(_ gpu: GPU, _ x: Tensor, _ w: Tensor, _ g: UnsafePointer<Float>, rows n: Int, shared: SharedRounding? = nil) {
    let inF = w.shape[1], outF = w.shape[0]
    if gpu.bf16 {
        let g16 = gpuRoundedBF16(gpu, g, count: n * outF)
        if x.requiresGrad && x.grad == nil && x.acceptsBF16Gradient {
            // x's gradient written in bf16 for a backward that reads it so (attention's output: cuDNN's dO)
            gpu.run(gpu.api.nc_matmul_bf16_out(gpu.ctx, x.bf16GradientForWrite(), g16.pointer, 1, w.bf16Weights(on: gpu), 1, Int64(n), Int64(inF),
                                               Int64(outF), 0, 0), "dX of \(w.name) in bf16")
        } else if x.requiresGrad {
            let (gx, fresh) = x.gradForWrite()
            gpuBF16Product(gpu, gx, g16.pointer, w.bf16Weights(on: gpu), m: n, n: inF, k: outF, beta: fresh ? 0 : 1, "dX of \(w.name)")
        }
        if w.requiresGrad {
            let (gw, fresh) = w.gradForWrite()
            gpuBF16Product(gpu, gw, g16.pointer, shared?.take(gpu) ?? UnsafeRawPointer(x.deviceBytes), bIsBF16: shared != nil || x.isBF16,
                           m: outF, n: inF, k: n, transA: true, beta: fresh ? 0 : 1, "dW of \(w.name)")
        }
        shared?.done()
        return
    }
    if x.requiresGrad {
        let (gx, fresh) = x.gradForWrite()
        gpuWeightProduct(gpu, gx, g, w, m: n, n: inF, k: outF, transB: false, beta: fresh ? 0 : 1)
    }
    if w.requiresGrad {
        let (gw, fresh) = w.gradForWrite()
        gpu.matmul(gw, g, x.gpuData, m: outF, n: inF, k: n, transA: true, beta: fresh ? 0 : 1)
    }
}

/// t's gradient += g on the CPU (a copy into a fresh gradient buffer).
private func cpuAddGrad(_ t: Tensor, _ g: UnsafePointer<Float>) {
    let (gt, fresh) = t.gradForWrite()
    if fresh { gt.update(from: g, count: t.count) } else { for i in 0..<t.count { gt[i] += g[i] } }
}

/// x W^T's gradients on the CPU from the output's gradient `g` [rows, out]: x's (g W) and W's (g^T x), each written
/// or added to what is there.
private func linearBackwardCPU(_ x: Tensor, _ w: Tensor, _ g: UnsafePointer<Float>, rows n: Int) {
    let inF = w.shape[1], outF = w.shape[0]
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

/// r + relu(h)^2 W^T: the MLP's second half (activation, c_proj, residual add) as one op that keeps only `h` for
/// the backward. relu(h)^2, four times the width of the stream, is made in a scratch buffer for the product and made
/// again in the backward for W's gradient, instead of living from the forward to the backward: one elementwise pass
/// more per layer, and 4C floats per token and layer less memory (a quarter of a layer's activations). The same
/// arithmetic as `linear(reluSquared(h), w, residual: r)`.
public func reluSquaredLinear(_ h: Tensor, _ w: Tensor, residual r: Tensor, inPlace: Bool = false) -> Tensor {
    let inF = w.shape[1], outF = w.shape[0]
    precondition(h.shape.last == inF && r.count == h.count / inF * outF, "reluSquaredLinear: input \(h.shape), weight \(w.shape), residual \(r.shape)")
    guard Tensor.gradEnabled && (h.requiresGrad || w.requiresGrad || r.requiresGrad) else {
        return linear(reluSquared(h), w, residual: r, inPlace: inPlace)  // inference: nothing to keep
    }
    let n = h.count / inF, count = h.count
    if let gpu = h.gpu {
        precondition(w.gpu === gpu && r.gpu === gpu, "reluSquaredLinear: the input is on the GPU, the weight \(w.name) or the residual is not")
        let out = gpuResidualOutput(gpu, r, inPlace: inPlace)
        do {
            let a = Tensor(shape: h.shape, zeroed: false, on: gpu)  // relu(h)^2, back to the pool after the product
            gpu.run(gpu.api.nc_relu2_forward(gpu.ctx, a.gpuData, h.gpuData, Int64(count)), "relu2")
            gpuWeightProduct(gpu, out.gpuData, a.gpuData, w, m: n, n: outF, k: inF, transB: true, beta: 1)
        }
        Tensor.record(out, [r, h, w], op: "reluSquaredLinear") { out in
            let g = out.grad!.gpuData
            if r !== h { passResidualGradient(out, to: r) } else if r.requiresGrad { gpuAddGrad(gpu, r, g) }
            // (the model's MLP in bf16 mode is reluSquaredMLP; here bf16 products round their fp32 operands per call)
            if w.requiresGrad {
                let a = Tensor(shape: h.shape, zeroed: false, on: gpu)
                gpu.run(gpu.api.nc_relu2_forward(gpu.ctx, a.gpuData, h.gpuData, Int64(count)), "relu2 (again, for dW)")
                let (gw, fresh) = w.gradForWrite()
                gpu.matmul(gw, g, a.gpuData, m: outF, n: inF, k: n, transA: true, beta: fresh ? 0 : 1)
            }
            if h.requiresGrad {
                let da = Tensor(shape: h.shape, zeroed: false, on: gpu)
                gpuWeightProduct(gpu, da.gpuData, g, w, m: n, n: inF, k: outF, transB: false)
                let (gh, fresh) = h.gradForWrite()
                gpu.run(gpu.api.nc_relu2_backward(gpu.ctx, gh, da.gpuData, h.gpuData, Int64(count), fresh ? 0 : 1), "relu2 backward")
            }
        }
        return out
    }
    let out = Tensor(shape: r.shape, zeroed: false)
    let ph = h.data, pr = r.data, po = out.data
    do {
        let a = Tensor(shape: h.shape, zeroed: false)
        let pa = a.data
        for i in 0..<count { let v = max(ph[i], 0); pa[i] = v * v }
        sgemmWeights(m: n, n: outF, k: inF, a: pa, lda: inF, b: w.data, ldb: inF, c: po, ldc: outF)
        for i in 0..<out.count { po[i] = pr[i] + po[i] }
    }
    Tensor.record(out, [r, h, w], op: "reluSquaredLinear") { out in
        let g = out.grad!.data
        if r !== h { passResidualGradient(out, to: r) } else if r.requiresGrad { cpuAddGrad(r, g) }
        if w.requiresGrad {
            let a = Tensor(shape: h.shape, zeroed: false)
            let pa = a.data
            for i in 0..<count { let v = max(ph[i], 0); pa[i] = v * v }
            let (gw, fresh) = w.gradForWrite()
            sgemm(transA: true, transB: false, m: outF, n: inF, k: n, a: g, lda: outF, b: pa, ldb: inF, beta: fresh ? 0 : 1, c: gw, ldc: inF)
        }
        if h.requiresGrad {
            let da = Tensor(shape: h.shape, zeroed: false)
            let pd = da.data
            sgemm(transA: false, transB: false, m: n, n: inF, k: outF, a: g, lda: outF, b: w.data, ldb: inF, beta: 0, c: pd, ldc: inF)
            let (gh, fresh) = h.gradForWrite()
            if fresh { for i in 0..<count { gh[i] = 2 * max(ph[i], 0) * pd[i] } }
            else { for i in 0..<count { gh[i] += 2 * max(ph[i], 0) * pd[i] } }
        }
    }
    return out
}

/// r + relu(x W_fc^T)^2 W_proj^T: upstream's MLP (c_fc, relu², c_proj) with the residual add, as one op. On the CPU and
/// on a GPU in fp32 it is `reluSquaredLinear(linear(x, fc), proj, residual: r)`. On a GPU in bf16 mode (upstream's
/// precision) the hidden layer h = x W_fc^T, four times the stream's width and the largest activation, is written by
/// the product in bf16, and relu(h)² is written over it in bf16 and kept: c_proj reads it in the forward and its weight
/// gradient reads it in the backward, and relu(h) = sqrt(relu(h)²) gives relu²'s own backward, so h itself is never
/// needed again (one pass over the hidden layer fewer than keeping h and making relu(h)² again). The backward stays in
/// bf16 through the hidden layer: dA = g W_proj and dH = 2 sqrt(a) dA are written in bf16 and read as they are by x's and
/// W_fc's gradients, as upstream's bf16 backward does.
/// `inPlace`: on a GPU the sum is written over `r`'s buffer (`gpuResidualOutput`).
public func reluSquaredMLP(_ x: Tensor, _ fc: Tensor, _ proj: Tensor, residual r: Tensor, inPlace: Bool = false) -> Tensor {
    guard let gpu = x.gpu, gpu.bf16 else { return reluSquaredLinear(linear(x, fc), proj, residual: r, inPlace: inPlace) }
    let inF = fc.shape[1], hidden = fc.shape[0], outF = proj.shape[0]
    precondition(x.shape.last == inF && proj.shape[1] == hidden && r.count == x.count / inF * outF,
                 "reluSquaredMLP: input \(x.shape), weights \(fc.shape) and \(proj.shape), residual \(r.shape)")
    precondition(fc.gpu === gpu && proj.gpu === gpu && r.gpu === gpu, "reluSquaredMLP: the input is on the GPU, a weight or the residual is not")
    let n = x.count / inF, hCount = n * hidden
    let bf16Count = (hCount + 1) / 2  // floats holding hCount bf16 values
    let a16 = Storage(count: bf16Count, on: gpu)  // h, then relu(h)^2 over it: kept for the backward when it records
    do {
        let x16 = gpuBF16Operand(gpu, x)  // the normed input: bf16 already in the model
        gpu.run(gpu.api.nc_matmul_bf16_out(gpu.ctx, a16.pointer, x16.pointer, 1, fc.bf16Weights(on: gpu), 1, Int64(n), Int64(hidden),
                                           Int64(inF), 0, 1), "h = x W^T in bf16 (\(fc.name))")
        withExtendedLifetime(x16.scratch) {}
    }
    gpu.run(gpu.api.nc_relu2_forward_bf16(gpu.ctx, a16.pointer, a16.pointer, Int64(hCount)), "relu2 (bf16, over h)")
    let out = gpuResidualOutput(gpu, r, inPlace: inPlace)
    gpuBF16Product(gpu, out.gpuData, a16.pointer, proj.bf16Weights(on: gpu), m: n, n: outF, k: hidden, transB: true, beta: 1,
                   "relu(h)^2 \(proj.name)^T + residual")
    Tensor.record(out, [r, x, fc, proj], op: "reluSquaredMLP") { out in
        let g = out.grad!.gpuData
        if r !== x { passResidualGradient(out, to: r) } else if r.requiresGrad { gpuAddGrad(gpu, r, g) }
        let g16 = gpuRoundedBF16(gpu, g, count: n * outF)
        if proj.requiresGrad {
            let (gw, fresh) = proj.gradForWrite()
            gpuBF16Product(gpu, gw, g16.pointer, a16.pointer, m: outF, n: hidden, k: n, transA: true, beta: fresh ? 0 : 1, "dW of \(proj.name)")
        }
        guard x.requiresGrad || fc.requiresGrad else { return }
        // dH = 2 sqrt(a) (g W_proj), in bf16, written over dA
        let dh16 = Storage(count: bf16Count, on: gpu)
        gpu.run(gpu.api.nc_matmul_bf16_out(gpu.ctx, dh16.pointer, g16.pointer, 1, proj.bf16Weights(on: gpu), 1, Int64(n), Int64(hidden),
                                           Int64(outF), 0, 0), "dA = g W in bf16 (\(proj.name))")
        gpu.run(gpu.api.nc_relu2_backward_from_output_bf16(gpu.ctx, dh16.pointer, dh16.pointer, a16.pointer, Int64(hCount)),
                "relu2 backward from relu(h)^2 (bf16)")
        if x.requiresGrad {
            let (gx, fresh) = x.gradForWrite()
            gpuBF16Product(gpu, gx, dh16.pointer, fc.bf16Weights(on: gpu), m: n, n: inF, k: hidden, beta: fresh ? 0 : 1, "dX of \(fc.name)")
        }
        if fc.requiresGrad {
            let x16 = gpuBF16Operand(gpu, x)
            let (gw, fresh) = fc.gradForWrite()
            gpuBF16Product(gpu, gw, dh16.pointer, x16.pointer, m: hidden, n: inF, k: n, transA: true, beta: fresh ? 0 : 1, "dW of \(fc.name)")
            withExtendedLifetime(x16.scratch) {}
        }
    }
    return out
}

/// relu(x)^2 (the MLP's activation).
public func reluSquared(_ x: Tensor) -> Tensor {
    let out = Tensor(shape: x.shape, zeroed: false, on: x.gpu)
    let n = x.count
    if let gpu = x.gpu {
        gpu.run(gpu.api.nc_relu2_forward(gpu.ctx, out.gpuData, x.gpuData, Int64(n)), "relu2")
        Tensor.record(out, [x], op: "reluSquared") { out in
            let (gx, fresh) = x.gradForWrite()
            gpu.run(gpu.api.nc_relu2_backward(gpu.ctx, gx, out.grad!.gpuData, x.gpuData, Int64(n), fresh ? 0 : 1), "relu2 backward")
        }
        return out
    }
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

/// Token ids (inputs or targets) for the ops that index with them: on the CPU the array itself; for a model on a
/// GPU, also a device copy, made once per forward and shared by every embedding of it.
public final class TokenIds {
    public let values: [Int32]
    public let gpu: GPU?
    /// The ids in device memory (nil on the CPU).
    public let device: UnsafeMutablePointer<Int32>?

    public init(_ values: [Int32], on gpu: GPU?) {
        self.values = values
        self.gpu = gpu
        if let gpu {
            let p = gpu.allocate(floats: values.count)  // 4 bytes each, as the floats
            values.withUnsafeBytes { gpu.upload($0.baseAddress!, bytes: $0.count, to: p) }
            device = UnsafeMutableRawPointer(p).assumingMemoryBound(to: Int32.self)
        } else {
            device = nil
        }
    }

    deinit { if let gpu, let device { gpu.free(device) } }
}

/// Rows of `table` [V, C] picked by `ids` (N of them): [N, C]. The gradient scatters back into the rows.
public func embedding(_ table: Tensor, _ ids: [Int32], shape: [Int]? = nil) -> Tensor {
    embedding(table, TokenIds(ids, on: table.gpu), shape: shape)
}

public func embedding(_ table: Tensor, _ tokens: TokenIds, shape: [Int]? = nil) -> Tensor {
    let c = table.shape[1], v = table.shape[0]
    let ids = tokens.values
    let n = ids.count
    let out = Tensor(shape: shape.map { $0 + [c] } ?? [n, c], zeroed: false, on: table.gpu)
    if let gpu = table.gpu {
        precondition(tokens.gpu === gpu, "embedding: the ids are not on the table's GPU")
        for id in ids { precondition(id >= 0 && Int(id) < v, "token id \(id) outside the embedding table of \(v) rows") }
        gpu.run(gpu.api.nc_embedding_forward(gpu.ctx, out.gpuData, table.gpuData, tokens.device, Int64(n), Int64(c)), "embedding")
        Tensor.record(out, [table], op: "embedding") { out in
            gpu.run(gpu.api.nc_embedding_backward(gpu.ctx, table.gradData(), out.grad!.gpuData, tokens.device, Int64(n), Int64(c)),
                    "embedding backward")
        }
        return out
    }
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
    let out = Tensor(shape: [b, c], zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        for bi in 0..<b { gpu.copy(x.gpuData + (bi * t + t - 1) * c, to: out.gpuData + bi * c, floats: c) }
        return out
    }
    for bi in 0..<b { (out.data + bi * c).update(from: x.data + (bi * t + t - 1) * c, count: c) }
    return out
}

/// Rows `rows` of x viewed as [N, C] (C its last dimension): [rows.count, C], on x's device (inference: no gradient).
/// Evaluation runs the LM head only at the positions it scores.
public func gatherRows(_ x: Tensor, _ rows: [Int]) -> Tensor {
    let c = x.shape.last!
    precondition(!Tensor.gradEnabled || !x.requiresGrad, "gatherRows is for inference (no gradient)")
    let out = Tensor(shape: [rows.count, c], zeroed: false, on: x.gpu)
    for (k, r) in rows.enumerated() {
        precondition(r >= 0 && r < x.count / c, "gatherRows: row \(r) outside \(x.count / c) rows")
        if let gpu = x.gpu { gpu.copy(x.gpuData + r * c, to: out.gpuData + k * c, floats: c) }
        else { (out.data + k * c).update(from: x.data + r * c, count: c) }
    }
    return out
}

/// x in float32: a bf16 activation widened (exactly) for an op that reads float32 (the KV cache's append and cached
/// attention), or x itself when it already is. Inference only: no gradient flows through the copy.
public func float32(_ x: Tensor) -> Tensor {
    guard x.isBF16, let gpu = x.gpu else { return x }
    precondition(!Tensor.gradEnabled || !x.requiresGrad, "float32(_:) widens a bf16 activation for inference (no gradient)")
    let out = Tensor(shape: x.shape, zeroed: false, on: gpu)
    gpu.run(gpu.api.nc_from_bf16(gpu.ctx, out.gpuData, x.bf16Data, Int64(x.count)), "bf16 widened to float32")
    return out
}
