import CKernels
import Foundation
import NanoTensor
import XCTest

/// The C kernels of a training step (logits.c's loss row, attention_rows.c, elementwise.c) against float64 references,
/// on every kernel set this machine runs (AVX-512, AVX2, portable), with lengths that leave every tail past the last
/// vector of 8 or 16. The ops built on them are also checked by finite differences (GradCheck) at the default set.
final class TrainingKernelTests: XCTestCase {
    func randoms(_ n: Int, _ rng: inout RNG, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.normal() * scale } }

    func assertClose(_ got: [Float], _ want: [Double], _ tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, want.count, what, file: file, line: line)
        for i in 0..<min(got.count, want.count) where !(abs(Double(got[i]) - want[i]) <= tol * (1 + abs(want[i]))) {
            XCTFail("\(what): element \(i) is \(got[i]), expected \(want[i])", file: file, line: line)
            return
        }
    }

    /// exp (the attention's recomputed probabilities with a log-sum-exp of 0) and tanh (the softcap with a cap of 1)
    /// over the range training meets, including the series branch of tanh near zero.
    func testExpAndTanh() {
        let xs = stride(from: -30.0 as Float, through: 30, by: 0.37).map { $0 } + [1e-6, -3e-4, 0.019, 0.021, -0.5, 0, 80, -80]
        forEachKernelLevel { level in
            var e = xs
            nc_softmax_window_recompute(&e, Int32(e.count), 0, Int32(e.count - 1), 0)
            assertClose(e, xs.map { Foundation.exp(Double($0)) }, 3e-6, "exp, kernel level \(level)")
            var t = xs
            nc_softcap(&t, t.count, 1)
            for (i, x) in xs.enumerated() {
                XCTAssertEqual(Double(t[i]), tanh(Double(x)), accuracy: 3e-7 + 3e-6 * abs(tanh(Double(x))), "tanh(\(x)), kernel level \(level)")
            }
        }
    }

    func testSoftcapCrossEntropyRow() {
        var rng = RNG(seed: 5)
        let cap: Float = 15
        forEachKernelLevel { level in
            for vocab in [1, 7, 8, 15, 16, 17, 33, 1000, 32768] {
                for target in [-1, 0, vocab - 1, vocab / 2] {
                    let x = randoms(vocab, &rng, scale: 10)
                    // float64: softcapped logits, log-sum-exp, loss and the gradient scaled by 0.25
                    let y = x.map { Double(cap) * tanh(Double($0) / Double(cap)) }
                    let m = y.max()!, sum = y.reduce(0.0) { $0 + Foundation.exp($1 - m) }
                    let lse = m + Foundation.log(sum)
                    let loss = target >= 0 ? lse - y[target] : 0
                    let grad = y.enumerated().map { j, v -> Double in
                        guard target >= 0 else { return 0 }
                        let th = v / Double(cap)
                        return 0.25 * (Foundation.exp(v - lse) - (j == target ? 1 : 0)) * (1 - th * th)
                    }
                    var ex = [Float](repeating: 0, count: vocab)
                    var row = x
                    let got = nc_softcap_xent_row(&row, vocab, cap, Int32(target), 0, 0, &ex)
                    let what = "vocab \(vocab) target \(target) kernel level \(level)"
                    XCTAssertEqual(Double(got), loss, accuracy: 2e-5 * (1 + abs(loss)), what)
                    assertClose(row, y, 2e-6, "softcapped logits, " + what)
                    row = x
                    let got2 = nc_softcap_xent_row(&row, vocab, cap, Int32(target), 1, 0.25, &ex)
                    XCTAssertEqual(got2, got, what)
                    assertClose(row, grad, 2e-6, "gradient, " + what)
                }
            }
        }
    }

    func testAttentionSoftmaxRows() {
        var rng = RNG(seed: 9)
        forEachKernelLevel { level in
            for n in [1, 5, 8, 16, 23, 64, 100, 128] {
                for (lo, hi) in [(0, n - 1), (n / 3, n - 1), (0, n / 2), (n / 4, n / 4), (n / 5, (4 * n) / 5)] {
                    let x = randoms(n, &rng, scale: 4)
                    let w = x[lo...hi].map(Double.init), m = w.max()!
                    let lse = m + Foundation.log(w.reduce(0.0) { $0 + Foundation.exp($1 - m) })
                    let p = (0..<n).map { j in j < lo || j > hi ? 0 : Foundation.exp(Double(x[j]) - lse) }
                    let what = "n \(n) window \(lo)...\(hi) kernel level \(level)"
                    var row = x
                    let got = nc_softmax_window(&row, Int32(n), Int32(lo), Int32(hi))
                    XCTAssertEqual(Double(got), lse, accuracy: 1e-5 * (1 + abs(lse)), what)
                    assertClose(row, p, 3e-6, "softmax, " + what)
                    row = x
                    nc_softmax_window_recompute(&row, Int32(n), Int32(lo), Int32(hi), Float(lse))
                    assertClose(row, p, 3e-6, "recomputed, " + what)
                    let pf = p.map { Float($0) }, dpIn = randoms(n, &rng)
                    var dp = dpIn
                    nc_softmax_backward_row(pf, &dp, Int32(n), 0.3, 0.125)
                    assertClose(dp, (0..<n).map { Double(pf[$0]) * (Double(dpIn[$0]) - 0.3) * 0.125 }, 1e-6, "dS, " + what)
                }
            }
        }
    }

    func testNormRows() {
        var rng = RNG(seed: 3)
        forEachKernelLevel { level in
            for c in [2, 8, 15, 16, 17, 64, 100, 768] {
                let x = randoms(c, &rng, scale: 3), g = randoms(c, &rng), base = randoms(c, &rng)
                let what = "width \(c) kernel level \(level)"
                // RMSNorm and its backward
                let inv = 1 / (x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(c) + Double(Float.ulpOfOne)).squareRoot()
                let y = x.map { Double($0) * inv }
                var out = [Float](repeating: .nan, count: c)
                let gotInv = nc_rmsnorm_row(x, &out, Int32(c))
                XCTAssertEqual(Double(gotInv), inv, accuracy: 2e-6 * inv, what)
                assertClose(out, y, 2e-6, "rmsnorm, " + what)
                let mean = (0..<c).reduce(0.0) { $0 + Double(g[$1]) * Double(out[$1]) } / Double(c)
                var dx = base
                nc_rmsnorm_backward_row(g, out, gotInv, Int32(c), &dx)
                assertClose(dx, (0..<c).map { Double(base[$0]) + Double(gotInv) * (Double(g[$0]) - Double(out[$0]) * mean) }, 3e-6, "rmsnorm backward, " + what)
                // rotary + norm + gain (even widths), its backward against the chain rule written out
                guard c % 2 == 0 else { continue }
                let half = c / 2, gain: Float = 1.2
                let cs = (0..<half).map { Float(cos(0.3 * Double($0 + 1))) }, sn = (0..<half).map { Float(sin(0.3 * Double($0 + 1))) }
                var rot = [Double](repeating: 0, count: c)
                for j in 0..<half {
                    rot[j] = Double(x[j]) * Double(cs[j]) + Double(x[j + half]) * Double(sn[j])
                    rot[j + half] = -Double(x[j]) * Double(sn[j]) + Double(x[j + half]) * Double(cs[j])
                }
                let rinv = 1 / (rot.reduce(0.0) { $0 + $1 * $1 } / Double(c) + Double(Float.ulpOfOne)).squareRoot()
                var ro = [Float](repeating: .nan, count: c)
                let gotR = nc_rotary_norm_row(x, &ro, cs, sn, Int32(c), gain)
                XCTAssertEqual(Double(gotR), rinv, accuracy: 2e-6 * rinv, what)
                assertClose(ro, rot.map { $0 * rinv * Double(gain) }, 2e-6, "rotary norm, " + what)
                let m = (0..<c).reduce(0.0) { $0 + Double(g[$1]) * Double(ro[$1]) } / Double(c)
                let dy = (0..<c).map { Double(gotR) * (Double(gain) * Double(g[$0]) - Double(ro[$0]) / Double(gain) * m) }
                var want = base.map(Double.init)
                for j in 0..<half {
                    want[j] += dy[j] * Double(cs[j]) - dy[j + half] * Double(sn[j])
                    want[j + half] += dy[j] * Double(sn[j]) + dy[j + half] * Double(cs[j])
                }
                var dr = base
                nc_rotary_norm_backward_row(g, ro, cs, sn, gotR, gain, Int32(c), &dr)
                assertClose(dr, want, 3e-6, "rotary norm backward, " + what)
            }
        }
    }

    func testOptimizerUpdates() {
        var rng = RNG(seed: 4)
        forEachKernelLevel { level in
            for n in [1, 9, 16, 31, 1000] {
                for withGrad in [true, false] {
                    let p0 = randoms(n, &rng), m0 = randoms(n, &rng, scale: 0.1), v0 = randoms(n, &rng, scale: 0.1).map { $0 * $0 }
                    let g = randoms(n, &rng)
                    let what = "n \(n) gradient \(withGrad) kernel level \(level)"
                    let (gs, decay, b1, b2, step, b2s, eps): (Float, Float, Float, Float, Float, Float, Float) = (0.5, 0.99, 0.8, 0.95, 0.01, 0.3, 1e-8)
                    var p = p0, m = m0, v = v0
                    g.withUnsafeBufferPointer { gp in
                        OptimizerKernels.adamw(&p, m: &m, v: &v, grad: withGrad ? gp.baseAddress : nil, count: n, gradScale: gs, decay: decay,
                                               beta1: b1, beta2: b2, stepSize: step, bias2Sqrt: b2s, eps: eps)
                    }
                    var wantP = [Double](), wantM = [Double](), wantV = [Double]()
                    for i in 0..<n {
                        let gr = withGrad ? Double(g[i]) * Double(gs) : 0
                        let mi = Double(m0[i]) + (1 - Double(b1)) * (gr - Double(m0[i]))
                        let vi = Double(v0[i]) + (1 - Double(b2)) * (gr * gr - Double(v0[i]))
                        wantM.append(mi); wantV.append(vi)
                        wantP.append(Double(p0[i]) * Double(decay) - Double(step) * mi / (vi.squareRoot() / Double(b2s) + Double(eps)))
                    }
                    assertClose(m, wantM, 1e-6, "adamw m, " + what)
                    assertClose(v, wantV, 1e-6, "adamw v, " + what)
                    assertClose(p, wantP, 1e-5, "adamw p, " + what)
                    // Muon's momentum, then its cautious update from that u
                    var mb = m0, u = [Float](repeating: .nan, count: n)
                    g.withUnsafeBufferPointer { gp in
                        OptimizerKernels.muonMomentum(&mb, grad: withGrad ? gp.baseAddress : nil, into: &u, count: n, gradScale: gs, mu: 0.95)
                    }
                    let gr = (0..<n).map { withGrad ? Double(g[$0]) * Double(gs) : 0 }
                    let mw = (0..<n).map { Double(m0[$0]) + 0.05 * (gr[$0] - Double(m0[$0])) }
                    assertClose(mb, mw, 1e-6, "muon momentum, " + what)
                    assertClose(u, (0..<n).map { gr[$0] + 0.95 * (mw[$0] - gr[$0]) }, 1e-6, "muon u, " + what)
                    var pm = p0
                    OptimizerKernels.muonUpdate(&pm, u, count: n, lr: 0.02, weightDecay: 0.2)
                    assertClose(pm, (0..<n).map { i in
                        let decay = Double(u[i]) * Double(p0[i]) >= 0 ? 0.02 * 0.2 * Double(p0[i]) : 0
                        return Double(p0[i]) - 0.02 * Double(u[i]) - decay
                    }, 1e-6, "muon update, " + what)
                }
            }
        }
    }
}
