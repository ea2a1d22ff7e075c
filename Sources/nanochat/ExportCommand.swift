import ArgumentParser
import Foundation
import NanoChat

/// Our checkpoints in upstream's format, for upstream's scripts (`NANOCHAT_BASE_DIR=DIR python -m scripts.chat_cli`).
/// Reading theirs needs no command: every command that loads a model reads upstream's files where it finds them.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write our checkpoints and tokenizer as a base directory upstream nanochat loads (.pt, tokenizer.pkl).",
        discussion: """
        --upstream DIR gets tokenizer/tokenizer.pkl and token_bytes.pt, and <stage>_checkpoints/<tag>/model_<step>.pt \
        with meta_<step>.json for each stage (-i, repeatable; default every one of base, sft and rl that has a \
        checkpoint). Then: NANOCHAT_BASE_DIR=DIR python -m scripts.chat_cli -i sft (in upstream's checkout). \
        Weights are float32; optimizer state is not exported.
        """
    )
    @Option(help: "The base directory to write (upstream's NANOCHAT_BASE_DIR).") var upstream: String
    @Option(name: [.customShort("i"), .customLong("source")], parsing: .singleValue, help: "Stage to export: base, sft, rl or mid (repeatable; default: every stage with a checkpoint).") var source: [String] = []
    @Option(name: [.customShort("g"), .customLong("model-tag")], help: "Model tag (default: the largest d<N>).") var modelTag: String?
    @Option(name: [.customShort("s"), .customLong("step")], parsing: .unconditional, help: "Checkpoint step (default: the latest; needs one -i).") var step: Int?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") var tokenizerDir: String?

    func run() throws {
        try runReportingErrors {
            let files = try UpstreamExport.export(sources: source.isEmpty ? nil : source, tag: modelTag, step: step,
                                                  tokenizerDir: tokenizerDir.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                                  to: URL(fileURLWithPath: upstream, isDirectory: true)) { print($0) }
            print("wrote \(files.count) files to \(upstream): NANOCHAT_BASE_DIR=\(upstream) python -m scripts.chat_cli (in upstream's checkout) loads them")
        }
    }
}
