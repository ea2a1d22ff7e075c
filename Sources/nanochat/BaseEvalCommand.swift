import ArgumentParser
import Foundation
import NanoChat

struct BaseEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base-eval",
        abstract: "Evaluate a base model: the CORE metric, bits per byte on train and val, and samples.",
        discussion: """
        CORE scores the tasks that the bundle's core.yaml lists (default $NANOCHAT_BASE_DIR/eval_bundle, made by \
        `nanochat dataset tasks`) and writes $NANOCHAT_BASE_DIR/base_eval/base_model_<step>.csv as upstream does.
        """,
        aliases: ["base_eval"]
    )

    @Option(name: [.customShort("g"), .long], help: "Model tag (default: the largest d<N> under base_checkpoints).") var modelTag: String?
    @Option(name: [.customShort("s"), .long], parsing: .unconditional, help: "Checkpoint step (default: the latest).") var step: Int?
    @Option(help: "A checkpoint directory to load from instead of base_checkpoints/<tag>.") var checkpoint: String?
    @Option(help: "What to run: core, bpb, sample (comma-separated; default all three, CORE only when a bundle exists).") var eval: String?
    @Option(parsing: .unconditional, help: "CORE: examples per task after upstream's shuffle (-1: all).") var maxPerTask = -1
    @Option(help: "CORE: the task bundle directory (default $NANOCHAT_BASE_DIR/eval_bundle).") var evalBundle: String?
    @Option(help: "CORE: only these task labels (comma-separated; default: all that core.yaml lists).") var coreTasks: String?
    @Option(help: "CORE: tokens per forward pass (rows of similar length are packed together).") var coreTokens = 16384
    @Option(help: "CORE: also write every example's result (chosen option, mean losses) to this JSON file.") var dumpExamples: String?
    @Option(parsing: .unconditional, help: "Rows per batch for bits per byte.") var deviceBatchSize = 32
    @Option(parsing: .unconditional, help: "Tokens evaluated per split.") var splitTokens = 40 * 524_288
    @Option(help: "Tokens to sample per prompt.") var maxTokens = 16
    @Option(help: "Shard directory (default $NANOCHAT_BASE_DIR/base_data_climbmix).") var dataDir: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") var tokenizerDir: String?
    @OptionGroup var device: DeviceFlags

    func run() throws {
        try runDistributed { comm in
            let modes = (eval ?? "core,bpb,sample").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if let unknown = modes.first(where: { !["core", "bpb", "sample"].contains($0) }) {
                throw NanoChatError("--eval: unknown mode \(unknown); expected a comma list of core, bpb, sample")
            }
            // read the bundle before the model, so that a broken bundle fails fast; no bundle in the default place
            // only skips CORE, saying so
            if comm.worldSize > 1 && dumpExamples != nil {
                throw NanoChatError("--dump-examples writes every example's result, which only a single process holds; run without mpirun")
            }
            // only rank 0 prints and writes files
            func say(_ line: String) { if comm.isMain { print(line) } }
            let bundleDir = evalBundle.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? EvalBundle.defaultDirectory
            var bundle: EvalBundle? = nil
            var coreNotScored = false
            if modes.contains("core") {
                // no bundle in the default place: the sources gave no CORE task, which is reported, not an error
                // (a --eval-bundle folder without one is an error)
                if evalBundle == nil && !FileManager.default.fileExists(atPath: bundleDir.appendingPathComponent("core.yaml").path) {
                    say("CORE: not scored, no task bundle at \(bundleDir.path) (`nanochat dataset tasks` makes one from the sources it finds)")
                    coreNotScored = true
                } else {
                    bundle = try EvalBundle(directory: bundleDir)
                }
            }
            let loaded = try CheckpointManager.loadModel(source: "base", tag: modelTag, step: step,
                                                         checkpoint: checkpoint.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                                         tokenizerDir: tokenizerDir.map { URL(fileURLWithPath: $0, isDirectory: true) })
            let (model, meta, tok, s) = (loaded.model, loaded.meta, loaded.tokenizer, loaded.step)
            say("model \(loaded.label): \(model.config)" + (comm.worldSize > 1 ? ", \(comm.worldSize) ranks" : ""))
            // each rank on the GPU of its local rank (the sums between ranks are the host's few numbers)
            model.useDevice(try device.open(index: comm.localRank, say: say))
            var section: [(String, String)] = [("Model", loaded.label)]
            if modes.contains("sample") && comm.isMain {
                print("== samples")
                for prompt in baseSamplePrompts {
                    let out = model.generate([tok.bosID] + tok.encode(prompt), maxTokens: maxTokens)
                    let text = "\(prompt)\(try tok.decode(out))".replacingOccurrences(of: "\n", with: "⏎")
                    print(text)
                    section.append(("sample", text))
                }
            }
            if modes.contains("bpb") {
                say("== bits per byte")
                let seq = meta.max_seq_len ?? model.config.sequence_len
                let data = dataDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.pretrainData
                let steps = max(1, splitTokens / (deviceBatchSize * seq))
                for split in ["train", "val"] {
                    let loader = try BestFitLoader(tokenizer: tok, shards: ShardSet(directory: data, split: split),
                                                   batch: deviceBatchSize, seqLen: seq)
                    let bpb = try evaluateBPB(model: model, loader: loader, steps: steps, tokenBytes: tok.tokenByteCounts, comm: comm)
                    say(String(format: "%@ bpb: %.4f", split, bpb))
                    section.append(("\(split) bpb", String(format: "%.4f", bpb)))
                }
            }
            if let bundle {
                let (core, results) = try runCore(bundle: bundle, model: model, tokenizer: tok, step: s, comm: comm)
                section.insert(("CORE", String(format: "%.4f", core)), at: 1)
                section.insert(("CORE tasks", "\(results.count) of \(bundle.tasks.count + bundle.missing.count)"
                                + (bundle.missing.isEmpty ? "" : "; not scored: \(bundle.missing.joined(separator: ", "))")), at: 2)
                section += results.map { ($0.label, String(format: "%.4f (centered %.4f, %d examples)", $0.accuracy, $0.centered, $0.examples)) }
            }
            if coreNotScored {
                section.append(("CORE tasks", "0 of \(CoreTasks.upstreamTasks.count); not scored: all \(CoreTasks.upstreamTasks.count) (no task bundle: its sources were missing)"))
            }
            if comm.isMain { try Report.log(section: "Base model evaluation", data: section) }
        }
    }

    func runCore(bundle: EvalBundle, model: GPT, tokenizer: Tokenizer, step: Int, comm: Communicator) throws -> (Double, [CoreEval.TaskResult]) {
        // only rank 0 prints
        func say(_ line: String, terminator: String = "\n") { if comm.isMain { print(line, terminator: terminator) } }
        var tasks = bundle.tasks
        if let coreTasks {
            let wanted = coreTasks.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            if let unknown = wanted.first(where: { w in !bundle.tasks.contains { $0.label == w } }) {
                throw NanoChatError("--core-tasks: \(unknown) is not in \(bundle.directory.path)/core.yaml; it lists \(bundle.tasks.map(\.label).joined(separator: ", "))")
            }
            tasks = bundle.tasks.filter { wanted.contains($0.label) }
        }
        say("== CORE: \(tasks.count) tasks from \(bundle.directory.path)" + (bundle.source.map { " (\($0))" } ?? ""))
        let tty = isatty(1) != 0 && comm.worldSize == 1  // mpirun hands its ranks a pseudo-terminal: no progress bar there
        var results: [CoreEval.TaskResult] = []
        let started = Date()
        var examples = 0
        for task in tasks {
            let items = try bundle.items(for: task)
            let head = "\(task.label) (\(task.fewShot)-shot, \(task.type.rawValue))"
            let r = try CoreEval.evaluate(model: model, tokenizer: tokenizer, task: task, items: items, maxPerTask: maxPerTask,
                                          tokensPerForward: coreTokens, comm: comm) { done, total in
                guard tty else { return }
                let width = 24, filled = width * done / max(total, 1)
                say("\r\(head) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
                      + "] \(done)/\(total) rows", terminator: ""); fflush(stdout)
            }
            examples += r.examples
            if tty { say("\r\u{1B}[K", terminator: "") }
            say(String(format: "%@ %d examples | accuracy: %.4f | centered: %.4f | time: %.2fs (%.1f examples/s)%@",
                         head, r.examples, r.accuracy, r.centered, r.seconds, Double(r.examples) / max(r.seconds, 1e-9),
                         r.cropped > 0 ? " | \(r.cropped) rows cropped to \(model.maxPositions) tokens" : ""))
            results.append(r)
        }
        let core = CoreEval.core(results)
        let seconds = Date().timeIntervalSince(started)
        let dir = BaseDir.url.appendingPathComponent("base_eval", isDirectory: true)
        let csvURL = dir.appendingPathComponent(String(format: "base_model_%06d.csv", step))
        if comm.isMain { try FileIO.writeAtomically(CoreEval.csv(results, core: core), to: csvURL) }
        if let dumpExamples {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            try FileIO.writeAtomically(try enc.encode(results), to: URL(fileURLWithPath: dumpExamples))
        }
        say("Results written to: \(csvURL.path)")
        say(String(format: "%d examples in %.1fs: %.1f examples/s", examples, seconds, Double(examples) / max(seconds, 1e-9)))
        let total = bundle.tasks.count + bundle.missing.count
        let label = tasks.count == total ? "CORE metric" : "CORE (\(tasks.count) of \(total) tasks)"
        say(String(format: "%@: %.4f", label, core))
        if !bundle.missing.isEmpty { say("not scored (no source for them when the bundle was made): \(bundle.missing.joined(separator: ", "))") }
        return (core, results)
    }
}
