/// Vectorised exp and tanh over 8 floats (AVX2 width), accurate to a few ulp: the softcap and softmax over
/// B*T x 32768 logits would otherwise spend more time in libm than in the matrix products.

@inline(__always)
public func vexp(_ x0: SIMD8<Float>) -> SIMD8<Float> {
    // exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2; Cephes' degree-5 polynomial for exp(r).
    let x = x0.clamped(lowerBound: SIMD8(repeating: -87.3), upperBound: SIMD8(repeating: 88.3))
    let n = (x * 1.442_695_04).rounded(.toNearestOrEven)
    var r = x - n * 0.693_359_375
    r = r + n * 2.121_944_4e-4
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    let r2 = r * r
    let e = p * r2 + r + 1
    let bits = (SIMD8<Int32>(n) &+ 127) &<< 23
    return e * unsafeBitCast(bits, to: SIMD8<Float>.self)
}

@inline(__always)
public func vtanh(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); near zero that formula cancels, so use x - x^3/3 + 2x^5/15.
    let ax = x.replacing(with: -x, where: x .< 0)
    let e = vexp(2 * ax.clamped(lowerBound: SIMD8(repeating: 0), upperBound: SIMD8(repeating: 44)))
    var big = 1 - 2 / (e + 1)
    big.replace(with: -big, where: x .< 0)
    let x2 = x * x
    let small = x * (1 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0)))
    return small.replacing(with: big, where: ax .> 0.02)
}

/// Scalar versions through the same code, for tails and for tests.
@inline(__always)
public func fastExp(_ x: Float) -> Float { vexp(SIMD8(repeating: x))[0] }
@inline(__always)
public func fastTanh(_ x: Float) -> Float { vtanh(SIMD8(repeating: x))[0] }
