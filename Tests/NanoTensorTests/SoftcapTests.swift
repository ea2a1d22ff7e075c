import CKernels
import Foundation
import NanoTensor
import XCTest

/// The logit softcap kernel (logits.c): cap * tanh(x / cap) against float64, on every kernel set the machine runs
/// (AVX-512, AVX2, portable), every tail length past the last vector of 8 or 16, values from zero (the series branch) to far beyond the cap (saturation).
final class SoftcapTests: XCTestCase {
    func testSoftcapAgainstFloat64() {
        var rng = RNG(seed: 11)
        forEachKernelLevel { level in
            for n in [1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 32768] {
                var x = (0..<n).map { i -> Float in
                    switch i % 4 {
                    case 0: return rng.normal() * 0.01  // |x / cap| far under 0.02: the series
                    case 1: return rng.normal() * 20
                    case 2: return rng.normal() * 500  // saturates at +-cap
                    default: return rng.normal()
                    }
                }
                if n > 3 { x[3] = 0; x[2] = -0 }
                let original = x
                nc_softcap(&x, n, 15)
                for i in 0..<n {
                    let want = 15 * tanh(Double(original[i]) / 15)
                    XCTAssertEqual(Double(x[i]), want, accuracy: 3e-5 + 1e-6 * abs(want), "n \(n) i \(i) x \(original[i]) kernel level \(level)")
                }
            }
        }
    }

    func testLogitsAreSoftcapped() {
        var rng = RNG(seed: 12)
        let (rows, vocab, c) = (3, 40_000, 32)  // past the size at which the softcap splits between threads
        let w = Tensor(shape: [vocab, c], values: (0..<(vocab * c)).map { _ in rng.normal() * 10 })
        let x = Tensor(shape: [rows, c], values: (0..<(rows * c)).map { _ in rng.normal() })
        let logits = Tensor.withoutGrad { LMHead.logits(x, w, vocab: vocab, softcap: 15) }
        for i in 0..<rows { for j in stride(from: 0, to: vocab, by: 997) {
            var dot = 0.0
            for t in 0..<c { dot += Double(x.data[i * c + t]) * Double(w.data[j * c + t]) }
            XCTAssertEqual(Double(logits.data[i * vocab + j]), 15 * tanh(dot / 15), accuracy: 1e-4, "(\(i), \(j))")
        } }
    }
}
