/// An insert-only hash set of byte strings, each given a dense index in insertion order.
///
/// The tokenizer's byte-string -> rank map and the trainer's chunk counter are both this table: keys live
/// back to back in one arena, slots hold a 32-bit hash tag and the index, and lookups hash the bytes in place
/// (no `[UInt8]` or `String` is built per lookup).
public final class ByteTable {
    private var arena: UnsafeMutablePointer<UInt8>
    private var arenaCapacity: Int
    private(set) public var arenaCount = 0
    /// starts[i] ..< starts[i + 1] is key i in the arena.
    private var starts: UnsafeMutablePointer<Int>
    private var startsCapacity: Int
    private(set) public var count = 0
    /// 0 = empty, else (tag << 32) | (index + 1).
    private var slots: UnsafeMutablePointer<UInt64>
    private var mask: Int

    public init(expectedCount: Int = 1024, expectedBytes: Int = 8192) {
        arenaCapacity = max(64, expectedBytes)
        arena = .allocate(capacity: arenaCapacity)
        startsCapacity = max(16, expectedCount + 1)
        starts = .allocate(capacity: startsCapacity)
        starts[0] = 0
        var cap = 16
        while cap < expectedCount * 2 { cap <<= 1 }
        slots = .allocate(capacity: cap)
        slots.initialize(repeating: 0, count: cap)
        mask = cap - 1
    }

    deinit {
        arena.deallocate()
        starts.deallocate()
        slots.deallocate()
    }

    @inline(__always)
    public static func hash(_ p: UnsafePointer<UInt8>, _ len: Int) -> UInt64 {
        var h: UInt64 = 0x9E37_79B9_7F4A_7C15 &* UInt64(truncatingIfNeeded: len &+ 1)
        var i = 0
        while i + 8 <= len {
            let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
            h = (h ^ w) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 29
            i += 8
        }
        if i < len {
            var w: UInt64 = 0
            var shift: UInt64 = 0
            while i < len {
                w |= UInt64(p[i]) << shift
                shift += 8
                i += 1
            }
            h = (h ^ w) &* 0x94D0_49BB_1331_11EB
        }
        h ^= h >> 32
        h = h &* 0xD6E8_FEB8_6659_FD93
        h ^= h >> 32
        return h
    }

    /// Index of the key equal to `p[0..<len]`, or -1.
    @inline(__always)
    public func find(_ p: UnsafePointer<UInt8>, _ len: Int) -> Int {
        let h = Self.hash(p, len)
        let tag = h >> 32
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let slot = slots[s]
            if slot == 0 { return -1 }
            if slot >> 32 == tag {
                let idx = Int(slot & 0xFFFF_FFFF) - 1
                let a = starts[idx]
                if starts[idx + 1] - a == len && equal(arena + a, p, len) { return idx }
            }
            s = (s + 1) & mask
        }
    }

    /// Index of the key equal to `p[0..<len]`, inserting it if absent; `inserted` tells which.
    @inline(__always)
    @discardableResult
    public func insert(_ p: UnsafePointer<UInt8>, _ len: Int) -> (index: Int, inserted: Bool) {
        let h = Self.hash(p, len)
        let tag = h >> 32
        var s = Int(truncatingIfNeeded: h) & mask
        while true {
            let slot = slots[s]
            if slot == 0 { break }
            if slot >> 32 == tag {
                let idx = Int(slot & 0xFFFF_FFFF) - 1
                let a = starts[idx]
                if starts[idx + 1] - a == len && equal(arena + a, p, len) { return (idx, false) }
            }
            s = (s + 1) & mask
        }
        let idx = count
        if arenaCount + len > arenaCapacity { growArena(arenaCount + len) }
        (arena + arenaCount).update(from: p, count: len)
        arenaCount += len
        if count + 2 > startsCapacity { growStarts() }
        count += 1
        starts[count] = arenaCount
        slots[s] = tag << 32 | UInt64(idx + 1)
        if count * 2 > mask + 1 { rehash() }
        return (idx, true)
    }

    public func insert(_ bytes: [UInt8]) -> (index: Int, inserted: Bool) {
        bytes.withUnsafeBufferPointer { b in
            // An empty key still needs a valid pointer.
            guard let base = b.baseAddress else { var z: UInt8 = 0; return insert(&z, 0) }
            return insert(base, b.count)
        }
    }

    public func find(_ bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { var z: UInt8 = 0; return find(&z, 0) }
            return find(base, b.count)
        }
    }

    /// Pointer to and length of key `i` (valid until the next insert).
    @inline(__always)
    public func key(_ i: Int) -> (pointer: UnsafePointer<UInt8>, count: Int) {
        (UnsafePointer(arena + starts[i]), starts[i + 1] - starts[i])
    }

    public func keyBytes(_ i: Int) -> [UInt8] {
        let (p, n) = key(i)
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    @inline(__always)
    private func equal(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
        var i = 0
        while i + 8 <= n {
            if UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self)
                != UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self) { return false }
            i += 8
        }
        while i < n {
            if a[i] != b[i] { return false }
            i += 1
        }
        return true
    }

    private func growArena(_ need: Int) {
        var cap = arenaCapacity * 2
        while cap < need { cap *= 2 }
        let a = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
        a.update(from: arena, count: arenaCount)
        arena.deallocate()
        arena = a
        arenaCapacity = cap
    }

    private func growStarts() {
        let cap = startsCapacity * 2
        let s = UnsafeMutablePointer<Int>.allocate(capacity: cap)
        s.update(from: starts, count: count + 1)
        starts.deallocate()
        starts = s
        startsCapacity = cap
    }

    private func rehash() {
        let cap = (mask + 1) * 2
        let newSlots = UnsafeMutablePointer<UInt64>.allocate(capacity: cap)
        newSlots.initialize(repeating: 0, count: cap)
        let newMask = cap - 1
        for idx in 0..<count {
            let a = starts[idx]
            let h = Self.hash(arena + a, starts[idx + 1] - a)
            var s = Int(truncatingIfNeeded: h) & newMask
            while newSlots[s] != 0 { s = (s + 1) & newMask }
            newSlots[s] = (h >> 32) << 32 | UInt64(idx + 1)
        }
        slots.deallocate()
        slots = newSlots
        mask = newMask
    }
}
