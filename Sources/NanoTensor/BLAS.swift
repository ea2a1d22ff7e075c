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
