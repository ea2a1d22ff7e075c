import Foundation
import NanoChat
import NanoTensor

/// The GPT on one NVIDIA GPU, for training and bits-per-byte evaluation: the same model as `GPT` (GPT.swift), its
/// forward and backward written out step by step over device buffers, llm.c style, each step one call into
/// `libnanochat_cuda` (cuda/*.cu).
///
/// Precision (upstream's policy): parameters, gradients, optimizer state and activations in fp32; with `bf16` the
/// matrix products and attention round their inputs to bf16 and accumulate in fp32 (cuBLASLt, attention_bf16.cu).
/// Without it every product is exact fp32, the mode `nanochat verify --device cuda` checks against upstream's
/// fixtures.
///
/// Memory is planned once for a batch of B rows of T tokens: what the backward needs is kept per layer (the
/// residual entering the layer, q and k after rotary + QK-norm, v after the value-embedding mix, the attention
/// output and its log-sum-exp, the residual after attention, the MLP's pre-activation, the layer's output); the
/// two normed inputs and relu² are recomputed in the backward instead of stored.
public final class CUDAGPT {
    public let config: GPTConfig
    public let windows: [Int]
    public let batch: Int, time: Int
    public var bf16: Bool
    let cuda: CUDALibrary

    /// Parameter names in memory order: optimizer groups one after another, so each Muon group's matrices
    /// form one [K, rows, cols] stack.
    public let names: [String]
    public let shapes: [String: [Int]]
    let offsets: [String: Int]
    public let parameterCount: Int
    let params: DeviceBuffer, grads: DeviceBuffer
    let cosTable: DeviceBuffer, sinTable: DeviceBuffer

    // sizes
    let N: Int, C: Int, H: Int, Hkv: Int, D: Int, Ckv: Int, F: Int, V: Int, L: Int
    static let veGateChannels = 12, smearChannels = 24
    /// Floats between parameter starts (256 bytes).
    static let alignment = 64

    // inputs
    let ids: DeviceBuffer, targets: DeviceBuffer
    // activations kept for the backward
    let xnorm0: DeviceBuffer, rstd0: DeviceBuffer, smearGates: DeviceBuffer, x0: DeviceBuffer
    let xin: [DeviceBuffer], rstd1: [DeviceBuffer], qn: [DeviceBuffer], rstdq: [DeviceBuffer], kn: [DeviceBuffer], rstdk: [DeviceBuffer]
    let vmix: [DeviceBuffer], veSig: [DeviceBuffer?], attnOut: [DeviceBuffer], lse: [DeviceBuffer], xmid: [DeviceBuffer]
    let rstd2: [DeviceBuffer], fc: [DeviceBuffer], xout: [DeviceBuffer]
    let xfinal: DeviceBuffer, rstdFinal: DeviceBuffer, logits: DeviceBuffer, losses: DeviceBuffer
    // scratch, reused by every layer
    let h: DeviceBuffer, r: DeviceBuffer, qraw: DeviceBuffer, kraw: DeviceBuffer, vraw: DeviceBuffer, ve: DeviceBuffer
    let dx: DeviceBuffer, dprev: DeviceBuffer, dx0: DeviceBuffer, dtop: DeviceBuffer, dh: DeviceBuffer, dout: DeviceBuffer
    let dqn: DeviceBuffer, dkn: DeviceBuffer, dvmix: DeviceBuffer, dve: DeviceBuffer, delta: DeviceBuffer, rstdScratch: DeviceBuffer

    /// Copies `model`'s weights to the GPU and plans memory for batches of `batch` rows of `time` tokens.
    public init(_ model: GPT, cuda: CUDALibrary, batch: Int, time: Int, bf16: Bool) throws {
        let cfg = model.config
        config = cfg
        windows = model.windows
        self.batch = batch
        self.time = time
        self.bf16 = bf16
        self.cuda = cuda
        guard time <= model.maxPositions else {
            throw CUDAError(description: "sequence length \(time) exceeds the rotary tables' \(model.maxPositions) positions")
        }
        guard (bf16 ? [64, 128] : [32, 64, 128]).contains(cfg.headDim) else {
            throw CUDAError(description: "the CUDA attention kernels take head dim \(bf16 ? "64 or 128 in bf16" : "32, 64 or 128"), this model has \(cfg.headDim)")
        }
        N = batch * time; C = cfg.n_embd; H = cfg.n_head; Hkv = cfg.n_kv_head; D = cfg.headDim
        Ckv = Hkv * D; F = 4 * C; V = cfg.paddedVocab; L = cfg.n_layer

        // parameters and gradients: one buffer each, in optimizer-group order
        let groups = model.optimizerGroups(unembeddingLR: 0, embeddingLR: 0, matrixLR: 0, weightDecay: 0, scalarLR: 0)
        var order = groups.flatMap(\.params)
        for name in model.parameterNames where !order.contains(name) { order.append(name) }
        names = order
        // each AdamW parameter and each Muon stack starts on a 256-byte boundary: cuBLASLt's kernels assume that
        // alignment of every matrix they read or write (a weight gradient at an odd offset is "not supported")
        let stacked = Set(groups.filter { $0.kind == .muon }.flatMap { Array($0.params.dropFirst()) })
        var offs: [String: Int] = [:], shp: [String: [Int]] = [:]
        var total = 0
        for name in order {
            if !stacked.contains(name) { total = (total + Self.alignment - 1) / Self.alignment * Self.alignment }
            offs[name] = total
            shp[name] = model.param(name).shape
            total += model.param(name).count
        }
        offsets = offs
        shapes = shp
        parameterCount = total
        params = try cuda.allocate(floats: total)
        grads = try cuda.allocate(floats: total)
        let tables = rotaryTables(length: model.maxPositions, headDim: cfg.headDim)
        cosTable = try cuda.allocate(floats: tables.cos.count)
        sinTable = try cuda.allocate(floats: tables.sin.count)
        try cuda.upload(tables.cos.data, count: tables.cos.count, to: cosTable.pointer)
        try cuda.upload(tables.sin.data, count: tables.sin.count, to: sinTable.pointer)

        func buf(_ n: Int) throws -> DeviceBuffer { try cuda.allocate(floats: n) }
        func perLayer(_ n: Int) throws -> [DeviceBuffer] { try (0..<cfg.n_layer).map { _ in try buf(n) } }
        let (n, c, ckv, heads, kvHeads, f, v) = (N, C, Ckv, H, Hkv, F, V)
        ids = try buf(n); targets = try buf(n)
        xnorm0 = try buf(n * c); rstd0 = try buf(n); smearGates = try buf(n); x0 = try buf(n * c)
        xin = try perLayer(n * c); rstd1 = try perLayer(n)
        qn = try perLayer(n * c); rstdq = try perLayer(n * heads)
        kn = try perLayer(n * ckv); rstdk = try perLayer(n * kvHeads)
        vmix = try perLayer(n * ckv)
        veSig = try (0..<cfg.n_layer).map { cfg.hasValueEmbedding($0) ? try buf(n * kvHeads) : nil }
        attnOut = try perLayer(n * c); lse = try perLayer(n * heads)
        xmid = try perLayer(n * c); rstd2 = try perLayer(n); fc = try perLayer(n * f); xout = try perLayer(n * c)
        xfinal = try buf(n * c); rstdFinal = try buf(n); logits = try buf(n * v); losses = try buf(n)
        h = try buf(n * c); r = try buf(n * f); qraw = try buf(n * c); kraw = try buf(n * ckv); vraw = try buf(n * ckv)
        ve = try buf(n * ckv)
        dx = try buf(n * c); dprev = try buf(n * c); dx0 = try buf(n * c); dtop = try buf(n * c); dh = try buf(n * c)
        dout = try buf(n * c); dqn = try buf(n * c); dkn = try buf(n * ckv); dvmix = try buf(n * ckv); dve = try buf(n * ckv)
        delta = try buf(n * heads); rstdScratch = try buf(n)
        try loadWeights(from: model)
        try zeroGradients()
    }

    // MARK: parameters

    func p(_ name: String) -> DevicePointer { params.floats(at: offsets[name]!) }
    func g(_ name: String) -> DevicePointer { grads.floats(at: offsets[name]!) }
    func layer(_ i: Int, _ name: String) -> String { "transformer.h.\(i).\(name).weight" }

    public func loadWeights(from model: GPT) throws {
        for name in names {
            let t = model.param(name)
            try cuda.upload(t.data, count: t.count, to: p(name))
        }
    }

    /// Copies the GPU's weights into `model` (checkpoints, sampling on the CPU).
    public func storeWeights(into model: GPT) throws {
        for name in names {
            let t = model.param(name)
            try cuda.download(p(name), count: t.count, into: t.data)
        }
    }

    public func gradient(_ name: String) throws -> [Float] { try cuda.download(g(name), count: shapes[name]!.reduce(1, *)) }

    public func zeroGradients() throws { try cuda.zero(grads.pointer, floats: parameterCount) }

    /// The device pointers an optimizer needs: parameter, gradient, element count.
    func slot(_ name: String) -> (param: DevicePointer, grad: DevicePointer, count: Int) {
        (p(name), g(name), shapes[name]!.reduce(1, *))
    }

    // MARK: forward

    /// Runs the model on `inputs` (B·T ids). With `targets`, writes each position's loss into `losses`; with
    /// `gradScale` != 0 the logits are then overwritten with d(loss)/d(logits) · gradScale for `backward()`.
    /// Without targets the raw (not softcapped) logits stay in `logits`.
    func forward(inputs: [Int32], targets tgt: [Int32]?, gradScale: Float) throws {
        precondition(inputs.count == N, "forward: \(inputs.count) ids for \(batch) x \(time)")
        let cu = cuda, ctx = cuda.ctx, o = cuda.api
        let (B, T) = (Int64(batch), Int64(time))
        let n = Int64(N)
        try cu.upload(inputs, to: ids.ints)
        if let tgt { try cu.upload(tgt, to: targets.ints) }
        cu.profileStart()

        // x = norm(wte[idx]); smear; x0 = x
        try cu.check(o.nc_embedding_forward(ctx, h.pointer, p("transformer.wte.weight"), ids.ints, n, Int64(C)), "embedding")
        try cu.check(o.nc_rmsnorm_forward(ctx, xnorm0.pointer, rstd0.pointer, h.pointer, n, Int64(C)), "rmsnorm")
        try cu.check(o.nc_smear_forward(ctx, x0.pointer, smearGates.pointer, xnorm0.pointer, p("smear_gate.weight"), p("smear_lambda"),
                                    B, T, Int64(C), Int32(Self.smearChannels)), "smear")
        for i in 0..<L {
            // x = resid_lambdas[i] x + x0_lambdas[i] x0
            let input = i == 0 ? x0 : xout[i - 1]
            try cu.check(o.nc_scalar_mix_forward(ctx, xin[i].pointer, input.pointer, x0.pointer, p("resid_lambdas"), Int64(i),
                                            p("x0_lambdas"), Int64(i), n * Int64(C)), "scalar mix")
            // attention: q, k, v from norm(x); value embedding mix; rotary + QK-norm; causal attention; c_proj
            try cu.check(o.nc_rmsnorm_forward(ctx, h.pointer, rstd1[i].pointer, xin[i].pointer, n, Int64(C)), "rmsnorm")
            try cu.matmul(qraw.pointer, h.pointer, p(layer(i, "attn.c_q")), m: N, n: C, k: C, transB: true, bf16: bf16)
            try cu.matmul(kraw.pointer, h.pointer, p(layer(i, "attn.c_k")), m: N, n: Ckv, k: C, transB: true, bf16: bf16)
            if let sig = veSig[i] {
                try cu.matmul(vraw.pointer, h.pointer, p(layer(i, "attn.c_v")), m: N, n: Ckv, k: C, transB: true, bf16: bf16)
                try cu.check(o.nc_embedding_forward(ctx, ve.pointer, p("value_embeds.\(i).weight"), ids.ints, n, Int64(Ckv)), "value embedding")
                try cu.check(o.nc_value_embedding_forward(ctx, vmix[i].pointer, sig.pointer, vraw.pointer, ve.pointer, h.pointer, p(layer(i, "attn.ve_gate")),
                                         n, Int64(Hkv), Int64(D), Int64(C), Int32(Self.veGateChannels)), "value-embedding gate")
            } else {
                try cu.matmul(vmix[i].pointer, h.pointer, p(layer(i, "attn.c_v")), m: N, n: Ckv, k: C, transB: true, bf16: bf16)
            }
            try cu.check(o.nc_rotary_norm_forward(ctx, qn[i].pointer, rstdq[i].pointer, qraw.pointer, cosTable.pointer, sinTable.pointer,
                                             B, T, Int64(H), Int64(D), 0, Attention.qkGain), "rotary q")
            try cu.check(o.nc_rotary_norm_forward(ctx, kn[i].pointer, rstdk[i].pointer, kraw.pointer, cosTable.pointer, sinTable.pointer,
                                             B, T, Int64(Hkv), Int64(D), 0, Attention.qkGain), "rotary k")
            try cu.check((bf16 ? o.nc_attention_forward_bf16 : o.nc_attention_forward)(ctx, attnOut[i].pointer, lse[i].pointer, qn[i].pointer, kn[i].pointer, vmix[i].pointer,
                                            B, T, Int64(H), Int64(Hkv), Int64(D), Int64(windows[i])), "attention")
            try cu.copy(xin[i].pointer, to: xmid[i].pointer, floats: N * C)
            try cu.matmul(xmid[i].pointer, attnOut[i].pointer, p(layer(i, "attn.c_proj")), m: N, n: C, k: C, transB: true, beta: 1, bf16: bf16)
            // MLP: c_fc, relu², c_proj, added to the residual
            try cu.check(o.nc_rmsnorm_forward(ctx, h.pointer, rstd2[i].pointer, xmid[i].pointer, n, Int64(C)), "rmsnorm")
            try cu.matmul(fc[i].pointer, h.pointer, p(layer(i, "mlp.c_fc")), m: N, n: F, k: C, transB: true, bf16: bf16)
            try cu.check(o.nc_relu2_forward(ctx, r.pointer, fc[i].pointer, n * Int64(F)), "relu2")
            try cu.copy(xmid[i].pointer, to: xout[i].pointer, floats: N * C)
            try cu.matmul(xout[i].pointer, r.pointer, p(layer(i, "mlp.c_proj")), m: N, n: C, k: F, transB: true, beta: 1, bf16: bf16)
        }
        // backout, final norm, lm_head, softcap + cross-entropy
        try cu.check(o.nc_backout_forward(ctx, h.pointer, xout[L - 1].pointer, xout[L / 2].pointer, p("backout_lambda"), n * Int64(C)), "backout")
        try cu.check(o.nc_rmsnorm_forward(ctx, xfinal.pointer, rstdFinal.pointer, h.pointer, n, Int64(C)), "rmsnorm")
        try cu.matmul(logits.pointer, xfinal.pointer, p("lm_head.weight"), m: N, n: V, k: C, transB: true, bf16: bf16)
        if tgt != nil {
            try cu.check(o.nc_softcap_cross_entropy(ctx, logits.pointer, losses.pointer, targets.ints, n, Int64(config.vocab_size),
                                               Int64(V), GPT.softcap, gradScale), "softcap cross-entropy")
        }
    }

    /// The mean cross-entropy over the targets that are not -1, as `GPT.forward(..., targets:)`; with `backward`
    /// its gradient (times `lossScale`, e.g. 1 / accumulation steps) is added to the gradients.
    @discardableResult
    public func loss(inputs: [Int32], targets: [Int32], backward: Bool = false, lossScale: Float = 1) throws -> Float {
        let valid = targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
        try forward(inputs: inputs, targets: targets, gradScale: backward && valid > 0 ? lossScale / Float(valid) : 0)
        if backward { try self.backward() }
        let per = try cuda.download(losses.pointer, count: N)
        return valid == 0 ? 0 : Float(per.reduce(0.0) { $0 + Double($1) } / Double(valid))
    }

    /// One loss per position (0 where the target is -1): bits per byte.
    public func lossPerToken(inputs: [Int32], targets: [Int32]) throws -> [Float] {
        try forward(inputs: inputs, targets: targets, gradScale: 0)
        return try cuda.download(losses.pointer, count: N)
    }

    /// The softcapped logits [B·T, vocab] (no gradient): the fixtures' first check.
    public func logitsOf(inputs: [Int32]) throws -> [Float] {
        try forward(inputs: inputs, targets: nil, gradScale: 0)
        let raw = try cuda.download(logits.pointer, count: N * V)
        let vocab = config.vocab_size, cap = GPT.softcap
        var out = [Float](repeating: 0, count: N * vocab)
        for row in 0..<N { for j in 0..<vocab { out[row * vocab + j] = cap * tanh(raw[row * V + j] / cap) } }
        return out
    }

    // MARK: backward

    /// Adds the gradient of the last `forward` (its logits already hold d(loss)/d(logits)) into the gradients.
    func backward() throws {
        let cu = cuda, ctx = cuda.ctx, o = cuda.api
        let (B, T) = (Int64(batch), Int64(time))
        let n = Int64(N), nc = Int64(N * C)
        // lm_head: d xfinal = dlogits W; dW += dlogits^T xfinal
        try cu.matmul(dh.pointer, logits.pointer, p("lm_head.weight"), m: N, n: C, k: V, bf16: bf16)
        try cu.matmul(g("lm_head.weight"), logits.pointer, xfinal.pointer, m: V, n: C, k: N, transA: true, beta: 1, bf16: bf16)
        try cu.check(o.nc_rmsnorm_backward(ctx, dtop.pointer, dh.pointer, xfinal.pointer, rstdFinal.pointer, n, Int64(C), 0), "rmsnorm backward")
        // backout: the gradient reaches the last layer's output unchanged, and layer L/2's output as -lambda times it
        try cu.copy(dtop.pointer, to: dx.pointer, floats: N * C)
        var dcur = dx, dnext = dprev
        try cu.zero(dx0.pointer, floats: N * C)
        for i in stride(from: L - 1, through: 0, by: -1) {
            if i == L / 2 {
                try cu.check(o.nc_backout_backward(ctx, dcur.pointer, g("backout_lambda"), dtop.pointer, xout[i].pointer, p("backout_lambda"), nc),
                             "backout backward")
            }
            // MLP (dcur = d xout[i]): recompute norm(xmid) and relu², then the products' gradients
            try cu.check(o.nc_rmsnorm_forward(ctx, h.pointer, rstdScratch.pointer, xmid[i].pointer, n, Int64(C)), "rmsnorm")
            try cu.check(o.nc_relu2_forward(ctx, r.pointer, fc[i].pointer, n * Int64(F)), "relu2")
            try cu.matmul(g(layer(i, "mlp.c_proj")), dcur.pointer, r.pointer, m: C, n: F, k: N, transA: true, beta: 1, bf16: bf16)
            try cu.matmul(r.pointer, dcur.pointer, p(layer(i, "mlp.c_proj")), m: N, n: F, k: C, bf16: bf16)
            try cu.check(o.nc_relu2_backward(ctx, r.pointer, r.pointer, fc[i].pointer, n * Int64(F), 0), "relu2 backward")
            try cu.matmul(g(layer(i, "mlp.c_fc")), r.pointer, h.pointer, m: F, n: C, k: N, transA: true, beta: 1, bf16: bf16)
            try cu.matmul(dh.pointer, r.pointer, p(layer(i, "mlp.c_fc")), m: N, n: C, k: F, bf16: bf16)
            try cu.check(o.nc_rmsnorm_backward(ctx, dcur.pointer, dh.pointer, h.pointer, rstd2[i].pointer, n, Int64(C), 1), "rmsnorm backward")
            // attention (dcur = d xmid[i]): c_proj, attention, rotary + QK-norm, value embedding, c_q/c_k/c_v
            try cu.matmul(g(layer(i, "attn.c_proj")), dcur.pointer, attnOut[i].pointer, m: C, n: C, k: N, transA: true, beta: 1, bf16: bf16)
            try cu.matmul(dout.pointer, dcur.pointer, p(layer(i, "attn.c_proj")), m: N, n: C, k: C, bf16: bf16)
            try cu.zero(dqn.pointer, floats: N * C)
            try cu.zero(dkn.pointer, floats: N * Ckv)
            try cu.zero(dvmix.pointer, floats: N * Ckv)
            try cu.check((bf16 ? o.nc_attention_backward_bf16 : o.nc_attention_backward)(ctx, dqn.pointer, dkn.pointer, dvmix.pointer, delta.pointer, qn[i].pointer, kn[i].pointer,
                                             vmix[i].pointer, attnOut[i].pointer, dout.pointer, lse[i].pointer, B, T, Int64(H), Int64(Hkv),
                                             Int64(D), Int64(windows[i])), "attention backward")
            try cu.check(o.nc_rotary_norm_backward(ctx, qraw.pointer, dqn.pointer, qn[i].pointer, rstdq[i].pointer, cosTable.pointer, sinTable.pointer,
                                              B, T, Int64(H), Int64(D), 0, Attention.qkGain, 0), "rotary q backward")
            try cu.check(o.nc_rotary_norm_backward(ctx, kraw.pointer, dkn.pointer, kn[i].pointer, rstdk[i].pointer, cosTable.pointer, sinTable.pointer,
                                              B, T, Int64(Hkv), Int64(D), 0, Attention.qkGain, 0), "rotary k backward")
            try cu.check(o.nc_rmsnorm_forward(ctx, h.pointer, rstdScratch.pointer, xin[i].pointer, n, Int64(C)), "rmsnorm")
            try cu.zero(dh.pointer, floats: N * C)
            var dv = dvmix
            if let sig = veSig[i] {
                try cu.check(o.nc_embedding_forward(ctx, ve.pointer, p("value_embeds.\(i).weight"), ids.ints, n, Int64(Ckv)), "value embedding")
                try cu.zero(vraw.pointer, floats: N * Ckv)
                try cu.zero(dve.pointer, floats: N * Ckv)
                try cu.check(o.nc_value_embedding_backward(ctx, vraw.pointer, dve.pointer, dh.pointer, g(layer(i, "attn.ve_gate")), dvmix.pointer, ve.pointer,
                                          h.pointer, p(layer(i, "attn.ve_gate")), sig.pointer, n, Int64(Hkv), Int64(D), Int64(C),
                                          Int32(Self.veGateChannels)), "value-embedding gate backward")
                try cu.check(o.nc_embedding_backward(ctx, g("value_embeds.\(i).weight"), dve.pointer, ids.ints, n, Int64(Ckv)), "value embedding backward")
                dv = vraw
            }
            try cu.matmul(g(layer(i, "attn.c_q")), qraw.pointer, h.pointer, m: C, n: C, k: N, transA: true, beta: 1, bf16: bf16)
            try cu.matmul(g(layer(i, "attn.c_k")), kraw.pointer, h.pointer, m: Ckv, n: C, k: N, transA: true, beta: 1, bf16: bf16)
            try cu.matmul(g(layer(i, "attn.c_v")), dv.pointer, h.pointer, m: Ckv, n: C, k: N, transA: true, beta: 1, bf16: bf16)
            try cu.matmul(dh.pointer, qraw.pointer, p(layer(i, "attn.c_q")), m: N, n: C, k: C, beta: 1, bf16: bf16)
            try cu.matmul(dh.pointer, kraw.pointer, p(layer(i, "attn.c_k")), m: N, n: C, k: Ckv, beta: 1, bf16: bf16)
            try cu.matmul(dh.pointer, dv.pointer, p(layer(i, "attn.c_v")), m: N, n: C, k: Ckv, beta: 1, bf16: bf16)
            try cu.check(o.nc_rmsnorm_backward(ctx, dcur.pointer, dh.pointer, h.pointer, rstd1[i].pointer, n, Int64(C), 1), "rmsnorm backward")
            // x = resid[i] input + x0l[i] x0 (dcur = d xin[i]); layer 0's input is x0 itself
            let input = i == 0 ? x0 : xout[i - 1]
            if i > 0 { try cu.zero(dnext.pointer, floats: N * C) }
            try cu.check(o.nc_scalar_mix_backward(ctx, i == 0 ? dx0.pointer : dnext.pointer, dx0.pointer, g("resid_lambdas"), g("x0_lambdas"),
                                             dcur.pointer, input.pointer, x0.pointer, p("resid_lambdas"), Int64(i), p("x0_lambdas"), Int64(i), nc),
                         "scalar mix backward")
            swap(&dcur, &dnext)
        }
        // smear, the embedding norm, the embedding
        try cu.zero(dh.pointer, floats: N * C)
        try cu.check(o.nc_smear_backward(ctx, dh.pointer, g("smear_gate.weight"), g("smear_lambda"), dx0.pointer, xnorm0.pointer, smearGates.pointer,
                                     p("smear_gate.weight"), p("smear_lambda"), B, T, Int64(C), Int32(Self.smearChannels)), "smear backward")
        try cu.check(o.nc_rmsnorm_backward(ctx, dout.pointer, dh.pointer, xnorm0.pointer, rstd0.pointer, n, Int64(C), 0), "rmsnorm backward")
        try cu.check(o.nc_embedding_backward(ctx, g("transformer.wte.weight"), dout.pointer, ids.ints, n, Int64(C)), "embedding backward")
    }
}
