/// Vectorised exp and tanh over 8 floats (AVX2 width), accurate to a few ulp: the softcap and softmax over
/// B*T x 32768 logits would otherwise spend more time in libm than in the matrix products.
/// Written with plain lane-wise arithmetic and bit casts only: Swift's generic `rounded()` and checked
/// float-to-int conversions are evaluated lane by lane and cost ~20x more.

@inline(__always)
public func vexp(_ x0: SIMD8<Float>) -> SIMD8<Float> {
    // exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2; Cephes' degree-5 polynomial for exp(r).
    let x = pointwiseMin(pointwiseMax(x0, SIMD8(repeating: -87.3)), SIMD8(repeating: 88.3))
    let magic = SIMD8<Float>(repeating: 12_582_912)  // 1.5 * 2^23: adding it rounds to an integer
    let t = x * 1.442_695_04 + magic
    let n = t - magic
    let r = (x - n * 0.693_359_375) + n * 2.121_944_4e-4
    var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
    p = p * r + 1.398_199_950_7e-3
    p = p * r + 8.333_451_907_3e-3
    p = p * r + 4.166_579_589_4e-2
    p = p * r + 1.666_666_545_9e-1
    p = p * r + 5.000_000_120_1e-1
    let e = p * (r * r) + r + 1
    // the integer n sits in the low mantissa bits of t; move it into the exponent field
    let bits = (unsafeBitCast(t, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return e * unsafeBitCast(bits, to: SIMD8<Float>.self)
}

@inline(__always)
func select(_ mask: SIMD8<Int32>, _ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    let ai = unsafeBitCast(a, to: SIMD8<Int32>.self), bi = unsafeBitCast(b, to: SIMD8<Int32>.self)
    return unsafeBitCast((ai & mask) | (bi & ~mask), to: SIMD8<Float>.self)
}

@inline(__always)
public func vtanh(_ x: SIMD8<Float>) -> SIMD8<Float> {
    // tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1)); near zero that formula cancels, so use x - x^3/3 + 2x^5/15.
    let xi = unsafeBitCast(x, to: SIMD8<Int32>.self)
    let signBit = xi & Int32(bitPattern: 0x8000_0000)
    let ax = unsafeBitCast(xi & 0x7FFF_FFFF, to: SIMD8<Float>.self)
    let e = vexp(2 * pointwiseMin(ax, SIMD8(repeating: 44)))
    let bigAbs = 1 - 2 / (e + 1)
    let big = unsafeBitCast(unsafeBitCast(bigAbs, to: SIMD8<Int32>.self) | signBit, to: SIMD8<Float>.self)
    let x2 = x * x
    let small = x * (1 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0)))
    // |x| > 0.02, compared as integers (positive floats order like their bit patterns): all ones where true
    let isBig = (SIMD8<Int32>(repeating: Float(0.02).bitPattern.toInt32) &- (xi & 0x7FFF_FFFF)) &>> 31
    return select(isBig, big, small)
}

/// Scalar versions through the same code, for tails and for tests.
@inline(__always)
public func fastExp(_ x: Float) -> Float { vexp(SIMD8(repeating: x))[0] }
@inline(__always)
public func fastTanh(_ x: Float) -> Float { vtanh(SIMD8(repeating: x))[0] }

extension UInt32 {
    @inline(__always) var toInt32: Int32 { Int32(bitPattern: self) }
}
