import Foundation
import NanoTensor

/// Where the loader is in the document stream: upstream's resume point (pq_idx, rg_idx, epoch) of the most
/// recently fetched batch of documents.
public struct LoaderState: Codable, Equatable, Sendable {
    public var pq_idx: Int
    public var rg_idx: Int
    public var epoch: Int
    public init(pq_idx: Int = 0, rg_idx: Int = 0, epoch: Int = 1) {
        self.pq_idx = pq_idx
        self.rg_idx = rg_idx
        self.epoch = epoch
    }
}

/// Pretraining shards: the files of `base_data_climbmix` (sorted; the last one is the validation split), each a
/// sequence of row groups of documents. Text shards (.jsonl, .txt) form row groups of 1024 documents.
public struct ShardSet {
    public let files: [URL]
    public static let rowGroupSize = 1024

    /// The split's files: "train" = all but the last, "val" = the last.
    public init(directory: URL, split: String) throws {
        let all = try TextDocuments(paths: [directory]).files
        guard all.count >= 2 else {
            throw NanoChatError("\(directory.path) has \(all.count) shard(s); training needs at least 2 (the last is the validation split)")
        }
        files = split == "val" ? [all.last!] : Array(all.dropLast())
    }

    public init(files: [URL]) { self.files = files }

    /// Number of row groups in a file (parquet: from the footer; text shards: groups of 1024 documents).
    public func rowGroupCount(_ fileIndex: Int) throws -> Int {
        let url = files[fileIndex]
        if url.pathExtension == "parquet" { return try ParquetFile(url: url).rowGroups.count }
        return (try textDocuments(fileIndex).count + Self.rowGroupSize - 1) / Self.rowGroupSize
    }

    /// The documents of one row group; memory is bounded by a row group for parquet shards.
    public func rowGroup(_ fileIndex: Int, _ rg: Int) throws -> [String] {
        let url = files[fileIndex]
        if url.pathExtension == "parquet" {
            return try ParquetFile(url: url).strings("text", rowGroup: rg).map { String(decoding: $0 ?? [], as: UTF8.self) }
        }
        let docs = try textDocuments(fileIndex)
        return Array(docs[(rg * Self.rowGroupSize)..<min((rg + 1) * Self.rowGroupSize, docs.count)])
    }

    func textDocuments(_ fileIndex: Int) throws -> [String] {
        var docs: [String] = []
        try TextDocuments(paths: [files[fileIndex]]).forEach { docs.append(String(decoding: $0, as: UTF8.self)); return true }
        return docs
    }
}

/// Exact loader position: the next row group to read, the partly read one, and which documents sit in the
/// buffer (by shard, row group and index), so a resumed run rebuilds the very same batches. Upstream only keeps
/// an approximate point (and skips ahead a round); we keep both (`approximate` is upstream's dict).
public struct ExactLoaderState: Codable, Equatable, Sendable {
    public var pq: Int
    public var rg: Int
    public var epoch: Int
    /// The row group being consumed (pq, rg) and the index of its next unread document, if any.
    public var group: [Int]?
    /// Buffered documents as [pq, rg, index].
    public var buffer: [[Int]]
    public var approximate: LoaderState
}

/// Upstream's BOS-aligned best-fit loader: every row starts with a document's BOS; rows are filled
/// with the largest buffered document that fits, and when none fits, the shortest is cropped to fill the row.
/// Rank r of W reads row groups r, r+W, ... so ranks see disjoint data. A file with fewer row groups than ranks
/// has each row group split into interleaved parts (documents part, part+k, ...; k = ceil(W / groups)), read as
/// groups of their own, so that every rank gets its share of a small file; with enough row groups (upstream's
/// shards) nothing is split.
public final class BestFitLoader {
    let tokenizer: Tokenizer
    let shards: ShardSet
    public let batch: Int, seqLen: Int
    let rank: Int, worldSize: Int
    let bufferSize: Int
    let tokenizerBatch = 128
    /// Tokenize batches of documents across the cores (false on a background prefetch thread, which must not
    /// start a parallel region of its own while the training step owns the cores).
    public var parallelTokenization = true
    var buffer: [[Int32]] = []
    var bufferRefs: [[Int]] = []
    /// Next row group to open, the one being read (file, group, next document), and its documents.
    var pq: Int, rg: Int, epoch: Int
    var group: [Int]? = nil
    var groupDocs: [String] = []
    var cachedKey: [Int] = []
    var cachedDocs: [String] = []
    var groupCounts: [Int: Int] = [:]
    var emptyGroupsInARow = 0
    public private(set) var state: LoaderState

    /// `resume` is upstream's approximate point (skips one round past it); `exact` restores precisely.
    public init(tokenizer: Tokenizer, shards: ShardSet, batch: Int, seqLen: Int, rank: Int = 0, worldSize: Int = 1,
                resume: LoaderState? = nil, exact: ExactLoaderState? = nil, bufferSize: Int = 1000) throws {
        guard !shards.files.isEmpty else { throw NanoChatError("the loader has no shard files to read") }
        self.tokenizer = tokenizer
        self.shards = shards
        self.batch = batch
        self.seqLen = seqLen
        self.rank = rank
        self.worldSize = worldSize
        self.bufferSize = bufferSize
        if let e = exact {
            state = e.approximate
            pq = e.pq; rg = e.rg; epoch = e.epoch
            group = e.group
            for ref in e.buffer {
                guard ref.count == 3 else { throw NanoChatError("corrupt loader state: buffer entry \(ref)") }
                let doc = try document(ref[0], ref[1], ref[2])
                buffer.append(encodeDoc(doc))
                bufferRefs.append(ref)
            }
            if let g = group { groupDocs = try virtualGroup(g[0], g[1]) }
        } else {
            let r = resume ?? LoaderState()
            state = r
            pq = r.pq_idx
            epoch = r.epoch
            // resuming from an approximate point: skip one full round past it so no data repeats
            rg = resume.map { ($0.rg_idx / worldSize + 1) * worldSize + rank } ?? rank
        }
        guard pq < shards.files.count else {
            throw NanoChatError("loader state points at shard \(pq) but there are only \(shards.files.count)")
        }
    }

    /// Where to resume exactly after the batches returned so far.
    public var exactState: ExactLoaderState {
        ExactLoaderState(pq: pq, rg: rg, epoch: epoch, group: group, buffer: bufferRefs, approximate: state)
    }

    func groupCount(_ file: Int) throws -> Int {
        guard file >= 0 && file < shards.files.count else {
            throw NanoChatError("loader state names shard \(file) but there are only \(shards.files.count)")
        }
        if let n = groupCounts[file] { return n }
        let n = try shards.rowGroupCount(file)
        groupCounts[file] = n
        return n
    }

    /// One row group's documents, cached while it is being read.
    func rowGroup(_ file: Int, _ g: Int) throws -> [String] {
        let count = try groupCount(file)
        guard g >= 0 && g < count else {
            throw NanoChatError("loader state names row group \(g) of \(shards.files[file].path), which does not exist (did the shards change?)")
        }
        if cachedKey != [file, g] {
            cachedDocs = try shards.rowGroup(file, g)
            cachedKey = [file, g]
        }
        return cachedDocs
    }

    func document(_ file: Int, _ g: Int, _ i: Int) throws -> String {
        let docs = try rowGroup(file, g)
        guard i >= 0 && i < docs.count else {
            throw NanoChatError("loader state names document \(i) of row group \(g) in \(shards.files[file].path), which does not exist (did the shards change?)")
        }
        return docs[i]
    }

    func encodeDoc(_ doc: String) -> [Int32] {
        [Int32(tokenizer.bosID)] + tokenizer.encode(doc).map { Int32($0) }
    }

    /// How many parts each row group of `file` is read in: 1 when the file has at least one row group per rank.
    func partsPerGroup(_ file: Int) throws -> Int {
        let count = try groupCount(file)
        return count == 0 || count >= worldSize ? 1 : (worldSize + count - 1) / count
    }

    /// Where group `v` of `file` sits: part v / count of row group v % count (document j of the part is document
    /// part + parts·j of the row group).
    func groupPlace(_ file: Int, _ v: Int) throws -> (real: Int, part: Int, parts: Int) {
        let count = try groupCount(file), parts = try partsPerGroup(file)
        guard v >= 0 && v < count * parts else {
            throw NanoChatError("loader state names group \(v) of \(shards.files[file].path), which does not exist (did the shards change?)")
        }
        return (v % count, v / count, parts)
    }

    /// The documents of group `v` of `file`.
    func virtualGroup(_ file: Int, _ v: Int) throws -> [String] {
        let (real, part, parts) = try groupPlace(file, v)
        let all = try rowGroup(file, real)
        return parts == 1 ? all : stride(from: part, to: all.count, by: parts).map { all[$0] }
    }

    /// Tokenizes the next batch of up to 128 documents into the buffer, advancing files, row groups and epochs.
    func fetchDocBatch() throws {
        var emptyFiles = 0
        while group == nil {
            let count = try groupCount(pq) * partsPerGroup(pq)
            if rg < count {
                group = [pq, rg, 0]
                groupDocs = try virtualGroup(pq, rg)
                state = LoaderState(pq_idx: pq, rg_idx: rg, epoch: epoch)
                rg += worldSize
            } else {
                if count == 0 { emptyFiles += 1 }
                if emptyFiles > shards.files.count { throw NanoChatError("the shards hold no documents") }
                pq += 1
                rg = rank
                if pq >= shards.files.count { pq = 0; epoch += 1 }
            }
        }
        let g = group!
        let place = try groupPlace(g[0], g[1])
        // a group can be empty (a row group with fewer documents than parts); a whole epoch of them for this rank
        // means it would spin forever
        if groupDocs.isEmpty {
            group = nil
            emptyGroupsInARow += 1
            let groups = try (0..<shards.files.count).map { try groupCount($0) * partsPerGroup($0) }.reduce(0, +)
            if emptyGroupsInARow > groups + shards.files.count {
                throw NanoChatError("data rank \(rank) of \(worldSize) has nothing to read: the shards hold fewer documents than there are ranks x accumulation steps; use a larger --device-batch-size or more data")
            }
            return
        }
        emptyGroupsInARow = 0
        let end = min(g[2] + tokenizerBatch, groupDocs.count)
        let docs = Array(groupDocs[g[2]..<end])
        let bos = tokenizer.bosID
        let encoded = parallelTokenization ? tokenizer.encodeBatch(docs, prepend: bos) : docs.map { [bos] + tokenizer.encode($0) }
        for (k, ids) in encoded.enumerated() {
            buffer.append(ids.map { Int32($0) })
            bufferRefs.append([g[0], place.real, place.part + place.parts * (g[2] + k)])  // the document's place in its real row group
        }
        group = end < groupDocs.count ? [g[0], g[1], end] : nil
    }

    func take(_ i: Int) -> [Int32] {
        bufferRefs.remove(at: i)
        return buffer.remove(at: i)
    }

    /// The next (inputs, targets) batch, each B x T row-major, and upstream's state after it.
    public func next() throws -> (inputs: [Int32], targets: [Int32], state: LoaderState) {
        let cap = seqLen + 1
        var rows = [Int32](repeating: 0, count: batch * cap)
        for r in 0..<batch {
            var pos = 0
            while pos < cap {
                while buffer.count < bufferSize { try fetchDocBatch() }
                let remaining = cap - pos
                var best = -1, bestLen = -1
                for (i, d) in buffer.enumerated() where d.count <= remaining && d.count > bestLen {
                    best = i
                    bestLen = d.count
                }
                if best >= 0 {
                    let d = take(best)
                    for (j, tok) in d.enumerated() { rows[r * cap + pos + j] = tok }
                    pos += d.count
                } else {
                    var shortest = 0
                    for (i, d) in buffer.enumerated() where d.count < buffer[shortest].count { shortest = i }
                    let d = take(shortest)
                    for j in 0..<remaining { rows[r * cap + pos + j] = d[j] }
                    pos += remaining
                }
            }
        }
        var inputs = [Int32](repeating: 0, count: batch * seqLen), targets = inputs
        for r in 0..<batch {
            for t in 0..<seqLen {
                inputs[r * seqLen + t] = rows[r * cap + t]
                targets[r * seqLen + t] = rows[r * cap + t + 1]
            }
        }
        return (inputs, targets, state)
    }
}

/// Runs a loader on a background thread, `depth` batches ahead of the training step, so the step never waits
/// for tokenization. Each batch carries the loader's exact state after it (what a checkpoint must save).
public final class PrefetchingLoader {
    public struct Batch {
        public var inputs: [Int32], targets: [Int32]
        public var state: LoaderState
        public var exact: ExactLoaderState
    }
    let loader: BestFitLoader
    let depth: Int
    var queue: [Result<Batch, Error>] = []
    var stopped = false
    let cond = NSCondition()
    var thread: Thread?
    /// Seconds the consumer spent waiting on the last `next()` (0 when a batch was ready).
    public private(set) var lastWait = 0.0
    /// Exact state after the last batch handed out.
    public private(set) var consumedState: ExactLoaderState
    public private(set) var consumedApproximate: LoaderState

    public init(_ loader: BestFitLoader, depth: Int = 2) {
        self.loader = loader
        self.depth = depth
        loader.parallelTokenization = false
        consumedState = loader.exactState
        consumedApproximate = loader.state
        let t = Thread { [weak self] in self?.produce() }
        t.name = "nanochat-loader"
        thread = t
        t.start()
    }

    deinit { stop() }

    public func stop() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    func produce() {
        while true {
            cond.lock()
            while queue.count >= depth && !stopped { cond.wait() }
            if stopped { cond.unlock(); return }
            cond.unlock()
            let item: Result<Batch, Error> = Result {
                let (x, y, st) = try loader.next()
                return Batch(inputs: x, targets: y, state: st, exact: loader.exactState)
            }
            cond.lock()
            queue.append(item)
            cond.broadcast()
            cond.unlock()
            if case .failure = item { return }
        }
    }

    public func next() throws -> Batch {
        let t0 = DispatchTime.now().uptimeNanoseconds
        cond.lock()
        while queue.isEmpty { cond.wait() }
        let item = queue.removeFirst()
        cond.broadcast()
        cond.unlock()
        lastWait = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let b = try item.get()
        consumedState = b.exact
        consumedApproximate = b.state
        return b
    }
}
