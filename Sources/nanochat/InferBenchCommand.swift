import ArgumentParser
import Foundation
import NanoChat
import NanoChatBench
import NanoTensor

/// Upstream's `scripts.infer_bench`: what a trained checkpoint costs to run. Prefill of one prompt, then a sweep of
/// decode batch sizes through the engine (time to the first token, the median time per decode step, tok/s, and how
/// far each is from the memory-bandwidth and compute rooflines), a card of what the architecture implies, and a last
/// stdout line that is one JSON object with all of it. `bench infer` is the other benchmark: random weights of
/// several depths in each weight format, side by side with upstream's PyTorch.
struct InferBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer-bench",
        abstract: "Inference cost of a checkpoint: prefill, and a decode sweep over batch sizes (upstream's infer_bench).",
        discussion: """
        The roofline on a CPU is the read bandwidth measured here over all threads and the CPU's peak FLOP/s; on a GPU \
        the card's. MBU = (weight bytes + batch x KV bytes read) per median step over the bandwidth; MFU likewise with \
        FLOPs. The last line of stdout is the JSON of the run: `nanochat infer-bench -g d12 | tail -1`.
        """,
        aliases: ["infer_bench"]
    )
    @OptionGroup var model: ModelSource
    @Option(parsing: .unconditional, help: "Prompt length (clamped so prompt + decode fits the context).") var promptTokens = 2048
    @Option(parsing: .unconditional, help: "Tokens decoded per timed run.") var decodeTokens = 256
    @Option(help: "Decode batch sizes, comma-separated.") var batchSizes = "1,8,32,128"
    @Option(name: [.customShort("t"), .long], parsing: .unconditional, help: "Sampling temperature (0 = greedy).") var temperature: Float = 0

    func run() throws {
        try runReportingErrors {
            let sizes = try batchSizes.split(separator: ",").map { part -> Int in
                guard let b = Int(part.trimmingCharacters(in: .whitespaces)), b >= 1 else {
                    throw NanoChatError("--batch-sizes: \"\(part)\" is not a positive whole number; expected a list such as 1,8,32,128")
                }
                return b
            }
            guard decodeTokens >= 2 else { throw NanoChatError("--decode-tokens must be at least 2 (a first token, then timed steps)") }
            let loaded = try model.load(defaultSource: "base")
            let gpt = loaded.model, config = gpt.config, tok = loaded.tokenizer
            let engine = Engine(model: gpt, tokenizer: tok)
            let maxPrompt = config.sequence_len - decodeTokens
            guard maxPrompt >= 1 else { throw NanoChatError("--decode-tokens \(decodeTokens) leaves no room for a prompt in sequence_len \(config.sequence_len)") }
            let promptLen = min(promptTokens, maxPrompt)
            if promptLen < promptTokens { print("note: clamping prompt to \(promptLen) tokens so prompt+decode fits sequence_len=\(config.sequence_len)") }
            let paragraph = "The history of science is the study of the development of science, including both the natural and social "
                + "sciences. Science is a body of empirical, theoretical, and practical knowledge about the natural world. "
            var prompt = [tok.bosID] + tok.encode(String(repeating: paragraph, count: promptLen / 10 + 1))
            prompt = Array(prompt.prefix(promptLen))

            // the card: what the architecture implies, before measuring
            let gpu = gpt.device.gpu
            let params = gpt.parameterNames.map { gpt.parameters[$0]! }
            let numParams = params.reduce(0) { $0 + $1.count }
            let matmulParams = gpt.parameterNames.filter { $0 != "transformer.wte.weight" && !$0.hasPrefix("value_embeds.") }
                .map { gpt.parameters[$0]! }.filter { $0.shape.count == 2 }.reduce(0) { $0 + $1.count }
            let weightBytes = gpt.weightFormat == .f32 ? 4 * numParams
                : gpt.matrixBytesPerStep + 4 * (numParams - matmulParams)  // the formatted matrices, the rest f32
            let kvElement = gpu != nil ? (gpu!.bf16 ? 2 : 4) : (gpt.kvCacheBF16 ? 2 : 4)
            let headDim = config.n_embd / config.n_head
            let kvStore = config.n_layer * 2 * config.n_kv_head * headDim * kvElement
            let contextMid = promptLen + decodeTokens / 2
            let kvRead = gpt.windows.reduce(0) { $0 + 2 * config.n_kv_head * headDim * kvElement * min(contextMid, $1) }
            let decodeFlops = Double(2 * matmulParams) + gpt.windows.reduce(0.0) { $0 + Double(4 * config.n_head * headDim * min(contextMid, $1)) }
            var prefillFlops = Double(2 * matmulParams * promptLen)
            for window in gpt.windows {
                let w = min(window, promptLen)
                prefillFlops += Double(4 * config.n_head * headDim * (w * (w + 1) / 2 + (promptLen - w) * w))
            }
            let deviceName: String, peakBandwidth: Double, peakFlops: Double, memoryBytes: Double
            if let gpu {
                deviceName = gpu.name
                peakBandwidth = gpu.name.contains("H200") ? 4.8e12 : gpu.name.contains("H100") ? 3.35e12 : .nan
                peakFlops = GPU.peakBF16FLOPS
                memoryBytes = Double(gpu.memoryBytes)
            } else {
                deviceName = "CPU: \(CPUInfo.current.description), \(Threading.workers) threads"
                // measured over a buffer the size of what a step reads: weights that fit partly in the last-level cache
                // stream faster than DRAM, and that is the limit they really have
                peakBandwidth = InferBench.bandwidth(overBytes: weightBytes + kvRead) * 1e9
                peakFlops = CPUPeak.current(threads: Threading.workers).flops
                memoryBytes = Double(ProcessInfo.processInfo.physicalMemory)
            }
            let ceiling = peakBandwidth / Double(weightBytes + kvRead)
            let maxRows = Int((memoryBytes - Double(weightBytes)) / Double(kvStore * config.sequence_len))
            let rule = String(repeating: "=", count: 100)
            print(rule)
            print("Model: \(model.sourceName(default: "base")) \(loaded.label) | depth \(config.n_layer), dim \(config.n_embd), heads \(config.n_head), kv heads \(config.n_kv_head)")
            print(String(format: "%@ | peak bandwidth %.2f TB/s%@ | peak compute %.2f TFLOPS | memory %.0f GiB", deviceName, peakBandwidth / 1e12,
                         gpu == nil ? " (measured)" : "", peakFlops / 1e12, memoryBytes / 1_073_741_824))
            print(String(repeating: "-", count: 100))
            print("Parameters: \(formatThousands(numParams)) (\(gpt.weightFormat.rawValue) matrices) | weight bytes as read: \(weightBytes / 1_048_576) MiB")
            print("KV cache: \(formatThousands(kvStore)) bytes/token stored | \(formatThousands(kvRead)) bytes read/step at context \(contextMid) (window pattern \(config.window_pattern))")
            print(String(format: "Theoretical decode ceiling at batch 1: %@ tok/s | max ~%@ full-context rows in memory",
                         formatThousands(Int(ceiling.isFinite ? ceiling : 0)), formatThousands(max(0, maxRows))))
            print(rule)

            // one timed generation: the time to the first token, then each decode step's
            func timed(batch: Int, tokens: Int) throws -> (ttft: Double, steps: [Double]) {
                var last = DispatchTime.now().uptimeNanoseconds
                var ttft = 0.0, steps: [Double] = []
                try engine.generate(prompt, numSamples: batch, maxTokens: tokens, temperature: temperature) { _, _ in
                    let now = DispatchTime.now().uptimeNanoseconds
                    if ttft == 0 { ttft = Double(now - last) / 1e9 } else { steps.append(Double(now - last) / 1e9) }
                    last = now
                    return true
                }
                return (ttft, steps)
            }
            var payload: [String: Any] = [
                "source": model.sourceName(default: "base"), "step": loaded.step, "model_tag": loaded.directory.lastPathComponent,
                "model_config": ["sequence_len": config.sequence_len, "vocab_size": config.vocab_size, "n_layer": config.n_layer,
                                 "n_head": config.n_head, "n_kv_head": config.n_kv_head, "n_embd": config.n_embd,
                                 "window_pattern": config.window_pattern],
                "device": deviceName, "peak_bandwidth_bytes_per_sec": peakBandwidth.isFinite ? peakBandwidth : NSNull(),
                "total_memory_bytes": memoryBytes, "num_params": numParams, "weight_format": gpt.weightFormat.rawValue,
                "weight_bytes": weightBytes, "kv_bytes_per_token": kvStore, "kv_read_bytes_per_step": kvRead,
                "context_mid": contextMid, "peak_flops_per_sec": peakFlops, "decode_flops_per_token": decodeFlops,
                "ceiling_bs1_tok_per_sec": ceiling.isFinite ? (ceiling * 10).rounded() / 10 : NSNull(),
                "max_full_context_rows": maxRows, "prompt_tokens": promptLen, "decode_tokens": decodeTokens, "temperature": temperature,
            ]
            _ = try timed(batch: 1, tokens: 2)  // warm-up
            let prefillTime = try timed(batch: 1, tokens: 2).ttft
            let prefillRate = Double(promptLen) / prefillTime
            let prefillMFU = 100 * prefillFlops / prefillTime / peakFlops
            print(String(format: "Prefill (batch 1, %d tokens): %@ tok/s | MFU %.1f%%", promptLen, formatThousands(Int(prefillRate)), prefillMFU))
            payload["prefill"] = ["tok_per_sec": (prefillRate * 10).rounded() / 10, "mfu_percent": (prefillMFU * 100).rounded() / 100,
                                  "time_sec": prefillTime]
            let header = "batch    TTFT ms   TPOT ms      tok/s   MBU %   MFU %  steps"
            print(header)
            print(String(repeating: "-", count: header.count))
            var sweep: [[String: Any]] = []
            for batch in sizes {
                _ = try timed(batch: batch, tokens: 8)  // warm-up: caches, allocator, plans
                let (ttft, steps) = try timed(batch: batch, tokens: decodeTokens)
                guard !steps.isEmpty else { print(String(format: "%5d  every row ended at its first token; skipped", batch)); continue }
                let tpot = steps.sorted()[steps.count / 2]
                let rate = Double(batch * steps.count) / steps.reduce(0, +)
                let mbu = 100 * Double(weightBytes + batch * kvRead) / tpot / peakBandwidth
                let mfu = 100 * Double(batch) * decodeFlops / tpot / peakFlops
                let note = steps.count == decodeTokens - 1 ? "" : " (early stop @ \(steps.count))"
                let rateText = formatThousands(Int(rate))
                print(String(format: "%5d %10.1f %9.2f ", batch, ttft * 1e3, tpot * 1e3) + String(repeating: " ", count: max(0, 10 - rateText.count))
                      + rateText + String(format: " %7.1f %7.2f %6d", mbu, mfu, steps.count) + note)
                sweep.append(["batch_size": batch, "ttft_sec": ttft, "tpot_sec": tpot, "tok_per_sec": (rate * 10).rounded() / 10,
                              "mbu_percent": mbu.isFinite ? (mbu * 100).rounded() / 100 : NSNull(), "mfu_percent": mfu, "decode_steps": steps.count])
            }
            payload["sweep"] = sweep
            print(String(repeating: "-", count: header.count))
            let json = try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys])
            print(String(decoding: json, as: UTF8.self))
        }
    }
}
