import CKernels
import Foundation
import NanoTensor
import XCTest

/// The decode attention kernel (decode_attention.c) against a float64 softmax(q K^T / sqrt(d)) V, for spans that
/// leave every tail of its four-key and eight-score loops, head dims below, at and above the 64-wide pass of its
/// weighted sum (and not multiples of 8, which take the portable path), scores far apart (the max subtraction), and
/// the portable path forced; keys and values in float32 and in bf16.
final class DecodeAttentionTests: XCTestCase {
    func testOneQueryRowAgainstFloat64() {
        var rng = RNG(seed: 11)
        for portable in [false, true] {
            nc_quant_force_portable = portable ? 1 : 0
            defer { nc_quant_force_portable = 0 }
            for d in [8, 24, 60, 64, 72, 128] {
                for span in [1, 2, 3, 4, 5, 7, 8, 9, 13, 64, 100, 257] {
                    for spread: Float in [1, 30] {
                        let q = (0..<d).map { _ in rng.normal() * spread / Float(d).squareRoot() }
                        let k = (0..<(span * d)).map { _ in rng.normal() }
                        let v = (0..<(span * d)).map { _ in rng.normal() }
                        let scale = 1 / Float(d).squareRoot()
                        var scores = [Float](repeating: 0, count: span), out = [Float](repeating: .nan, count: d + 1)
                        nc_attend_one(q, k, v, Int32(span), Int32(d), scale, &scores, &out)
                        let logits = (0..<span).map { j in (0..<d).reduce(0.0) { $0 + Double(q[$1]) * Double(k[j * d + $1]) } * Double(scale) }
                        let m = logits.max()!
                        let e = logits.map { Foundation.exp($0 - m) }, sum = e.reduce(0, +)
                        for t in 0..<d {
                            let want = (0..<span).reduce(0.0) { $0 + e[$1] / sum * Double(v[$1 * d + t]) }
                            XCTAssertEqual(Double(out[t]), want, accuracy: 2e-5 * max(1, abs(want)),
                                           "d \(d) span \(span) spread \(spread) portable \(portable) dim \(t)")
                        }
                        XCTAssertTrue(out[d].isNaN, "wrote past the head's \(d) dims")
                        // bf16 keys and values (a quantized model's cache): against float64 on the values they hold
                        var kb = [UInt16](repeating: 0, count: span * d), vb = kb
                        roundToBF16(k, &kb, count: span * d)
                        roundToBF16(v, &vb, count: span * d)
                        let widen = { (h: UInt16) in Double(Float(bitPattern: UInt32(h) << 16)) }
                        var outB = [Float](repeating: .nan, count: d + 1)
                        nc_attend_one_bf16(q, kb, vb, Int32(span), Int32(d), scale, &scores, &outB)
                        let logitsB = (0..<span).map { j in (0..<d).reduce(0.0) { $0 + Double(q[$1]) * widen(kb[j * d + $1]) } * Double(scale) }
                        let mB = logitsB.max()!
                        let eB = logitsB.map { Foundation.exp($0 - mB) }, sumB = eB.reduce(0, +)
                        for t in 0..<d {
                            let want = (0..<span).reduce(0.0) { $0 + eB[$1] / sumB * widen(vb[$1 * d + t]) }
                            XCTAssertEqual(Double(outB[t]), want, accuracy: 2e-5 * max(1, abs(want)),
                                           "bf16 d \(d) span \(span) spread \(spread) portable \(portable) dim \(t)")
                        }
                        XCTAssertTrue(outB[d].isNaN, "bf16: wrote past the head's \(d) dims")
                    }
                }
            }
        }
    }
}
