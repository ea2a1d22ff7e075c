import Foundation

/// Everything that follows from `--depth` (SPEC §3.1, §3.6, §4.2), in one place.
public struct DepthPlan: Equatable {
    public var depth: Int
    public var config: GPTConfig
    public var params: ParamCounts
    /// Scaling-law parameter count N = transformer matrices + lm_head.
    public var scalingParams: Int
    public var flopsPerToken: Int
    public var targetTokens: Int
    public var totalBatchSize: Int
    public var batchLRScale: Double
    public var weightDecay: Double
    public var numIterations: Int
    /// AdamW learning rates are multiplied by (C / 768)^-0.5.
    public var adamwDModelLRScale: Double

    public struct ParamCounts: Equatable {
        public var wte = 0, valueEmbeds = 0, lmHead = 0, transformerMatrices = 0, scalars = 0
        public var total: Int { wte + valueEmbeds + lmHead + transformerMatrices + scalars }
    }

    public static let referenceBatch = 1 << 19  // B_REF, tokens

    /// The model shape for a depth: model_dim = ceil(depth * aspect / head_dim) * head_dim, heads = dim / head_dim.
    public static func config(depth: Int, aspectRatio: Int = 64, headDim: Int = 128, maxSeqLen: Int = 2048,
                              vocabSize: Int = 32768, windowPattern: String = "SSSL") -> GPTConfig {
        let dim = (depth * aspectRatio + headDim - 1) / headDim * headDim
        return GPTConfig(sequence_len: maxSeqLen, vocab_size: vocabSize, n_layer: depth, n_head: dim / headDim,
                         n_kv_head: dim / headDim, n_embd: dim, window_pattern: windowPattern)
    }

    public static func counts(_ c: GPTConfig) -> ParamCounts {
        let v = c.paddedVocab, e = c.n_embd, hd = c.headDim
        var p = ParamCounts()
        p.wte = v * e
        p.lmHead = v * e
        for i in 0..<c.n_layer {
            p.transformerMatrices += c.n_head * hd * e + 2 * c.n_kv_head * hd * e + e * e + 8 * e * e
            if c.hasValueEmbedding(i) {
                p.transformerMatrices += c.n_kv_head * GPT.veGateChannels
                p.valueEmbeds += v * c.n_kv_head * hd
            }
        }
        p.scalars = 2 * c.n_layer + GPT.smearChannels + 2
        return p
    }

    /// FLOPs per token for forward + backward: 6 * matmul params + 12 * H * D * min(window, T) per layer.
    public static func flopsPerToken(_ c: GPTConfig, windows: [Int]? = nil) -> Int {
        let p = counts(c)
        let matmul = p.transformerMatrices + p.lmHead + GPT.smearChannels
        let attn = (windows ?? c.windowSizes).reduce(0) { $0 + 12 * c.n_head * c.headDim * min($1, c.sequence_len) }
        return 6 * matmul + attn
    }

    /// The full plan, upstream's precedence: --num-iterations, else --target-flops, else the data:param ratio.
    public static func make(depth: Int, aspectRatio: Int = 64, headDim: Int = 128, maxSeqLen: Int = 2048,
                            vocabSize: Int = 32768, windowPattern: String = "SSSL", targetParamDataRatio: Double = 12,
                            weightDecay: Double = 0.28, totalBatchSize: Int = -1, numIterations: Int = -1,
                            targetFlops: Double = -1) -> DepthPlan {
        func n(_ c: GPTConfig) -> Int { let p = counts(c); return p.transformerMatrices + p.lmHead }
        let cfg = config(depth: depth, aspectRatio: aspectRatio, headDim: headDim, maxSeqLen: maxSeqLen,
                         vocabSize: vocabSize, windowPattern: windowPattern)
        let ref = config(depth: 12, aspectRatio: aspectRatio, headDim: headDim, maxSeqLen: maxSeqLen,
                         vocabSize: vocabSize, windowPattern: windowPattern)
        let scaling = n(cfg)
        let targetTokens = Int(targetParamDataRatio * Double(scaling))
        let dRef = targetParamDataRatio * Double(n(ref))
        let bRef = Double(referenceBatch)
        var batch = totalBatchSize
        if batch <= 0 {
            let ideal = bRef * pow(Double(targetTokens) / dRef, 0.383)
            batch = 1 << Int(log2(ideal).rounded(.toNearestOrEven))
        }
        let flops = flopsPerToken(cfg)
        let iterations: Int
        if numIterations > 0 {
            iterations = numIterations
        } else if targetFlops > 0 {
            iterations = Int((targetFlops / (Double(flops) * Double(batch))).rounded(.toNearestOrEven))
        } else {
            iterations = targetTokens / batch
        }
        return DepthPlan(
            depth: depth, config: cfg, params: counts(cfg), scalingParams: scaling, flopsPerToken: flops,
            targetTokens: targetTokens, totalBatchSize: batch, batchLRScale: (Double(batch) / bRef).squareRoot(),
            weightDecay: weightDecay * (Double(batch) / bRef).squareRoot() * (dRef / Double(targetTokens)),
            numIterations: iterations, adamwDModelLRScale: pow(Double(cfg.n_embd) / 768, -0.5))
    }
}
