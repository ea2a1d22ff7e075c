import Foundation

/// Everything that follows from `--depth`, in one place (upstream's base_train): the model shape
/// (model_dim = depth x aspect ratio rounded up to the head dim), the parameter counts, FLOPs per token, the
/// training horizon (target tokens = ratio x scaling parameters), the batch size (from a power law around
/// 2^19 tokens at d12), the batch LR scale sqrt(B / 2^19) and the weight decay scaled with batch and horizon.
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
    public static func config(depth: Int, aspectRatio: Int, headDim: Int, maxSeqLen: Int, vocabSize: Int,
                              windowPattern: String) -> GPTConfig {
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
                p.transformerMatrices += c.n_kv_head * Attention.veGateChannels
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
}

extension DepthPlan {
    /// The full plan for base-train's flags, upstream's precedence for the horizon: --num-iterations, else
    /// --target-flops, else the data:param ratio.
    public init(_ o: BaseTrainOptions, vocabSize: Int) {
        func n(_ c: GPTConfig) -> Int { let p = Self.counts(c); return p.transformerMatrices + p.lmHead }
        let cfg = Self.config(depth: o.depth, aspectRatio: o.aspectRatio, headDim: o.headDim, maxSeqLen: o.maxSeqLen,
                              vocabSize: vocabSize, windowPattern: o.windowPattern)
        let ref = Self.config(depth: 12, aspectRatio: o.aspectRatio, headDim: o.headDim, maxSeqLen: o.maxSeqLen,
                              vocabSize: vocabSize, windowPattern: o.windowPattern)
        let scaling = n(cfg)
        let targetTokens = Int(o.targetParamDataRatio * Double(scaling))
        let dRef = o.targetParamDataRatio * Double(n(ref))
        let bRef = Double(Self.referenceBatch)
        var batch = o.totalBatchSize
        if batch <= 0 {
            let ideal = bRef * pow(Double(targetTokens) / dRef, 0.383)
            batch = 1 << Int(log2(ideal).rounded(.toNearestOrEven))
        }
        let flops = Self.flopsPerToken(cfg)
        let iterations: Int
        if o.numIterations > 0 {
            iterations = o.numIterations
        } else if o.targetFlops > 0 {
            iterations = Int((o.targetFlops / (Double(flops) * Double(batch))).rounded(.toNearestOrEven))
        } else {
            iterations = targetTokens / batch
        }
        self.init(
            depth: o.depth, config: cfg, params: Self.counts(cfg), scalingParams: scaling, flopsPerToken: flops,
            targetTokens: targetTokens, totalBatchSize: batch, batchLRScale: (Double(batch) / bRef).squareRoot(),
            weightDecay: o.weightDecay * (Double(batch) / bRef).squareRoot() * (dRef / Double(targetTokens)),
            numIterations: iterations, adamwDModelLRScale: pow(Double(cfg.n_embd) / 768, -0.5))
    }
}
