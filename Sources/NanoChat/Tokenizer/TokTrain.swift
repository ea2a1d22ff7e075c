import Foundation

/// Upstream's tok_train: stream documents (each cropped to `docCap` code points, stopping once more than
/// `maxChars` code points have been seen, the crossing document included), count chunks, learn merges,
/// append the special tokens.
public enum TokTrain {
    public struct Stats {
        public var documents = 0
        public var characters = 0
        public var bytes = 0
        public var uniqueChunks = 0
        public var countSeconds = 0.0
        public var mergeSeconds = 0.0
    }

    /// Trains a tokenizer of `vocabSize` ids (including the 9 special tokens).
    public static func train(
        documents: (([UInt8]) throws -> Bool) throws -> Void,
        vocabSize: Int, maxChars: Int, docCap: Int,
        log: ((String) -> Void)? = nil
    ) throws -> (Tokenizer, Stats) {
        let mergeableTarget = vocabSize - specialTokenNames.count
        guard mergeableTarget >= 256 else {
            throw NanoChatError("--vocab-size \(vocabSize) is too small: it must be at least 256 bytes + \(specialTokenNames.count) special tokens = \(256 + specialTokenNames.count)")
        }
        guard docCap > 0 else { throw NanoChatError("--doc-cap must be positive, got \(docCap)") }
        guard maxChars > 0 else { throw NanoChatError("--max-chars must be positive, got \(maxChars)") }

        var stats = Stats()
        let counter = BPETrainer.ChunkCounter()
        var batch: [[UInt8]] = []
        var batchBytes = 0
        let t0 = Date()
        try documents { doc in
            let (cropped, chars) = cropToCodePoints(doc, docCap)
            batch.append(cropped)
            batchBytes += cropped.count
            stats.documents += 1
            stats.characters += chars
            stats.bytes += cropped.count
            if batch.count >= 8192 || batchBytes >= 64 << 20 {
                counter.add(batch)
                batch.removeAll(keepingCapacity: true)
                batchBytes = 0
                log?("counted \(stats.documents) documents, \(stats.characters) characters")
            }
            return stats.characters <= maxChars
        }
        if !batch.isEmpty { counter.add(batch) }
        guard stats.characters > 0 else {
            throw NanoChatError("the training text is empty: no characters in the input documents")
        }
        let (chunks, counts) = counter.finish()
        stats.uniqueChunks = chunks.count
        stats.countSeconds = Date().timeIntervalSince(t0)
        log?("\(stats.documents) documents, \(stats.characters) characters, \(chunks.count) distinct chunks in \(String(format: "%.2f", stats.countSeconds)) s")

        let t1 = Date()
        let mergeable = BPETrainer.train(chunks: chunks, counts: counts, vocabSize: mergeableTarget) { done, want in
            log?("merges \(done)/\(want)")
        }
        stats.mergeSeconds = Date().timeIntervalSince(t1)
        if mergeable.count < mergeableTarget {
            log?("warning: the text ran out of pairs after \(mergeable.count - 256) merges; the vocabulary has \(mergeable.count + specialTokenNames.count) ids, not \(vocabSize)")
        }
        let tok = try Tokenizer(mergeable: mergeable, specialTokens: specialTokenNames)
        try sanityCheck(tok)
        return (tok, stats)
    }

    /// The first `cap` code points of a UTF-8 document, and how many code points that is.
    public static func cropToCodePoints(_ doc: [UInt8], _ cap: Int) -> ([UInt8], Int) {
        var chars = 0
        for (i, b) in doc.enumerated() where b & 0xC0 != 0x80 {
            if chars == cap { return (Array(doc[..<i]), chars) }
            chars += 1
        }
        return (doc, chars)
    }

    /// Upstream's check after training: a varied multi-line text must round-trip.
    static func sanityCheck(_ tok: Tokenizer) throws {
        let text = """
        Hello world! This is a test.
        Numbers: 123, 4567, 89
        Contractions: I'm, you're, it's
        Special chars: @#$%^&*()
        Unicode: 你好世界 🌍
        """
        let back = try tok.decode(tok.encode(text))
        if back != text { throw NanoChatError("the trained tokenizer does not round-trip its sanity text; this is a bug") }
    }
}
