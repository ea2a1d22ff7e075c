import CKernels
import Foundation
import NanoTensor
import XCTest

/// The quantized products (quant_gemm.c through `QuantizedWeights.product`) against a float64 reference computed
/// from the very values the quantized weights stand for (and, for one row against int8, the int16 activations, rounded
/// here independently), over the shapes that exercise every code path: one row, two, odd row counts, the 4-row tiles and
/// their padded last block, tails of n that are not a multiple of 2 or 4, k with and without a tail of 8, input and
/// output strides wider than the matrix, and the prefill path (17+ rows, BLAS over dequantized tiles). Every kernel
/// set the machine runs (AVX2, portable).
final class QuantizedTests: XCTestCase {
    func reference(m: Int, n: Int, k: Int, a: [Float], lda: Int, w: [Float]) -> [Double] {
        var out = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { var s = 0.0; for t in 0..<k { s += Double(a[i * lda + t]) * Double(w[j * k + t]) }; out[i * n + j] = s } }
        return out
    }

    func check(_ format: WeightFormat, m: Int, n: Int, k: Int, level: Int, file: StaticString = #filePath, line: UInt = #line) {
        var rng = RNG(seed: UInt64(m * 1000 + n * 10 + k))
        let lda = k + 3, ldc = n + 5
        let w = Tensor(shape: [n, k], values: (0..<(n * k)).map { _ in rng.normal() * 0.05 })
        let a = (0..<(m * lda)).map { _ in rng.normal() }
        guard let q = QuantizedWeights(w, format: format) else { return XCTFail("no \(format) weights for k \(k)", file: file, line: line) }
        var deq = [Float](repeating: 0, count: n * k)
        deq.withUnsafeMutableBufferPointer { q.dequantize(rows: 0, n, into: $0.baseAddress!) }
        // the quantization itself: bf16 within 2^-8 relative per weight, int8 within half a step of its block's scale
        for j in 0..<n {
            // int8: each block's step is its largest magnitude / 127
            let blockMax = stride(from: 0, to: k, by: 32).map { b in (b..<min(k, b + 32)).map { abs(w.data[j * k + $0]) }.max()! }
            for t in 0..<k {
                let x = w.data[j * k + t], d = deq[j * k + t]
                let bound = format == .bf16 ? abs(x) / 256 : blockMax[t / 32] / 127 / 2 * 1.0001
                XCTAssertLessThanOrEqual(abs(x - d), bound + 1e-12, "\(format) weight (\(j), \(t))", file: file, line: line)
            }
        }
        var c = [Float](repeating: .nan, count: m * ldc)
        a.withUnsafeBufferPointer { ap in c.withUnsafeMutableBufferPointer { cp in
            q.product(m: m, n: n, a: ap.baseAddress!, lda: lda, c: cp.baseAddress!, ldc: ldc)
        } }
        // one row against int8 multiplies the activations rounded to int16, one scale per block of 32 (max |a| / 32767)
        let roundedA = format == .int8 && m == 1 ? int16Activations(a, m: m, k: k, lda: lda) : a
        let ref = reference(m: m, n: n, k: k, a: roundedA, lda: lda, w: deq)
        var num = 0.0, den = 0.0
        for i in 0..<m { for j in 0..<n {
            let got = Double(c[i * ldc + j])
            XCTAssertTrue(got.isFinite, "\(format) m \(m) n \(n) k \(k): element (\(i), \(j)) not written", file: file, line: line)
            num += (got - ref[i * n + j]) * (got - ref[i * n + j]); den += ref[i * n + j] * ref[i * n + j]
        } }
        XCTAssertLessThan((num / den).squareRoot(), 1e-5, "\(format) m \(m) n \(n) k \(k) kernel level \(level)", file: file, line: line)
        // the padding columns of C (ldc > n) are untouched
        for i in 0..<m { for j in n..<ldc { XCTAssertTrue(c[i * ldc + j].isNaN, "\(format): wrote past column n", file: file, line: line) } }
    }

    /// What the one-row int8 kernel multiplies: each block of 32 activations rounded to int16 steps of max |a| / 32767.
    func int16Activations(_ a: [Float], m: Int, k: Int, lda: Int) -> [Float] {
        var out = a
        for i in 0..<m {
            for b in stride(from: 0, to: k, by: 32) {
                let block = (b..<(b + 32)).map { a[i * lda + $0] }
                let scale = block.map(abs).max()! / 32767
                for t in 0..<32 { out[i * lda + b + t] = scale > 0 ? (a[i * lda + b + t] / scale).rounded(.toNearestOrEven) * scale : 0 }
            }
        }
        return out
    }

    func testInt16ActivationRounding() {
        var rng = RNG(seed: 5)
        let (m, k, lda) = (3, 96, 101)
        var a = (0..<(m * lda)).map { _ in rng.normal() * 3 }
        for t in 32..<64 { a[lda + t] = 0 }  // an all-zero block: scale 0, values 0
        var xq = [Int16](repeating: 0, count: m * k), xs = [Float](repeating: -1, count: m * k / 32)
        nc_quantize_a16(Int32(m), Int32(k), a, Int32(lda), &xq, &xs)
        for i in 0..<m { for b in 0..<(k / 32) {
            let block = (0..<32).map { a[i * lda + b * 32 + $0] }
            XCTAssertEqual(xs[i * 3 + b], block.map(abs).max()! / 32767, "block (\(i), \(b)) scale")
            XCTAssertEqual(Int(xq[i * k + b * 32 + block.indices.max(by: { abs(block[$0]) < abs(block[$1]) })!].magnitude), xs[i * 3 + b] > 0 ? 32767 : 0)
            for t in 0..<32 {
                XCTAssertLessThanOrEqual(abs(Float(xq[i * k + b * 32 + t]) * xs[i * 3 + b] - block[t]), xs[i * 3 + b] * 0.5001, "(\(i), \(b * 32 + t))")
            }
        } }
        // a NaN activation makes its block's scale NaN, so the product shows it instead of hiding it
        a[5] = .nan
        nc_quantize_a16(1, 32, a, Int32(lda), &xq, &xs)
        XCTAssertTrue(xs[0].isNaN)
    }

    func testBF16AndInt8ProductsAgainstFloat64() {
        forEachKernelLevel { level in
            for m in [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 40] {
                for n in [1, 2, 3, 5, 6, 33] {
                    for k in [32, 64, 96] {
                        check(.bf16, m: m, n: n, k: k, level: level)
                        check(.int8, m: m, n: n, k: k, level: level)
                    }
                    check(.bf16, m: m, n: n, k: 45, level: level)  // a tail of k past the last 8
                }
            }
        }
    }

    func testInt8NeedsWholeBlocksAndF32IsNoConversion() {
        XCTAssertNil(QuantizedWeights(Tensor(shape: [4, 40]), format: .int8), "int8 needs k a multiple of 32: such a matrix stays float32")
        XCTAssertNil(QuantizedWeights(Tensor(shape: [4, 64]), format: .f32))
        XCTAssertNotNil(QuantizedWeights(Tensor(shape: [4, 40]), format: .bf16))
    }

    func testLinearUsesTheQuantizedWeights() {
        var rng = RNG(seed: 9)
        let w = Tensor(shape: [24, 64], values: (0..<(24 * 64)).map { _ in rng.normal() })
        let x = Tensor(shape: [3, 64], values: (0..<(3 * 64)).map { _ in rng.normal() })
        let f32 = Tensor.withoutGrad { linear(x, w) }.array
        w.quantized = QuantizedWeights(w, format: .int8)
        let q = Tensor.withoutGrad { linear(x, w) }.array
        XCTAssertNotEqual(f32, q, "the quantized weights were not used")
        let num = zip(f32, q).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +), den = f32.map { Double($0 * $0) }.reduce(0, +)
        XCTAssertLessThan((num / den).squareRoot(), 1e-2, "int8 linear vs float32, relative")
    }
}
