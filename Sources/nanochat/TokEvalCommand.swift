import ArgumentParser
import Foundation
import NanoChat

struct TokEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tok-eval",
        abstract: "Compression report (bytes per token) of our tokenizer against other tokenizers (upstream's tok_eval).",
        discussion: """
        Texts: five fixed samples (news, korean, code, math, science) plus the first 1024 documents of the train \
        and validation shards in $NANOCHAT_BASE_DIR/base_data_climbmix when present. Baselines: each --compare \
        path, either a tokenizer directory written by tok-train or a tiktoken rank file; a bare rank file's split \
        pattern is taken from its name (cl100k -> GPT-4's, gpt2/r50k/p50k -> GPT-2's, else nanochat's).
        """,
        aliases: ["tok_eval"]
    )

    @Option(help: "Our tokenizer directory (default: $NANOCHAT_BASE_DIR/tokenizer).")
    var tokenizerDir: String?
    @Option(parsing: .singleValue, help: "A baseline tokenizer: directory or .tiktoken file (repeatable).")
    var compare: [String] = []
    @Flag(help: "No ANSI colours.")
    var noColor = false

    func run() throws {
        try runReportingErrors {
            let ours = try Tokenizer.load(from: tokenizerDir.map { URL(fileURLWithPath: $0) } ?? BaseDir.tokenizer)
            var toks: [(String, Tokenizer)] = [("ours", ours)]
            for path in compare { toks.append(try loadBaseline(path)) }

            var texts = TokEval.samples.map { ($0.name, $0.text) }
            let shardDir = BaseDir.pretrainData
            if let shards = try? TextDocuments(paths: [shardDir]), !shards.files.isEmpty {
                for (name, file) in [("train", shards.files.first!), ("val", shards.files.last!)] where shards.files.count > 1 || name == "train" {
                    var docs: [String] = []
                    try TextDocuments(paths: [file]).forEach { d in
                        docs.append(String(decoding: d, as: UTF8.self))
                        return docs.count < 1024
                    }
                    if !docs.isEmpty { texts.append(("shard-\(name)", docs.joined(separator: "\n"))) }
                }
            }
            print("Vocab sizes:")
            for (name, t) in toks { print("  \(name): \(t.vocabSize)") }
            let rows = try TokEval.measure(tokenizers: toks, texts: texts)
            if toks.count == 1 {
                print("\nOurs (no baseline given; pass --compare PATH):")
                for r in rows {
                    print("  " + r.text.padding(toLength: 14, withPad: " ", startingAt: 0)
                          + String(format: "%8d bytes %8d tokens  ratio %.2f", r.bytes, r.tokens[0],
                                   Double(r.bytes) / Double(max(r.tokens[0], 1))))
                }
            }
            try Report.log(section: "Tokenizer evaluation", data: rows.map { r in
                (r.text, String(format: "%d bytes, %d tokens, %.2f bytes per token", r.bytes, r.tokens[0], Double(r.bytes) / Double(max(r.tokens[0], 1))))
            })
            for b in 1..<toks.count {
                print()
                print(TokEval.table(rows: rows, baseline: b, baselineName: toks[b].0, color: !noColor && isatty(1) != 0), terminator: "")
            }
        }
    }

    func loadBaseline(_ path: String) throws -> (String, Tokenizer) {
        let url = URL(fileURLWithPath: path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw NanoChatError("baseline tokenizer \(path) does not exist")
        }
        if isDir.boolValue { return (url.lastPathComponent, try Tokenizer.load(from: url)) }
        let name = url.deletingPathExtension().lastPathComponent.lowercased()
        let scanner: SplitScanner
        if name.contains("cl100k") { scanner = SplitScanner(maxDigits: 3) }
        else if name.contains("gpt2") || name.contains("r50k") || name.contains("p50k") { scanner = SplitScanner(gpt2: true) }
        else { scanner = SplitScanner() }
        let ranks = try Tokenizer.loadRanks(url)
        do {
            return (url.deletingPathExtension().lastPathComponent, try Tokenizer(mergeable: ranks, specialTokens: [], scanner: scanner))
        } catch let e as NanoChatError {
            throw NanoChatError("\(path): \(e.description)")
        }
    }
}
