#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Python's `random.Random` (MT19937), reproduced exactly, because upstream's evaluation draws with it: CORE shuffles each
/// task with `Random(1337)` and picks few-shot examples with `Random(1234 + i).sample(...)`, and SpellingBee seeds
/// `Random(index)` per example. Same seed, same draws, so we score the same examples with the same prompts.
/// Covers what those callers use: integer seeds, `getrandbits(k ≤ 32)`, `randbelow`, `random()`, `choice`, `shuffle`, `sample`.
public struct PythonRandom {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// `random.Random(seed)` for an integer seed: `init_by_array` over the 32-bit words of |seed|, least significant first.
    public init(seed: Int) {
        var magnitude = UInt64(seed.magnitude)
        var key: [UInt32] = []
        repeat { key.append(UInt32(truncatingIfNeeded: magnitude)); magnitude >>= 32 } while magnitude > 0
        initGenrand(19_650_218)
        var i = 1, j = 0
        for _ in 0..<max(624, key.count) {
            state[i] = (state[i] ^ ((state[i - 1] ^ (state[i - 1] >> 30)) &* 1_664_525)) &+ key[j] &+ UInt32(j)
            i += 1; j += 1
            if i >= 624 { state[0] = state[623]; i = 1 }
            if j >= key.count { j = 0 }
        }
        for _ in 0..<623 {
            state[i] = (state[i] ^ ((state[i - 1] ^ (state[i - 1] >> 30)) &* 1_566_083_941)) &- UInt32(i)
            i += 1
            if i >= 624 { state[0] = state[623]; i = 1 }
        }
        state[0] = 0x8000_0000
        index = 624
    }

    private mutating func initGenrand(_ s: UInt32) {
        state[0] = s
        for i in 1..<624 { state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i) }
    }

    public mutating func nextUInt32() -> UInt32 {
        if index >= 624 {
            for k in 0..<624 {
                let y = (state[k] & 0x8000_0000) | (state[(k + 1) % 624] & 0x7fff_ffff)
                state[k] = state[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1) != 0 ? 0x9908_b0df : 0)
            }
            index = 0
        }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// `getrandbits(k)` for 1 ≤ k ≤ 32: the top k bits of one draw.
    public mutating func getrandbits(_ k: Int) -> UInt32 {
        precondition(k >= 1 && k <= 32, "getrandbits: k must be in 1...32")
        return nextUInt32() >> UInt32(32 - k)
    }

    /// `_randbelow(n)`: rejection sampling on `n.bit_length()` bits, so it matches Python draw for draw.
    public mutating func randbelow(_ n: Int) -> Int {
        precondition(n > 0 && n <= Int(UInt32.max), "randbelow: n must be in 1...2^32-1")
        let k = Int.bitWidth - n.leadingZeroBitCount
        var r = Int(getrandbits(k))
        while r >= n { r = Int(getrandbits(k)) }
        return r
    }

    /// `random()`: 53 random bits as a Double in [0, 1).
    public mutating func random() -> Double {
        let a = Double(nextUInt32() >> 5), b = Double(nextUInt32() >> 6)
        return (a * 67_108_864 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    public mutating func choice<C: RandomAccessCollection>(_ items: C) -> C.Element where C.Index == Int {
        items[items.startIndex + randbelow(items.count)]
    }

    /// `shuffle(x)` in place: Fisher-Yates from the end, as CPython does.
    public mutating func shuffle<T>(_ items: inout [T]) {
        var i = items.count - 1
        while i >= 1 {
            items.swapAt(i, randbelow(i + 1))
            i -= 1
        }
    }

    /// `sample(population, k)`: CPython picks a pool method for small populations and a rejection set otherwise;
    /// both are reproduced because they consume different draws.
    public mutating func sample<T>(_ population: [T], _ k: Int) -> [T] {
        let n = population.count
        precondition(k >= 0 && k <= n, "sample: k=\(k) larger than the population (\(n))")
        var setsize = 21
        if k > 5 {
            let exponent = (log(Double(k * 3)) / log(4.0)).rounded(.up)
            setsize += Int(pow(4.0, exponent))
        }
        var result: [T] = []
        result.reserveCapacity(k)
        if n <= setsize {
            var pool = population
            for i in 0..<k {
                let j = randbelow(n - i)
                result.append(pool[j])
                pool[j] = pool[n - i - 1]
            }
        } else {
            var selected = Set<Int>()
            for _ in 0..<k {
                var j = randbelow(n)
                while selected.contains(j) { j = randbelow(n) }
                selected.insert(j)
                result.append(population[j])
            }
        }
        return result
    }
}
