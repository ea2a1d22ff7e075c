import CKernels
import Dispatch
#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// Row-major single-precision matrix product, C = alpha * op(A) * op(B) + beta * C, through BLAS.
/// `a` is M x K (or K x M when `transA`), `b` is K x N (or N x K when `transB`), `c` is M x N.
@inline(__always)
public func sgemm(
    transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    Threading.yieldCoresToBLAS()
    if m == 1 && !transA && ldc >= n {
        // one row (decoding a token): a matrix-vector product, which BLAS streams through the weights faster
        // c[1, n] = a[1, k] op(B):  op(B) = B^T (B is [n, k])  ->  y = B x ;  op(B) = B (B is [k, n])  ->  y = B^T x
        cblas_sgemv(CblasRowMajor, transB ? CblasNoTrans : CblasTrans, Int32(transB ? n : k), Int32(transB ? k : n),
                    alpha, b, Int32(ldb), a, 1, beta, c, 1)
        return
    }
    if m <= skinnyRows && !transA && transB {
        // a few rows against a weight matrix (batched decoding): BLAS would pack all of B for them
        nc_sgemm_skinny_nt(Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
        return
    }
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Up to this many rows, C = A B^T goes through our skinny kernel instead of BLAS's sgemm (measured on the
/// d12 shapes at 8 rows: OpenBLAS sgemm 0.74 ms where a single sgemv takes 0.06 ms).
public let skinnyRows = 16

/// C = A W^T for a layer's weight W [n, k] at the top level of an op (not inside a parallel region): with a few
/// rows of A the n output columns are split between the threads, since the skinny kernel is
/// single-threaded; otherwise one BLAS call that threads itself.
public func sgemmWeights(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                         c: UnsafeMutablePointer<Float>, ldc: Int) {
    // small matrices stay on this thread: waking a second one costs more than their product (d4's 256 x 256)
    guard m >= 2 && m <= skinnyRows && Threading.workers > 1 && n * k >= 1 << 20 else {
        sgemm(transA: false, transB: true, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        return
    }
    // ranges of whole 16-column blocks, so that threads never share a cache line of C
    let blocks = (n + 15) / 16
    let parts = Threading.ranges(blocks, parts: Threading.workers)
    Threading.parallelFor(parts.count) { p in
        let j0 = parts[p].lowerBound * 16, j1 = min(n, parts[p].upperBound * 16)
        if j1 > j0 { nc_sgemm_skinny_nt(Int32(m), Int32(j1 - j0), Int32(k), 1, a, Int32(lda), b + j0 * ldb, Int32(ldb), 0, c + j0, Int32(ldc)) }
    }
}

/// This machine's single-precision matrix-product rate in GFLOP/s (n x n x n products, best of a few runs
/// within `seconds`), with BLAS on all threads: the roofline we report model FLOP/s against.
public func measureSgemmGFLOPS(size n: Int = 1024, seconds: Double = 0.5) -> Double {
    let a = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    let b = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: n * n)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1 }
    var best = 0.0
    let start = DispatchTime.now().uptimeNanoseconds
    repeat {
        let t0 = DispatchTime.now().uptimeNanoseconds
        sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n)
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        best = max(best, 2 * Double(n * n * n) / dt / 1e9)
    } while Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < seconds
    return best
}

/// Memory read bandwidth in GB/s: summing a buffer far larger than the caches, on `threads` threads, best of a
/// few passes. The roofline for decoding, which reads every weight once per token.
public func measureReadBandwidth(megabytes: Int = 512, threads: Int = 1) -> Double {
    let n = megabytes << 18  // floats
    let buf = UnsafeMutablePointer<Float>.allocate(capacity: n)
    defer { buf.deallocate() }
    for i in stride(from: 0, to: n, by: 1024) { buf[i] = 1 }
    var best = 0.0
    let parts = Threading.ranges(n, parts: threads)
    for _ in 0..<4 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        var sums = [Float](repeating: 0, count: parts.count)
        sums.withUnsafeMutableBufferPointer { s in
            let s = s
            let body: (Int) -> Void = { p in
                // four independent sums: one chain of dependent adds is bound by the add latency, and read a 26 MB buffer
                // (partly in L3) at 19-23 GB/s where four read it at 20-26
                var (a0, a1, a2, a3) = (SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>(), SIMD8<Float>())
                var i = parts[p].lowerBound
                while i + 32 <= parts[p].upperBound {
                    let r = UnsafeRawPointer(buf + i)
                    a0 += r.loadUnaligned(fromByteOffset: 0, as: SIMD8<Float>.self)
                    a1 += r.loadUnaligned(fromByteOffset: 32, as: SIMD8<Float>.self)
                    a2 += r.loadUnaligned(fromByteOffset: 64, as: SIMD8<Float>.self)
                    a3 += r.loadUnaligned(fromByteOffset: 96, as: SIMD8<Float>.self)
                    i += 32
                }
                while i + 8 <= parts[p].upperBound {
                    a0 += UnsafeRawPointer(buf + i).loadUnaligned(as: SIMD8<Float>.self)
                    i += 8
                }
                s[p] = (a0 + a1 + a2 + a3).sum()
            }
            if threads > 1 { DispatchQueue.concurrentPerform(iterations: parts.count, execute: body) } else { body(0) }
        }
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        if sums[0] >= 0 { best = max(best, Double(n * 4) / dt / 1e9) }
    }
    return best
}
