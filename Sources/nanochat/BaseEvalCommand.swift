import ArgumentParser
import Foundation
import NanoChat

struct BaseEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base-eval",
        abstract: "Evaluate a base model: bits per byte on train and val, and samples from upstream's prompts.",
        discussion: "CORE lands with the evaluation issue. --eval accepts a comma list of bpb and sample."
    )

    @Option(name: [.customShort("g"), .long], help: "Model tag (default: the largest d<N> under base_checkpoints).") var modelTag: String?
    @Option(name: [.customShort("s"), .long], help: "Checkpoint step (default: the latest).") var step: Int?
    @Option(help: "A checkpoint directory to load from instead of base_checkpoints/<tag>.") var checkpoint: String?
    @Option(help: "What to run: bpb, sample (comma-separated).") var eval = "bpb,sample"
    @Option(help: "Rows per batch for bits per byte.") var deviceBatchSize = 32
    @Option(help: "Tokens evaluated per split.") var splitTokens = 40 * 524_288
    @Option(help: "Tokens to sample per prompt.") var maxTokens = 16
    @Option(help: "Shard directory (default $NANOCHAT_BASE_DIR/base_data_climbmix).") var dataDir: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") var tokenizerDir: String?

    func run() throws {
        try runReportingErrors {
            let loaded = try CheckpointManager.loadModel(source: "base", tag: modelTag, step: step,
                                                         checkpoint: checkpoint.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                                         tokenizerDir: tokenizerDir.map { URL(fileURLWithPath: $0, isDirectory: true) })
            let (model, meta, tok, dir, s) = (loaded.model, loaded.meta, loaded.tokenizer, loaded.directory, loaded.step)
            print("model \(dir.lastPathComponent) step \(s): \(model.config)")
            let tasks = Set(eval.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            if tasks.contains("bpb") {
                let seq = meta.max_seq_len ?? model.config.sequence_len
                let data = dataDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.pretrainData
                let steps = max(1, splitTokens / (deviceBatchSize * seq))
                for split in ["train", "val"] {
                    let loader = try BestFitLoader(tokenizer: tok, shards: ShardSet(directory: data, split: split),
                                                   batch: deviceBatchSize, seqLen: seq)
                    let bpb = try evaluateBPB(model: model, loader: loader, steps: steps, tokenBytes: tok.tokenByteCounts)
                    print(String(format: "%@ bpb: %.4f", split, bpb))
                }
            }
            if tasks.contains("sample") {
                for prompt in baseSamplePrompts {
                    let out = model.generate([tok.bosID] + tok.encode(prompt), maxTokens: maxTokens)
                    print("\(prompt)\(try tok.decode(out))".replacingOccurrences(of: "\n", with: "⏎"))
                }
            }
        }
    }
}
