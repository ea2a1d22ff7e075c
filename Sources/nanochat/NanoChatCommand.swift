import ArgumentParser
import Foundation
import NanoChat
import NanoTensor

@main
struct NanoChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nanochat",
        abstract: "nanochat in Swift: tokenizer, GPT pretraining, fine-tuning, evaluation and chat.",
        discussion: """
        Data, tokenizers and checkpoints live under NANOCHAT_BASE_DIR (default ~/.cache/nanochat). Upstream's script \
        names work too: `nanochat base_train --depth=6` is `nanochat base-train --depth=6`, and every flag has \
        upstream's name and default.
        """,
        subcommands: [TokTrainCommand.self, TokEncodeCommand.self, TokEvalCommand.self, VerifyCommand.self, DatasetCommand.self, BaseTrainCommand.self, BaseEvalCommand.self, MidTrainCommand.self, ChatSFTCommand.self, ChatRLCommand.self, ChatEvalCommand.self, ReportCommand.self, ChatCLICommand.self, ChatWebCommand.self, DeviceCommand.self, InferBenchCommand.self, ExportCommand.self, BenchCommand.self]
    )

    static func main() async {
        // before any product: OpenBLAS on a CPU newer than itself runs SSE3 kernels unless told otherwise
        OpenBLASCore.steerBeforeStart()
        if ProcessInfo.processInfo.environment["NANOCHAT_PARSE_ONLY"] == "1" { parseOnly() }
        await main(nil)
    }

    /// `NANOCHAT_PARSE_ONLY=1 nanochat ...`: parse the command line, print the command and every flag's value (by
    /// upstream's snake_case name) as one JSON line, and exit without running anything. What would this line run with?
    /// (The upstream command-line test reads it.)
    static func parseOnly() -> Never {
        do {
            let command = try parseAsRoot()
            let line: [String: Any] = ["command": type(of: command).configuration.commandName ?? "", "flags": parsedFlagValues(command)]
            print(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
            Foundation.exit(0)
        } catch {
            exit(withError: error)
        }
    }
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

/// Runs a command that may be one rank of an MPI job (`mpirun -np N nanochat ...`): joins the job, runs the body
/// with the communicator, and leaves the job cleanly. An error on any rank is reported with the rank's number and
/// ends the whole job at once, since the other ranks would otherwise wait for it in their next collective.
func runDistributed(_ body: (Communicator) throws -> Void) throws {
    _ = Threading.workers  // the threading policy (and BLAS's thread count) before any product runs
    let comm: Communicator
    do {
        comm = try Distributed.start()
    } catch let e as NanoChatError {
        printErr("error: \(e.description)")
        throw ExitCode(1)
    }
    do {
        try body(comm)
    } catch {
        let who = comm.worldSize > 1 ? "rank \(comm.rank) of \(comm.worldSize): " : ""
        let text = (error as? NanoChatError)?.description ?? "\(error)"
        printErr("error: \(who)\(text)")
        if comm.worldSize > 1 { comm.abort(code: 1) }
        throw ExitCode(1)
    }
    comm.finish()
}

func printErr(_ s: String) {
    FileHandle.standardError.write(Data((s + "\n").utf8))
}
