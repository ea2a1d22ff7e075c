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

/// How a token is drawn, beyond temperature and top-k: OpenAI's `top_p`, `frequency_penalty` and `presence_penalty`.
/// The penalties lower each token's logit by `frequencyPenalty` x (times the answer has produced it) and
/// `presencePenalty` once it has appeared (over the generated tokens, not the prompt); then top-k, the temperature,
/// and top-p (the smallest set of most likely tokens whose probabilities reach `topP`) choose the candidates.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Float
    public var topK: Int?
    public var topP: Float?
    public var frequencyPenalty: Float
    public var presencePenalty: Float

    public init(temperature: Float, topK: Int? = nil, topP: Float? = nil, frequencyPenalty: Float = 0, presencePenalty: Float = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP
        self.frequencyPenalty = frequencyPenalty; self.presencePenalty = presencePenalty
    }

    /// Whether the penalties change any logit.
    public var penalizes: Bool { frequencyPenalty != 0 || presencePenalty != 0 }
    /// Whether top-p removes anything.
    var nucleus: Bool { (topP ?? 1) < 1 }
}

/// A draw with `options` (the penalties already applied to `logits` by the caller): without top-p it is exactly
/// `sampleToken(temperature:topK:)`, the same random stream included.
public func sampleToken(_ logits: UnsafeBufferPointer<Float>, options: SamplingOptions, rng: inout RNG) -> Int {
    guard options.nucleus, options.temperature > 0 else {
        return sampleToken(logits, temperature: options.temperature, topK: options.topK, rng: &rng)
    }
    // candidates by logit, most likely first (top-k first when given), then the nucleus of their softmax
    let n = logits.count
    var order = Array(0..<n)
    order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
    if let k = options.topK, k > 0, k < n { order.removeSubrange(k...) }
    let m = logits[order[0]], t = options.temperature
    var weights = order.map { Double(expf((logits[$0] - m) / t)) }
    let total = weights.reduce(0, +)
    var kept = 0, mass = 0.0
    let target = Double(options.topP!) * total
    while kept < weights.count {
        mass += weights[kept]
        kept += 1
        if mass >= target { break }
    }
    weights.removeSubrange(kept...)
    var r = Double(rng.unit()) * mass
    for (j, w) in weights.enumerated() {
        r -= w
        if r <= 0 { return order[j] }
    }
    return order[kept - 1]
}

/// Stop sequences (OpenAI's `stop`) over streamed text: `push` returns what may be shown now (text that cannot be the
/// start of a stop sequence) and whether a stop sequence was reached; the answer then ends before it, the stop
/// sequence itself never shown.
public struct StopMatcher {
    public let sequences: [String]
    var held = ""
    public private(set) var stopped = false

    public init(_ sequences: [String]) { self.sequences = sequences.filter { !$0.isEmpty } }

    public mutating func push(_ piece: String) -> String {
        guard !stopped else { return "" }
        if sequences.isEmpty { return piece }
        held += piece
        // the earliest stop sequence in what is held ends the answer there
        var cut: String.Index? = nil
        for s in sequences { if let r = held.range(of: s), cut == nil || r.lowerBound < cut! { cut = r.lowerBound } }
        if let cut {
            stopped = true
            defer { held = "" }
            return String(held[..<cut])
        }
        // hold back the longest tail that is the start of a stop sequence
        var keep = 0
        for s in sequences {
            for len in stride(from: min(s.count - 1, held.count), to: 0, by: -1) where held.hasSuffix(String(s.prefix(len))) {
                keep = max(keep, len)
                break
            }
        }
        let emit = String(held.dropLast(keep))
        held = String(held.suffix(keep))
        return emit
    }

    /// The text still held back when the answer ends without a stop sequence.
    public mutating func flush() -> String {
        defer { held = "" }
        return stopped ? "" : held
    }
}
