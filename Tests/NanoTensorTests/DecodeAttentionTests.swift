import CKernels
import Foundation
import NanoTensor
import XCTest

/// The decode attention kernel (decode_attention.c) against a float64 softmax(q K^T / sqrt(d)) V, for spans that
/// leave every tail of its four-key and eight-score loops, head dims below, at and above the 64-wide pass of its
/// weighted sum (64 dimensions a pass with AVX2, 128 with AVX-512; dims not a multiple of 16 run AVX2 and not a
/// multiple of 8 the portable path), scores far apart (the max subtraction), and
/// every kernel set the machine runs (AVX-512, AVX2, portable); keys and values in float32 and in bf16.
final class DecodeAttentionTests: XCTestCase {
    /// softmax(scale q K^T) V in float64, K and V [span, d] as the kernel sees them (already widened from bf16)
    func reference(_ q: [Float], _ k: [Double], _ v: [Double], span: Int, d: Int, scale: Float) -> [Double] {
        let logits = (0..<span).map { j in (0..<d).reduce(0.0) { $0 + Double(q[$1]) * k[j * d + $1] } * Double(scale) }
        let m = logits.max()!
        let e = logits.map { Foundation.exp($0 - m) }, sum = e.reduce(0, +)
        return (0..<d).map { t in (0..<span).reduce(0.0) { $0 + e[$1] / sum * v[$1 * d + t] } }
    }

    func testOneQueryRowAgainstFloat64() {
        var rng = RNG(seed: 11)
        forEachKernelLevel { level in
            for d in [8, 24, 48, 60, 64, 72, 128, 256] {
                for span in [1, 2, 3, 4, 5, 7, 8, 9, 13, 64, 100, 257] {
                    for spread: Float in [1, 30] {
                        let q = (0..<d).map { _ in rng.normal() * spread / Float(d).squareRoot() }
                        let k = (0..<(span * d)).map { _ in rng.normal() }
                        let v = (0..<(span * d)).map { _ in rng.normal() }
                        let scale = 1 / Float(d).squareRoot()
                        var scores = [Float](repeating: 0, count: span), out = [Float](repeating: .nan, count: d + 1)
                        // float32 keys and values, then bf16 ones (a quantized model's cache) on the values they hold
                        nc_attend_one(q, k, v, Int32(span), Int32(d), scale, &scores, &out)
                        var kb = [UInt16](repeating: 0, count: span * d), vb = kb
                        roundToBF16(k, &kb, count: span * d)
                        roundToBF16(v, &vb, count: span * d)
                        var outB = [Float](repeating: .nan, count: d + 1)
                        nc_attend_one_bf16(q, kb, vb, Int32(span), Int32(d), scale, &scores, &outB)
                        let widen = { (h: UInt16) in Double(Float(bitPattern: UInt32(h) << 16)) }
                        for (name, got, want) in [("f32", out, reference(q, k.map(Double.init), v.map(Double.init), span: span, d: d, scale: scale)),
                                                  ("bf16", outB, reference(q, kb.map(widen), vb.map(widen), span: span, d: d, scale: scale))] {
                            for t in 0..<d {
                                XCTAssertEqual(Double(got[t]), want[t], accuracy: 2e-5 * max(1, abs(want[t])),
                                               "\(name) d \(d) span \(span) spread \(spread) kernel level \(level) dim \(t)")
                            }
                            XCTAssertTrue(got[d].isNaN, "\(name): wrote past the head's \(d) dims")
                        }
                    }
                }
            }
        }
    }
}
