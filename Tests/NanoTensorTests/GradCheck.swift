import NanoTensor
import XCTest

/// Finite-difference gradient checking: loss = sum(out * R) for a fixed random R; every input's analytic
/// gradient is compared with central differences, as ||analytic - numeric|| / ||numeric||.
public struct GradChecker {
    var rng: UInt64 = 12345

    public init() {}

    public mutating func uniform() -> Float {
        rng = rng &* 6364136223846793005 &+ 1442695040888963407
        return Float(rng >> 40) / Float(1 << 24) * 2 - 1
    }

    public mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        let t = Tensor(shape: shape, requiresGrad: true)
        for i in 0..<t.count { t.data[i] = uniform() * scale }
        return t
    }

    /// Returns the worst relative error over the inputs.
    public mutating func check(_ inputs: [Tensor], eps: Float = 1e-2, file: StaticString = #filePath, line: UInt = #line,
                               tolerance: Double = 2e-2, _ f: () -> Tensor) -> Double {
        let probe = Tensor.withoutGrad { f() }
        let weights = (0..<probe.count).map { _ in uniform() }
        func objective() -> Double {
            let out = Tensor.withoutGrad { f() }
            var s = 0.0
            for i in 0..<out.count { s += Double(out.data[i]) * Double(weights[i]) }
            return s
        }
        for t in inputs { t.grad = nil }
        let out = f()
        let w = Tensor(shape: out.shape, values: weights)
        // loss = sum(out * w), built from the op under test so backward runs through it
        let loss = Tensor(shape: [1], values: [0])
        Tensor.record(loss, [out]) { l in
            let g = out.gradData(), s = l.grad!.data[0]
            for i in 0..<out.count { g[i] += s * w.data[i] }
        }
        loss.backward()
        var worst = 0.0
        for (ti, t) in inputs.enumerated() {
            var num = 0.0, den = 0.0
            for i in 0..<t.count {
                let saved = t.data[i]
                t.data[i] = saved + eps
                let plus = objective()
                t.data[i] = saved - eps
                let minus = objective()
                t.data[i] = saved
                let numeric = (plus - minus) / (2 * Double(eps))
                let analytic = Double(t.grad?.data[i] ?? 0)
                num += (numeric - analytic) * (numeric - analytic)
                den += numeric * numeric
            }
            let rel = den == 0 ? num.squareRoot() : (num / den).squareRoot()
            XCTAssertLessThan(rel, tolerance, "input \(ti) shape \(t.shape): relative gradient error \(rel)", file: file, line: line)
            worst = max(worst, rel)
        }
        return worst
    }
}

final class GradCheckTests: XCTestCase {
    func testElementwise() {
        var gc = GradChecker()
        let a = gc.tensor([3, 5]), b = gc.tensor([3, 5])
        _ = gc.check([a, b]) { add(a, b) }
        _ = gc.check([a]) { scale(a, -1.7) }
        _ = gc.check([a]) { reluSquared(a) }
        let alpha = gc.tensor([4]), beta = gc.tensor([4])
        _ = gc.check([alpha, a, beta, b]) { scalarMix(alpha, 2, a, beta, 1, b) }
        _ = gc.check([alpha, a]) { scalarMix(alpha, 3, a) }
        _ = gc.check([a]) { a.reshaped([5, 3]) }
    }

    func testLinearAndEmbedding() {
        var gc = GradChecker()
        let x = gc.tensor([2, 3, 6]), w = gc.tensor([4, 6])
        _ = gc.check([x, w]) { linear(x, w) }
        let table = gc.tensor([7, 5])
        _ = gc.check([table]) { embedding(table, [1, 3, 3, 0, 6], shape: [5]) }
    }

    func testNorms() {
        var gc = GradChecker()
        let x = gc.tensor([4, 8])
        _ = gc.check([x], eps: 3e-3) { rmsNorm(x) }
        let q = gc.tensor([2, 3, 2, 8])
        let (c, s) = rotaryTables(length: 10, headDim: 8)
        _ = gc.check([q], eps: 3e-3) { rotaryNorm(q, cos: c, sin: s, gain: 1.2) }
        _ = gc.check([q], eps: 3e-3) { rotaryNorm(q, cos: c, sin: s, gain: 1.0, positionOffset: 5) }
    }

    func testAttentionCausalWindowedGQA() {
        var gc = GradChecker()
        for (t, window, h, hkv) in [(5, 100, 2, 2), (9, 3, 4, 2), (70, 10, 2, 1), (130, 200, 1, 1)] {
            let q = gc.tensor([2, t, h, 4]), k = gc.tensor([2, t, hkv, 4]), v = gc.tensor([2, t, hkv, 4])
            let err = gc.check([q, k, v], eps: 1e-2) { causalAttention(q, k, v, window: window) }
            XCTAssertLessThan(err, 2e-2, "T=\(t) window=\(window)")
        }
    }

    func testAttentionMatchesNaiveSoftmax() {
        var gc = GradChecker()
        let (b, t, h, hkv, d, window) = (2, 70, 4, 2, 8, 20)
        let q = gc.tensor([b, t, h, d]), k = gc.tensor([b, t, hkv, d]), v = gc.tensor([b, t, hkv, d])
        let out = Tensor.withoutGrad { causalAttention(q, k, v, window: window) }
        for bi in 0..<b { for hh in 0..<h { for i in 0..<t {
            let kh = hh / (h / hkv)
            var scores: [Double] = []
            let lo = max(0, i - window)
            for j in lo...i {
                var s = 0.0
                for x in 0..<d { s += Double(q.data[((bi * t + i) * h + hh) * d + x]) * Double(k.data[((bi * t + j) * hkv + kh) * d + x]) }
                scores.append(s / Double(d).squareRoot())
            }
            let m = scores.max()!
            let e = scores.map { exp($0 - m) }
            let z = e.reduce(0, +)
            for x in 0..<d {
                var o = 0.0
                for (n, j) in (lo...i).enumerated() { o += e[n] / z * Double(v.data[((bi * t + j) * hkv + kh) * d + x]) }
                XCTAssertEqual(Double(out.data[((bi * t + i) * h + hh) * d + x]), o, accuracy: 1e-5)
            }
        } } }
    }

    func testSoftcapCrossEntropy() {
        var gc = GradChecker()
        let x = gc.tensor([300, 6]), w = gc.tensor([13, 6], scale: 3)  // 300 rows: two chunks; 13 rows, vocab 11
        var targets = (0..<300).map { Int32($0 % 11) }
        targets[5] = -1
        targets[299] = -1
        _ = gc.check([x, w], eps: 1e-2) { LMHead.loss(x, w, targets: targets, vocab: 11, softcap: 3) }
        // logits and per-row losses agree with the loss
        let logits = Tensor.withoutGrad { LMHead.logits(x, w, vocab: 11, softcap: 3) }
        let rows = LMHead.lossPerRow(x, w, targets: targets, vocab: 11, softcap: 3)
        var total = 0.0
        for i in 0..<300 where targets[i] >= 0 {
            let row = (0..<11).map { Double(logits.data[i * 11 + $0]) }
            let m = row.max()!
            let lse = m + log(row.map { exp($0 - m) }.reduce(0, +))
            XCTAssertEqual(Double(rows[i]), lse - row[Int(targets[i])], accuracy: 1e-4)
            total += lse - row[Int(targets[i])]
        }
        let mean = Tensor.withoutGrad { LMHead.loss(x, w, targets: targets, vocab: 11, softcap: 3) }.scalar
        XCTAssertEqual(Double(mean), total / 298, accuracy: 1e-4)
        XCTAssertEqual(rows[5], 0)
    }
}
