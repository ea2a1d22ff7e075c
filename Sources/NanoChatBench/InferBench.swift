import Foundation
import NanoChat
import NanoTensor

/// Inference throughput of one model size on random weights (what `nanochat bench infer` prints): prefill of a
/// prompt, and decoding with the KV cache at a batch size, in each weight format, with where a decode step's time
/// went and the limit the memory bandwidth sets.
public final class InferBench {
    public let model: GPT
    public let prompt: Int, tokens: Int
    let ids: [Int32]

    /// Depth `depth` with head-dim 64, window L and a 32768-token vocabulary; a `prompt`-token prompt of random ids,
    /// then `tokens` decoded tokens per run.
    public init(depth: Int, prompt: Int, tokens: Int) throws {
        let plan = DepthPlan(try BaseTrainOptions.parse(["--depth", "\(depth)", "--head-dim", "64", "--window-pattern", "L"]),
                             vocabSize: 32768)
        model = try GPT(config: plan.config)
        var rng = RNG(seed: 3)
        ids = (0..<prompt).map { _ in Int32(rng.next() % 32768) }
        self.prompt = prompt
        self.tokens = tokens
    }

    /// Prefill tok/s per format, the formats taking turns (five rounds, each format's best kept): a prefill is short
    /// and the neighbours' load drifts over the minutes the formats' runs take, so measured one format after the other
    /// the comparison would mostly measure the drift.
    public func prefillRates(_ formats: [WeightFormat]) -> [WeightFormat: Double] {
        var best: [WeightFormat: Double] = [:]
        for _ in 0..<5 {
            for format in formats {
                model.useWeights(format)
                let cache = KVCache(for: model, batch: 1, capacity: prompt + tokens)
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = model.forward(ids, batch: 1, time: prompt, cache: cache, lastOnly: true).to(.cpu)
                best[format] = min(best[format] ?? .infinity, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
            }
        }
        return best.mapValues { Double(prompt) / $0 }
    }

    /// The read bandwidth (GB/s) over a buffer the size of `bytes` of weights, read again and again as decoding does
    /// (weights that fit partly in the last-level cache stream faster than DRAM): the better of one thread and all.
    public static func bandwidth(overBytes bytes: Int) -> Double {
        let mb = Int((Double(bytes) / 1_048_576).rounded(.up))
        return max(measureReadBandwidth(megabytes: mb, threads: 1), measureReadBandwidth(megabytes: mb, threads: Threading.workers))
    }

    /// Decode tok/s at `batch` rows in the current format (the best of at least three runs, and of as many more as
    /// fit in a second, up to 15: single runs are noisy on a shared machine, and a small model's run takes 0.1 s),
    /// with the best run's per-op time (`Profiler`), in seconds over all its tokens.
    public func decode(batch: Int) -> (tokensPerSecond: Double, breakdown: [(String, Double, Int)]) {
        let cache = KVCache(for: model, batch: batch, capacity: prompt + tokens + 1)
        _ = model.forward(Array(repeating: ids, count: batch).flatMap { $0 }, batch: batch, time: prompt, cache: cache, lastOnly: true)
        let col = [Int32](repeating: 7, count: batch)
        _ = model.forward(col, batch: batch, time: 1, cache: cache, lastOnly: true)  // warm
        var best = Double.infinity, runs = 0, spent = 0.0
        var breakdown: [(String, Double, Int)] = []
        while runs < 3 || (spent < 1 && runs < 15) {
            runs += 1
            cache.rewind(to: prompt + 1)
            Profiler.reset()
            Profiler.enabled = true
            let t0 = DispatchTime.now().uptimeNanoseconds
            // the logits to the host each step, as the engine samples them (nothing on the CPU; a copy from a GPU)
            for _ in 0..<tokens { _ = model.forward(col, batch: batch, time: 1, cache: cache, lastOnly: true).to(.cpu) }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            spent += seconds
            Profiler.enabled = false
            if seconds < best {
                best = seconds
                breakdown = Profiler.report
            }
        }
        return (Double(tokens * batch) / best, breakdown)
    }
}
