import Foundation
import NanoTensor

/// Chat evaluation as upstream's chat_eval: categorical tasks by one batched forward whose last-position logits are
/// restricted to the answer letters; generative tasks by sampling through the engine (calculator tool included),
/// a problem passing if any of its samples passes. ChatCORE centres each accuracy with the task's chance level.
public enum ChatEval {
    public struct TaskResult: Codable {
        public var task: String
        public var passed: Int
        public var total: Int
        public var accuracy: Double
        public var seconds: Double
        public init(task: String, passed: Int, total: Int, accuracy: Double, seconds: Double) {
            self.task = task; self.passed = passed; self.total = total; self.accuracy = accuracy; self.seconds = seconds
        }
    }

    /// Categorical: `batch` problems per forward, right-padded with BOS; the head runs at each row's last token only.
    public static func categorical(model: GPT, tokenizer: Tokenizer, problems: [ChatProblem], batch: Int,
                                   progress: (Int, Int, Int) -> Void) throws -> (passed: Int, total: Int) {
        var passed = 0, done = 0
        let C = model.config.n_embd, V = model.config.vocab_size
        for start in stride(from: 0, to: problems.count, by: max(1, batch)) {
            let group = Array(problems[start..<min(problems.count, start + max(1, batch))])
            let prompts = try group.map { try tokenizer.renderForCompletion($0.conversation) }
            let T = prompts.map(\.count).max()!
            guard T <= model.maxPositions else {
                throw NanoChatError("a prompt of \(T) tokens is longer than the model's \(model.maxPositions) positions")
            }
            var idx = [Int32](repeating: Int32(tokenizer.bosID), count: group.count * T)
            for (b, p) in prompts.enumerated() { for (t, v) in p.enumerated() { idx[b * T + t] = Int32(v) } }
            let hidden = Tensor.withoutGrad { model.hiddenStates(idx, batch: group.count, time: T) }
            precondition(hidden.shape.last == C)
            let last = gatherRows(hidden, prompts.enumerated().map { b, p in b * T + p.count - 1 })
            let logits = LMHead.logits(last, model.lm_head, vocab: V, softcap: GPT.softcap).to(.cpu)
            for (b, problem) in group.enumerated() {
                let ids = try problem.letters.map { letter -> Int in
                    let t = tokenizer.encode(letter)
                    guard t.count == 1 else { throw NanoChatError("answer letter \(letter) is \(t.count) tokens; each must be exactly one") }
                    return t[0]
                }
                var best = 0
                for j in ids.indices where logits.data[b * V + ids[j]] > logits.data[b * V + ids[best]] { best = j }
                if problem.letters[best] == problem.answerLetter { passed += 1 }
            }
            done += group.count
            progress(done, problems.count, passed)
        }
        return (passed, problems.count)
    }

    /// Generative: `samples` completions per problem; passes if any passes its task's judge.
    public static func generative(engine: Engine, tokenizer: Tokenizer, problems: [ChatProblem], samples: Int,
                                  maxTokens: Int, temperature: Float, topK: Int, sandbox: Sandbox.Limits = Sandbox.Limits(),
                                  progress: (Int, Int, Int) -> Void) throws -> (passed: Int, total: Int) {
        var passed = 0
        for (i, problem) in problems.enumerated() {
            let prompt = try tokenizer.renderForCompletion(problem.conversation)
            let out = try engine.generateBatch(prompt, numSamples: samples, maxTokens: maxTokens, temperature: temperature,
                                               topK: topK, seed: UInt64(42 + i))
            var ok = false
            for seq in out.sequences where !ok {
                let completion = try tokenizer.decode(Array(seq[prompt.count...]))
                if let he = problem.humanEval {
                    let program = ChatTasks.humanEvalProgram(prompt: he.prompt, completion: completion, test: he.test, entryPoint: he.entryPoint)
                    ok = try Sandbox.execute(program, limits: sandbox).success
                } else {
                    ok = ChatTasks.extractAnswer(completion) == problem.reference
                }
            }
            if ok { passed += 1 }
            progress(i + 1, problems.count, passed)
        }
        return (passed, problems.count)
    }

    /// Evaluates `problems` per task in `names` order (categorical by forward, generative by sampling) and returns one
    /// result per task; `progress(task, done, total, passed)` follows each task.
    public static func run(model: GPT, tokenizer: Tokenizer, names: [String], problems: [String: [ChatProblem]], batch: Int,
                           samples: Int = 1, maxTokens: Int = 512, temperature: Float = 0, topK: Int = 50,
                           comm: Communicator = SingleProcess(),
                           progress: (String, Int, Int, Int) -> Void = { _, _, _, _ in }) throws -> [TaskResult] {
        let engine = Engine(model: model, tokenizer: tokenizer)
        var results: [TaskResult] = []
        for name in names {
            // rank r of W takes problems r, r+W, ... (as upstream); the counts are summed across ranks
            let all = problems[name] ?? []
            let list = stride(from: comm.rank, to: all.count, by: comm.worldSize).map { all[$0] }
            let started = Date()
            let report: (Int, Int, Int) -> Void = { progress(name, $0, $1, $2) }
            let r = ChatTasks.categorical.contains(name)
                ? try categorical(model: model, tokenizer: tokenizer, problems: list, batch: batch, progress: report)
                : try generative(engine: engine, tokenizer: tokenizer, problems: list, samples: samples, maxTokens: maxTokens,
                                 temperature: temperature, topK: topK, progress: report)
            let counts = comm.sum([Double(r.passed), Double(r.total)])
            let (passed, total) = (Int(counts[0]), Int(counts[1]))
            results.append(TaskResult(task: name, passed: passed, total: total, accuracy: Double(passed) / Double(max(total, 1)),
                                      seconds: comm.max(Date().timeIntervalSince(started))))
        }
        return results
    }

    /// The five tasks ChatCORE averages (SpellingBee is reported but not part of it, as upstream).
    public static let chatCORETasks = ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval"]

    /// ChatCORE: the mean over tasks of (accuracy − chance) / (1 − chance).
    public static func chatCORE(_ results: [TaskResult]) -> Double {
        results.map { r in let b = ChatTasks.baseline[r.task] ?? 0; return (r.accuracy - b) / (1 - b) }.reduce(0, +) / Double(results.count)
    }
}
