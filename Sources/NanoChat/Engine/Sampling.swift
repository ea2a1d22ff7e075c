import Foundation
import NanoTensor

extension GPT {
    /// Greedy or sampled continuation without a KV cache (upstream's naive `generate`, the reference the engine
    /// is tested against): re-runs the whole sequence for each new token.
    public func generate(_ tokens: [Int], maxTokens: Int, temperature: Float = 0, topK: Int? = nil, seed: UInt64 = 42) -> [Int] {
        var seq = tokens.map { Int32($0) }
        var rng = RNG(seed: seed)
        var out: [Int] = []
        for _ in 0..<maxTokens {
            let window = Array(seq.suffix(config.sequence_len))
            let logits = Tensor.withoutGrad {
                forward(window, batch: 1, time: window.count, lastOnly: true).hostArray()
            }
            let next = sampleToken(logits, temperature: temperature, topK: topK, rng: &rng)
            out.append(next)
            seq.append(Int32(next))
        }
        return out
    }
}

/// Argmax at temperature 0; otherwise top-k filtering, temperature, softmax and a draw.
public func sampleToken(_ logits: [Float], temperature: Float, topK: Int?, rng: inout RNG) -> Int {
    logits.withUnsafeBufferPointer { sampleToken($0, temperature: temperature, topK: topK, rng: &rng) }
}

/// The same over a row of a logits tensor. Top-k keeps a small sorted list (ties in index order, as a stable
/// sort would) instead of sorting the whole vocabulary: one pass, k comparisons only for the few that qualify.
public func sampleToken(_ logits: UnsafeBufferPointer<Float>, temperature: Float, topK: Int?, rng: inout RNG) -> Int {
    let n = logits.count
    if temperature <= 0 {
        var best = 0
        for i in 1..<n where logits[i] > logits[best] { best = i }
        return best
    }
    if let k = topK, k > 0, k < n {
        var idx = [Int](), val = [Float]()
        idx.reserveCapacity(k + 1); val.reserveCapacity(k + 1)
        for i in 0..<n {
            let x = logits[i]
            if val.count == k && x <= val[k - 1] { continue }
            var at = val.count
            while at > 0 && val[at - 1] < x { at -= 1 }
            val.insert(x, at: at); idx.insert(i, at: at)
            if val.count > k { val.removeLast(); idx.removeLast() }
        }
        let m = val[0]
        var total = 0.0
        for x in val { total += Double(expf((x - m) / temperature)) }
        var r = Double(rng.unit()) * total
        for (j, x) in val.enumerated() {
            r -= Double(expf((x - m) / temperature))
            if r <= 0 { return idx[j] }
        }
        return idx[val.count - 1]
    }
    var m = logits[0]
    for i in 1..<n where logits[i] > m { m = logits[i] }
    var total = 0.0
    for i in 0..<n { total += Double(expf((logits[i] - m) / temperature)) }
    var r = Double(rng.unit()) * total
    for i in 0..<n {
        r -= Double(expf((logits[i] - m) / temperature))
        if r <= 0 { return i }
    }
    return n - 1
}
