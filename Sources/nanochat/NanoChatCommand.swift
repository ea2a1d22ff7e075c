import ArgumentParser
import Foundation
import NanoChat

@main
struct NanoChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nanochat",
        abstract: "nanochat in Swift: tokenizer, GPT pretraining, fine-tuning, evaluation and chat.",
        discussion: "Data, tokenizers and checkpoints live under NANOCHAT_BASE_DIR (default ~/.cache/nanochat).",
        subcommands: [TokTrainCommand.self, TokEncodeCommand.self, TokEvalCommand.self, VerifyCommand.self, DatasetCommand.self, BaseTrainCommand.self, BaseEvalCommand.self, MidTrainCommand.self, ChatSFTCommand.self, ChatRLCommand.self, ChatEvalCommand.self, ReportCommand.self, ChatCLICommand.self, ChatWebCommand.self, DeviceCommand.self, BenchCommand.self]
    )
}

/// Runs a command body, turning our errors into a message on stderr and exit code 1 (no stack trace).
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as NanoChatError {
        FileHandle.standardError.write(Data("error: \(e.description)\n".utf8))
        throw ExitCode(1)
    }
}

func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
