import Foundation

/// A small seeded generator (xoshiro-style mixing) for initialisation and sampling.
public struct RNG {
    var state: UInt64
    public init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    public mutating func unit() -> Float { Float(next() >> 40) / Float(1 << 24) }
    public mutating func uniform(_ a: Float, _ b: Float) -> Float { a + (b - a) * unit() }
    /// Standard normal (Box-Muller).
    public mutating func normal() -> Float {
        let u1 = max(unit(), 1e-12), u2 = unit()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}
