import Foundation
import NanoTensor

/// Upstream's Engine: prefill the prompt once (batch 1), share that cache across `numSamples`
/// rows, then decode step by step with per-row sampling, forced tool tokens and stop detection.
public final class Engine {
    public let model: GPT
    public let tokenizer: Tokenizer
    let assistantEnd: Int, bos: Int
    let pythonStart: Int?, pythonEnd: Int?, outputStart: Int?, outputEnd: Int?

    public init(model: GPT, tokenizer: Tokenizer) {
        self.model = model
        self.tokenizer = tokenizer
        assistantEnd = tokenizer.specialID("<|assistant_end|>") ?? -1
        bos = tokenizer.bosID
        pythonStart = tokenizer.specialID("<|python_start|>")
        pythonEnd = tokenizer.specialID("<|python_end|>")
        outputStart = tokenizer.specialID("<|output_start|>")
        outputEnd = tokenizer.specialID("<|output_end|>")
    }

    struct RowState {
        var forced: [Int] = []
        var inPython = false
        var expression: [Int] = []
        var completed = false
        /// Times each token was generated in this row (for the frequency and presence penalties).
        var counts: [Int: Int] = [:]
        /// The row's logits with the penalties applied (only when penalties are asked for).
        var penalized: [Float] = []
    }

    /// Why `prompt` plus `maxTokens` new tokens cannot be generated, or nil: an empty prompt, too many positions
    /// for the rotary tables (as upstream: 10 x sequence_len), an id outside the vocabulary.
    public func refusal(prompt: [Int], maxTokens: Int) -> NanoChatError? {
        let positions = 10 * model.config.sequence_len
        if prompt.isEmpty { return NanoChatError("the prompt is empty") }
        if prompt.count + maxTokens > positions {
            return NanoChatError("the prompt (\(prompt.count) tokens) plus \(maxTokens) new tokens exceeds the model's \(positions) positions; start a new conversation")
        }
        if let bad = prompt.first(where: { $0 < 0 || $0 >= model.config.vocab_size }) {
            return NanoChatError("token id \(bad) is outside the model's vocabulary of \(model.config.vocab_size)")
        }
        return nil
    }

    /// One row's next token: sampled from its logits (always, so the random stream does not depend on the tool)
    /// unless the calculator forces one; advances the row's tool state and marks it completed at a stop token.
    func nextToken(_ row: inout RowState, logits: UnsafeBufferPointer<Float>, options: SamplingOptions,
                   rng: inout RNG) -> (token: Int, sampled: Bool) {
        let sampled: Int
        if options.penalizes && !row.counts.isEmpty {
            // a copy of this row's logits, lowered for the tokens the answer has already produced
            if row.penalized.count != logits.count { row.penalized = [Float](repeating: 0, count: logits.count) }
            row.penalized.withUnsafeMutableBufferPointer { p in
                _ = p.initialize(from: logits)
                for (t, c) in row.counts where t < p.count { p[t] -= options.frequencyPenalty * Float(c) + options.presencePenalty }
            }
            sampled = row.penalized.withUnsafeBufferPointer { sampleToken($0, options: options, rng: &rng) }
        } else {
            sampled = sampleToken(logits, options: options, rng: &rng)
        }
        let forced = !row.forced.isEmpty
        let token = forced ? row.forced.removeFirst() : sampled
        if options.penalizes { row.counts[token, default: 0] += 1 }
        if token == assistantEnd || token == bos { row.completed = true }
        step(&row, token)
        return (token, !forced)
    }

    /// Streams (token per row, mask per row: 1 sampled, 0 forced) until `maxTokens` or every row completed.
    /// `onStep` returns false to stop early (a client went away, Ctrl-C).
    public func generate(_ tokens: [Int], numSamples: Int = 1, maxTokens: Int? = nil, temperature: Float = 1,
                         topK: Int? = nil, seed: UInt64 = 42, onStep: ([Int], [Int]) -> Bool) throws {
        try generate(tokens, numSamples: numSamples, maxTokens: maxTokens, sampling: SamplingOptions(temperature: temperature, topK: topK),
                     seed: seed, onStep: onStep)
    }

    /// The same with every sampling option (top-p, penalties).
    public func generate(_ tokens: [Int], numSamples: Int = 1, maxTokens: Int? = nil, sampling: SamplingOptions,
                         seed: UInt64 = 42, onStep: ([Int], [Int]) -> Bool) throws {
        guard !tokens.isEmpty else { return }
        let limit = maxTokens ?? model.config.sequence_len
        if let refusal = refusal(prompt: tokens, maxTokens: limit) { throw refusal }
        guard numSamples >= 1 else { throw NanoChatError("numSamples must be at least 1") }
        var rng = RNG(seed: seed)
        let prefillCache = KVCache(for: model, batch: 1, capacity: tokens.count)
        let prompt = tokens.map { Int32($0) }
        // every row starts from the prompt's last logits; then row r reads row r of the step's output
        var logits = model.forward(prompt, batch: 1, time: prompt.count, cache: prefillCache, lastOnly: true).to(.cpu)  // sampling reads the logits on the host (a GPU's: one copy per step)
        var rowStride = 0
        let cache = prefillCache.broadcast(batch: numSamples, capacity: tokens.count + limit)
        var rows = [RowState](repeating: RowState(), count: numSamples)
        var column = [Int](repeating: 0, count: numSamples), mask = column
        let v = model.config.vocab_size
        var generated = 0
        while generated < limit && !rows.allSatisfy(\.completed) {
            for r in 0..<numSamples {
                let next = nextToken(&rows[r], logits: UnsafeBufferPointer(start: logits.data + r * rowStride, count: v),
                                     options: sampling, rng: &rng)
                column[r] = next.token
                mask[r] = next.sampled ? 1 : 0
            }
            generated += 1
            if !onStep(column, mask) { return }
            if generated >= limit || rows.allSatisfy(\.completed) { break }
            logits = model.forward(column.map { Int32($0) }, batch: numSamples, time: 1, cache: cache, lastOnly: true).to(.cpu)
            rowStride = v
        }
    }

    /// The calculator tool's state machine for one row.
    func step(_ row: inout RowState, _ token: Int) {
        if token == pythonStart {
            row.inPython = true
            row.expression = []
        } else if token == pythonEnd && row.inPython {
            row.inPython = false
            if !row.expression.isEmpty, let text = try? tokenizer.decode(row.expression),
               let result = Calculator.evaluate(text), let os = outputStart, let oe = outputEnd {
                row.forced += [os] + tokenizer.encode(result) + [oe]
            }
            row.expression = []
        } else if row.inPython {
            row.expression.append(token)
        }
    }

    /// Whole sequences: prompt + generated tokens up to (not including) the first assistant_end/bos per row,
    /// with masks (0 prompt, 1 sampled, 0 forced).
    public func generateBatch(_ tokens: [Int], numSamples: Int = 1, maxTokens: Int? = nil, temperature: Float = 1,
                              topK: Int? = nil, seed: UInt64 = 42) throws -> (sequences: [[Int]], masks: [[Int]]) {
        var seqs = [[Int]](repeating: tokens, count: numSamples)
        var masks = [[Int]](repeating: [Int](repeating: 0, count: tokens.count), count: numSamples)
        var done = [Bool](repeating: false, count: numSamples)
        try generate(tokens, numSamples: numSamples, maxTokens: maxTokens, temperature: temperature, topK: topK, seed: seed) { col, m in
            for r in 0..<numSamples where !done[r] {
                if col[r] == assistantEnd || col[r] == bos { done[r] = true; continue }
                seqs[r].append(col[r])
                masks[r].append(m[r])
            }
            return !done.allSatisfy { $0 }
        }
        return (seqs, masks)
    }
}
