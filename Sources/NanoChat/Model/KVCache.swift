import Foundation
import NanoTensor

/// Keys and values of every layer for B rows, [L][B, Hkv, Tmax, D] (each head's positions contiguous, so
/// attention streams them instead of striding across heads), in float32 or in bf16 (what `init(for:)` picks for a
/// model decoding with bf16 or int8 weights: half the bytes to stream each step), plus the smear state (the last
/// position's pre-smear normalised embedding per row). Each row has its own next position: the rows of one generation
/// move together (`position`), while the continuous batcher (`Batcher`) keeps one conversation per row and
/// steps only the rows it passes to `forward(rows:)`, each at its own position.
public final class KVCache {
    public let layers: Int, batch: Int, kvHeads: Int, headDim: Int, width: Int
    public let bf16: Bool
    public private(set) var capacity: Int
    /// Per layer; elements of `elementBytes` (float32, or bf16 rounded to nearest even).
    var k: [UnsafeMutableRawPointer], v: [UnsafeMutableRawPointer]
    var elementBytes: Int { bf16 ? 2 : 4 }
    /// The next position of each row.
    public internal(set) var rowPositions: [Int]
    var prevEmbedding: UnsafeMutablePointer<Float>?
    /// Attention scores, one run of `capacity` per thread: decoding allocates nothing per step.
    var scores: UnsafeMutablePointer<Float>

    /// A cache for `model`'s decoding: its shape, and bf16 when the model multiplies in bf16 or int8.
    public convenience init(for model: GPT, batch: Int, capacity: Int) {
        self.init(config: model.config, batch: batch, capacity: capacity, bf16: model.kvCacheBF16)
    }

    public convenience init(config: GPTConfig, batch: Int, capacity: Int, bf16: Bool = false) {
        self.init(layers: config.n_layer, batch: batch, capacity: capacity, kvHeads: config.n_kv_head,
                  headDim: config.headDim, width: config.n_embd, bf16: bf16)
    }

    init(layers: Int, batch: Int, capacity: Int, kvHeads: Int, headDim: Int, width: Int, bf16: Bool) {
        self.layers = layers
        self.bf16 = bf16
        self.batch = batch
        self.capacity = max(1, capacity)
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.width = width
        rowPositions = [Int](repeating: 0, count: batch)
        let bytes = batch * self.capacity * kvHeads * headDim * (bf16 ? 2 : 4)
        k = (0..<layers).map { _ in .allocate(byteCount: bytes, alignment: 64) }
        v = (0..<layers).map { _ in .allocate(byteCount: bytes, alignment: 64) }
        scores = .allocate(capacity: Threading.workers * self.capacity)
    }

    deinit {
        for p in k + v { p.deallocate() }
        prevEmbedding?.deallocate()
        scores.deallocate()
    }

    /// The next position when every row is at the same one (a single generation).
    public var position: Int {
        get { rowPositions[0] }
        set { for r in 0..<batch { rowPositions[r] = newValue } }
    }

    public func reset() { position = 0 }

    /// Forgets every position from `p` on (the next token is written at `p`); the smear state is kept, so the
    /// token at `p` must follow the same token as before (benchmarks re-run the same steps this way).
    public func rewind(to p: Int) {
        precondition(p >= 0 && p <= position, "rewind(to: \(p)) outside 0...\(position)")
        position = p
    }

    /// This cache (batch 1) copied into a new one of `batch` rows and `capacity` positions: the prefill is
    /// computed once and shared by every sample.
    public func broadcast(batch: Int, capacity: Int) -> KVCache {
        precondition(self.batch == 1 && capacity >= position)
        let out = KVCache(layers: layers, batch: batch, capacity: capacity, kvHeads: kvHeads, headDim: headDim, width: width, bf16: bf16)
        for b in 0..<batch { out.load(row: b, from: self) }
        return out
    }

    /// Puts a batch-1 cache (a prefilled prompt) into `row`, growing the capacity if the prompt needs it.
    public func load(row: Int, from one: KVCache) {
        precondition(one.batch == 1 && one.layers == layers && one.kvHeads == kvHeads && one.headDim == headDim && one.bf16 == bf16)
        ensureCapacity(one.position)
        let (e, n) = (elementBytes, one.position * headDim * elementBytes)
        for l in 0..<layers {
            for h in 0..<kvHeads {
                (k[l] + (row * kvHeads + h) * capacity * headDim * e).copyMemory(from: one.k[l] + h * one.capacity * headDim * e, byteCount: n)
                (v[l] + (row * kvHeads + h) * capacity * headDim * e).copyMemory(from: one.v[l] + h * one.capacity * headDim * e, byteCount: n)
            }
        }
        rowPositions[row] = one.position
        if let p = one.prevEmbedding {
            if prevEmbedding == nil { prevEmbedding = .allocate(capacity: batch * width) }
            (prevEmbedding! + row * width).update(from: p, count: width)
        }
    }

    /// Grows every row to at least `positions` positions (doubling), keeping what is cached.
    public func ensureCapacity(_ positions: Int) {
        guard positions > capacity else { return }
        var c = capacity
        while c < positions { c *= 2 }
        let (d, e) = (headDim, elementBytes)
        for l in 0..<layers {
            let nk = UnsafeMutableRawPointer.allocate(byteCount: batch * kvHeads * c * d * e, alignment: 64)
            let nv = UnsafeMutableRawPointer.allocate(byteCount: batch * kvHeads * c * d * e, alignment: 64)
            for b in 0..<batch {
                for h in 0..<kvHeads {
                    let i = b * kvHeads + h
                    (nk + i * c * d * e).copyMemory(from: k[l] + i * capacity * d * e, byteCount: rowPositions[b] * d * e)
                    (nv + i * c * d * e).copyMemory(from: v[l] + i * capacity * d * e, byteCount: rowPositions[b] * d * e)
                }
            }
            k[l].deallocate(); v[l].deallocate()
            k[l] = nk; v[l] = nv
        }
        capacity = c
        scores.deallocate()
        scores = .allocate(capacity: Threading.workers * c)
    }

    /// Bytes held (for the benchmark's memory figures).
    public var bytes: Int { 2 * layers * batch * capacity * kvHeads * headDim * elementBytes }
}

extension KVCache {
    /// One forward pass over the cache: which cache row each batch row continues, and from which position.
    /// The model asks it for the smear state, appends keys and values layer by layer and attends through it;
    /// `end` moves the rows on. All the inference bookkeeping is here, none of it in the model.
    public struct Pass {
        let cache: KVCache
        /// Cache row of each batch row, and the position its first new token takes.
        let rows: [Int], starts: [Int]
        let time: Int

        /// The previous pre-smear embedding of each row ([B, C]; zero for rows starting at position 0), and
        /// keeps this chunk's last pre-smear embedding per row for the next pass (upstream's prev_embedding).
        func exchangeSmearState(_ x: Tensor) -> Tensor {
            let c = cache.width
            let previous = Tensor(shape: [rows.count, c], zeroed: true)
            if let prev = cache.prevEmbedding {
                for (bi, row) in rows.enumerated() where starts[bi] > 0 {
                    (previous.data + bi * c).update(from: prev + row * c, count: c)
                }
            }
            if cache.prevEmbedding == nil { cache.prevEmbedding = .allocate(capacity: cache.batch * c) }
            for (bi, row) in rows.enumerated() {
                (cache.prevEmbedding! + row * c).update(from: x.data + (bi * time + time - 1) * c, count: c)
            }
            return previous
        }

        /// Writes this chunk's keys and values ([B, T, Hkv, D]) at each row's positions in `layer`, then attends
        /// each new query over the cached positions its window allows.
        func attend(layer: Int, queries q: Tensor, keys: Tensor, values: Tensor, window: Int) -> Tensor {
            let d = cache.headDim, hkv = cache.kvHeads, cap = cache.capacity, e = cache.elementBytes
            for (bi, row) in rows.enumerated() {
                for h in 0..<hkv {
                    let dst = ((row * hkv + h) * cap + starts[bi]) * d
                    for i in 0..<time {
                        let src = ((bi * time + i) * hkv + h) * d
                        let (kd, vd) = (cache.k[layer] + (dst + i * d) * e, cache.v[layer] + (dst + i * d) * e)
                        if cache.bf16 {
                            roundToBF16(keys.data + src, kd.assumingMemoryBound(to: UInt16.self), count: d)
                            roundToBF16(values.data + src, vd.assumingMemoryBound(to: UInt16.self), count: d)
                        } else {
                            kd.copyMemory(from: keys.data + src, byteCount: d * 4)
                            vd.copyMemory(from: values.data + src, byteCount: d * 4)
                        }
                    }
                }
            }
            // a prefill (every row starts empty) attends only within the chunk: the blocked causal kernel that
            // training uses is much faster there than the per-query cache kernel
            if starts.allSatisfy({ $0 == 0 }) && time > 1 { return causalAttention(q, keys, values, window: window) }
            return Profiler.measure("attention over the cache") {
                cachedAttention(q, keys: cache.k[layer], values: cache.v[layer], bf16: cache.bf16, capacity: cap, kvHeads: hkv,
                                cacheRows: rows, starts: starts, window: window, scratch: cache.scores)
            }
        }

        /// Moves each row of the pass `time` positions on (after the last layer).
        func end() {
            for (bi, row) in rows.enumerated() { cache.rowPositions[row] = starts[bi] + time }
        }
    }

    /// Starts a pass of `batch` rows of `time` new tokens. `rows`: the cache row of each batch row (nil: all
    /// rows, 0..<batch, in order). Grows the cache when the rows need more positions.
    func begin(rows: [Int]?, batch b: Int, time t: Int, positions: Int) -> Pass {
        let rows = rows ?? Array(0..<batch)
        precondition(rows.count == b, "forward: batch \(b) but \(rows.count) cache rows")
        let starts = rows.map { rowPositions[$0] }
        let last = (starts.max() ?? 0) + t
        precondition(last <= positions, "position \(last) is past the rotary tables (\(positions) positions)")
        ensureCapacity(last)
        return Pass(cache: self, rows: rows, starts: starts, time: t)
    }
}
