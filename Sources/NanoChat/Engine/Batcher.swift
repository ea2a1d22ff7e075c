import Foundation
import NanoTensor

/// Continuous batching over one model: every running conversation sits in its own row of one KV cache, and one
/// thread decodes all of them with a single forward pass per step, each row at its own position. A new request
/// is prefilled alone and joins the batch at the next step; a finished one leaves its row to the next request.
/// The weights are read once per step for the whole batch, which is where decoding spends its time.
///
/// Sampling, stop tokens, forced calculator tokens and limits are the Engine's (`Engine.nextToken`, `Engine.refusal`).
/// A long prompt is prefilled `prefillChunk` tokens at a time, between decoding steps, so it never stalls the
/// answers already streaming for longer than one chunk.
public final class Batcher: @unchecked Sendable {
    public let engine: Engine
    public let slots: Int
    public let prefillChunk: Int

    public struct Request: Sendable {
        public var prompt: [Int]
        public var maxTokens: Int
        public var sampling: SamplingOptions
        public var seed: UInt64
        public init(prompt: [Int], maxTokens: Int, sampling: SamplingOptions, seed: UInt64) {
            self.prompt = prompt; self.maxTokens = maxTokens; self.sampling = sampling; self.seed = seed
        }
        public init(prompt: [Int], maxTokens: Int, temperature: Float, topK: Int?, seed: UInt64) {
            self.init(prompt: prompt, maxTokens: maxTokens, sampling: SamplingOptions(temperature: temperature, topK: topK), seed: seed)
        }
    }

    /// Called on the batcher's thread with each token (the stop token included); returning false ends the
    /// request (the client went away). `finished` runs once, with an error when the request was refused.
    public typealias OnToken = (Int) -> Bool
    public typealias OnFinish = (Error?) -> Void

    struct Pending { var request: Request; var onToken: OnToken; var finished: OnFinish }
    /// A request whose prompt is going into its own batch-1 cache, a chunk per loop turn.
    struct Prefilling { var arrival: Pending; var slot: Int; var cache: KVCache; var done = 0 }
    struct Running {
        var slot: Int
        var request: Request
        var onToken: OnToken
        var finished: OnFinish
        var rng: RNG
        var row = Engine.RowState()
        var generated = 0
    }

    private let lock = NSCondition()
    /// Requests handed in that wait for a free row (behind the server's AdmissionQueue, at most one per free row).
    private var arrivals: [Pending] = []
    private var freeSlots: [Int]
    private var thread: Thread?

    /// `slots`: conversations decoded together at most; more wait, in order.
    public init(engine: Engine, slots: Int, prefillChunk: Int = 256) {
        self.engine = engine
        self.slots = max(1, slots)
        self.prefillChunk = max(1, prefillChunk)
        freeSlots = Array((0..<self.slots).reversed())
    }

    public func submit(_ request: Request, onToken: @escaping OnToken, finished: @escaping OnFinish) {
        lock.lock()
        arrivals.append(Pending(request: request, onToken: onToken, finished: finished))
        if thread == nil {
            let t = Thread { self.loop() }  // lives as long as the process: the batcher serves until exit
            t.name = "nanochat-batcher"
            thread = t
            t.start()
        }
        lock.signal()
        lock.unlock()
    }

    private func loop() {
        let model = engine.model
        let vocab = model.config.vocab_size
        let cache = KVCache(for: model, batch: slots, capacity: 256)  // grows when a conversation needs it
        let logits = UnsafeMutablePointer<Float>.allocate(capacity: slots * vocab)  // by slot
        defer { logits.deallocate() }
        var running: [Running] = []
        var prefilling: [Prefilling] = []
        var rows: [Int] = [], tokens: [Int32] = []
        rows.reserveCapacity(slots); tokens.reserveCapacity(slots)
        while true {
            // admit waiting requests into free rows
            lock.lock()
            while arrivals.isEmpty && running.isEmpty && prefilling.isEmpty { lock.wait() }
            var admitted: [(Pending, Int)] = []
            while !arrivals.isEmpty && !freeSlots.isEmpty { admitted.append((arrivals.removeFirst(), freeSlots.removeLast())) }
            lock.unlock()
            for (p, slot) in admitted {
                if let error = engine.refusal(prompt: p.request.prompt, maxTokens: p.request.maxTokens) {
                    p.finished(error)
                    release(slot)
                    continue
                }
                prefilling.append(Prefilling(arrival: p, slot: slot,
                                             cache: KVCache(for: model, batch: 1, capacity: p.request.prompt.count)))
            }
            // one chunk of the oldest prompt being prefilled; when it is complete the request joins the batch
            if var f = prefilling.first {
                let prompt = f.arrival.request.prompt
                let n = min(prefillChunk, prompt.count - f.done)
                let out = model.forward(prompt[f.done..<(f.done + n)].map { Int32($0) }, batch: 1, time: n, cache: f.cache, lastOnly: true).to(.cpu)  // sampling reads the logits on the host
                f.done += n
                if f.done == prompt.count {
                    (logits + f.slot * vocab).update(from: out.data, count: vocab)
                    cache.load(row: f.slot, from: f.cache)
                    running.append(Running(slot: f.slot, request: f.arrival.request, onToken: f.arrival.onToken,
                                           finished: f.arrival.finished, rng: RNG(seed: f.arrival.request.seed)))
                    prefilling.removeFirst()
                } else {
                    prefilling[0] = f
                }
            }
            // one token for every running request; those that go on form the next pass
            rows.removeAll(keepingCapacity: true); tokens.removeAll(keepingCapacity: true)
            var i = 0
            while i < running.count {
                var r = running[i]
                let token = engine.nextToken(&r.row, logits: UnsafeBufferPointer(start: logits + r.slot * vocab, count: vocab),
                                             options: r.request.sampling, rng: &r.rng).token
                r.generated += 1
                let wanted = r.onToken(token)
                if !wanted || r.row.completed || r.generated >= r.request.maxTokens {
                    r.finished(nil)
                    release(r.slot)
                    running.remove(at: i)
                    continue
                }
                running[i] = r
                rows.append(r.slot)
                tokens.append(Int32(token))
                i += 1
            }
            guard !rows.isEmpty else { continue }
            let out = model.forward(tokens, batch: rows.count, time: 1, cache: cache, rows: rows, lastOnly: true).to(.cpu)
            for (b, slot) in rows.enumerated() { (logits + slot * vocab).update(from: out.data + b * vocab, count: vocab) }
        }
    }

    private func release(_ slot: Int) {
        lock.lock(); freeSlots.append(slot); lock.unlock()
    }
}
