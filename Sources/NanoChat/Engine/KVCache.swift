import Foundation
import NanoTensor

/// Keys and values of every layer for B rows, [L][B, Tmax, Hkv, D], plus the smear state (the last position's
/// pre-smear normalised embedding per row). All rows sit at the same position.
public final class KVCache {
    public let layers: Int, batch: Int, capacity: Int, kvHeads: Int, headDim: Int, width: Int
    var k: [UnsafeMutablePointer<Float>], v: [UnsafeMutablePointer<Float>]
    public internal(set) var position = 0
    var prevEmbedding: UnsafeMutablePointer<Float>?

    public init(config: GPTConfig, batch: Int, capacity: Int) {
        layers = config.n_layer
        self.batch = batch
        self.capacity = capacity
        kvHeads = config.n_kv_head
        headDim = config.headDim
        width = config.n_embd
        let n = batch * capacity * kvHeads * headDim
        k = (0..<layers).map { _ in .allocate(capacity: n) }
        v = (0..<layers).map { _ in .allocate(capacity: n) }
    }

    deinit {
        for p in k + v { p.deallocate() }
        prevEmbedding?.deallocate()
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
        let out = KVCache(config: GPTConfig(sequence_len: capacity, n_layer: layers, n_head: kvHeads, n_kv_head: kvHeads,
                                            n_embd: kvHeads * headDim), batch: batch, capacity: capacity)
        let row = position * kvHeads * headDim
        for l in 0..<layers {
            for b in 0..<batch {
                (out.k[l] + b * capacity * kvHeads * headDim).update(from: k[l], count: row)
                (out.v[l] + b * capacity * kvHeads * headDim).update(from: v[l], count: row)
            }
        }
        out.position = position
        if let p = prevEmbedding {
            let e = UnsafeMutablePointer<Float>.allocate(capacity: batch * width)
            for b in 0..<batch { (e + b * width).update(from: p, count: width) }
            out.prevEmbedding = e
        }
        return out
    }

    /// Bytes held (for the benchmark's memory figures).
    public var bytes: Int { 2 * layers * batch * capacity * kvHeads * headDim * 4 }
}

extension KVCache {
    /// Writes a chunk's keys and values ([B, T, Hkv, D]) at the current position of layer `layer`.
    func append(layer: Int, keys: Tensor, values: Tensor, time t: Int) {
        let row = kvHeads * headDim
        for bi in 0..<batch {
            let base = (bi * capacity + position) * row
            (k[layer] + base).update(from: keys.data + bi * t * row, count: t * row)
            (v[layer] + base).update(from: values.data + bi * t * row, count: t * row)
        }
    }
}

extension GPT {
    /// Incremental forward for inference: `idx` is [B, T] new tokens at positions cache.position ..< +T.
    /// Writes their keys and values into the cache and returns the softcapped logits of every new position
    /// ([B*T, vocab]) or, with `lastOnly`, of the last one ([B, vocab]).
    public func forward(_ idx: [Int32], batch b: Int, time t: Int, cache: KVCache, lastOnly: Bool = true) -> Tensor {
        Tensor.withoutGrad {
            let c = config.n_embd
            var x = hidden(idx, batch: b, time: t, cache: cache)
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
    func continueSmear(_ x: Tensor, _ smeared: Tensor, batch b: Int, time t: Int, cache: KVCache) {
        let c = config.n_embd
        if let prev = cache.prevEmbedding, cache.position > 0 {
            let g = param("smear_gate.weight").data, lam = param("smear_lambda").data[0]
            for bi in 0..<b {
                let cur = x.data + bi * t * c, dst = smeared.data + bi * t * c, p = prev + bi * c
                let s = 1 / (1 + expf(-dot(g, cur, GPT.smearChannels)))
                for j in 0..<c { dst[j] = cur[j] + lam * s * p[j] }
            }
        }
        if cache.prevEmbedding == nil { cache.prevEmbedding = .allocate(capacity: b * c) }
        for bi in 0..<b { (cache.prevEmbedding! + bi * c).update(from: x.data + (bi * t + t - 1) * c, count: c) }
    }

    /// Attention of the new queries (positions cache.position ..< +T) over the cached keys their windows allow.
    func cachedAttention(_ q: Tensor, cache: KVCache, layer: Int, window: Int) -> Tensor {
        let (b, t, h, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
        let hkv = cache.kvHeads, group = h / hkv
        let pos = cache.position
        let out = Tensor(shape: q.shape, zeroed: false)
        let scale = 1 / Float(d).squareRoot()
        let kc = cache.k[layer], vc = cache.v[layer]
        let cap = cache.capacity
        // contiguous runs of (row, head) pairs per thread: one scratch buffer each, no per-pair dispatch
        let parts = Threading.ranges(b * h, parts: Threading.threadsPerCaller)
        let span = min(pos + t, window + 1)
        Threading.parallelFor(parts.count) { part in
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: span)
            defer { scores.deallocate() }
            for task in parts[part] {
                let bi = task / h, hh = task % h, kh = hh / group
                for i in 0..<t {
                    let p = pos + i
                    let lo = max(0, p - window)
                    let qrow = q.data + ((bi * t + i) * h + hh) * d
                    var m = -Float.infinity
                    for j in lo...p {
                        let s = dot(qrow, kc + ((bi * cap + j) * hkv + kh) * d, d) * scale
                        scores[j - lo] = s
                        m = max(m, s)
                    }
                    var sum: Float = 0
                    for j in 0...(p - lo) { scores[j] = expf(scores[j] - m); sum += scores[j] }
                    let orow = out.data + ((bi * t + i) * h + hh) * d
                    orow.update(repeating: 0, count: d)
                    let inv = 1 / sum
                    for j in lo...p {
                        addScaled(orow, vc + ((bi * cap + j) * hkv + kh) * d, scores[j - lo] * inv, d)
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
