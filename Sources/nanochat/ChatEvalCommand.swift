import ArgumentParser
import Foundation
import NanoChat

struct ChatEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-eval",
        abstract: "Evaluate a chat model on ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval and SpellingBee.",
        discussion: """
        Task data comes from `nanochat dataset tasks`. HumanEval's generated code runs in the sandbox (a separate \
        python3 with time, memory, process and output limits and no network). Results go to \
        $NANOCHAT_BASE_DIR/chat_eval/<source>_<tag>_<step>.json; ChatCORE is printed when ARC-Easy, ARC-Challenge, \
        MMLU, GSM8K and HumanEval all ran.
        """,
        aliases: ["chat_eval"]
    )
    @OptionGroup var model: ModelSource
    @Option(name: [.customShort("a"), .customLong("task-name")], help: "Tasks separated by | (default: every task whose data `nanochat dataset tasks` made; the others are named as not scored).") var tasks: String?
    @Option(name: [.customShort("t"), .long], parsing: .unconditional, help: "Sampling temperature (generative tasks).") var temperature: Float = 0
    @Option(name: [.customShort("m"), .long], parsing: .unconditional, help: "Max new tokens (generative tasks).") var maxNewTokens = 512
    @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "Samples per problem (generative tasks).") var numSamples = 1
    @Option(name: [.customShort("k"), .long], parsing: .unconditional, help: "Top-k for sampling.") var topK = 50
    @Option(name: [.customShort("b"), .long], parsing: .unconditional, help: "Problems per forward (categorical tasks).") var batchSize = 8
    @Option(name: [.customShort("x"), .long], parsing: .unconditional, help: "At most this many problems per task (-1: all).") var maxProblems = -1
    @Option(help: "Task data directory (default $NANOCHAT_BASE_DIR/task_data).") var taskData: String?

    func run() throws {
        try runDistributed { comm in
            let root = taskData.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? TaskData.directory
            // tasks asked for by name must have their data; by default a task whose source was missing is skipped
            var names = (tasks ?? ChatTasks.all.joined(separator: "|")).split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            var notScored: [String] = []
            if tasks == nil {
                let ready = ChatTasks.available(root: root)
                notScored = names.filter { !ready.contains($0) }
                names = names.filter { ready.contains($0) }
                for name in notScored where comm.isMain {
                    print("\(name): not scored, no task data (\(ChatTasks.dataFile[name]!.file) needs \(ChatTasks.dataFile[name]!.source); see nanochat dataset tasks)")
                }
                if names.isEmpty {
                    // nothing to score is what the sources allowed, not an error: the report says so
                    if comm.isMain {
                        print("chat-eval: no task has its data in \(root.path), nothing scored (nanochat dataset tasks names the missing sources)")
                        try Report.log(section: "Chat evaluation \(model.sourceName())", data: [("not scored (no task data)", notScored.joined(separator: ", "))])
                    }
                    return
                }
            }
            // read every task before loading the model, so that missing data fails fast
            var problems: [String: [ChatProblem]] = [:]
            for name in names {
                let all = try ChatTasks.load(name, root: root)
                problems[name] = maxProblems > 0 ? Array(all.prefix(maxProblems)) : all
            }
            let loaded = try model.load(deviceIndex: comm.localRank)
            if comm.isMain { print("model \(loaded.label) (\(model.sourceName())): \(loaded.model.config)" + (comm.worldSize > 1 ? ", \(comm.worldSize) ranks" : "")) }
            let tty = isatty(1) != 0 && comm.worldSize == 1  // mpirun hands its ranks a pseudo-terminal: no progress bar there
            let results = try ChatEval.run(model: loaded.model, tokenizer: loaded.tokenizer, names: names, problems: problems,
                                           batch: batchSize, samples: numSamples, maxTokens: maxNewTokens, temperature: temperature,
                                           topK: topK, comm: comm) { name, done, total, passed in
                guard tty else { return }
                print(String(format: "\r\u{1B}[K%@: %d/%d (%.2f%%)", name, done, total, 100 * Double(passed) / Double(max(done, 1))),
                      terminator: ""); fflush(stdout)
                if done == total { print("\r\u{1B}[K", terminator: "") }
            }
            guard comm.isMain else { return }
            for r in results {
                print(String(format: "%@ accuracy: %.2f%% (%d/%d) in %.1fs", r.task, 100 * r.accuracy, r.passed, r.total, r.seconds))
            }
            var summary: [String: Any] = ["source": model.sourceName(), "model": loaded.label,
                                          "results": results.map { ["task": $0.task, "passed": $0.passed, "total": $0.total,
                                                                    "accuracy": $0.accuracy, "seconds": $0.seconds] }]
            let core = ChatEval.chatCORETasks
            if core.allSatisfy({ n in results.contains { $0.task == n } }) {
                let chatCORE = ChatEval.chatCORE(results.filter { core.contains($0.task) })
                summary["ChatCORE"] = chatCORE
                print(String(format: "ChatCORE metric: %.4f", chatCORE))
            }
            let out = BaseDir.url.appendingPathComponent("chat_eval", isDirectory: true)
                .appendingPathComponent("\(model.sourceName())_\(loaded.directory.lastPathComponent)_\(String(format: "%06d", loaded.step)).json")
            try FileIO.writeAtomically(try JSONSerialization.data(withJSONObject: summary, options: [.prettyPrinted, .sortedKeys]), to: out)
            print("Results written to: \(out.path)")
            var section: [(String, String)] = [("Model", "\(model.sourceName()) \(loaded.label)")]
            section += results.map { ($0.task, String(format: "%.4f", $0.accuracy)) }
            if let c = summary["ChatCORE"] as? Double { section.append(("ChatCORE", String(format: "%.4f", c))) }
            else if notScored.contains(where: ChatEval.chatCORETasks.contains) {
                print("ChatCORE: not computed, it needs \(ChatEval.chatCORETasks.joined(separator: ", ")) and \(notScored.joined(separator: ", ")) had no data")
            }
            if !notScored.isEmpty { section.append(("not scored (no task data)", notScored.joined(separator: ", "))) }
            try Report.log(section: "Chat evaluation \(model.sourceName())", arguments: ["tasks": names.joined(separator: "|"), "max_problems": "\(maxProblems)", "num_samples": "\(numSamples)", "temperature": "\(temperature)"], data: section)
        }
    }
}
