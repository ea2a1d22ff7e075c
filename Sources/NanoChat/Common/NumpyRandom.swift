/// NumPy's `default_rng(seed).permutation(n)` (SeedSequence → PCG64 → Generator.shuffle), reproduced exactly,
/// because upstream's tasks shuffle their HuggingFace datasets with `ds.shuffle(seed=42)`, which is that
/// permutation: with it, `chat-eval -x 100` scores the same 100 problems as upstream's.
public struct NumpyRandom {
    private var state: UInt128
    private let increment: UInt128
    private var spare: UInt32? = nil  // NumPy hands out a 64-bit draw as two 32-bit halves, low half first

    static let multiplier: UInt128 = (0x2360_ED05_1FC6_5DA4 as UInt128) << 64 | 0x4385_DF64_9FCC_F645

    public init(seed: UInt32) {
        let words = Self.seedSequence(entropy: [seed], words: 8)
        func word64(_ i: Int) -> UInt64 { UInt64(words[2 * i]) | UInt64(words[2 * i + 1]) << 32 }
        let initState = UInt128(word64(0)) << 64 | UInt128(word64(1))
        let sequence = UInt128(word64(2)) << 64 | UInt128(word64(3))
        increment = sequence << 1 | 1
        state = 0
        step()
        state &+= initState
        step()
    }

    /// SeedSequence's pool (4 words) mixed from the entropy, then `generate_state(words)` as uint32.
    static func seedSequence(entropy: [UInt32], words: Int) -> [UInt32] {
        let multA: UInt32 = 0x931e_8875, multB: UInt32 = 0x58f3_8ded
        var hashConst: UInt32 = 0x43b0_d7e5
        func hashmix(_ v: UInt32) -> UInt32 {
            var value = v ^ hashConst
            hashConst = hashConst &* multA
            value = value &* hashConst
            return value ^ (value >> 16)
        }
        func mix(_ x: UInt32, _ y: UInt32) -> UInt32 {
            let r = (0xca01_f9dd &* x) &- (0x4973_f715 &* y)
            return r ^ (r >> 16)
        }
        var pool = (0..<4).map { hashmix($0 < entropy.count ? entropy[$0] : 0) }
        for src in 0..<4 { for dst in 0..<4 where src != dst { pool[dst] = mix(pool[dst], hashmix(pool[src])) } }
        for src in 4..<max(4, entropy.count) { for dst in 0..<4 { pool[dst] = mix(pool[dst], hashmix(entropy[src])) } }
        var h: UInt32 = 0x8b51_f9dd
        return (0..<words).map { i in
            var v = pool[i % 4] ^ h
            h = h &* multB
            v = v &* h
            return v ^ (v >> 16)
        }
    }

    private mutating func step() { state = state &* Self.multiplier &+ increment }

    /// PCG64's XSL-RR output of the advanced state.
    public mutating func next64() -> UInt64 {
        step()
        let rot = UInt64(truncatingIfNeeded: state >> 122)
        let x = UInt64(truncatingIfNeeded: state >> 64) ^ UInt64(truncatingIfNeeded: state)
        return (x >> rot) | (x << ((64 &- rot) & 63))
    }

    public mutating func next32() -> UInt32 {
        if let s = spare { spare = nil; return s }
        let v = next64()
        spare = UInt32(truncatingIfNeeded: v >> 32)
        return UInt32(truncatingIfNeeded: v)
    }

    /// A uniform integer in 0...max by masked rejection (NumPy's `random_interval`).
    mutating func interval(_ max: UInt64) -> UInt64 {
        if max == 0 { return 0 }
        var mask = max
        for s in [1, 2, 4, 8, 16, 32] as [UInt64] { mask |= mask >> s }
        if max <= 0xffff_ffff {
            while true { let v = UInt64(next32()) & mask; if v <= max { return v } }
        }
        while true { let v = next64() & mask; if v <= max { return v } }
    }

    /// `permutation(n)`: arange(n) shuffled from the end.
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        var i = n - 1
        while i >= 1 {
            a.swapAt(i, Int(interval(UInt64(i))))
            i -= 1
        }
        return a
    }
}
