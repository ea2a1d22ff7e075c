import Foundation
import XCTest
import NanoTensor

final class ThreadingTests: XCTestCase {
    func testRangesCoverEverythingOnce() {
        for n in [0, 1, 5, 17, 100] {
            for parts in [1, 2, 3, 8] {
                let r = Threading.ranges(n, parts: parts)
                XCTAssertEqual(r.flatMap { Array($0) }, Array(0..<n))
                if n > 0 { XCTAssertLessThanOrEqual(r.map(\.count).max()! - r.map(\.count).min()!, 1) }
            }
        }
    }

    func testParallelForVisitsEachIndex() {
        var hits = [Int](repeating: 0, count: 1000)
        hits.withUnsafeMutableBufferPointer { h in
            let h = h
            Threading.parallelFor(1000) { h[$0] += 1 }
        }
        XCTAssertEqual(hits, Array(repeating: 1, count: 1000))
    }

    func testSgemmMatchesNaiveProduct() {
        let m = 5, n = 7, k = 3
        let a = (0..<(m * k)).map { Float($0 % 7) - 3 }
        let b = (0..<(k * n)).map { Float($0 % 5) * 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        sgemm(transA: false, transB: false, m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &c, ldc: n)
        for i in 0..<m { for j in 0..<n {
            var s: Float = 0
            for t in 0..<k { s += a[i * k + t] * b[t * n + j] }
            XCTAssertEqual(c[i * n + j], s, accuracy: 1e-5)
        } }
        // transposed operands: C = A^T B^T with A stored K x M, B stored N x K
        let at = (0..<(k * m)).map { Float($0) * 0.25 }
        let bt = (0..<(n * k)).map { Float($0 % 3) }
        sgemm(transA: true, transB: true, m: m, n: n, k: k, a: at, lda: m, b: bt, ldb: k, c: &c, ldc: n)
        for i in 0..<m { for j in 0..<n {
            var s: Float = 0
            for t in 0..<k { s += at[t * m + i] * bt[j * k + t] }
            XCTAssertEqual(c[i * n + j], s, accuracy: 1e-4)
        } }
    }
}

final class GemvPathTests: XCTestCase {
    /// A one-row product takes the matrix-vector path; it must equal the general product for both layouts.
    /// 2 to 16 rows against a weight matrix go through our skinny kernel (on every kernel set the machine runs:
    /// AVX2, portable C): every tail of k, n and m, row strides wider than the rows, alpha and beta; and split across
    /// threads by sgemmWeights.
    func testSkinnyProductsMatchTheNaiveProduct() {
        var seed: UInt32 = 1
        func rnd() -> Float { seed = seed &* 1_664_525 &+ 1_013_904_223; return Float(seed >> 9) / Float(1 << 23) - 0.5 }
        forEachKernelLevel { level in
            for m in [2, 3, 4, 5, 8, 13, 16] {
                for (n, k) in [(1, 1), (7, 7), (64, 8), (65, 33), (200, 768), (1000, 19)] {
                    let lda = k + 3, ldb = k + 5, ldc = n + 2
                    let a = (0..<(m * lda)).map { _ in rnd() }, b = (0..<(n * ldb)).map { _ in rnd() }
                    let c0 = (0..<(m * ldc)).map { _ in rnd() }
                    for (alpha, beta): (Float, Float) in [(1, 0), (0.5, 1)] {
                        var c = c0
                        sgemm(transA: false, transB: true, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                              beta: beta, c: &c, ldc: ldc)
                        var w = c0
                        if beta == 0 {
                            a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in w.withUnsafeMutableBufferPointer { wp in
                                sgemmWeights(m: m, n: n, k: k, a: ap.baseAddress!, lda: lda, b: bp.baseAddress!, ldb: ldb, c: wp.baseAddress!, ldc: ldc)
                            } } }
                        }
                        for i in 0..<m { for j in 0..<n {
                            var s: Float = 0
                            for t in 0..<k { s += a[i * lda + t] * b[j * ldb + t] }
                            let want = alpha * s + beta * c0[i * ldc + j]
                            XCTAssertEqual(c[i * ldc + j], want, accuracy: 1e-4 * max(1, abs(want)), "m \(m) n \(n) k \(k) kernel level \(level)")
                            if beta == 0 { XCTAssertEqual(w[i * ldc + j], want, accuracy: 1e-4 * max(1, abs(want))) }
                        } }
                        // the padding between rows of C is never written
                        for i in 0..<m { for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j]) } }
                    }
                }
            }
        }
    }

    func testSingleRowProductsMatchTheNaiveProduct() {
        let n = 7, k = 5
        let a = (0..<k).map { Float($0) - 2 }
        let bNK = (0..<(n * k)).map { Float($0 % 9) * 0.5 - 1 }   // [n, k]: C = a B^T
        let bKN = (0..<(k * n)).map { Float($0 % 4) - 1.5 }       // [k, n]: C = a B
        var c = [Float](repeating: 1, count: n)
        sgemm(transA: false, transB: true, m: 1, n: n, k: k, a: a, lda: k, b: bNK, ldb: k, beta: 0, c: &c, ldc: n)
        for j in 0..<n { XCTAssertEqual(c[j], (0..<k).reduce(0) { $0 + a[$1] * bNK[j * k + $1] }, accuracy: 1e-5) }
        var c2 = [Float](repeating: 2, count: n)
        sgemm(transA: false, transB: false, m: 1, n: n, k: k, alpha: 0.5, a: a, lda: k, b: bKN, ldb: n, beta: 1, c: &c2, ldc: n)
        for j in 0..<n { XCTAssertEqual(c2[j], 2 + 0.5 * (0..<k).reduce(0) { $0 + a[$1] * bKN[$1 * n + j] }, accuracy: 1e-5) }
    }
}

final class BufferPoolTests: XCTestCase {
    func testPoolReusesAndStaysWithinItsLimit() {
        let saved = BufferPool.poolLimitBytes
        defer { BufferPool.poolLimitBytes = saved }
        BufferPool.drain()
        // the same size again: served from the pool, no fresh allocation
        do { _ = Tensor(shape: [1000]) }
        let before = BufferPool.freshAllocations
        do { _ = Tensor(shape: [1000]) }
        XCTAssertEqual(BufferPool.freshAllocations, before)
        // ever new sizes (a chat with growing prompts) cannot grow the pool past its limit
        BufferPool.poolLimitBytes = 1 << 20
        for n in 1...300 { _ = Tensor(shape: [n * 100]) }
        XCTAssertLessThanOrEqual(BufferPool.bytesPooled, 1 << 20)
        BufferPool.drain()
        XCTAssertEqual(BufferPool.bytesPooled, 0)
    }
}

/// The worker pool behind parallelFor (worker_pool.c): regions back to back (the decode pattern), regions after the
/// helpers have gone to sleep, nested regions, and regions started from several threads at once, each index of each
/// region run exactly once.
final class WorkerPoolTests: XCTestCase {
    func region(_ count: Int) -> [Int] {
        var hits = [Int](repeating: 0, count: count)
        hits.withUnsafeMutableBufferPointer { h in
            let h = h
            Threading.parallelFor(count) { h[$0] += 1 }
        }
        return hits
    }

    func testManyRegionsBackToBack() {
        for r in 0..<20_000 {
            let count = 2 + r % 37
            let hits = region(count)
            if hits != Array(repeating: 1, count: count) { return XCTFail("region \(r) of \(count) indices: \(hits)") }
        }
    }

    func testRegionsAfterTheHelpersSleep() {
        for _ in 0..<3 {
            usleep(300_000)  // far past the pool's spin time: the helpers wait on their condition variable
            XCTAssertEqual(region(8), Array(repeating: 1, count: 8))
        }
    }

    func testNestedRegionsRunInline() {
        var hits = [Int](repeating: 0, count: 64)
        hits.withUnsafeMutableBufferPointer { h in
            let h = h
            Threading.parallelFor(8) { i in Threading.parallelFor(8) { j in h[i * 8 + j] += 1 } }
        }
        XCTAssertEqual(hits, Array(repeating: 1, count: 64))
    }

    func testRegionsFromSeveralThreadsAtOnce() {
        let failures = UnsafeMutablePointer<Int>.allocate(capacity: 4)
        failures.initialize(repeating: 0, count: 4)
        defer { failures.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for r in 0..<2000 where self.region(2 + (r + t) % 11) != Array(repeating: 1, count: 2 + (r + t) % 11) {
                failures[t] += 1
            }
        }
        XCTAssertEqual((0..<4).map { failures[$0] }, [0, 0, 0, 0])
    }
}
