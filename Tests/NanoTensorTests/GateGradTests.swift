import NanoTensor
import XCTest

/// Gradient checks for the fused gates of the GPT (smear, value-embedding gate, backout).
final class GateGradTests: XCTestCase {
    func rand(_ shape: [Int], _ seed: inout UInt64, scale: Float = 1) -> Tensor {
        let t = Tensor(shape: shape, requiresGrad: true)
        for i in 0..<t.count {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            t.data[i] = (Float(seed >> 40) / Float(1 << 24) * 2 - 1) * scale
        }
        return t
    }

    func numericCheck(_ inputs: [Tensor], _ f: () -> Tensor, tolerance: Double = 2e-2) {
        var seed: UInt64 = 99
        let w = rand([Tensor.withoutGrad { f() }.count], &seed)
        func objective() -> Double {
            let o = Tensor.withoutGrad { f() }
            return (0..<o.count).reduce(0.0) { $0 + Double(o.data[$1] * w.data[$1]) }
        }
        for t in inputs { t.grad = nil }
        let out = f()
        let loss = Tensor(shape: [1], values: [0])
        Tensor.record(loss, [out]) { l in
            let g = out.gradData()
            for i in 0..<out.count { g[i] += l.grad!.data[0] * w.data[i] }
        }
        loss.backward()
        for (ti, t) in inputs.enumerated() {
            var num = 0.0, den = 0.0
            for i in 0..<t.count {
                let s = t.data[i]
                t.data[i] = s + 1e-2; let p = objective()
                t.data[i] = s - 1e-2; let m = objective()
                t.data[i] = s
                let numeric = (p - m) / 2e-2, analytic = Double(t.grad?.data[i] ?? 0)
                num += (numeric - analytic) * (numeric - analytic); den += numeric * numeric
            }
            XCTAssertLessThan((num / max(den, 1e-30)).squareRoot(), tolerance, "input \(ti) \(t.shape)")
        }
    }

    func testSmear() {
        var seed: UInt64 = 1
        let x = rand([2, 5, 30], &seed), gate = rand([1, 24], &seed), lambda = rand([1], &seed)
        numericCheck([x, gate, lambda]) { smear(x, gate: gate, lambda: lambda) }
    }

    func testValueEmbeddingGate() {
        var seed: UInt64 = 2
        let v = rand([6, 8], &seed), ve = rand([6, 8], &seed), u = rand([6, 16], &seed), gate = rand([2, 12], &seed)
        numericCheck([v, ve, u, gate]) { valueEmbeddingMix(v, ve, u: u, gate: gate, kvHeads: 2) }
    }

    func testBackout() {
        var seed: UInt64 = 3
        let x = rand([4, 5], &seed), lambda = rand([1], &seed), saved = rand([4, 5], &seed)
        numericCheck([x, lambda, saved]) { subtractScaled(x, lambda, saved) }
    }
}
