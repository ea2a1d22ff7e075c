import ArgumentParser
import Foundation
import NanoChat
import NanoChatBench
import NanoChatServer
import NanoTensor
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks that print the figures the issues ask for, beside the reference where one exists.",
        subcommands: [BenchTokenizer.self, BenchTrain.self, BenchData.self, BenchInfer.self, BenchWeights.self, BenchServe.self, BenchSandbox.self]
    )
}

struct BenchTokenizer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Tokenizer training time and encode throughput, beside rustbpe and tiktoken.",
        discussion: """
        Trains a --vocab-size tokenizer on --input (timed), then trains rustbpe on exactly the same documents and \
        checks that the two rank files are identical. Then encodes --encode-mb of the same text single-threaded \
        with ours and with tiktoken (same ranks, same run), and with all cores. The references need a Python with \
        `pip install tiktoken rustbpe` (--python); without it only our figures print.
        """
    )

    @Option(parsing: .singleValue, help: "Training text: .txt/.jsonl files or folders (repeatable).")
    var input: [String]
    @Option(help: "Vocabulary size including special tokens.")
    var vocabSize: Int = 32768
    @Option(help: "Crop each document to its first N characters.")
    var docCap: Int = 10_000
    @Option(help: "Stop after this many characters.")
    var maxChars: Int = 2_000_000_000
    @Option(help: "Megabytes of the input text to encode for the throughput figures.")
    var encodeMb: Int = 16
    @Option(help: "Python interpreter with tiktoken and rustbpe installed.")
    var python: String = FileManager.default.fileExists(atPath: ".venv/bin/python") ? ".venv/bin/python" : "python3"
    @Option(help: "Directory holding bench_rustbpe.py and bench_tiktoken.py.")
    var toolsDir: String = "tools"

    func run() throws {
        try runReportingErrors {
            let bench = try TokenizerBench(paths: input, docCap: docCap, maxChars: maxChars)
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-bench-\(getpid())")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: work) }
            print(String(format: "corpus: %d documents, %.1f MB, %d characters; %d threads",
                         bench.documents.count, Double(bench.bytes) / 1e6, bench.characters, Threading.workers))

            // 1. training, then rustbpe on exactly the same documents
            let (tok, ourTrain, stats) = try bench.train(vocabSize: vocabSize)
            let tokDir = work.appendingPathComponent("tok")
            try tok.save(to: tokDir)
            print(String(format: "train %d vocab: nanochat-swift %.2f s (count %.2f s, merges %.2f s)",
                         vocabSize, ourTrain, stats.countSeconds, stats.mergeSeconds))
            let docsFile = work.appendingPathComponent("docs.jsonl")
            try bench.jsonl().write(to: docsFile)
            let refRanks = work.appendingPathComponent("rustbpe.tiktoken")
            if let ref = runPythonReference(python: python, script: "\(toolsDir)/bench_rustbpe.py",
                                            args: [docsFile.path, "\(vocabSize)", refRanks.path]),
               let secs = ref["seconds"] as? Double {
                let same = (try? Data(contentsOf: refRanks)) == (try? Data(contentsOf: tokDir.appendingPathComponent(Tokenizer.rankFileName)))
                print(String(format: "train %d vocab: rustbpe        %.2f s   -> ours is %.2fx faster; rank files %@",
                             vocabSize, secs, secs / ourTrain, same ? "IDENTICAL" : "DIFFER"))
            }

            // 2. encoding throughput on the first --encode-mb of the text
            let (text, encodeDocs) = bench.encodeText(megabytes: encodeMb)
            let textFile = work.appendingPathComponent("text.txt")
            try Data(text).write(to: textFile)
            let mb = Double(text.count) / 1e6
            _ = tok.encode(bytes: Array(text.prefix(100_000)))  // warm up
            var ntok = 0
            let ours1 = mb / bestSeconds { ntok = tok.encode(bytes: text).count }
            print(String(format: "encode_ordinary, 1 thread, %.1f MB -> %d tokens (%.2f bytes/token): nanochat-swift %.1f MB/s",
                         mb, ntok, Double(text.count) / Double(ntok), ours1))
            if let ref = runPythonReference(python: python, script: "\(toolsDir)/bench_tiktoken.py",
                                            args: [tokDir.path, textFile.path]),
               let rate = ref["mb_per_s"] as? Double {
                let refTokens = ref["tokens"] as? Int ?? -1
                print(String(format: "encode_ordinary, 1 thread: tiktoken %.1f MB/s   -> ours is %.2fx; token counts %@",
                             rate, ours1 / rate, refTokens == ntok ? "EQUAL" : "DIFFER (\(refTokens))"))
            }
            let batchRate = mb / bestSeconds { _ = tok.encodeBatch(encodeDocs) }
            print(String(format: "encode batch, %d threads: nanochat-swift %.1f MB/s", Threading.workers, batchRate))
        }
    }
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Training tokens/s at steady state, model FLOP/s vs sgemm, per-op breakdown, peak RSS.",
        discussion: """
        Default configuration is the one the issue names: head-dim 64, seq 512, device batch 8, total batch 4096, \
        vocab 32768, window L, for each --depth given (default 4 and 6). Random tokens; the median of the timed steps.
        """
    )
    @Option(parsing: .singleValue, help: "Depths to measure (repeatable).") var depth: [Int] = [4, 6]
    @Option(help: "Head dimension.") var headDim = 64
    @Option(help: "Sequence length.") var seqLen = 512
    @Option(help: "Rows per forward/backward.") var deviceBatchSize = 8
    @Option(help: "Tokens per optimizer step.") var totalBatchSize = 4096
    @Option(help: "Vocabulary size.") var vocabSize = 32768
    @Option(help: "Window pattern.") var windowPattern = "L"
    @Option(help: "Timed steps (after 2 warm-up steps).") var steps = 6
    @Option(help: "An upstream nanochat checkout to measure side by side (tools/bench_upstream.py; needs torch).") var upstream: String?
    @Option(help: "Python with torch for the upstream reference.") var python: String = "python3"
    @Option(help: "Directory holding bench_upstream.py.") var toolsDir: String = "tools"
    @Option(help: "Also measure the same run as this many MPI ranks (mpirun, the cores split among them) beside one process.") var mpiRanks = 0
    @Flag(help: "Print one JSON line per depth (what --mpi-ranks reads back from its ranks).") var json = false
    @OptionGroup var device: DeviceFlags

    func run() throws {
        try runDistributed { comm in
            if comm.isMain && !json { printMachine() }
            for d in depth {
                // base-train's options at this size; its learning rates and schedule as they are
                let o = try BaseTrainOptions.parse(["--depth", "\(d)", "--head-dim", "\(headDim)", "--max-seq-len", "\(seqLen)",
                                                    "--device-batch-size", "\(deviceBatchSize)", "--total-batch-size", "\(totalBatchSize)",
                                                    "--window-pattern", windowPattern, "--num-iterations", "1000",
                                                    "--device-type", device.deviceType.rawValue, "--gpu-precision", device.gpuPrecision.rawValue])
                let r = try benchTrain(o, vocab: vocabSize, steps: steps, comm: comm)
                guard comm.isMain else { continue }
                if json {
                    let obj: [String: Any] = ["depth": d, "ranks": r.ranks, "threads": Threading.workers, "tok_per_sec": r.medianTokensPerSecond,
                                              "comm_seconds": r.communicationSeconds, "comm_bytes": r.communicationBytes,
                                              "comm_bytes_in_backward": r.bytesStartedInBackward,
                                              "step_seconds": Double(totalBatchSize) / r.medianTokensPerSecond]
                    print(String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
                    continue
                }
                print(String(format: "d%d: %.0f tok/s median (steps: %@); model %.1f GFLOP/s = %.2f of sgemm %.1f GFLOP/s; peak RSS %.0f MB; fresh buffers/step %d",
                             d, r.medianTokensPerSecond, r.tokensPerSecond.map { String(format: "%.0f", $0) }.joined(separator: " "),
                             r.modelGFLOPS, r.modelGFLOPS / r.sgemmGFLOPS, r.sgemmGFLOPS, r.peakRSSMB, r.freshAllocationsPerStep))
                if mpiRanks > 1 { compareWithRanks(depth: d, single: r) }
                if let upstream {
                    if let ref = runPythonReference(python: python, script: "\(toolsDir)/bench_upstream.py",
                                                    args: [upstream, "--depth", "\(d)", "--head-dim", "\(headDim)", "--seq", "\(seqLen)",
                                                           "--device-batch", "\(deviceBatchSize)", "--total-batch", "\(totalBatchSize)",
                                                           "--vocab", "\(vocabSize)", "--steps", "\(steps)"]),
                       let tps = ref["tok_per_sec"] as? Double {
                        let rss = ref["peak_rss_mb"] as? Double ?? 0
                        print(String(format: "d%d upstream (PyTorch %@, torch.compile, 2 threads): %.0f tok/s median, peak RSS %.0f MB -> ours is %.2fx the speed, %.2fx the memory",
                                     d, (ref["torch"] as? String ?? "?"), tps, rss, r.medianTokensPerSecond / tps, r.peakRSSMB / max(rss, 1)))
                    }
                }
                print(String(format: "  one profiled step: %.3f s", r.stepSeconds))
                for (name, secs, calls) in r.breakdown {
                    print(String(format: "    %@ %8.1f ms %5.1f%%  (%d calls)", name.padding(toLength: 28, withPad: " ", startingAt: 0),
                                 secs * 1000, 100 * secs / r.stepSeconds, calls))
                }
            }
        }
    }

    /// The same measurement as `mpiRanks` MPI ranks (this executable under mpirun, the cores split among them), with
    /// the time and bytes of the optimizer's collectives per step.
    func compareWithRanks(depth d: Int, single r: TrainBenchResult) {
        let threads = max(1, Threading.workers / mpiRanks)
        // the same total batch: each rank takes 1/N of the micro-batch when one micro-batch cannot be split by rank
        let rankBatch = totalBatchSize % (deviceBatchSize * seqLen * mpiRanks) == 0 ? deviceBatchSize : max(1, deviceBatchSize / mpiRanks)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["mpirun", "--oversubscribe", "-np", "\(mpiRanks)", "-x", "NANOCHAT_NUM_THREADS=\(threads)",
                       URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path, "bench", "train", "--json",
                       "--depth", "\(d)", "--head-dim", "\(headDim)", "--seq-len", "\(seqLen)", "--device-batch-size", "\(rankBatch)",
                       "--total-batch-size", "\(totalBatchSize)", "--vocab-size", "\(vocabSize)", "--window-pattern", windowPattern,
                       "--steps", "\(steps)"]
        var env = ProcessInfo.processInfo.environment
        if getuid() == 0 { env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1" }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        do { try p.run() } catch { print("  (\(mpiRanks) ranks skipped: cannot run mpirun: \(error); scripts/bootstrap --with-mpi)"); return }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard let line = text.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
              let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let tps = obj["tok_per_sec"] as? Double, let comm = obj["comm_seconds"] as? Double, let bytes = obj["comm_bytes"] as? Int,
              let stepSeconds = obj["step_seconds"] as? Double, let inBackward = obj["comm_bytes_in_backward"] as? Int else {
            print("  (\(mpiRanks) ranks failed: \(text.split(separator: "\n").suffix(3).joined(separator: " | ")))")
            return
        }
        print(String(format: "d%d, %d ranks x %d thread(s), device batch %d: %.0f tok/s = %.2fx one process with %d threads; collectives %.1f ms of the %.0f ms step (%.1f%%), each rank sends %.1f MB per step, %.1f MB of it (gradients) started inside the backward",
                     d, mpiRanks, threads, rankBatch, tps, tps / r.medianTokensPerSecond, Threading.workers, comm * 1000, stepSeconds * 1000,
                     100 * comm / stepSeconds, Double(bytes) / 1e6, Double(inBackward) / 1e6))
    }
}

struct BenchData: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Parquet decode MB/s beside pyarrow, and loader tokens/s against training's consumption.",
        discussion: """
        Decodes the `text` column of --file one row group at a time on one thread (text bytes out per second), \
        and runs the best-fit loader over the shards in --data-dir with the tokenizer, as base-train's prefetch \
        thread does (one thread). pyarrow is measured in the same run when --python has it.
        """
    )
    @Option(help: "A parquet shard with a text column.") var file: String
    @Option(help: "Shard directory for the loader (default: the file's folder).") var dataDir: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") var tokenizerDir: String?
    @Option(help: "Python with pyarrow.") var python: String = FileManager.default.fileExists(atPath: ".venv/bin/python") ? ".venv/bin/python" : "python3"
    @Option(help: "Directory holding bench_pyarrow.py.") var toolsDir: String = "tools"
    @Option(help: "Training consumption to compare with, tokens/s (d4 here).") var trainTokensPerSecond: Double = 1600

    func run() throws {
        try runReportingErrors {
            let url = URL(fileURLWithPath: file)
            let (megabytes, ours) = try DataBench.parquetDecode(url)
            print(String(format: "parquet decode, 1 thread, %.1f MB of text: nanochat-swift %.0f MB/s", megabytes, ours))
            if let ref = runPythonReference(python: python, script: "\(toolsDir)/bench_pyarrow.py", args: [file]),
               let rate = ref["mb_per_s"] as? Double {
                print(String(format: "parquet decode, 1 thread: pyarrow %.0f MB/s -> ours is %.2fx", rate, ours / rate))
            }
            let tok = try Tokenizer.load(from: tokenizerDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.tokenizer)
            let dir = dataDir.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? url.deletingLastPathComponent()
            let rate = try DataBench.loaderTokensPerSecond(tokenizer: tok, shards: ShardSet(directory: dir, split: "train"))
            print(String(format: "loader (best-fit, B=8 T=512, 1 thread): %.0f tokens/s = %.0fx what d4 training consumes (%.0f tok/s)",
                         rate, rate / trainTokensPerSecond, trainTokensPerSecond))
        }
    }
}

struct BenchInfer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Decode tok/s (batch 1 and 8) and prefill tok/s, each against its memory-bandwidth limit.",
        discussion: """
        Random weights, vocab 32768, head-dim 64, window L, a 128-token prompt, then --tokens decoded tokens with the \
        KV cache. The limit of decoding is this machine's measured read bandwidth (over a buffer the size of the \
        weights, so a model that fits partly in cache gets the faster limit it really has; the best of measurements \
        before and after each format's runs) divided by the bytes of weights read per step (every matrix and \
        lm_head, in each --weights format).
        """
    )
    @Option(parsing: .singleValue, help: "Depths (repeatable).") var depth: [Int] = [4, 6, 12]
    @Option(help: "Tokens to decode.") var tokens = 64
    @Option(help: "Prompt length for prefill.") var prompt = 128
    @Option(parsing: .singleValue, help: "More decode batch sizes to measure beside 1 and 8 (repeatable).") var batch: [Int] = []
    @Option(help: "An upstream nanochat checkout to measure side by side (tools/bench_upstream_infer.py; needs torch).") var upstream: String?
    @Option(help: "Python with torch for the upstream reference.") var python: String = "python3"
    @Option(help: "Directory holding bench_upstream_infer.py.") var toolsDir: String = "tools"
    @Option(parsing: .singleValue, help: "Weight formats to measure (repeatable): f32, bf16, int8.") var weights: [WeightFormat] = [.f32, .bf16, .int8]
    @OptionGroup var device: DeviceFlags
    @Option(name: [.customShort("i"), .long], help: "Measure this checkpoint instead (base, sft, rl): upstream's infer_bench, as `nanochat infer-bench`.") var source: String?
    @Option(name: [.customShort("g"), .long], help: "With a checkpoint: its tag.") var modelTag: String?
    @Option(name: [.customShort("s"), .long], parsing: .unconditional, help: "With a checkpoint: its step.") var step: Int?
    @Option(parsing: .unconditional, help: "With a checkpoint: prompt length (upstream's default 2048).") var promptTokens: Int?
    @Option(parsing: .unconditional, help: "With a checkpoint: tokens decoded per run (upstream's default 256).") var decodeTokens: Int?
    @Option(help: "With a checkpoint: decode batch sizes, comma-separated (upstream's default 1,8,32,128).") var batchSizes: String?

    func run() throws {
        if source != nil || modelTag != nil || step != nil {
            // a checkpoint: upstream's infer_bench (InferBenchCommand), with the flags given here
            var args = ["--device-type", device.deviceType.rawValue, "--gpu-precision", device.gpuPrecision.rawValue]
            if let source { args += ["-i", source] }
            if let modelTag { args += ["-g", modelTag] }
            if let step { args += ["-s", "\(step)"] }
            if let promptTokens { args += ["--prompt-tokens", "\(promptTokens)"] }
            if let decodeTokens { args += ["--decode-tokens", "\(decodeTokens)"] }
            if let batchSizes { args += ["--batch-sizes", batchSizes] }
            var command = try InferBenchCommand.parse(args)
            try command.run()
            return
        }
        try runReportingErrors {
            printMachine()
            let target = try device.open()
            if target.gpu != nil {
                // on the GPU: f32 weights (bf16 products), decode and prefill rates as the engine sees them (logits to the host)
                for d in depth {
                    let bench = try InferBench(depth: d, prompt: prompt, tokens: tokens)
                    bench.model.useDevice(target)
                    let prefill = bench.prefillRates([.f32])[.f32]!
                    let rates = ([1, 8] + batch.filter { $0 != 1 && $0 != 8 && $0 >= 1 }.sorted()).map { ($0, bench.decode(batch: $0).tokensPerSecond) }
                    print(String(format: "d%d on %@: prefill %.0f tok/s; ", d, target.description, prefill)
                          + rates.map { String(format: "decode batch %d %.1f tok/s", $0.0, $0.1) }.joined(separator: ", "))
                }
                return
            }
            let bw1 = measureReadBandwidth(threads: 1), bw = max(bw1, measureReadBandwidth(threads: Threading.workers))
            print(String(format: "memory read bandwidth: %.1f GB/s (1 thread), %.1f GB/s (all threads): the decode roofline", bw1, bw))
            for d in depth {
                let bench = try InferBench(depth: d, prompt: prompt, tokens: tokens)
                var ours: [WeightFormat: (d1: Double, d8: Double, prefill: Double)] = [:]
                let prefillRate = bench.prefillRates(weights)
                for format in weights {
                    let weightBytes = bench.model.useWeights(format)
                    // the limit: measured before and again after this format's runs, the best kept (the neighbours who
                    // slow the memory bus come and go, and a limit taken in a slow moment would flatter the share)
                    let bwBefore = InferBench.bandwidth(overBytes: weightBytes)
                    let (d1, parts1) = bench.decode(batch: 1), (d8, parts8) = bench.decode(batch: 8)
                    let wsBW = max(bw, bwBefore, InferBench.bandwidth(overBytes: weightBytes))
                    let limit = wsBW * 1e9 / Double(weightBytes)
                    let prefill = prefillRate[format]!
                    ours[format] = (d1, d8, prefill)
                    print(String(format: "d%d %@ (%.0f MB of weights read per step, %.1f GB/s over a buffer that size): decode batch 1 %.1f tok/s = %.2f of the %.0f tok/s limit; batch 8 %.1f tok/s (%.1f steps/s = %.2f of the limit); prefill %.0f tok/s",
                                 d, format.rawValue, Double(weightBytes) / 1e6, wsBW, d1, d1 / limit, limit, d8, d8 / 8, d8 / 8 / limit, prefill))
                    for (bs, rate, parts) in [(1, d1, parts1), (8, d8, parts8)] {
                        let step = Double(bs) / rate * 1e3
                        let named = parts.map { String(format: "%@ %.2f ms", $0.0, $0.1 * 1e3 / Double(tokens)) }
                        let rest = step - parts.reduce(0) { $0 + $1.1 } * 1e3 / Double(tokens)
                        print(String(format: "  batch %d step %.2f ms: %@, the rest %.2f ms", bs, step, named.joined(separator: ", "), rest))
                    }
                    for bs in batch.sorted() where bs != 1 && bs != 8 && bs >= 1 {
                        let r = bench.decode(batch: bs).tokensPerSecond
                        print(String(format: "  d%d %@ decode batch %d: %.1f tok/s (%.1f steps/s)", d, format.rawValue, bs, r, r / Double(bs)))
                    }
                }
                bench.model.useWeights(.f32)
                if let upstream {
                    if let ref = runPythonReference(python: python, script: "\(toolsDir)/bench_upstream_infer.py",
                                                    args: [upstream, "--depth", "\(d)", "--tokens", "\(tokens)", "--prompt", "\(prompt)"]),
                       let u1 = ref["decode1"] as? Double, let u8 = ref["decode8"] as? Double, let up = ref["prefill"] as? Double {
                        print(String(format: "d%d upstream (PyTorch %@, 2 threads, float32): decode batch 1 %.1f tok/s, batch 8 %.1f tok/s, prefill %.0f tok/s",
                                     d, (ref["torch"] as? String ?? "?"), u1, u8, up))
                        for format in weights {
                            let o = ours[format]!
                            print(String(format: "  ours %@ against upstream: decode batch 1 %.2fx, batch 8 %.2fx, prefill %.2fx", format.rawValue, o.d1 / u1, o.d8 / u8, o.prefill / up))
                        }
                    }
                }
            }
        }
    }
}

struct BenchServe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Load test of chat-web: concurrent streaming clients, requests/s, time to first token, server memory.",
        discussion: """
        Starts `nanochat chat-web` with --workers on a free port (or uses --url), fetches each prompt's greedy answer \
        alone, then runs --clients concurrent streaming clients on /v1/chat/completions for --seconds. Any streamed \
        answer that differs from its reference counts as a mismatch (a lost or mixed-up token). The server's resident \
        memory is sampled twice a second when this command started it.
        """
    )
    @Option(help: "A running server (default: start chat-web here).") var url: String?
    @Option(help: "Concurrent streaming clients.") var clients = 16
    @Option(help: "Engine workers of the server this command starts.") var workers = 2
    @Option(help: "Seconds of load.") var seconds = 60.0
    @Option(help: "Max tokens per answer.") var maxTokens = 64
    @Option(help: "Distinct prompts (up to \(LoadTest.promptTexts.count)).") var prompts = 8
    @Option(name: .customShort("i"), help: "Model source for the server: base, sft or rl.") var source = "base"
    @Option(name: .customShort("g"), help: "Model tag.") var modelTag: String?
    @Option(help: "A checkpoint directory.") var checkpoint: String?
    @Option(help: "Inference weights of the server this command starts: f32, bf16 or int8.") var weights: WeightFormat = .f32

    func run() throws {
        try runReportingErrors {
            var server: Process?
            var base = url ?? ""
            if url == nil {
                let port = try freePort()
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
                p.arguments = ["chat-web", "-i", source, "--port", "\(port)", "--num-workers", "\(workers)", "--weights", weights.rawValue]
                    + (modelTag.map { ["-g", $0] } ?? []) + (checkpoint.map { ["--checkpoint", $0] } ?? [])
                p.standardOutput = FileHandle.nullDevice
                try p.run()
                server = p
                base = "http://127.0.0.1:\(port)/"
            }
            defer { server?.terminate(); server?.waitUntilExit() }
            guard let baseURL = URL(string: base) else { throw NanoChatError("--url: not a URL: \(base)") }
            var test = LoadTest(baseURL: baseURL)
            do {
                try test.waitUntilReady { server?.isRunning ?? true }
            } catch {
                throw NanoChatError("\(error)")
            }
            test.clients = clients; test.seconds = seconds; test.maxTokens = maxTokens
            test.prompts = max(1, min(prompts, LoadTest.promptTexts.count)); test.serverPID = server?.processIdentifier
            print("load: \(clients) streaming clients, \(url == nil ? "\(workers) workers" : base), \(Int(seconds)) s, max_tokens \(maxTokens), greedy, \(test.prompts) prompts")
            let r = try test.run { print($0); fflush(stdout) }
            print(String(format: "requests: %d ok, %d errors, %d mismatched answers (server counted %d requests, %d tokens; %d distinct reference answers)",
                         r.requests, r.errors, r.mismatches, r.serverRequestsServed, r.serverTokensServed, r.distinctAnswers))
            for e in r.firstErrors { print("  error: \(e)") }
            print(String(format: "throughput: %.2f requests/s, %.1f streamed tokens/s over %.1f s", r.requestsPerSecond, r.tokensPerSecond, r.wall))
            print(String(format: "time to first token: p50 %.3f s, p99 %.3f s (max %.3f); whole answer p50 %.2f s, p99 %.2f s",
                         r.percentile(r.ttft, 50), r.percentile(r.ttft, 99), r.ttft.max() ?? .nan,
                         r.percentile(r.latency, 50), r.percentile(r.latency, 99)))
            if let (early, late) = r.rssEarlyLate {
                let peak = r.rssMB.map(\.mb).max() ?? 0
                print(String(format: "server memory: %.0f MB early, %.0f MB late (%+.1f%%), peak %.0f MB, %d samples",
                             early, late, (late - early) / early * 100, peak, r.rssMB.count))
            }
            if r.errors > 0 || r.mismatches > 0 { throw NanoChatError("the load test saw \(r.errors) errors and \(r.mismatches) mismatched answers") }
        }
    }

}

/// A free TCP port on 127.0.0.1 (bound, read, released).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw NanoChatError("could not open a socket") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
    }
    guard ok else { throw NanoChatError("could not bind a free port") }
    return Int(UInt16(bigEndian: addr.sin_port))
}

/// HumanEval's canonical solutions through the sandbox: every one must pass (the guard must not break honest code),
/// and the time per program is what a HumanEval evaluation pays on top of generation.
struct BenchSandbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Run HumanEval's canonical solutions in the sandbox: pass count and seconds per program."
    )
    @Option(help: "Task data directory (default $NANOCHAT_BASE_DIR/task_data).") var taskData: String?
    @Option(help: "At most this many problems (-1: all 164).") var maxProblems = -1

    func run() throws {
        try runReportingErrors {
            let root = taskData.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? TaskData.directory
            var problems = try ChatTasks.load("HumanEval", root: root)
            if maxProblems > 0 { problems = Array(problems.prefix(maxProblems)) }
            print("sandbox: \(Sandbox.networkIsolation); python \(try Sandbox.python())")
            let start = Date()
            var passed = 0
            for (i, p) in problems.enumerated() {
                guard let he = p.humanEval, case .text(let answer)? = p.conversation.messages.last?.content else { continue }
                // the canonical answer is prompt + "\n" + solution: run it as the completion, as a perfect model would
                let program = ChatTasks.humanEvalProgram(prompt: he.prompt, completion: answer, test: he.test, entryPoint: he.entryPoint)
                let r = try Sandbox.execute(program)
                if r.success { passed += 1 } else { print("problem \(i) failed: \(r.error ?? "")") }
            }
            let dt = Date().timeIntervalSince(start)
            print(String(format: "HumanEval canonical solutions: %d/%d passed in %.1fs (%.0f ms per program)",
                         passed, problems.count, dt, 1000 * dt / Double(max(problems.count, 1))))
            if passed != problems.count { throw NanoChatError("\(problems.count - passed) canonical solutions failed in the sandbox") }
        }
    }
}

struct BenchWeights: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "Quality of bf16 and int8 inference weights against float32 on a trained model: bits per byte and greedy decoding.",
        discussion: """
        Loads a checkpoint (-i/-g/-s or --checkpoint) and, for f32, bf16 and int8 weights: bits per byte on the \
        validation shard, and greedy continuations of fixed prompts (upstream's base-model prompts and a few \
        chat-style ones). Identical tokens are counted position by position against float32's continuation (once a \
        continuation diverges the rest usually differs too), and teacher-forced: the share of float32's greedy \
        tokens that the quantized model would also have picked.
        """
    )
    @Option(name: .customShort("i"), help: "Model source: base, mid, sft or rl.") var source = "base"
    @Option(name: [.customShort("g"), .customLong("model-tag")], help: "Model tag (default: the largest d<N>).") var modelTag: String?
    @Option(name: [.customShort("s"), .customLong("step")], help: "Checkpoint step (default: the latest).") var step: Int?
    @Option(help: "A checkpoint directory.") var checkpoint: String?
    @Option(help: "Tokens of the validation shard for bits per byte.") var splitTokens = 65536
    @Option(help: "Rows per batch for bits per byte.") var deviceBatchSize = 8
    @Option(help: "Tokens decoded per prompt.") var maxTokens = 32

    static let prompts = baseSamplePrompts + ["Once upon a time", "The best way to learn a language is", "Water boils at",
                                              "In 1492, Columbus", "def fibonacci(n):", "Question: What is 2 + 2? Answer:"]

    func run() throws {
        try runReportingErrors {
            let loaded = try CheckpointManager.loadModel(source: source, tag: modelTag, step: step,
                                                         checkpoint: checkpoint.map { URL(fileURLWithPath: $0, isDirectory: true) })
            let (model, tok) = (loaded.model, loaded.tokenizer)
            let seq = loaded.meta.max_seq_len ?? model.config.sequence_len
            print("model \(loaded.label): \(model.config)")
            var baseBPB = Double.nan  // float32 comes first: the reference
            try weightQualities(model: model, tokenizer: tok, seqLen: seq, splitTokens: splitTokens, batch: deviceBatchSize,
                                maxTokens: maxTokens, prompts: Self.prompts) { r in
                if r.format == .f32 { baseBPB = r.bitsPerByte }
                print(String(format: "%@: %.1f MB of matrices; val bpb %.5f (%+.3f%% vs f32); greedy: %.1f%% identical tokens, %.1f%% teacher-forced agreement (%d prompts x %d tokens)",
                             r.format.rawValue, Double(r.bytes) / 1e6, r.bitsPerByte, 100 * (r.bitsPerByte / baseBPB - 1), 100 * r.identical,
                             100 * r.teacherForced, Self.prompts.count, maxTokens))
                if r.format == .int8 { print("  int8 sample: \(Self.prompts[0])\((try? tok.decode(r.firstContinuation)) ?? "")") }
            }
        }
    }
}
