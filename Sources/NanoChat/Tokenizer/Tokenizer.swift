import Foundation
import NanoTensor

/// nanochat's special tokens, in id order (they follow the mergeable ranks).
public let specialTokenNames = [
    "<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>",
]

/// Byte-level BPE tokenizer with tiktoken's semantics (upstream's `RustBPETokenizer` at inference).
///
/// Mergeable ranks are byte strings whose rank is their id; special tokens are appended after them.
/// Encoding splits text with the hand-written `SplitScanner`, takes a chunk whole when it is itself a
/// token, and otherwise merges its bytes by lowest-rank adjacent concatenation, leftmost on ties.
public final class Tokenizer: @unchecked Sendable {
    /// rank -> bytes and bytes -> rank (index in the table == rank).
    let ranks: ByteTable
    public let specialTokens: [String]
    public let scanner: SplitScanner
    /// Rank of each single byte (identity for nanochat, a permutation for GPT-2/GPT-4 files).
    private let byteRank: [Int]

    public var mergeableCount: Int { ranks.count }
    public var vocabSize: Int { ranks.count + specialTokens.count }
    public var pattern: String { scanner.pattern }

    /// Builds a tokenizer from its mergeable tokens in rank order. Throws on duplicate byte strings (two
    /// ranks for one string would make encoding ambiguous) or a missing single byte.
    public init(mergeable: [[UInt8]], specialTokens: [String], scanner: SplitScanner = SplitScanner()) throws {
        let table = ByteTable(expectedCount: mergeable.count, expectedBytes: mergeable.reduce(0) { $0 + $1.count })
        for (rank, bytes) in mergeable.enumerated() {
            if bytes.isEmpty { throw NanoChatError("mergeable token \(rank) is empty") }
            let (idx, inserted) = table.insert(bytes)
            if !inserted {
                throw NanoChatError("mergeable tokens \(idx) and \(rank) have the same bytes \(bytes); ranks must be unique byte strings")
            }
        }
        var byteRank = [Int](repeating: -1, count: 256)
        for b in 0..<256 {
            let r = table.find([UInt8(b)])
            if r < 0 { throw NanoChatError("the vocabulary has no token for the single byte \(b); byte-level BPE needs all 256") }
            byteRank[b] = r
        }
        var seen = Set<String>()
        for s in specialTokens where !seen.insert(s).inserted {
            throw NanoChatError("special token \(s) is listed twice")
        }
        self.ranks = table
        self.specialTokens = specialTokens
        self.scanner = scanner
        self.byteRank = byteRank
        specialBytes = specialTokens.map { Array($0.utf8) }
    }

    private let specialBytes: [[UInt8]]

    // MARK: - Ids

    /// Id of a special token by its string (e.g. `<|bos|>`), or nil.
    public func specialID(_ name: String) -> Int? {
        specialTokens.firstIndex(of: name).map { ranks.count + $0 }
    }

    /// The `<|bos|>` id (upstream also accepts `<|endoftext|>` for stock tiktoken encodings).
    public var bosID: Int {
        specialID("<|bos|>") ?? specialID("<|endoftext|>") ?? (vocabSize - 1)
    }

    /// Bytes of one token; special tokens give their literal string.
    public func tokenBytes(_ id: Int) -> [UInt8]? {
        if id >= 0 && id < ranks.count { return ranks.keyBytes(id) }
        if id >= ranks.count && id < vocabSize { return specialBytes[id - ranks.count] }
        return nil
    }

    /// Raw byte length of every token, 0 for special tokens: the denominator of bits per byte.
    public var tokenByteCounts: [Int32] {
        (0..<vocabSize).map { $0 < ranks.count ? Int32(ranks.key($0).count) : 0 }
    }

    // MARK: - Encoding

    /// Encodes text without recognising special tokens (upstream's `encode` / tiktoken `encode_ordinary`).
    public func encode(_ text: String) -> [Int] {
        var text = text
        return text.withUTF8 { encode(bytes: $0) }
    }

    /// Encodes raw bytes (any bytes; invalid UTF-8 stays byte-exact through decodeBytes).
    public func encode(bytes: UnsafeBufferPointer<UInt8>) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(bytes.count / 3 + 4)
        var work = MergeWork()
        if let base = bytes.baseAddress { encodeOrdinary(base, bytes.count, into: &out, work: &work) }
        return out
    }

    public func encode(bytes: [UInt8]) -> [Int] {
        bytes.withUnsafeBufferPointer { encode(bytes: $0) }
    }

    /// Encodes text in which special-token strings are recognised (tiktoken's `allowed_special="all"`).
    public func encodeAllowingSpecial(_ text: String) -> [Int] {
        let bytes = Array(text.utf8)
        var out: [Int] = []
        var work = MergeWork()
        bytes.withUnsafeBufferPointer { buf in
            guard let p = buf.baseAddress else { return }
            let n = buf.count
            var segmentStart = 0
            var i = 0
            while i + 1 < n {
                if p[i] == 0x3C && p[i + 1] == 0x7C, let (sid, len) = matchSpecial(p, i, n) {  // "<|"
                    if i > segmentStart { encodeOrdinary(p + segmentStart, i - segmentStart, into: &out, work: &work) }
                    out.append(ranks.count + sid)
                    i += len
                    segmentStart = i
                } else {
                    i += 1
                }
            }
            if n > segmentStart { encodeOrdinary(p + segmentStart, n - segmentStart, into: &out, work: &work) }
        }
        return out
    }

    private func matchSpecial(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> (Int, Int)? {
        var best: (Int, Int)? = nil
        for (sid, s) in specialBytes.enumerated() where s.count <= n - i && s.count > (best?.1 ?? 0) {
            if s.withUnsafeBufferPointer({ memcmp($0.baseAddress!, p + i, s.count) == 0 }) { best = (sid, s.count) }
        }
        return best
    }

    /// Encodes many texts in parallel over the cores, optionally framing each with a token
    /// (upstream's `encode(list, prepend=bos)`).
    public func encodeBatch(_ texts: [String], prepend: Int? = nil, append: Int? = nil) -> [[Int]] {
        var results = [[Int]](repeating: [], count: texts.count)
        let parts = Threading.ranges(texts.count, parts: Threading.workers * 4)
        results.withUnsafeMutableBufferPointer { res in
            let res = res
            Threading.parallelFor(parts.count) { pi in
                var work = MergeWork()
                for i in parts[pi] {
                    var out: [Int] = []
                    if let prepend { out.append(prepend) }
                    var t = texts[i]
                    t.withUTF8 { b in
                        out.reserveCapacity(b.count / 3 + 2)
                        if let base = b.baseAddress { encodeOrdinary(base, b.count, into: &out, work: &work) }
                    }
                    if let append { out.append(append) }
                    res[i] = out
                }
            }
        }
        return results
    }

    /// The hot path: split, then whole-chunk lookup, then byte-pair merging.
    @inline(__always)
    func encodeOrdinary(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int], work: inout MergeWork) {
        var i = 0
        while i < n {
            let e = scanner.nextEnd(p, i, n)
            let len = e - i
            let r = ranks.find(p + i, len)
            if r >= 0 {
                out.append(r)
            } else {
                bytePairMerge(p + i, len, into: &out, work: &work)
            }
            i = e
        }
    }

    /// Scratch buffers for merging, reused across chunks so encoding allocates nothing per chunk.
    struct MergeWork {
        var starts: [Int32] = []   // byte offset where each part starts (plus one sentinel)
        var pairRank: [Int32] = [] // rank of part i joined with part i+1 (Int32.max if not a token)
        var token: [Int32] = []    // rank of part i itself
        var heap: [UInt64] = []    // long chunks: (rank << 32 | start), lazily invalidated
        var alive: [Bool] = []
        var next: [Int32] = []
        var prev: [Int32] = []
    }

    /// Chunks longer than this merge through a heap (O(n log n)) instead of a linear scan per merge (O(n^2)),
    /// so a megabyte of spaces cannot stall encoding. Both give tiktoken's result.
    public static var heapMergeThreshold = 256

    @inline(__always)
    private func rank(_ p: UnsafePointer<UInt8>, _ a: Int, _ b: Int) -> Int32 {
        let r = ranks.find(p + a, b - a)
        return r >= 0 ? Int32(r) : Int32.max
    }

    /// tiktoken's byte_pair_merge: repeatedly join the adjacent pair whose concatenation has the lowest
    /// rank (leftmost on ties) until no adjacent concatenation is a token.
    func bytePairMerge(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int], work: inout MergeWork) {
        if n > Self.heapMergeThreshold {
            heapMerge(p, n, into: &out, work: &work)
            return
        }
        work.starts.removeAll(keepingCapacity: true)
        work.pairRank.removeAll(keepingCapacity: true)
        work.token.removeAll(keepingCapacity: true)
        for i in 0..<n {
            work.starts.append(Int32(i))
            work.token.append(Int32(byteRank[Int(p[i])]))
            work.pairRank.append(i + 1 < n ? rank(p, i, i + 2) : Int32.max)
        }
        work.starts.append(Int32(n))
        var parts = n
        work.starts.withUnsafeMutableBufferPointer { starts in
            work.pairRank.withUnsafeMutableBufferPointer { pr in
                work.token.withUnsafeMutableBufferPointer { tok in
                    while parts > 1 {
                        var best = Int32.max
                        var bi = -1
                        for i in 0..<(parts - 1) where pr[i] < best {
                            best = pr[i]
                            bi = i
                        }
                        if bi < 0 { break }
                        // part bi absorbs part bi+1
                        tok[bi] = best
                        for j in (bi + 1)..<(parts - 1) {
                            tok[j] = tok[j + 1]
                            pr[j] = pr[j + 1]
                        }
                        for j in (bi + 1)..<parts { starts[j] = starts[j + 1] }
                        parts -= 1
                        // ranks of the pairs that now touch the merged part
                        pr[bi] = bi + 1 < parts ? rank(p, Int(starts[bi]), Int(starts[bi + 2])) : Int32.max
                        if bi > 0 { pr[bi - 1] = rank(p, Int(starts[bi - 1]), Int(starts[bi + 1])) }
                    }
                    for i in 0..<parts { out.append(Int(tok[i])) }
                }
            }
        }
    }

    /// The same merge order as `bytePairMerge`, for long chunks: a doubly linked list of parts and a min-heap
    /// keyed by (rank, start byte) — the start byte of a part never changes, so ties still go leftmost.
    private func heapMerge(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int], work: inout MergeWork) {
        work.starts.removeAll(keepingCapacity: true)  // end byte (exclusive) of the part starting at i
        work.pairRank.removeAll(keepingCapacity: true)
        work.token.removeAll(keepingCapacity: true)
        work.alive.removeAll(keepingCapacity: true)
        work.next.removeAll(keepingCapacity: true)
        work.prev.removeAll(keepingCapacity: true)
        work.heap.removeAll(keepingCapacity: true)
        for i in 0..<n {
            work.starts.append(Int32(i + 1))
            work.token.append(Int32(byteRank[Int(p[i])]))
            work.alive.append(true)
            work.next.append(i + 1 < n ? Int32(i + 1) : -1)
            work.prev.append(Int32(i - 1))
            let r = i + 1 < n ? rank(p, i, i + 2) : Int32.max
            work.pairRank.append(r)
            if r != Int32.max { work.heap.append(UInt64(r) << 32 | UInt64(i)) }
        }
        // heapify (min-heap)
        var heap = work.heap
        work.heap = []
        func siftDown(_ h: inout [UInt64], _ start: Int) {
            var i = start
            let c = h.count
            while true {
                let l = 2 * i + 1
                if l >= c { return }
                var m = l
                if l + 1 < c && h[l + 1] < h[l] { m = l + 1 }
                if h[m] >= h[i] { return }
                h.swapAt(m, i)
                i = m
            }
        }
        func push(_ h: inout [UInt64], _ v: UInt64) {
            h.append(v)
            var i = h.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                if h[parent] <= h[i] { return }
                h.swapAt(parent, i)
                i = parent
            }
        }
        if heap.count > 1 { for i in stride(from: heap.count / 2 - 1, through: 0, by: -1) { siftDown(&heap, i) } }
        while let top = heap.first {
            let last = heap.removeLast()
            if !heap.isEmpty { heap[0] = last; siftDown(&heap, 0) }
            let r = Int32(top >> 32)
            let i = Int(top & 0xFFFF_FFFF)
            if !work.alive[i] || work.pairRank[i] != r { continue }  // stale entry
            let j = Int(work.next[i])
            // part i absorbs part j
            work.token[i] = r
            work.starts[i] = work.starts[j]
            work.alive[j] = false
            let k = Int(work.next[j])
            work.next[i] = Int32(k)
            if k >= 0 { work.prev[k] = Int32(i) }
            work.pairRank[i] = k >= 0 ? rank(p, i, Int(work.starts[k])) : Int32.max
            if work.pairRank[i] != Int32.max { push(&heap, UInt64(work.pairRank[i]) << 32 | UInt64(i)) }
            let h = Int(work.prev[i])
            if h >= 0 {
                work.pairRank[h] = rank(p, h, Int(work.starts[i]))
                if work.pairRank[h] != Int32.max { push(&heap, UInt64(work.pairRank[h]) << 32 | UInt64(h)) }
            }
        }
        work.heap = heap
        var i = 0
        while i >= 0 && i < n {
            out.append(Int(work.token[i]))
            i = Int(work.next[i])
        }
    }

    // MARK: - Decoding

    /// Concatenated bytes of the tokens (special tokens as their literal strings). Throws on an id
    /// outside the vocabulary.
    public func decodeBytes(_ ids: [Int]) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids {
            if id >= 0 && id < ranks.count {
                let (p, c) = ranks.key(id)
                out.append(contentsOf: UnsafeBufferPointer(start: p, count: c))
            } else if id >= ranks.count && id < vocabSize {
                out.append(contentsOf: specialBytes[id - ranks.count])
            } else {
                throw NanoChatError("token id \(id) is outside the vocabulary (0..<\(vocabSize))")
            }
        }
        return out
    }

    /// Decodes to text, replacing invalid UTF-8 with U+FFFD (as upstream).
    public func decode(_ ids: [Int]) throws -> String {
        String(decoding: try decodeBytes(ids), as: UTF8.self)
    }
}
