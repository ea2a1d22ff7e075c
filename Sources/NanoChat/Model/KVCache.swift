import Foundation
import NanoTensor

/// Keys and values of every layer for B rows, [L][B, Hkv, Tmax, D] (each head's positions contiguous, so
/// attention streams them instead of striding across heads), in float32 or in bf16 (what `init(for:)` picks for a
/// model decoding with bf16 or int8 weights: half the bytes to stream each step), plus the smear state (the last
/// position's pre-smear normalised embedding per row). Each row has its own next position: the rows of one generation
/// move together (`position`), while the continuous batcher (`Batcher`) keeps one conversation per row and
/// steps only the rows it passes to `forward(rows:)`, each at its own position.
///
/// For a model on a GPU the cache lives in the GPU's memory, bf16 when the GPU runs its products in bf16 (fp32 with
/// --gpu-precision fp32), and so does the smear state; each pass copies only its rows' cache indices and start
/// positions there (kv_cache.cu).
public final class KVCache {
    public let layers: Int, batch: Int, kvHeads: Int, headDim: Int, width: Int
    public let bf16: Bool
    /// Where the keys and values live (nil: host memory).
    public let gpu: GPU?
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
        let gpu = model.device.gpu
        self.init(layers: model.config.n_layer, batch: batch, capacity: capacity, kvHeads: model.config.n_kv_head,
                  headDim: model.config.headDim, width: model.config.n_embd, bf16: gpu.map { $0.bf16 } ?? model.kvCacheBF16, gpu: gpu)
    }

    public convenience init(config: GPTConfig, batch: Int, capacity: Int, bf16: Bool = false) {
        self.init(layers: config.n_layer, batch: batch, capacity: capacity, kvHeads: config.n_kv_head,
                  headDim: config.headDim, width: config.n_embd, bf16: bf16, gpu: nil)
    }

    init(layers: Int, batch: Int, capacity: Int, kvHeads: Int, headDim: Int, width: Int, bf16: Bool, gpu: GPU?) {
        self.layers = layers
        self.bf16 = bf16
        self.gpu = gpu
        self.batch = batch
        self.capacity = max(1, capacity)
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.width = width
        rowPositions = [Int](repeating: 0, count: batch)
        let bytes = batch * self.capacity * kvHeads * headDim * (bf16 ? 2 : 4)
        k = (0..<layers).map { _ in Self.allocate(bytes: bytes, on: gpu) }
        v = (0..<layers).map { _ in Self.allocate(bytes: bytes, on: gpu) }
        scores = .allocate(capacity: Threading.workers * self.capacity)
    }

    deinit {
        for p in k + v { release(p) }
        if let p = prevEmbedding { release(UnsafeMutableRawPointer(p)) }
        scores.deallocate()
    }

    static func allocate(bytes: Int, on gpu: GPU?) -> UnsafeMutableRawPointer {
        if let gpu { return UnsafeMutableRawPointer(gpu.allocate(floats: (bytes + 3) / 4)) }
        return .allocate(byteCount: bytes, alignment: 64)
    }

    func release(_ p: UnsafeMutableRawPointer) { if let gpu { gpu.free(p) } else { p.deallocate() } }

    /// memcpy in the cache's memory (host, or on the GPU).
    func copy(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, bytes: Int) {
        guard bytes > 0 else { return }
        if let gpu {
            gpu.copy(src, to: dst, bytes: bytes)
        } else {
            dst.copyMemory(from: src, byteCount: bytes)
        }
    }

    /// The smear state's buffer ([batch, width]), made on first use.
    func smearState() -> UnsafeMutablePointer<Float> {
        if let p = prevEmbedding { return p }
        let p = Self.allocate(bytes: batch * width * 4, on: gpu).assumingMemoryBound(to: Float.self)
        prevEmbedding = p
        return p
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
        let out = KVCache(layers: layers, batch: batch, capacity: capacity, kvHeads: kvHeads, headDim: headDim, width: width, bf16: bf16, gpu: gpu)
        for b in 0..<batch { out.load(row: b, from: self) }
        return out
    }

    /// Puts a batch-1 cache (a prefilled prompt) into `row`, growing the capacity if the prompt needs it.
    public func load(row: Int, from one: KVCache) {
        precondition(one.batch == 1 && one.layers == layers && one.kvHeads == kvHeads && one.headDim == headDim && one.bf16 == bf16
                     && one.gpu === gpu)
        ensureCapacity(one.position)
        let (e, n) = (elementBytes, one.position * headDim * elementBytes)
        for l in 0..<layers {
            for h in 0..<kvHeads {
                copy(k[l] + (row * kvHeads + h) * capacity * headDim * e, one.k[l] + h * one.capacity * headDim * e, bytes: n)
                copy(v[l] + (row * kvHeads + h) * capacity * headDim * e, one.v[l] + h * one.capacity * headDim * e, bytes: n)
            }
        }
        rowPositions[row] = one.position
        if let p = one.prevEmbedding { copy(smearState() + row * width, p, bytes: width * 4) }
    }

    /// Grows every row to at least `positions` positions (doubling), keeping what is cached.
    public func ensureCapacity(_ positions: Int) {
        guard positions > capacity else { return }
        var c = capacity
        while c < positions { c *= 2 }
        let (d, e) = (headDim, elementBytes)
        for l in 0..<layers {
            let nk = Self.allocate(bytes: batch * kvHeads * c * d * e, on: gpu)
            let nv = Self.allocate(bytes: batch * kvHeads * c * d * e, on: gpu)
            for b in 0..<batch {
                for h in 0..<kvHeads {
                    let i = b * kvHeads + h
                    copy(nk + i * c * d * e, k[l] + i * capacity * d * e, bytes: rowPositions[b] * d * e)
                    copy(nv + i * c * d * e, v[l] + i * capacity * d * e, bytes: rowPositions[b] * d * e)
                }
            }
            release(k[l]); release(v[l])
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
        /// On a GPU: `rows` and `starts` in device memory, for the kernels.
        let deviceRows: TokenIds?, deviceStarts: TokenIds?

        /// The previous pre-smear embedding of each row ([B, C]; zero for rows starting at position 0), and
        /// keeps this chunk's last pre-smear embedding per row for the next pass (upstream's prev_embedding).
        func exchangeSmearState(_ x: Tensor) -> Tensor {
            let c = cache.width
            if let gpu = cache.gpu {
                let previous = Tensor(shape: [rows.count, c], zeroed: true, on: gpu)
                let state = cache.smearState()
                if cache.prevEmbedding != nil {
                    for (bi, row) in rows.enumerated() where starts[bi] > 0 { gpu.copy(state + row * c, to: previous.gpuData + bi * c, floats: c) }
                }
                for (bi, row) in rows.enumerated() { gpu.copy(x.gpuData + (bi * time + time - 1) * c, to: state + row * c, floats: c) }
                return previous
            }
            let previous = Tensor(shape: [rows.count, c], zeroed: true)
            if let prev = cache.prevEmbedding {
                for (bi, row) in rows.enumerated() where starts[bi] > 0 {
                    (previous.data + bi * c).update(from: prev + row * c, count: c)
                }
            }
            let state = cache.smearState()
            for (bi, row) in rows.enumerated() {
                (state + row * c).update(from: x.data + (bi * time + time - 1) * c, count: c)
            }
            return previous
        }

        /// Writes this chunk's keys and values ([B, T, Hkv, D]) at each row's positions in `layer`, then attends
        /// each new query over the cached positions its window allows.
        func attend(layer: Int, queries q: Tensor, keys: Tensor, values: Tensor, window: Int) -> Tensor {
            let d = cache.headDim, hkv = cache.kvHeads, cap = cache.capacity, e = cache.elementBytes
            if let gpu = cache.gpu { return attendOnGPU(gpu, layer: layer, queries: q, keys: keys, values: values, window: window) }
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

        /// The device body of `attend`: the chunk appended by nc_kv_append, then a prefill's causal attention within
        /// the chunk or the new queries over the cache (nc_cached_attention). Those two read float32: bf16 activations (the
        /// bf16 path's q, k and v) are widened for them first.
        func attendOnGPU(_ gpu: GPU, layer: Int, queries q: Tensor, keys: Tensor, values: Tensor, window: Int) -> Tensor {
            let (b, d, hkv, cap, h) = (rows.count, cache.headDim, cache.kvHeads, cache.capacity, q.shape[2])
            let (kc, vc, bf16) = (cache.k[layer], cache.v[layer], Int32(cache.bf16 ? 1 : 0))
            for (dst, src) in [(kc, float32(keys)), (vc, float32(values))] {
                gpu.run(gpu.api.nc_kv_append(gpu.ctx, dst, src.gpuData, deviceRows!.device, deviceStarts!.device, Int64(b), Int64(time),
                                             Int64(hkv), Int64(d), Int64(cap), bf16), "kv append")
            }
            if starts.allSatisfy({ $0 == 0 }) && time > 1 { return causalAttention(q, keys, values, window: window) }
            let out = Tensor(shape: q.shape, zeroed: false, on: gpu)
            gpu.run(gpu.api.nc_cached_attention(gpu.ctx, out.gpuData, float32(q).gpuData, kc, vc, deviceRows!.device, deviceStarts!.device, Int64(b),
                                                Int64(time), Int64(h), Int64(hkv), Int64(d), Int64(cap), Int64(window), bf16), "cached attention")
            return out
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
        let onDevice = gpu.map { g in (TokenIds(rows.map { Int32($0) }, on: g), TokenIds(starts.map { Int32($0) }, on: g)) }
        return Pass(cache: self, rows: rows, starts: starts, time: t, deviceRows: onDevice?.0, deviceStarts: onDevice?.1)
    }
}
