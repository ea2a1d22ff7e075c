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
    cblas_sgemm(
        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
        Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
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
