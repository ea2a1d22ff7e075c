import Foundation
import NanoTensor

// Upstream's GPT: rotary embeddings (base 100000), QK-norm with gain 1.2, relu² MLP, untied embeddings,
// parameter-free RMSNorm, value embeddings with gates on alternating layers (the last one included), a smear
// gate (cheap bigram mixing), backout (the residual at layer n_layer // 2 subtracted before the final norm),
// per-layer residual and x0 lambdas, logits softcapped at 15, GQA, sliding windows, the vocabulary padded to a
// multiple of 64. Parameters carry upstream's names, so checkpoints load into PyTorch unchanged.
//
// The model is written once against NanoTensor's ops (`linear`, `rmsNorm`, `rotaryNorm`, `causalAttention`,
// `smear`, ...); it never touches a buffer itself. A backend is an implementation of those ops for a device.

/// `norm(x)`: RMSNorm over the last dimension, no learnable weight.
@inline(__always) func norm(_ x: Tensor) -> Tensor { rmsNorm(x) }

/// Upstream's CausalSelfAttention: c_q, c_k, c_v, c_proj, and on value-embedding layers the 12-channel gate.
public final class Attention {
    public let layer: Int, nHead: Int, nKVHead: Int, headDim: Int
    public let c_q: Tensor, c_k: Tensor, c_v: Tensor, c_proj: Tensor
    public let ve_gate: Tensor?
    public static let veGateChannels = 12
    public static let qkGain: Float = 1.2

    init(_ config: GPTConfig, layer: Int) {
        self.layer = layer
        nHead = config.n_head; nKVHead = config.n_kv_head; headDim = config.headDim
        let c = config.n_embd
        c_q = parameter([nHead * headDim, c])
        c_k = parameter([nKVHead * headDim, c])
        c_v = parameter([nKVHead * headDim, c])
        c_proj = parameter([c, c])
        ve_gate = config.hasValueEmbedding(layer) ? parameter([nKVHead, Self.veGateChannels]) : nil
    }

    var namedParameters: [(String, Tensor)] {
        [("c_q.weight", c_q), ("c_k.weight", c_k), ("c_v.weight", c_v), ("c_proj.weight", c_proj)]
            + (ve_gate.map { [("ve_gate.weight", $0)] } ?? [])
    }

    /// x: [B, T, C] (already normed); ve: this layer's value embedding [B, T, Hkv*D] or nil. Returns
    /// `residual` + the attention's output (its last product adds it: `linear(_:_:residual:)`).
    func callAsFunction(_ x: Tensor, ve: Tensor?, rotary: Rotary, window: Int, cache: KVCache.Pass?, residual: Tensor) -> Tensor {
        let (B, T, C) = (x.shape[0], x.shape[1], x.shape[2])
        // q, k, v = c_q(x), c_k(x), c_v(x); rotary embeddings then QK-norm, scaled by 1.2, on q and k (each row starts
        // at its own position in a cache)
        let (qn, kn, projectedV) = rotaryProjections(x, q: c_q, k: c_k, v: c_v, heads: nHead, kvHeads: nKVHead, cos: rotary.cos,
                                                     sin: rotary.sin, gain: Self.qkGain, rowOffsets: cache?.starts)
        var v = projectedV
        // value residual (ResFormer): v += 3 sigmoid(ve_gate . x[..., :12]) * ve, one gate per KV head
        // (written over v on a GPU: v's own values are read by no backward)
        if let ve, let ve_gate { v = valueEmbeddingMix(v, ve, u: x, gate: ve_gate, kvHeads: nKVHead, inPlace: true) }
        v = v.reshaped([B, T, nKVHead, headDim])
        let y: Tensor
        if let cache {
            y = cache.attend(layer: layer, queries: qn, keys: kn, values: v, window: window)
        } else {
            y = causalAttention(qn, kn, v, window: window)
        }
        return linear(y.reshaped([B, T, C]), c_proj, residual: residual, inPlace: true)
    }
}

/// Upstream's MLP: c_fc, relu², c_proj.
public final class MLP {
    public let c_fc: Tensor, c_proj: Tensor

    init(_ config: GPTConfig) {
        c_fc = parameter([4 * config.n_embd, config.n_embd])
        c_proj = parameter([config.n_embd, 4 * config.n_embd])
    }

    var namedParameters: [(String, Tensor)] { [("c_fc.weight", c_fc), ("c_proj.weight", c_proj)] }

    /// `residual` + c_proj(relu(c_fc(x))^2), as one op: relu(h)^2 is made again in the backward rather than kept, and
    /// on a GPU in bf16 h itself is kept in bf16 (`reluSquaredMLP`).
    func callAsFunction(_ x: Tensor, residual: Tensor) -> Tensor { reluSquaredMLP(x, c_fc, c_proj, residual: residual, inPlace: true) }
}

/// Upstream's Block: pre-norm attention and MLP, each added to the residual stream.
public final class Block {
    public let attn: Attention, mlp: MLP

    init(_ config: GPTConfig, layer: Int) {
        attn = Attention(config, layer: layer)
        mlp = MLP(config)
    }

    var namedParameters: [(String, Tensor)] {
        attn.namedParameters.map { ("attn." + $0.0, $0.1) } + mlp.namedParameters.map { ("mlp." + $0.0, $0.1) }
    }

    /// x + attn(norm(x)), then + mlp(norm(x)), with `normed` = norm(x) (made with the layer's input mix:
    /// `scalarMixNorm`). Each branch's last product adds to the residual stream in place on a GPU: no backward reads the
    /// stream's values before a branch (the mix's reads the mix's inputs, the norms' their own outputs), so the layer's
    /// stream is one buffer. The branches' norms are read only by bf16 products on a GPU in bf16 mode, so they are kept
    /// in bf16 there (the stream itself stays float32).
    func callAsFunction(_ x: Tensor, normed: Tensor, ve: Tensor?, rotary: Rotary, window: Int, cache: KVCache.Pass?) -> Tensor {
        let x = attn(normed, ve: ve, rotary: rotary, window: window, cache: cache, residual: x)
        return mlp(rmsNorm(x, bf16OnGPU: true), residual: x)
    }
}

/// The rotary tables (cos, sin: [positions, headDim / 2]); upstream computes 10 x sequence_len positions.
struct Rotary {
    let cos: Tensor, sin: Tensor
}

/// How `forward` reduces the losses when it is given targets: their mean (training) or one per token (bits
/// per byte).
public enum LossReduction { case mean, none }

public final class GPT {
    public let config: GPTConfig
    /// Left window per layer; the pattern's by default, settable (fixtures set them by hand).
    public var windows: [Int]
    public let wte: Tensor
    public let h: [Block]
    public let lm_head: Tensor
    /// Value embeddings by layer index (the layers `config.hasValueEmbedding` picks).
    public let value_embeds: [Int: Tensor]
    public let resid_lambdas: Tensor, x0_lambdas: Tensor
    public let smear_gate: Tensor, smear_lambda: Tensor, backout_lambda: Tensor
    let rotary: Rotary
    /// The format inference multiplies in (`useWeights`).
    public private(set) var weightFormat = WeightFormat.f32
    /// Whether the KV caches this model decodes with keep bf16 (`KVCache(for:)`): with bf16 or int8 weights, whose own
    /// rounding is coarser, a step streams half the cache's bytes; float32 weights keep a float32 cache, so their
    /// cached decoding equals a full forward.
    public var kvCacheBF16: Bool { weightFormat != .f32 }

    public static let softcap: Float = 15
    public static let smearChannels = 24

    /// Every parameter by upstream name, and the names in a fixed order (checkpoints, optimizer state).
    public let parameters: [String: Tensor]
    public let parameterNames: [String]

    public init(config: GPTConfig, seed: UInt64 = 42) throws {
        try config.validate()
        self.config = config
        windows = config.windowSizes
        let (v, c) = (config.paddedVocab, config.n_embd)
        wte = parameter([v, c])
        h = (0..<config.n_layer).map { Block(config, layer: $0) }
        lm_head = parameter([v, c])
        var ve: [Int: Tensor] = [:]
        for i in 0..<config.n_layer where config.hasValueEmbedding(i) { ve[i] = parameter([v, config.n_kv_head * config.headDim]) }
        value_embeds = ve
        resid_lambdas = parameter([config.n_layer])
        x0_lambdas = parameter([config.n_layer])
        smear_gate = parameter([1, Self.smearChannels])
        smear_lambda = parameter([1])
        backout_lambda = parameter([1])
        let tables = rotaryTables(length: 10 * config.sequence_len, headDim: config.headDim)
        rotary = Rotary(cos: tables.cos, sin: tables.sin)

        var named: [(String, Tensor)] = [("transformer.wte.weight", wte)]
        for (i, block) in h.enumerated() { named += block.namedParameters.map { ("transformer.h.\(i).\($0.0)", $0.1) } }
        named.append(("lm_head.weight", lm_head))
        named += ve.keys.sorted().map { ("value_embeds.\($0).weight", ve[$0]!) }
        named += [("resid_lambdas", resid_lambdas), ("x0_lambdas", x0_lambdas), ("smear_gate.weight", smear_gate),
                  ("smear_lambda", smear_lambda), ("backout_lambda", backout_lambda)]
        for (name, t) in named { t.name = name }
        parameterNames = named.map(\.0)
        parameters = Dictionary(uniqueKeysWithValues: named)
        initWeights(seed: seed)
    }

    public func param(_ name: String) -> Tensor { parameters[name]! }

    /// Upstream's init_weights, drawn from our own seeded generator: wte ~ N(0, 0.8), lm_head ~ N(0, 0.001),
    /// c_q/c_k/c_v and value embeddings ~ U(-s, s) with s = sqrt(3 / n_embd), c_fc ~ U(-0.4 s, 0.4 s), both
    /// projections zero, gates ~ U(0, 0.02), resid_lambdas 1.15 -> 1.05 and x0_lambdas 0.20 -> 0.05 over the
    /// layers, smear_lambda 0, backout_lambda 0.2.
    public func initWeights(seed: UInt64) {
        var rng = RNG(seed: seed)
        let l = config.n_layer
        let s = Float(3).squareRoot() / Float(config.n_embd).squareRoot()
        func fill(_ t: Tensor, _ f: (inout RNG) -> Float) { for i in 0..<t.count { t.data[i] = f(&rng) } }
        fill(wte) { $0.normal() * 0.8 }
        fill(lm_head) { $0.normal() * 0.001 }
        for (i, block) in h.enumerated() {
            for w in [block.attn.c_q, block.attn.c_k, block.attn.c_v] { fill(w) { $0.uniform(-s, s) } }
            fill(block.attn.c_proj) { _ in 0 }
            fill(block.mlp.c_fc) { $0.uniform(-0.4 * s, 0.4 * s) }
            fill(block.mlp.c_proj) { _ in 0 }
            if let gate = block.attn.ve_gate, let ve = value_embeds[i] {
                fill(gate) { $0.uniform(0, 0.02) }
                fill(ve) { $0.uniform(-s, s) }
            }
            let frac = Float(i) / Float(max(l - 1, 1))
            resid_lambdas.data[i] = 1.15 - 0.10 * frac
            x0_lambdas.data[i] = 0.20 - 0.15 * frac
        }
        smear_lambda.data[0] = 0
        backout_lambda.data[0] = 0.2
        fill(smear_gate) { $0.uniform(0, 0.02) }
    }

    /// Upstream's forward. `idx` holds B rows of T token ids. With `targets` (-1 = ignored) it returns the
    /// cross-entropy (a scalar mean, or one loss per token); without, the softcapped logits [B, T, vocab]
    /// (or [B, vocab] for the last position of each row with `lastOnly`).
    /// With a `cache` (inference, no gradient), row i of the batch continues cache row `rows[i]` (row i by default)
    /// from that row's position: its keys and values are appended there and attention reads the cached ones.
    public func forward(_ idx: [Int32], batch B: Int, time T: Int, targets: [Int32]? = nil,
                        reduction: LossReduction = .mean, cache: KVCache? = nil, rows: [Int]? = nil,
                        lastOnly: Bool = false) -> Tensor {
        // a pass over a KV cache is inference: it records no graph (upstream runs it under inference_mode)
        let recording = Tensor.gradEnabled
        if cache != nil { Tensor.gradEnabled = false }
        defer { Tensor.gradEnabled = recording }
        var x = hiddenStates(idx, batch: B, time: T, cache: cache, rows: rows)

        if let targets {
            if reduction == .none {
                let losses = LMHead.lossPerRow(x, lm_head, targets: targets, vocab: config.vocab_size, softcap: Self.softcap)
                return Tensor(shape: [B * T], values: losses)
            }
            return LMHead.loss(x, lm_head, targets: targets, vocab: config.vocab_size, softcap: Self.softcap)
        }
        if lastOnly && T > 1 { x = lastPosition(x) }
        return LMHead.logits(x, lm_head, vocab: config.vocab_size, softcap: Self.softcap)
    }

    /// The transformer without its head: the final normed hidden state [B, T, n_embd] that the LM head reads.
    /// Evaluation calls it directly to run the head only at the positions it scores.
    public func hiddenStates(_ idx: [Int32], batch B: Int, time T: Int, cache: KVCache? = nil, rows: [Int]? = nil) -> Tensor {
        precondition(idx.count == B * T, "forward: \(idx.count) ids for B=\(B) T=\(T)")
        precondition(cache == nil || cache!.gpu === wte.gpu, "the KV cache is not on the model's device (make it with KVCache(for: model))")
        let pass = cache?.begin(rows: rows, batch: B, time: T, positions: rotary.cos.shape[0])
        let ids = TokenIds(idx, on: wte.gpu)  // on a GPU: copied there once, for every embedding below

        var x = norm(embedding(wte, ids, shape: [B, T]))
        // smear: mix the previous position's embedding into each position (from the cache across chunks)
        x = smear(x, gate: smear_gate, lambda: smear_lambda, previous: pass?.exchangeSmearState(x))
        let x0 = x  // the normed embedding, blended back in at every layer
        let backoutLayer = config.n_layer / 2
        var xBackout: Tensor? = nil
        for (i, block) in h.enumerated() {
            // x = resid_lambda x + x0_lambda x0, and norm(x) for the attention (one pass on a GPU)
            let (mixed, normed) = scalarMixNorm(resid_lambdas, i, x, x0_lambdas, i, x0, bf16NormOnGPU: true)
            let ve = value_embeds[i].map { embedding($0, ids, shape: [B, T]) }
            x = block(mixed, normed: normed, ve: ve, rotary: rotary, window: windows[i], cache: pass)
            if i == backoutLayer { xBackout = x }
        }
        // backout: subtract the mid-layer residual to remove low-level features before the head
        if let xBackout { x = subtractScaled(x, backout_lambda, xBackout) }
        x = norm(x)
        pass?.end()
        return x
    }

    /// The longest sequence a forward accepts: the rotary tables cover 10 x sequence_len positions, as upstream's.
    public var maxPositions: Int { rotary.cos.shape[0] }

    public func zeroGrad() { for t in parameters.values { t.grad = nil } }

    /// Where the model's parameters live, and so where its forward, backward and optimizer run.
    public var device: Device { wte.device }

    /// Moves every parameter (and the rotary tables) to `device` in place: the same `GPT`, its ops now running there.
    /// Make the optimizer after this, so that its state is created beside the parameters.
    public func useDevice(_ device: Device) {
        for t in parameters.values { t.move(to: device) }
        rotary.cos.move(to: device)
        rotary.sin.move(to: device)
    }
}

/// A parameter: a tensor that wants a gradient (filled by `initWeights` or a checkpoint).
private func parameter(_ shape: [Int]) -> Tensor { Tensor(shape: shape, requiresGrad: true) }

extension GPT {
    /// The matrices inference multiplies by (every block's projections and lm_head) in `format`, made from the float32
    /// weights, which stay for training and checkpoints; embeddings (a row gathered per token) and the small gates stay
    /// float32. Returns the bytes a decode step then reads from those matrices. `.f32` removes the quantized copies.
    @discardableResult
    public func useWeights(_ format: WeightFormat) -> Int {
        weightFormat = format
        for w in inferenceMatrices { w.quantized = QuantizedWeights(w, format: format) }
        return matrixBytesPerStep
    }

    /// Every block's projections and lm_head: the matrices inference multiplies by.
    var inferenceMatrices: [Tensor] {
        h.flatMap { [$0.attn.c_q, $0.attn.c_k, $0.attn.c_v, $0.attn.c_proj, $0.mlp.c_fc, $0.mlp.c_proj] } + [lm_head]
    }

    /// The bytes a decode step reads from those matrices in their current format (lm_head's rows past the vocabulary,
    /// padding to 64, are never read).
    public var matrixBytesPerStep: Int {
        inferenceMatrices.reduce(0) { sum, w in
            let rows = w === lm_head ? config.vocab_size : w.shape[0]
            return sum + Int(Double(rows * w.shape[1]) * (w.quantized?.format ?? .f32).bytesPerWeight)
        }
    }
}
