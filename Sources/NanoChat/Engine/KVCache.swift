import Foundation
import NanoTensor

/// Keys and values of every layer for B rows, [L][B, Hkv, Tmax, D] (each head's positions contiguous, so
/// attention streams them instead of striding across heads), plus the smear state (the last position's
/// pre-smear normalised embedding per row). Each row has its own next position: the rows of one generation
/// move together (`position`), while the continuous batcher (`Batcher`) keeps one conversation per row and
/// steps only the rows it passes to `forward(rows:)`, each at its own position.
public final class KVCache {
    public let layers: Int, batch: Int, kvHeads: Int, headDim: Int, width: Int
    public private(set) var capacity: Int
    var k: [UnsafeMutablePointer<Float>], v: [UnsafeMutablePointer<Float>]
    /// The next position of each row.
    public internal(set) var rowPositions: [Int]
    var prevEmbedding: UnsafeMutablePointer<Float>?
    /// Attention scores, one run of `capacity` per thread: decoding allocates nothing per step.
    var scores: UnsafeMutablePointer<Float>

    public convenience init(config: GPTConfig, batch: Int, capacity: Int) {
        self.init(layers: config.n_layer, batch: batch, capacity: capacity, kvHeads: config.n_kv_head,
                  headDim: config.headDim, width: config.n_embd)
    }

    init(layers: Int, batch: Int, capacity: Int, kvHeads: Int, headDim: Int, width: Int) {
        self.layers = layers
        self.batch = batch
        self.capacity = max(1, capacity)
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.width = width
        rowPositions = [Int](repeating: 0, count: batch)
        let n = batch * self.capacity * kvHeads * headDim
        k = (0..<layers).map { _ in .allocate(capacity: n) }
        v = (0..<layers).map { _ in .allocate(capacity: n) }
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
        let out = KVCache(layers: layers, batch: batch, capacity: capacity, kvHeads: kvHeads, headDim: headDim, width: width)
        for b in 0..<batch { out.load(row: b, from: self) }
        return out
    }

    /// Puts a batch-1 cache (a prefilled prompt) into `row`, growing the capacity if the prompt needs it.
    public func load(row: Int, from one: KVCache) {
        precondition(one.batch == 1 && one.layers == layers && one.kvHeads == kvHeads && one.headDim == headDim)
        ensureCapacity(one.position)
        let n = one.position * headDim
        for l in 0..<layers {
            for h in 0..<kvHeads {
                (k[l] + (row * kvHeads + h) * capacity * headDim).update(from: one.k[l] + h * one.capacity * headDim, count: n)
                (v[l] + (row * kvHeads + h) * capacity * headDim).update(from: one.v[l] + h * one.capacity * headDim, count: n)
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
        let d = headDim
        for l in 0..<layers {
            let nk = UnsafeMutablePointer<Float>.allocate(capacity: batch * kvHeads * c * d)
            let nv = UnsafeMutablePointer<Float>.allocate(capacity: batch * kvHeads * c * d)
            for b in 0..<batch {
                for h in 0..<kvHeads {
                    let i = b * kvHeads + h
                    (nk + i * c * d).update(from: k[l] + i * capacity * d, count: rowPositions[b] * d)
                    (nv + i * c * d).update(from: v[l] + i * capacity * d, count: rowPositions[b] * d)
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
    public var bytes: Int { 2 * layers * batch * capacity * kvHeads * headDim * 4 }
}

extension KVCache {
    /// The cache row and the first new position of each row of a forward pass.
    /// `rows`: the cache row of each batch row (nil: all rows, 0..<batch, in order).
    func rowsAndStarts(_ rows: [Int]?, batch b: Int) -> [(row: Int, start: Int)] {
        let rows = rows ?? Array(0..<batch)
        precondition(rows.count == b, "forward: batch \(b) but \(rows.count) cache rows")
        return rows.map { ($0, rowPositions[$0]) }
    }

    /// Writes a chunk's keys and values ([B, T, Hkv, D]) at each row's position in layer `layer`.
    func append(layer: Int, keys: Tensor, values: Tensor, time t: Int, rows: [(row: Int, start: Int)]) {
        let d = headDim
        for (bi, r) in rows.enumerated() {
            for h in 0..<kvHeads {
                let dst = ((r.row * kvHeads + h) * capacity + r.start) * d
                for i in 0..<t {
                    let src = ((bi * t + i) * kvHeads + h) * d
                    (k[layer] + dst + i * d).update(from: keys.data + src, count: d)
                    (v[layer] + dst + i * d).update(from: values.data + src, count: d)
                }
            }
        }
    }

    /// Moves each row of the pass `t` positions on.
    func advance(_ rows: [(row: Int, start: Int)], by t: Int) {
        for r in rows { rowPositions[r.row] = r.start + t }
    }
}

extension GPT {
    /// Incremental forward for inference: `idx` is [B, T] new tokens at positions cache.position ..< +T, or,
    /// with `rows`, batch row i continues cache row rows[i] from that row's own position.
    /// Writes their keys and values into the cache and returns the softcapped logits of every new position
    /// ([B*T, vocab]) or, with `lastOnly`, of the last one ([B, vocab]).
    public func forward(_ idx: [Int32], batch b: Int, time t: Int, cache: KVCache, rows: [Int]? = nil,
                        lastOnly: Bool = true) -> Tensor {
        Tensor.withoutGrad {
            let c = config.n_embd
            var x = hidden(idx, batch: b, time: t, cache: cache, rows: rows)
            if lastOnly && t > 1 {
                let last = Tensor(shape: [b, c], zeroed: false)
                for bi in 0..<b { (last.data + bi * c).update(from: x.data + (bi * t + t - 1) * c, count: c) }
                x = last
            }
            return LMHead.logits(x, param("lm_head.weight"), vocab: config.vocab_size, softcap: Self.softcap)
        }
    }

    /// The smear across chunk boundaries: position 0 of this chunk mixes in the cached previous embedding
    /// (as a full forward would mix in the token before it); then this chunk's last pre-smear embedding is cached.
    func continueSmear(_ x: Tensor, _ smeared: Tensor, batch b: Int, time t: Int, cache: KVCache, rows: [(row: Int, start: Int)]) {
        let c = config.n_embd
        if let prev = cache.prevEmbedding {
            let g = param("smear_gate.weight").data, lam = param("smear_lambda").data[0]
            for (bi, r) in rows.enumerated() where r.start > 0 {
                let cur = x.data + bi * t * c, dst = smeared.data + bi * t * c, p = prev + r.row * c
                let s = 1 / (1 + expf(-dot(g, cur, GPT.smearChannels)))
                for j in 0..<c { dst[j] = cur[j] + lam * s * p[j] }
            }
        }
        if cache.prevEmbedding == nil { cache.prevEmbedding = .allocate(capacity: cache.batch * c) }
        for (bi, r) in rows.enumerated() { (cache.prevEmbedding! + r.row * c).update(from: x.data + (bi * t + t - 1) * c, count: c) }
    }

    /// Attention of each row's new queries (its positions start ..< +T) over the cached keys their windows allow.
    func cachedAttention(_ q: Tensor, cache: KVCache, layer: Int, window: Int, rows: [(row: Int, start: Int)]) -> Tensor {
        let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let hkv = cache.kvHeads, group = h / hkv
        let out = Tensor(shape: q.shape, zeroed: false)
        let scale = 1 / Float(d).squareRoot()
        let kc = cache.k[layer], vc = cache.v[layer]
        let cap = cache.capacity
        // contiguous runs of (row, head) pairs per thread: one scratch buffer each, no per-pair dispatch
        let span = min(rows.reduce(0) { max($0, $1.start) } + t, window + 1)
        precondition(span <= cap, "attention span \(span) past the cache's \(cap) positions")
        // a few short rows are cheaper on this thread than waking another
        let parts = Threading.ranges(b * h, parts: b * h * t * span * d >= 1 << 20 ? Threading.workers : 1)
        Threading.parallelFor(parts.count) { part in
            let scores = cache.scores + part * cap  // span <= capacity: hidden() grew the cache first
            for task in parts[part] {
                let bi = task / h, hh = task % h, kh = hh / group
                let slot = rows[bi].row
                for i in 0..<t {
                    let p = rows[bi].start + i
                    let lo = max(0, p - window)
                    let qrow = q.data + ((bi * t + i) * h + hh) * d
                    var m = -Float.infinity
                    for j in lo...p {
                        let s = dot(qrow, kc + ((slot * hkv + kh) * cap + j) * d, d) * scale
                        scores[j - lo] = s
                        m = max(m, s)
                    }
                    var sum: Float = 0
                    for j in 0...(p - lo) { scores[j] = expf(scores[j] - m); sum += scores[j] }
                    let orow = out.data + ((bi * t + i) * h + hh) * d
                    orow.update(repeating: 0, count: d)
                    let inv = 1 / sum
                    for j in lo...p {
                        addScaled(orow, vc + ((slot * hkv + kh) * cap + j) * d, scores[j - lo] * inv, d)
                    }
                }
            }
        }
        return out
    }
}

/// y += w * x over n floats (eight at a time).
@inline(__always)
func addScaled(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Float, _ n: Int) {
    var i = 0
    let wv = SIMD8<Float>(repeating: w)
    while i + 8 <= n {
        let r = UnsafeMutableRawPointer(y + i)
        r.storeBytes(of: r.loadUnaligned(as: SIMD8<Float>.self) + wv * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        i += 8
    }
    while i < n { y[i] += w * x[i]; i += 1 }
}
