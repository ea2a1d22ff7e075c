import ArgumentParser
import Foundation
import NanoChat

struct MidTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mid-train",
        abstract: "Mid-training (upstream's seed-era mid_train): teach the base model conversations, tools and multiple choice.",
        discussion: """
        Starts from the base checkpoint and trains on every token of a large conversation mixture (general chat, \
        multiple choice, math with calculator calls, identity, spelling); only padding is ignored. Data comes from \
        `nanochat dataset tasks`. Writes $NANOCHAT_BASE_DIR/mid_checkpoints/<tag>/ with a metrics log.
        """,
        aliases: ["mid_train"]
    )
    @OptionGroup var options: ChatTrainOptions
    func run() throws { try runDistributed { comm in _ = try chatTrain(stage: .mid, options, comm: comm) { print($0); fflush(stdout) } } }
}

struct ChatSFTCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-sft",
        abstract: "Supervised fine-tuning (upstream's chat_sft): train on the assistant's turns of conversations.",
        discussion: """
        Starts from the mid checkpoint when there is one, else the base checkpoint, and trains only on the tokens the \
        assistant writes (its text, its calculator calls and <|assistant_end|>), packing conversations into rows \
        best-fit with padding. Evaluates validation bits per byte and ChatCORE. Writes \
        $NANOCHAT_BASE_DIR/chatsft_checkpoints/<tag>/ with a metrics log.
        """,
        aliases: ["chat_sft"]
    )
    @OptionGroup var options: ChatTrainOptions
    func run() throws { try runDistributed { comm in _ = try chatTrain(stage: .sft, options, comm: comm) { print($0); fflush(stdout) } } }
}

struct ChatRLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-rl",
        abstract: "Reinforcement learning on math word problems (upstream's chat_rl: on-policy, token-level REINFORCE).",
        discussion: """
        Samples answers with the engine (calculator included), rewards a right #### answer, and pushes up the \
        tokens of answers better than the question's average. Evaluates pass@k on held-out problems. Offline it \
        trains on the generated arithmetic problems; with GSM8K train downloaded (dataset tasks --online), on GSM8K. \
        Writes $NANOCHAT_BASE_DIR/chatrl_checkpoints/<tag>/ with a metrics log.
        """,
        aliases: ["chat_rl"]
    )
    @OptionGroup var options: ChatRLOptions
    func run() throws { try runDistributed { comm in _ = try chatRL(options, comm: comm) { print($0); fflush(stdout) } } }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "The report card: `reset` starts a run's report, `generate` writes report/report.md and report.html.",
        discussion: """
        Each stage appends its own section to $NANOCHAT_BASE_DIR/report/ as it finishes; `generate` joins them with \
        the training curves (SVG) and a table of every metric per stage (base, mid, sft, rl).
        """
    )
    @Argument(help: "reset or generate") var action = "generate"
    @Option(help: "Model tag whose training curves to draw (default: the largest d<N> of each stage).") var modelTag: String?
    @Option(help: "Dollars per hour of this machine, for the cost line (0: no cost line).") var hourlyRate = 0.0

    func run() throws {
        try runReportingErrors {
            switch action {
            case "reset":
                try Report.reset()
                print("report reset: \(Report.directory.path)/header.md")
            case "generate":
                let url = try Report.generate(tag: modelTag, hourlyRate: hourlyRate)
                print("report: \(url.path) (open report.html beside it in a browser for the charts)")
            default:
                throw NanoChatError("report takes reset or generate, got \(action)")
            }
        }
    }
}

struct DatasetIdentityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "identity",
        abstract: "Write the identity conversations (who the model is) that mid-training and SFT mix in.",
        discussion: """
        Upstream downloads about 1000 conversations an LLM wrote; these are composed from a seed instead (see the \
        README). With a base checkpoint present, they state its depth and parameter count.
        """
    )
    @Option(parsing: .unconditional, help: "Number of conversations.") var count = 500
    @Option(parsing: .unconditional, help: "Seed.") var seed = 0
    @Option(help: "Output file (default $NANOCHAT_BASE_DIR/identity_conversations.jsonl).") var output: String?

    func run() throws {
        try runReportingErrors {
            var facts = IdentityConversations.Facts()
            if let tag = try? CheckpointManager.defaultTag(phase: "base"),
               let step = CheckpointManager.latestStep(in: CheckpointManager.directory(phase: "base", tag: tag)),
               let meta = try? CheckpointManager.loadMeta(directory: CheckpointManager.directory(phase: "base", tag: tag), step: step) {
                facts = IdentityConversations.Facts(depth: meta.model_config.n_layer, parameters: DepthPlan.counts(meta.model_config).total)
            }
            let url = output.map { URL(fileURLWithPath: $0) } ?? ConversationTasks.identityFile
            try IdentityConversations.write(IdentityConversations.generate(count: count, seed: seed, facts: facts), to: url)
            print("identity: \(count) conversations in \(url.path)" + (facts.depth.map { " (they describe the d\($0) base model)" } ?? ""))
        }
    }
}
