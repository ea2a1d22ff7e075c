import Foundation
import XCTest
import NanoChat

/// Upstream's own command lines, as its `runs/*.sh` type them (kept in Tests/Fixtures/upstream_runs, from the upstream
/// commit the fixtures name), must parse here once `python -m scripts.X` / `torchrun ... -m scripts.X --` becomes
/// `nanochat X`: the same script names, flags, short forms, `--flag=value` and negative values. Each line goes through
/// the built `nanochat` itself with NANOCHAT_PARSE_ONLY=1, which parses and prints every flag's value as JSON.
final class UpstreamCommandLineTests: XCTestCase {
    /// The executable built beside these tests (swift build --build-tests), or NANOCHAT_BINARY.
    static let binary: String = {
        if let s = ProcessInfo.processInfo.environment["NANOCHAT_BINARY"], !s.isEmpty { return s }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for config in ["release", "debug"] {
            let path = root.appendingPathComponent(".build/\(config)/nanochat").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return root.appendingPathComponent(".build/release/nanochat").path
    }()

    /// Parses `args` with the real binary: (the command's name, its flags by snake_case name) or the parser's message.
    static func parse(_ args: [String]) throws -> (command: String, flags: [String: String]) {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw NanoChatError("no nanochat binary at \(binary): build it first (swift build -c release) or set NANOCHAT_BINARY")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["NANOCHAT_PARSE_ONLY"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0,
              let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let command = obj["command"] as? String, let flags = obj["flags"] as? [String: String] else {
            throw NanoChatError("exit \(p.terminationStatus): \(errText.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return (command, flags)
    }

    static let runsDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/upstream_runs")

    /// What the scripts' shell variables hold when a user runs them (loop variables at one of their values).
    static let variables = ["WANDB_RUN": "dummy", "NPROC_PER_NODE": "8", "d": "12", "TAG": "d12", "flops": "1e18",
                            "EVAL_TOKENS": "52428800", "DEVICE_BATCH_SIZE_ARG": "--device-batch-size=16"]

    /// Every `python -m scripts.X ...`, `python -m nanochat.dataset ...` and `torchrun ... -m scripts.X -- ...` of the
    /// scripts (commented-out ones included: they are lines users type), as (file, script name, arguments).
    static func upstreamCommandLines() throws -> [(file: String, script: String, args: [String])] {
        var out: [(String, String, [String])] = []
        let files = try FileManager.default.contentsOfDirectory(atPath: runsDir.path).filter { $0.hasSuffix(".sh") }.sorted()
        for file in files {
            let text = try String(contentsOf: runsDir.appendingPathComponent(file), encoding: .utf8)
            let joined = text.replacingOccurrences(of: "\\\n", with: " ")
            for raw in joined.split(separator: "\n") {
                var line = raw.trimmingCharacters(in: .whitespaces)
                while line.hasPrefix("#") { line = String(line.dropFirst()).trimmingCharacters(in: .whitespaces) }
                guard line.hasPrefix("python -m ") || line.hasPrefix("torchrun ") else { continue }
                guard let m = line.range(of: #"-m (scripts|nanochat)\.([a-z_]+)"#, options: .regularExpression) else { continue }
                let module = line[m].split(separator: ".").last.map(String.init)!
                var rest = String(line[m.upperBound...]).trimmingCharacters(in: .whitespaces)
                if rest.hasPrefix("-- ") || rest == "--" { rest = String(rest.dropFirst(2)) }
                // the shell's part of the line: redirections, pipes, background
                for cut in ["2>&1", " | ", " > ", " &"] { if let r = rest.range(of: cut) { rest = String(rest[..<r.lowerBound]) } }
                if rest.hasSuffix("&") { rest.removeLast() }
                out.append((file, module, try shellWords(expand(rest))))
            }
        }
        return out
    }

    static func expand(_ s: String) throws -> String {
        var out = s
        for (name, value) in variables.sorted(by: { $0.key.count > $1.key.count }) {
            out = out.replacingOccurrences(of: "${\(name)}", with: value).replacingOccurrences(of: "$\(name)", with: value)
        }
        if let r = out.range(of: #"\$\{?[A-Za-z_]+"#, options: .regularExpression) {
            throw NanoChatError("no value for the shell variable \(out[r]) in: \(s)")
        }
        return out
    }

    /// Splits like a POSIX shell for what these scripts use: spaces, single and double quotes.
    static func shellWords(_ s: String) -> [String] {
        var words: [String] = [], current = "", quote: Character? = nil, inWord = false
        for ch in s {
            if let q = quote {
                if ch == q { quote = nil } else { current.append(ch) }
            } else if ch == "\"" || ch == "'" {
                quote = ch; inWord = true
            } else if ch == " " || ch == "\t" {
                if inWord { words.append(current); current = ""; inWord = false }
            } else {
                current.append(ch); inWord = true
            }
        }
        if inWord { words.append(current) }
        return words
    }

    func testEveryUpstreamRunsLineParses() throws {
        let lines = try Self.upstreamCommandLines()
        // runcpu.sh, speedrun.sh, miniseries.sh and scaling_laws.sh: 17 command lines at the pinned commit
        XCTAssertGreaterThanOrEqual(lines.count, 17, "fewer upstream command lines found than the scripts hold")
        var scripts = Set<String>()
        for (file, script, args) in lines {
            scripts.insert(script)
            do {
                _ = try Self.parse([script] + args)
            } catch {
                XCTFail("\(file): nanochat \(script) \(args.joined(separator: " ")) does not parse: \(error)")
            }
        }
        XCTAssertEqual(scripts, ["dataset", "tok_train", "tok_eval", "base_train", "base_eval", "chat_sft", "chat_eval", "chat_cli"])
    }

    /// The values land where upstream's would: runcpu.sh's lines, negative numbers included.
    func testUpstreamRunCPUValues() throws {
        let lines = try Self.upstreamCommandLines().filter { $0.file == "runcpu.sh" }
        let train = try XCTUnwrap(lines.first { $0.script == "base_train" })
        let (command, o) = try Self.parse([train.script] + train.args)
        XCTAssertEqual(command, "base-train")
        let expected = ["depth": "6", "head_dim": "64", "window_pattern": "L", "max_seq_len": "512", "device_batch_size": "32",
                        "total_batch_size": "16384", "eval_every": "100", "eval_tokens": "524288", "core_metric_every": "-1",
                        "sample_every": "100", "num_iterations": "5000", "run": "dummy", "core_metric_max_per_task": "500",
                        "device_type": "auto", "fp8": "false"]
        for (k, v) in expected { XCTAssertEqual(o[k], v, k) }
        let eval = try XCTUnwrap(lines.first { $0.script == "base_eval" })
        let e = try Self.parse([eval.script] + eval.args).flags
        XCTAssertEqual([e["device_batch_size"], e["split_tokens"], e["max_per_task"]], ["1", "16384", "16"])
        let dataset = try XCTUnwrap(lines.first { $0.script == "dataset" })
        let d = try Self.parse([dataset.script] + dataset.args)
        XCTAssertEqual(d.command, "download")
        XCTAssertEqual(d.flags["num"], "8")
    }

    /// Upstream's spellings: `--max-per-task -1` (a negative value after a space), `--device-type ""`, the long forms
    /// of the short flags, and the script names of the other commands.
    func testUpstreamSpellings() throws {
        let e = try Self.parse(["base_eval", "--max-per-task", "-1", "--device-type", ""]).flags
        XCTAssertEqual(e["max_per_task"], "-1")
        XCTAssertEqual(e["device_type"], "auto")
        let c = try Self.parse(["chat_eval", "--source", "sft", "--task-name", "GSM8K", "--temperature", "0.5", "--max-new-tokens", "64",
                                "--num-samples", "2", "--top-k", "5", "--batch-size", "4", "--max-problems", "10", "--model-tag", "d4",
                                "--step", "3"]).flags
        let want = ["source": "sft", "tasks": "GSM8K", "temperature": "0.5", "max_new_tokens": "64", "num_samples": "2", "top_k": "5",
                    "batch_size": "4", "max_problems": "10", "model_tag": "d4", "step": "3"]
        for (k, v) in want { XCTAssertEqual(c[k], v, k) }
        let cli = try Self.parse(["chat_cli", "--source", "rl", "--prompt", "hi", "--temperature", "0", "--top-k", "1"])
        XCTAssertEqual(cli.command, "chat-cli")
        XCTAssertEqual([cli.flags["prompt"], cli.flags["top_k"], cli.flags["source"]], ["hi", "1", "rl"])
        let web = try Self.parse(["chat_web", "-n", "1", "-i", "sft", "-t", "0.8", "-k", "50", "-m", "512", "-p", "8000"]).flags
        XCTAssertEqual([web["num_gpus"], web["port"], web["max_tokens"]], ["1", "8000", "512"])
        XCTAssertThrowsError(try Self.parse(["chat_web", "--num-gpus", "2"])) { XCTAssertTrue("\($0)".contains("one server per GPU")) }
        let bench = try Self.parse(["infer_bench", "-i", "base", "-g", "d12", "-s", "100", "--prompt-tokens", "512", "--decode-tokens", "64",
                                    "--batch-sizes", "1,4", "-t", "0"])
        XCTAssertEqual(bench.command, "infer-bench")
        XCTAssertEqual([bench.flags["prompt_tokens"], bench.flags["decode_tokens"], bench.flags["batch_sizes"], bench.flags["step"]],
                       ["512", "64", "1,4", "100"])
        // bench infer takes a checkpoint the same way (it then runs infer-bench)
        let b2 = try Self.parse(["bench", "infer", "-i", "base", "-g", "d12", "-s", "7", "--prompt-tokens", "512", "--decode-tokens", "64", "--batch-sizes", "1,4"])
        XCTAssertEqual([b2.flags["source"], b2.flags["model_tag"], b2.flags["step"], b2.flags["prompt_tokens"], b2.flags["batch_sizes"]],
                       ["base", "d12", "7", "512", "1,4"])
        let defaults = try Self.parse(["infer_bench"]).flags
        XCTAssertEqual([defaults["prompt_tokens"], defaults["decode_tokens"], defaults["batch_sizes"]], ["2048", "256", "1,8,32,128"])
        let dl = try Self.parse(["dataset", "--num-files", "-1", "--num-workers", "8"]).flags
        XCTAssertEqual([dl["num"], dl["workers"]], ["-1", "8"])
        for (script, flags) in [("chat_sft", ["--run=x", "--model-step=-1", "--load-optimizer=0", "--chatcore-max-cat=-1"]),
                                ("chat_rl", ["--run=x", "--model-step", "5", "--num-samples=16", "--top-k=50"]),
                                ("tok_train", ["--max-chars=1000", "--doc-cap=100", "--vocab-size=512"]),
                                ("base_train", ["--fp8", "--fp8-recipe=rowwise", "--target-param-data-ratio=-1", "--target-flops=1e18",
                                                "--core-metric-max-per-task=-1", "--device-type", ""])] {
            XCTAssertNoThrow(try Self.parse([script] + flags), "\(script) \(flags)")
        }
        XCTAssertEqual(try Self.parse(["chat_sft", "--run=sft1"]).flags["run"], "sft1")
        // mps is not a device here: refused at parsing, naming the ones that are
        XCTAssertThrowsError(try Self.parse(["base_eval", "--device-type", "mps"])) { XCTAssertTrue("\($0)".contains("cpu")) }
    }
}
