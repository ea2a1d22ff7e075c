import Foundation

/// The tokenizer on disk, in formats other tools read:
/// - `tokenizer.tiktoken`: tiktoken's rank file, one `base64(token bytes) rank` line per mergeable token;
/// - `tokenizer.json`: the split pattern and special tokens (what tiktoken's `Encoding` needs besides the ranks).
/// Python: `tiktoken.Encoding(name, pat_str=j["pattern"], mergeable_ranks=load_tiktoken_bpe(path),
/// special_tokens=j["special_tokens"])`.
extension Tokenizer {
    public static let rankFileName = "tokenizer.tiktoken"
    public static let configFileName = "tokenizer.json"

    struct Config: Codable {
        var format: String
        var pattern: String
        var special_tokens: [String: Int]
        var mergeable_ranks: Int
        var vocab_size: Int
    }

    /// Writes both files into `directory` (created if needed), each atomically.
    public func save(to directory: URL) throws {
        var rankText = ""
        rankText.reserveCapacity(mergeableCount * 12)
        for r in 0..<mergeableCount {
            rankText += Data(ranks.keyBytes(r)).base64EncodedString()
            rankText += " \(r)\n"
        }
        var specials: [String: Int] = [:]
        for (i, s) in specialTokens.enumerated() { specials[s] = mergeableCount + i }
        let config = Config(format: "nanochat-tokenizer-1", pattern: pattern, special_tokens: specials,
                            mergeable_ranks: mergeableCount, vocab_size: vocabSize)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try FileIO.writeAtomically(Data(rankText.utf8), to: directory.appendingPathComponent(Self.rankFileName))
        try FileIO.writeAtomically(try enc.encode(config), to: directory.appendingPathComponent(Self.configFileName))
    }

    /// Loads a tokenizer directory written by `save` (or any tiktoken rank file with a matching JSON).
    public static func load(from directory: URL) throws -> Tokenizer {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDir), isDir.boolValue else {
            throw NanoChatError("tokenizer directory \(directory.path) does not exist; train one with `nanochat tok-train` or pass --tokenizer-dir")
        }
        let configURL = directory.appendingPathComponent(configFileName)
        // upstream's tokenizer folder (tokenizer.pkl) where ours is absent
        let pickleURL = directory.appendingPathComponent(upstreamPickleName)
        if !FileManager.default.fileExists(atPath: configURL.path) && FileManager.default.fileExists(atPath: pickleURL.path) {
            return try loadUpstreamPickle(pickleURL)
        }
        let configData = try FileIO.read(configURL, what: "tokenizer config")
        let config: Config
        do {
            config = try JSONDecoder().decode(Config.self, from: configData)
        } catch {
            throw NanoChatError("tokenizer config \(configURL.path) is corrupt: expected JSON with pattern, special_tokens, mergeable_ranks, vocab_size (\(error))")
        }
        guard let scanner = SplitScanner(pattern: config.pattern) else {
            throw NanoChatError("tokenizer config \(configURL.path) has a split pattern this build cannot run: \(config.pattern)")
        }
        let rankURL = directory.appendingPathComponent(rankFileName)
        let mergeable = try loadRanks(rankURL)
        if mergeable.count != config.mergeable_ranks {
            throw NanoChatError("\(rankURL.path) has \(mergeable.count) tokens but \(configURL.path) says \(config.mergeable_ranks); the two files do not belong together")
        }
        return try make(mergeable: mergeable, specials: config.special_tokens, scanner: scanner, source: rankURL.path)
    }

    /// A tokenizer from its ranks and special tokens as tiktoken keeps them (ours on disk and upstream's pickle): the
    /// special ids must follow the ranks without gaps. `source` names the file in the errors.
    static func make(mergeable: [[UInt8]], specials: [String: Int], scanner: SplitScanner, source: String) throws -> Tokenizer {
        let sorted = specials.sorted { $0.value < $1.value }
        for (i, (name, id)) in sorted.enumerated() where id != mergeable.count + i {
            throw NanoChatError("\(source): special token \(name) has id \(id), expected \(mergeable.count + i) (special ids must follow the ranks without gaps)")
        }
        do {
            return try Tokenizer(mergeable: mergeable, specialTokens: sorted.map(\.key), scanner: scanner)
        } catch let e as NanoChatError {
            throw NanoChatError("\(source): \(e.description)")
        }
    }

    /// Reads a tiktoken rank file. Ranks must be exactly 0..<n (any line order), each once.
    public static func loadRanks(_ url: URL) throws -> [[UInt8]] {
        let data = try FileIO.read(url, what: "rank file")
        var byRank: [[UInt8]?] = []
        var count = 0
        try forEachLine(of: data) { line, lineNo in
            if line.isEmpty { return }
            guard let space = line.firstIndex(of: 0x20) else {
                throw NanoChatError("\(url.path) line \(lineNo): expected `base64 rank`, found no space")
            }
            let b64 = String(decoding: UnsafeBufferPointer(rebasing: line[..<space]), as: UTF8.self)
            let rankText = String(decoding: UnsafeBufferPointer(rebasing: line[(space + 1)...]), as: UTF8.self)
            guard let bytes = Data(base64Encoded: b64), !bytes.isEmpty else {
                throw NanoChatError("\(url.path) line \(lineNo): `\(b64)` is not valid base64 of a non-empty token")
            }
            guard let rank = Int(rankText.trimmingCharacters(in: .whitespaces)), rank >= 0, rank < 10_000_000 else {
                throw NanoChatError("\(url.path) line \(lineNo): `\(rankText)` is not a rank (a non-negative integer)")
            }
            if rank >= byRank.count { byRank += Array(repeating: nil, count: rank + 1 - byRank.count) }
            if byRank[rank] != nil {
                throw NanoChatError("\(url.path) line \(lineNo): rank \(rank) appears twice; every rank must be unique")
            }
            byRank[rank] = [UInt8](bytes)
            count += 1
        }
        if count == 0 { throw NanoChatError("\(url.path) is empty; expected tiktoken rank lines") }
        if let gap = byRank.firstIndex(where: { $0 == nil }) {
            throw NanoChatError("\(url.path): rank \(gap) is missing; ranks must run 0..<\(byRank.count) without gaps")
        }
        return byRank.map { $0! }
    }
}
