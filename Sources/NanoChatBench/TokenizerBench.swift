import Foundation
import NanoChat
import NanoTensor

/// Tokenizer training and encoding throughput (`nanochat bench tokenizer`), on documents as training sees them.
public struct TokenizerBench {
    /// The documents, each cropped to `docCap` code points, until `maxChars` characters.
    public let documents: [[UInt8]]
    public let characters: Int

    public init(paths: [String], docCap: Int, maxChars: Int) throws {
        let docs = try TextDocuments(paths: paths.map { URL(fileURLWithPath: $0) })
        var used: [[UInt8]] = []
        var chars = 0
        try docs.forEach { d in
            let (cropped, c) = TokTrain.cropToCodePoints(d, docCap)
            used.append(cropped)
            chars += c
            return chars <= maxChars
        }
        documents = used
        characters = chars
    }

    public var bytes: Int { documents.reduce(0) { $0 + $1.count } }

    /// Trains a `vocabSize` tokenizer on the documents: the tokenizer, the seconds it took, and its own split.
    public func train(vocabSize: Int) throws -> (tokenizer: Tokenizer, seconds: Double, stats: TokTrain.Stats) {
        let t0 = Date()
        let (tok, stats) = try TokTrain.train(documents: { body in for d in documents { if try !body(d) { return } } },
                                              vocabSize: vocabSize, maxChars: Int.max, docCap: Int.max)
        return (tok, Date().timeIntervalSince(t0), stats)
    }

    /// The documents as JSON lines, the input the reference trainer reads.
    public func jsonl() -> Data {
        var out: [UInt8] = []
        for d in documents { JSONText.appendString(d, to: &out); out.append(0x0A) }
        return Data(out)
    }

    /// The first `megabytes` of the text, one document per line, and the same documents as strings.
    public func encodeText(megabytes: Int) -> (text: [UInt8], documents: [String]) {
        var text: [UInt8] = []
        var docs: [String] = []
        for d in documents where text.count < megabytes << 20 {
            text += d
            text.append(0x0A)
            docs.append(String(decoding: d, as: UTF8.self))
        }
        return (text, docs)
    }
}
