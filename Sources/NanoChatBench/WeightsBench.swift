import Foundation
import NanoChat
import NanoTensor

/// How one weight format of a trained model compares with float32 (`nanochat bench weights`).
public struct WeightQuality {
    public var format: WeightFormat
    /// Bytes of the matrices in this format.
    public var bytes: Int
    public var bitsPerByte: Double
    /// Greedy tokens identical to float32's, position by position; and teacher-forced, the share of float32's greedy
    /// tokens this format would also have picked after float32's prefix.
    public var identical: Double, teacherForced: Double
    /// The continuation of the first prompt.
    public var firstContinuation: [Int]
}

/// Every weight format of `model` (f32 first, the reference): bits per byte over `splitTokens` of the validation shard
/// and greedy continuations of `prompts`, each handed to `measured` as soon as it is done (a format takes a while).
/// Leaves the model on float32.
@discardableResult
public func weightQualities(model: GPT, tokenizer tok: Tokenizer, seqLen: Int, splitTokens: Int, batch: Int, maxTokens: Int,
                            prompts: [String], measured: (WeightQuality) -> Void = { _ in }) throws -> [WeightQuality] {
    var out: [WeightQuality] = []
    var reference: [[Int]] = []
    defer { model.useWeights(.f32) }
    for format in WeightFormat.allCases {
        let bytes = model.useWeights(format)
        let loader = try BestFitLoader(tokenizer: tok, shards: ShardSet(directory: BaseDir.pretrainData, split: "val"),
                                       batch: batch, seqLen: seqLen)
        let bpb = try evaluateBPB(model: model, loader: loader, steps: max(1, splitTokens / (batch * seqLen)),
                                  tokenBytes: tok.tokenByteCounts)
        let outs = prompts.map { model.generate([tok.bosID] + tok.encode($0), maxTokens: maxTokens) }
        if format == .f32 { reference = outs }
        var same = 0, forced = 0, total = 0
        for (p, (ref, gen)) in zip(prompts, zip(reference, outs)) {
            same += zip(ref, gen).filter { $0 == $1 }.count
            total += ref.count
            // teacher-forced: would this model pick float32's token after float32's prefix?
            let ids = [tok.bosID] + tok.encode(p) + ref
            let n0 = ids.count - ref.count
            let logits = Tensor.withoutGrad { model.forward(ids.map { Int32($0) }, batch: 1, time: ids.count).array }
            let v = model.config.vocab_size
            for (i, t) in ref.enumerated() {
                let row = logits[((n0 + i - 1) * v)..<((n0 + i) * v)]
                if row.firstIndex(of: row.max()!)! - (n0 + i - 1) * v == t { forced += 1 }
            }
        }
        out.append(WeightQuality(format: format, bytes: bytes, bitsPerByte: bpb, identical: Double(same) / Double(max(total, 1)),
                                 teacherForced: Double(forced) / Double(max(total, 1)), firstContinuation: outs.first ?? []))
        measured(out.last!)
    }
    return out
}
