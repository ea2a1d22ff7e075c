import Foundation
import NanoTensor

private typealias P = Profiler

/// Upstream's GPT (SPEC §3): rotary (base 100000), QK-norm with gain 1.2, relu^2 MLP, untied embeddings,
/// parameter-free RMSNorm, value embeddings with gates on alternating layers, smear gate, backout,
/// residual/x0 lambdas, logit softcap 15, GQA, sliding windows, vocabulary padded to 64.
/// Parameters carry upstream's names, so checkpoints load into PyTorch unchanged.
public final class GPT {
    public let config: GPTConfig
    /// Left window per layer; defaults to the pattern's, settable (fixtures set them by hand).
    public var windows: [Int]
    /// Every parameter by upstream name, and the names in upstream's order.
    public private(set) var parameters: [String: Tensor] = [:]
    public private(set) var parameterNames: [String] = []
    let cos: Tensor, sin: Tensor

    public static let softcap: Float = 15
    public static let qkGain: Float = 1.2
    public static let smearChannels = 24
    public static let veGateChannels = 12

    public init(config: GPTConfig, seed: UInt64 = 42) throws {
        try config.validate()
        self.config = config
        windows = config.windowSizes
        (cos, sin) = rotaryTables(length: 10 * config.sequence_len, headDim: config.headDim)
        let c = config.n_embd, v = config.paddedVocab, hd = config.headDim
        func add(_ name: String, _ shape: [Int]) {
            parameters[name] = Tensor(shape: shape, requiresGrad: true)
            parameters[name]!.name = name
            parameterNames.append(name)
        }
        add("transformer.wte.weight", [v, c])
        for i in 0..<config.n_layer {
            let p = "transformer.h.\(i)."
            add(p + "attn.c_q.weight", [config.n_head * hd, c])
            add(p + "attn.c_k.weight", [config.n_kv_head * hd, c])
            add(p + "attn.c_v.weight", [config.n_kv_head * hd, c])
            add(p + "attn.c_proj.weight", [c, c])
            if config.hasValueEmbedding(i) { add(p + "attn.ve_gate.weight", [config.n_kv_head, Self.veGateChannels]) }
            add(p + "mlp.c_fc.weight", [4 * c, c])
            add(p + "mlp.c_proj.weight", [c, 4 * c])
        }
        add("lm_head.weight", [v, c])
        for i in 0..<config.n_layer where config.hasValueEmbedding(i) { add("value_embeds.\(i).weight", [v, config.n_kv_head * hd]) }
        add("resid_lambdas", [config.n_layer])
        add("x0_lambdas", [config.n_layer])
        add("smear_gate.weight", [1, Self.smearChannels])
        add("smear_lambda", [1])
        add("backout_lambda", [1])
        initWeights(seed: seed)
    }

    public func param(_ name: String) -> Tensor { parameters[name]! }

    /// Upstream's init_weights (SPEC §3.3), from our own seeded generator.
    public func initWeights(seed: UInt64) {
        var rng = RNG(seed: seed)
        let c = config.n_embd, l = config.n_layer
        let s = Float(3).squareRoot() / Float(c).squareRoot()
        func fill(_ name: String, _ f: (inout RNG) -> Float) {
            let t = param(name)
            for i in 0..<t.count { t.data[i] = f(&rng) }
        }
        fill("transformer.wte.weight") { $0.normal() * 0.8 }
        fill("lm_head.weight") { $0.normal() * 0.001 }
        for i in 0..<l {
            let p = "transformer.h.\(i)."
            for m in ["attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight"] { fill(p + m) { $0.uniform(-s, s) } }
            fill(p + "attn.c_proj.weight") { _ in 0 }
            fill(p + "mlp.c_fc.weight") { $0.uniform(-0.4 * s, 0.4 * s) }
            fill(p + "mlp.c_proj.weight") { _ in 0 }
            if config.hasValueEmbedding(i) {
                fill(p + "attn.ve_gate.weight") { $0.uniform(0, 0.02) }
                fill("value_embeds.\(i).weight") { $0.uniform(-s, s) }
            }
            let frac = Float(i) / Float(max(l - 1, 1))
            param("resid_lambdas").data[i] = 1.15 - 0.10 * frac
            param("x0_lambdas").data[i] = 0.20 - 0.15 * frac
        }
        param("smear_lambda").data[0] = 0
        param("backout_lambda").data[0] = 0.2
        fill("smear_gate.weight") { $0.uniform(0, 0.02) }
    }

    /// The final normalised hidden states [B, T, C] for token ids [B * T].
    /// With a `cache`, row i's tokens sit at positions start ..< +T of cache row `rows[i]` (row i by default):
    /// their keys and values are appended,
    /// attention reads the cached ones and the smear continues from the cached previous embedding (inference).
    public func hidden(_ idx: [Int32], batch b: Int, time t: Int, cache: KVCache? = nil, rows cacheRows: [Int]? = nil) -> Tensor {
        precondition(idx.count == b * t, "forward: \(idx.count) ids for B=\(b) T=\(t)")
        // with a cache, each row of the batch continues its own cache row from that row's position
        let rows = cache?.rowsAndStarts(cacheRows, batch: b) ?? []
        let starts = cache == nil ? nil : rows.map(\.start)
        let last = (starts?.max() ?? 0) + t
        precondition(last <= cos.shape[0], "position \(last) is past the rotary tables")
        cache?.ensureCapacity(last)
        let c = config.n_embd, hd = config.headDim
        var x = P.measure("embedding+norm") { rmsNorm(embedding(param("transformer.wte.weight"), idx, shape: [b, t])) }
        x = P.measure("smear") {
            let smeared = smear(x, gate: param("smear_gate.weight"), lambda: param("smear_lambda"))
            if let cache { continueSmear(x, smeared, batch: b, time: t, cache: cache, rows: rows) }
            return smeared
        }
        let x0 = x
        var saved: Tensor? = nil
        let resid = param("resid_lambdas"), x0l = param("x0_lambdas")
        for i in 0..<config.n_layer {
            let p = "transformer.h.\(i)."
            x = P.measure("scalarMix") { scalarMix(resid, i, x, x0l, i, x0) }
            // attention
            let u = P.measure("rmsNorm") { rmsNorm(x) }
            let q = P.measure("linear.qkv") { linear(u, param(p + "attn.c_q.weight")).reshaped([b, t, config.n_head, hd]) }
            let k = P.measure("linear.qkv") { linear(u, param(p + "attn.c_k.weight")).reshaped([b, t, config.n_kv_head, hd]) }
            var v = P.measure("linear.qkv") { linear(u, param(p + "attn.c_v.weight")) }
            if config.hasValueEmbedding(i) {
                v = P.measure("valueEmbedding") {
                    let ve = embedding(param("value_embeds.\(i).weight"), idx, shape: [b, t])
                    return valueEmbeddingMix(v, ve, u: u, gate: param(p + "attn.ve_gate.weight"), kvHeads: config.n_kv_head)
                }
            }
            let qn = P.measure("rotaryNorm") { rotaryNorm(q, cos: cos, sin: sin, gain: Self.qkGain, rowOffsets: starts) }
            let kn = P.measure("rotaryNorm") { rotaryNorm(k, cos: cos, sin: sin, gain: Self.qkGain, rowOffsets: starts) }
            let y = P.measure("attention") { () -> Tensor in
                guard let cache else { return causalAttention(qn, kn, v.reshaped([b, t, config.n_kv_head, hd]), window: windows[i]) }
                cache.append(layer: i, keys: kn, values: v, time: t, rows: rows)
                return cachedAttention(qn, cache: cache, layer: i, window: windows[i], rows: rows)
            }
            x = P.measure("linear.proj+add") { add(x, linear(y.reshaped([b, t, c]), param(p + "attn.c_proj.weight"))) }
            // MLP
            let h = P.measure("mlp.fc+relu2") { reluSquared(linear(rmsNorm(x), param(p + "mlp.c_fc.weight"))) }
            x = P.measure("mlp.proj+add") { add(x, linear(h, param(p + "mlp.c_proj.weight"))) }
            if i == config.n_layer / 2 { saved = x }
        }
        if let saved { x = P.measure("backout") { subtractScaled(x, param("backout_lambda"), saved) } }
        cache?.advance(rows, by: t)
        return P.measure("rmsNorm") { rmsNorm(x) }
    }

    /// Mean cross-entropy over targets that are not -1 (upstream's forward with targets).
    public func loss(_ idx: [Int32], targets: [Int32], batch b: Int, time t: Int) -> Tensor {
        let h = hidden(idx, batch: b, time: t)
        return P.measure("lmHeadLoss") {
            LMHead.loss(h, param("lm_head.weight"), targets: targets, vocab: config.vocab_size, softcap: Self.softcap)
        }
    }

    /// Per-token losses (0 where the target is -1), no gradient: bits per byte.
    public func lossPerToken(_ idx: [Int32], targets: [Int32], batch b: Int, time t: Int) -> [Float] {
        Tensor.withoutGrad {
            LMHead.lossPerRow(hidden(idx, batch: b, time: t), param("lm_head.weight"), targets: targets,
                              vocab: config.vocab_size, softcap: Self.softcap)
        }
    }

    /// Softcapped logits [B, T, vocab], no gradient.
    public func logits(_ idx: [Int32], batch b: Int, time t: Int) -> Tensor {
        Tensor.withoutGrad {
            LMHead.logits(hidden(idx, batch: b, time: t), param("lm_head.weight"), vocab: config.vocab_size,
                          softcap: Self.softcap)
        }
    }

    public func zeroGrad() { for t in parameters.values { t.grad = nil } }
}

/// A small seeded generator (xoshiro-style mixing) for initialisation and sampling.
public struct RNG {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    public mutating func uniform(_ a: Float, _ b: Float) -> Float { a + (b - a) * unit() }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(unit(), 1e-12), u2 = unit()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}
