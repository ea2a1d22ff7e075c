import ArgumentParser
import Foundation
import NanoChat

struct TokTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tok-train",
        abstract: "Train the BPE tokenizer (upstream's tok_train).",
        discussion: """
        Reads documents from --input (.jsonl: one JSON string per line; .txt: the whole file; folders of these), \
        or by default from the pretraining shards in $NANOCHAT_BASE_DIR/base_data_climbmix (all but the last, \
        which is the validation split). Writes tokenizer.tiktoken (tiktoken's rank format) and tokenizer.json \
        (pattern, special tokens) to --output, default $NANOCHAT_BASE_DIR/tokenizer.
        """,
        aliases: ["tok_train"]
    )

    @Option(help: "Vocabulary size including the 9 special tokens (2^15 upstream).")
    var vocabSize: Int = 32768
    @Option(help: "Stop after this many characters (code points) of text.")
    var maxChars: Int = 2_000_000_000
    @Option(help: "Crop each document to its first N characters.")
    var docCap: Int = 10_000
    @Option(parsing: .singleValue, help: "A .txt/.jsonl file or a folder of them (repeatable). Default: the pretraining train shards.")
    var input: [String] = []
    @Flag(help: "Treat each blank-line-separated paragraph of a .txt file as its own document.")
    var splitBlankLines = false
    @Option(help: "Output directory (default: $NANOCHAT_BASE_DIR/tokenizer).")
    var output: String?

    func run() throws {
        try runReportingErrors {
            let docs: TextDocuments
            if input.isEmpty {
                let dir = BaseDir.pretrainData
                let all = try TextDocuments(paths: [dir])
                guard all.files.count >= 2 else {
                    throw NanoChatError("\(dir.path) needs at least 2 shards (train + the last one for validation); found \(all.files.count). Pass --input or prepare the data first")
                }
                docs = try TextDocuments(paths: Array(all.files.dropLast()))
            } else {
                docs = try TextDocuments(paths: input.map { URL(fileURLWithPath: $0) }, splitBlankLines: splitBlankLines)
            }
            let outDir = output.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.tokenizer
            print("training a \(vocabSize)-token tokenizer on \(docs.files.count) file(s), max \(maxChars) chars, doc cap \(docCap)")
            let t0 = Date()
            let (tok, stats) = try TokTrain.train(documents: docs.forEach, vocabSize: vocabSize, maxChars: maxChars,
                                                  docCap: docCap, log: { printErr($0) })
            try tok.save(to: outDir)
            let dt = Date().timeIntervalSince(t0)
            print(String(format: "trained in %.2f s (count %.2f s, merges %.2f s): %d documents, %d characters, %d distinct chunks",
                         dt, stats.countSeconds, stats.mergeSeconds, stats.documents, stats.characters, stats.uniqueChunks))
            print("vocab size \(tok.vocabSize); saved \(outDir.appendingPathComponent(Tokenizer.rankFileName).path) and \(Tokenizer.configFileName)")
            let bytes = tok.tokenByteCounts.filter { $0 > 0 }.map(Double.init)
            let mean = bytes.reduce(0, +) / Double(max(bytes.count, 1))
            let std = (bytes.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(bytes.count, 1))).squareRoot()
            try Report.log(section: "Tokenizer training", data: [
                ("vocab_size", "\(tok.vocabSize)"), ("max_chars", "\(maxChars)"), ("documents", "\(stats.documents)"),
                ("characters", "\(stats.characters)"), ("train_time", String(format: "%.2fs", dt)),
                ("num_special_tokens", "\(tok.vocabSize - bytes.count)"),
                ("token_bytes_min", "\(Int(bytes.min() ?? 0))"), ("token_bytes_max", "\(Int(bytes.max() ?? 0))"),
                ("token_bytes_mean", String(format: "%.4f", mean)), ("token_bytes_std", String(format: "%.4f", std))])
        }
    }
}

struct TokEncodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tok-encode",
        abstract: "Encode JSON Lines from stdin: one JSON string per line in, one JSON array of ids per line out.",
        discussion: "Special-token strings are ordinary text unless --allow-special. Empty lines are skipped."
    )

    @Option(help: "Tokenizer directory (default: $NANOCHAT_BASE_DIR/tokenizer).")
    var tokenizerDir: String?
    @Flag(help: "Recognise special-token strings such as <|bos|> in the text.")
    var allowSpecial = false
    @Flag(help: "Decode instead: read JSON arrays of ids, write JSON strings.")
    var decode = false

    func run() throws {
        try runReportingErrors {
            let dir = tokenizerDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.tokenizer
            let tok = try Tokenizer.load(from: dir)
            let input = FileHandle.standardInput.readDataToEndOfFile()
            var out: [UInt8] = []
            out.reserveCapacity(input.count * 2)
            try forEachLine(of: input) { line, lineNo in
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
                do {
                    if decode {
                        guard let ids = try? JSONDecoder().decode([Int].self, from: Data(line)) else {
                            throw NanoChatError("expected a JSON array of integer ids")
                        }
                        JSONText.appendString(try tok.decodeBytes(ids), to: &out)
                    } else {
                        let text = try JSONText.decodeString(line)
                        let ids = allowSpecial ? tok.encodeAllowingSpecial(String(decoding: text, as: UTF8.self))
                                               : tok.encode(bytes: text)
                        JSONText.appendIntArray(ids, to: &out)
                    }
                } catch let e as NanoChatError {
                    throw NanoChatError("stdin line \(lineNo): \(e.description)")
                }
                out.append(0x0A)
                if out.count > 1 << 20 {
                    FileHandle.standardOutput.write(Data(out))
                    out.removeAll(keepingCapacity: true)
                }
            }
            FileHandle.standardOutput.write(Data(out))
        }
    }
}
