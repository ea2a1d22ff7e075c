import CKernels
import Foundation

/// `--weights`: how inference stores the matrices it multiplies by. Training always keeps float32.
public enum WeightFormat: String, CaseIterable, Sendable {
    case f32, bf16, int8

    /// Bytes read per weight by a product (int8: one byte plus a float scale per 32 weights).
    public var bytesPerWeight: Double {
        switch self {
        case .f32: return 4
        case .bf16: return 2
        case .int8: return 1 + 4.0 / Double(NC_Q8_BLOCK)
        }
    }
}

/// A weight matrix W [n, k] (a Linear's [out, in]) in bf16, or in int8 with one float scale per block of 32
/// weights along k (llama.cpp's q8_0), made once from the float32 weights when a model loads for inference.
/// `product` is what `linear` (and the LM head) call instead of sgemm when a weight carries one: decoding rows
/// (up to 16) go through our AVX2 kernels, which read W once for all rows (one row against int8 rounds the activations
/// to int16 per block and sums each block in integers, exactly: the activations' rounding is 2^-16 of the block's
/// largest, a relative 1e-5 on a product); longer inputs (prefill, evaluation) widen W in cache-sized tiles of rows into
/// float32, each multiplied by BLAS on the thread that widened it, so every path computes with the same quantized
/// weights.
public final class QuantizedWeights {
    public let format: WeightFormat
    public let rows: Int, cols: Int
    let bf16: UnsafeMutablePointer<UInt16>?
    let q8: UnsafeMutablePointer<Int8>?
    let scales: UnsafeMutablePointer<Float>?

    /// Rows a decode product splits between threads in blocks of; rows of W widened per BLAS call in prefill (128 rows
    /// of d12's 768 columns are 393 KB, inside a core's 512 KB L2 here; BLAS packs the activations again for every call,
    /// so fewer, larger tiles waste less: d12 prefill, five alternating runs each, median 568 tok/s against 398 with 64).
    static let threadBlock = 16, prefillTile = 128
    /// Rows of input from which a product dequantizes into BLAS instead of running the decode kernel.
    public static let prefillRows = 17

    /// nil when `format` is f32, or int8 with k not a multiple of the block (such a matrix stays float32).
    public init?(_ w: Tensor, format: WeightFormat) {
        guard w.shape.count == 2, format != .f32 else { return nil }
        let (n, k) = (w.shape[0], w.shape[1])
        if format == .int8 && k % Int(NC_Q8_BLOCK) != 0 { return nil }
        self.format = format
        rows = n
        cols = k
        switch format {
        case .bf16:
            bf16 = .allocate(capacity: n * k)
            nc_quantize_bf16(w.data, bf16, n * k)
            q8 = nil
            scales = nil
        case .int8:
            q8 = .allocate(capacity: n * k)
            scales = .allocate(capacity: n * k / Int(NC_Q8_BLOCK))
            nc_quantize_q8(w.data, Int32(n), Int32(k), q8, scales)
            bf16 = nil
        case .f32:
            return nil
        }
    }

    deinit {
        bf16?.deallocate()
        q8?.deallocate()
        scales?.deallocate()
    }

    /// Bytes a product reads (the weights and their scales).
    public var bytes: Int { Int(Double(rows * cols) * format.bytesPerWeight) }

    /// The float32 values the quantized weights stand for, rows [j0, j1) into `out` ((j1 - j0) x k).
    public func dequantize(rows j0: Int, _ j1: Int, into out: UnsafeMutablePointer<Float>) {
        if let bf16 {
            nc_dequant_bf16(bf16 + j0 * cols, (j1 - j0) * cols, out)
        } else if let q8, let scales {
            nc_dequant_q8(q8 + j0 * cols, scales + j0 * cols / Int(NC_Q8_BLOCK), Int32(j1 - j0), Int32(cols), out)
        }
    }

    /// c[m, n] = a[m, k] W[0..<n]^T (the first n rows of W: the LM head reads only the real vocabulary).
    public func product(m: Int, n: Int, a: UnsafePointer<Float>, lda: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        precondition(n <= rows, "product over \(n) rows of a \(rows)-row matrix")
        let k = cols
        if m >= Self.prefillRows {
            // prefill: each thread widens a tile of W's rows into float32 (the same values the decode kernel uses)
            // while it is in its core's L2 cache, and multiplies it there with single-threaded BLAS; the threads
            // never wait on each other or on BLAS's own threads
            let tiles = (n + Self.prefillTile - 1) / Self.prefillTile
            let parts = Threading.ranges(tiles, parts: Threading.workers)
            let scratch = Tensor(shape: [parts.count * Self.prefillTile * k], zeroed: false)
            Threading.parallelFor(parts.count) { p in
                let tile = scratch.data + p * Self.prefillTile * k
                for t in parts[p] {
                    let j0 = t * Self.prefillTile, j1 = min(n, j0 + Self.prefillTile)
                    self.dequantize(rows: j0, j1, into: tile)
                    sgemm(transA: false, transB: true, m: m, n: j1 - j0, k: k, a: a, lda: lda, b: tile, ldb: k, c: c + j0, ldc: ldc)
                }
            }
            return
        }
        // decoding: the rows of W split between the threads in blocks of threadBlock (small matrices on one thread)
        let blocks = (n + Self.threadBlock - 1) / Self.threadBlock
        let parts = Threading.ranges(blocks, parts: n * k >= 1 << 16 ? Threading.workers : 1)
        func eachThreadsRows(_ body: (_ j0: Int, _ j1: Int) -> Void) {
            Threading.parallelFor(parts.count) { p in
                let j0 = parts[p].lowerBound * Self.threadBlock, j1 = min(n, parts[p].upperBound * Self.threadBlock)
                if j1 > j0 { body(j0, j1) }
            }
        }
        let perBlock = Int(NC_Q8_BLOCK)
        if let bf16 {
            eachThreadsRows { j0, j1 in nc_gemm_bf16_nt(Int32(m), Int32(j1 - j0), Int32(k), a, Int32(lda), bf16 + j0 * k, c + j0, Int32(ldc)) }
        } else if let q8, let scales, m == 1 {
            // one row: rounded to int16 once (both threads read it; on the stack: no allocation per product), then
            // integer dot products per block
            withUnsafeTemporaryAllocation(of: Int16.self, capacity: k) { xq in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: k / perBlock) { xs in
                    let (xq, xs) = (xq.baseAddress!, xs.baseAddress!)
                    nc_quantize_a16(1, Int32(k), a, Int32(lda), xq, xs)
                    eachThreadsRows { j0, j1 in
                        nc_gemv_q8_a16(Int32(j1 - j0), Int32(k), xq, xs, q8 + j0 * k, scales + j0 * k / perBlock, c + j0)
                    }
                }
            }
        } else if let q8, let scales {
            eachThreadsRows { j0, j1 in
                nc_gemm_q8_nt(Int32(m), Int32(j1 - j0), Int32(k), a, Int32(lda), q8 + j0 * k, scales + j0 * k / perBlock, c + j0, Int32(ldc))
            }
        }
    }
}

/// float32 to bf16, rounded to nearest even (the format of bf16 weights and of a bf16 KV cache).
@inline(__always)
public func roundToBF16(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    nc_quantize_bf16(src, dst, count)
}

/// c[m, n] = a[m, k] W[0..<n]^T for a weight W [_, k]: its quantized form when it has one (inference), else float32
/// (`sgemmWeights`).
@inline(__always)
public func weightProduct(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, w: Tensor, c: UnsafeMutablePointer<Float>, ldc: Int) {
    Profiler.measure("weight products") {
        if let q = w.quantized {
            q.product(m: m, n: n, a: a, lda: lda, c: c, ldc: ldc)
        } else {
            sgemmWeights(m: m, n: n, k: k, a: a, lda: lda, b: w.data, ldb: k, c: c, ldc: ldc)
        }
    }
}
