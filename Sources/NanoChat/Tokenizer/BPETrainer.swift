import NanoTensor

/// BPE training with rustbpe's algorithm: count the distinct chunks of the split text, then
/// repeatedly merge the most frequent adjacent pair (ties to the smallest pair), updating pair counts
/// incrementally through an index from each pair to the words that contain it.
public enum BPETrainer {

    /// Counts how often each distinct chunk occurs. Feed documents in batches (`add`); each batch is split
    /// and counted in parallel, one table per worker, and `finish` folds the tables into one.
    public final class ChunkCounter {
        let scanner: SplitScanner
        private var tables: [ByteTable]
        private var counts: [[Int]]
        public private(set) var bytesSeen = 0

        public init(scanner: SplitScanner = SplitScanner()) {
            self.scanner = scanner
            tables = (0..<Threading.workers).map { _ in ByteTable(expectedCount: 1 << 16, expectedBytes: 1 << 20) }
            counts = Array(repeating: [], count: Threading.workers)
        }

        /// Splits and counts a batch of documents, in parallel over the workers.
        public func add(_ documents: [[UInt8]]) {
            let parts = Threading.ranges(documents.count, parts: tables.count)
            let tables = self.tables
            var counts = self.counts
            self.counts = []  // hand the arrays to the workers without copying
            counts.withUnsafeMutableBufferPointer { countsBuf in
                let countsBuf = countsBuf
                Threading.parallelFor(parts.count) { w in
                    let table = tables[w]
                    var c = countsBuf[w]
                    countsBuf[w] = []
                    for d in parts[w] {
                        documents[d].withUnsafeBufferPointer { buf in
                            guard let p = buf.baseAddress else { return }
                            scanner.forEachChunk(p, count: buf.count) { s, e in
                                let (idx, inserted) = table.insert(p + s, e - s)
                                if inserted { c.append(1) } else { c[idx] += 1 }
                            }
                        }
                    }
                    countsBuf[w] = c
                }
            }
            self.counts = counts
            for d in documents { bytesSeen += d.count }
        }

        /// One table of distinct chunks with their counts.
        public func finish() -> (chunks: ByteTable, counts: [Int]) {
            let merged = tables[0]
            var total = counts[0]
            for w in 1..<tables.count {
                let t = tables[w]
                for i in 0..<t.count {
                    let (p, n) = t.key(i)
                    let (idx, inserted) = merged.insert(p, n)
                    if inserted { total.append(counts[w][i]) } else { total[idx] += counts[w][i] }
                }
            }
            return (merged, total)
        }
    }

    /// Learns `vocabSize - 256` merges (fewer if the text runs out of pairs) and returns the mergeable
    /// tokens in rank order: the 256 single bytes, then one token per merge.
    /// `progress` is called now and then with (merges done, merges wanted).
    public static func train(
        chunks: ByteTable, counts: [Int], vocabSize: Int,
        progress: ((Int, Int) -> Void)? = nil
    ) -> [[UInt8]] {
        precondition(vocabSize >= 256, "vocabSize must be at least 256")
        let numMerges = vocabSize - 256

        // Words: each distinct chunk as a run of token ids, stored back to back.
        let numWords = chunks.count
        var symbols = [Int32](repeating: 0, count: chunks.arenaCount)
        var wordStart = [Int](repeating: 0, count: numWords)
        var wordLen = [Int32](repeating: 0, count: numWords)
        var at = 0
        for w in 0..<numWords {
            let (p, n) = chunks.key(w)
            wordStart[w] = at
            wordLen[w] = Int32(n)
            for k in 0..<n { symbols[at + k] = Int32(p[k]) }
            at += n
        }

        // Pair statistics and the pair -> words index.
        var pairs = PairMap(capacity: 1 << 16)
        var pairCount: [Int] = []
        var pairWords: [[Int32]] = []
        @inline(__always) func pairID(_ key: UInt64) -> Int {
            let (id, inserted) = pairs.insert(key, nextID: pairCount.count)
            if inserted {
                pairCount.append(0)
                pairWords.append([])
            }
            return id
        }
        for w in 0..<numWords {
            let s = wordStart[w], n = Int(wordLen[w]), c = counts[w]
            if n < 2 { continue }
            for k in 0..<(n - 1) {
                let id = pairID(pairKey(symbols[s + k], symbols[s + k + 1]))
                pairCount[id] += c
                if pairWords[id].last != Int32(w) { pairWords[id].append(Int32(w)) }
            }
        }

        var heap = MergeHeap()
        for id in 0..<pairCount.count where pairCount[id] > 0 {
            heap.push(count: pairCount[id], pair: pairs.key(of: id))
        }

        var tokens: [[UInt8]] = (0..<256).map { [UInt8($0)] }
        tokens.reserveCapacity(vocabSize)
        var visited = [Int32](repeating: -1, count: numWords)
        var newPairs: [Int] = []

        var merge = 0
        while merge < numMerges {
            guard let top = heap.pop() else { break }
            let id = pairs.find(top.pair)
            let current = pairCount[id]
            if top.count != current {  // stale entry: counts only fall, so re-queue with the true count
                if current > 0 { heap.push(count: current, pair: top.pair) }
                continue
            }
            if current <= 0 { break }
            let a = Int32(truncatingIfNeeded: top.pair >> 32), b = Int32(truncatingIfNeeded: top.pair & 0xFFFF_FFFF)
            let newID = Int32(256 + merge)
            tokens.append(tokens[Int(a)] + tokens[Int(b)])

            newPairs.removeAll(keepingCapacity: true)
            let words = pairWords[id]
            pairWords[id] = []
            for w32 in words {
                let w = Int(w32)
                if visited[w] == Int32(merge) { continue }
                visited[w] = Int32(merge)
                let s = wordStart[w], end = s + Int(wordLen[w])
                let c = counts[w]
                var r = s, out = s
                var changed = false
                while r < end {
                    if r + 1 < end && symbols[r] == a && symbols[r + 1] == b {
                        changed = true
                        if out > s {
                            let left = symbols[out - 1]
                            pairCount[pairID(pairKey(left, a))] -= c
                            let nid = pairID(pairKey(left, newID))
                            if pairCount[nid] == 0 && pairWords[nid].isEmpty { newPairs.append(nid) }
                            pairCount[nid] += c
                            if pairWords[nid].last != w32 { pairWords[nid].append(w32) }
                        }
                        if r + 2 < end {
                            let right = symbols[r + 2]
                            pairCount[pairID(pairKey(b, right))] -= c
                            let nid = pairID(pairKey(newID, right))
                            if pairCount[nid] == 0 && pairWords[nid].isEmpty { newPairs.append(nid) }
                            pairCount[nid] += c
                            if pairWords[nid].last != w32 { pairWords[nid].append(w32) }
                        }
                        pairCount[id] -= c
                        symbols[out] = newID
                        out += 1
                        r += 2
                    } else {
                        symbols[out] = symbols[r]
                        out += 1
                        r += 1
                    }
                }
                if changed { wordLen[w] = Int32(out - s) }
            }
            for nid in newPairs where pairCount[nid] > 0 {
                heap.push(count: pairCount[nid], pair: pairs.key(of: nid))
            }
            merge += 1
            if let progress, merge % 1000 == 0 || merge == numMerges { progress(merge, numMerges) }
        }
        return tokens
    }

    @inline(__always)
    static func pairKey(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }
}

/// Open-addressing map from a pair key (left << 32 | right) to a dense pair id.
struct PairMap {
    private var keys: [UInt64]
    private var ids: [Int32]    // -1 = empty
    private var byID: [UInt64] = []
    private var mask: Int

    init(capacity: Int) {
        var cap = 16
        while cap < capacity * 2 { cap <<= 1 }
        keys = [UInt64](repeating: 0, count: cap)
        ids = [Int32](repeating: -1, count: cap)
        mask = cap - 1
    }

    @inline(__always)
    private static func slot(_ key: UInt64, _ mask: Int) -> Int {
        var h = key &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        return Int(truncatingIfNeeded: h) & mask
    }

    func key(of id: Int) -> UInt64 { byID[id] }

    func find(_ key: UInt64) -> Int {
        var s = Self.slot(key, mask)
        while ids[s] >= 0 {
            if keys[s] == key { return Int(ids[s]) }
            s = (s + 1) & mask
        }
        return -1
    }

    @inline(__always)
    mutating func insert(_ key: UInt64, nextID: Int) -> (Int, Bool) {
        var s = Self.slot(key, mask)
        while ids[s] >= 0 {
            if keys[s] == key { return (Int(ids[s]), false) }
            s = (s + 1) & mask
        }
        keys[s] = key
        ids[s] = Int32(nextID)
        byID.append(key)
        if byID.count * 2 > mask + 1 { grow() }
        return (nextID, true)
    }

    private mutating func grow() {
        let cap = (mask + 1) * 2
        keys = [UInt64](repeating: 0, count: cap)
        ids = [Int32](repeating: -1, count: cap)
        mask = cap - 1
        for (id, key) in byID.enumerated() {
            var s = Self.slot(key, mask)
            while ids[s] >= 0 { s = (s + 1) & mask }
            keys[s] = key
            ids[s] = Int32(id)
        }
    }
}

/// Max-heap of (count, pair): the highest count first, and on equal counts the smallest pair
/// (left, then right), as rustbpe orders its merge queue.
struct MergeHeap {
    private var counts: [Int] = []
    private var pairs: [UInt64] = []

    @inline(__always)
    private func above(_ i: Int, _ j: Int) -> Bool {
        counts[i] > counts[j] || (counts[i] == counts[j] && pairs[i] < pairs[j])
    }

    private mutating func swap(_ i: Int, _ j: Int) {
        counts.swapAt(i, j)
        pairs.swapAt(i, j)
    }

    mutating func push(count: Int, pair: UInt64) {
        counts.append(count)
        pairs.append(pair)
        var i = counts.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !above(i, parent) { break }
            swap(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (count: Int, pair: UInt64)? {
        guard let top = counts.first else { return nil }
        let topPair = pairs[0]
        let lastC = counts.removeLast(), lastP = pairs.removeLast()
        if !counts.isEmpty {
            counts[0] = lastC
            pairs[0] = lastP
            var i = 0
            let n = counts.count
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var m = l
                if l + 1 < n && above(l + 1, l) { m = l + 1 }
                if !above(m, i) { break }
                swap(m, i)
                i = m
            }
        }
        return (top, topPair)
    }
}
