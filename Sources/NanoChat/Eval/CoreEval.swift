import Foundation
import NanoTensor

/// The CORE metric (DCLM's 22 in-context tasks), computed the way upstream's core_eval does:
/// - each task's items are shuffled with Python's `random.Random(1337)` and cut to `maxPerTask`;
/// - item i's few-shot examples are `random.Random(1234 + i).sample(all other indices, k)`;
/// - prompts are rendered per task type (below), BOS-prefixed and tokenized;
/// - multiple choice / schema: the option whose scored span has the lowest mean cross-entropy wins (first minimum);
///   language modelling: correct iff greedy argmax reproduces the whole continuation;
/// - accuracy is centred with the task's random baseline, and CORE is the mean of the centred accuracies.
/// Rows are independent under causal attention, so all rows of a task are sorted by length and packed into
/// forwards of about `tokensPerForward` tokens, and the LM head runs only at the positions that are scored.
public enum CoreEval {
    /// One tokenized option: the sequence, and the span [start, end) whose tokens are scored.
    struct Row { var tokens: [Int]; var start: Int; var end: Int; var example: Int }

    public struct ExampleResult: Codable, Equatable {
        public var index: Int          // position in the shuffled, truncated task
        public var correct: Bool
        public var chosen: Int?        // MC / schema: the option with the lowest mean loss
        public var meanLosses: [Double]? // MC / schema: per option
        public var matched: Int?       // LM: how many of the continuation's tokens the argmax got right
    }

    public struct TaskResult: Codable {
        public var label: String
        public var accuracy: Double
        public var centered: Double
        public var examples: Int
        public var seconds: Double
        public var cropped: Int        // rows longer than the model's rotary tables, cut to their last positions
        public var details: [ExampleResult]
    }

    // MARK: prompts (upstream's templates)

    /// Python's `str.strip()`: Unicode whitespace plus the ASCII separators \x1c-\x1f.
    static func pythonStrip(_ s: String) -> String {
        func ws(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace || (0x1C...0x1F).contains(u.value) }
        let scalars = Array(s.unicodeScalars)
        var a = 0, b = scalars.count
        while a < b && ws(scalars[a]) { a += 1 }
        while b > a && ws(scalars[b - 1]) { b -= 1 }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[a..<b])
        return String(out)
    }

    /// The prompts of one item given its few-shot examples: one per option (MC, schema), or [without, with] (LM).
    public static func prompts(_ item: EvalBundle.Item, shots: [EvalBundle.Item], delimiter d: String) -> [String] {
        switch item {
        case .multipleChoice(let query, let choices, _):
            var prefix = ""
            for case .multipleChoice(let q, let c, let g) in shots { prefix += q + d + c[g] + "\n\n" }
            return choices.map { prefix + query + d + $0 }
        case .schema(let options, let continuation, _):
            var prefix = ""
            for case .schema(let o, let c, let g) in shots { prefix += o[g] + d + c + "\n\n" }
            return options.map { prefix + $0 + d + continuation }
        case .languageModeling(let context, let continuation):
            var prefix = ""
            for case .languageModeling(let c, let cont) in shots { prefix += pythonStrip(c) + d + cont + "\n\n" }
            let base = prefix + pythonStrip(context) + d
            return [pythonStrip(base), base + continuation]
        }
    }

    /// Token sequences and scored spans for one item (BOS-prefixed).
    static func tokenize(_ item: EvalBundle.Item, prompts: [String], example: Int, tokenizer: Tokenizer) throws -> [Row] {
        let seqs = tokenizer.encodeBatch(prompts, prepend: tokenizer.bosID)
        switch item {
        case .multipleChoice:
            // the span starts where the options' tokens first differ
            var common = seqs.map(\.count).min()!
            for s in seqs.dropFirst() {
                var i = 0
                while i < common && s[i] == seqs[0][i] { i += 1 }
                common = i
            }
            return seqs.map { Row(tokens: $0, start: common, end: $0.count, example: example) }
        case .schema:
            // the span is the tokens all options end with (the shared continuation)
            var common = seqs.map(\.count).min()!
            for s in seqs.dropFirst() {
                var i = 0
                while i < common && s[s.count - 1 - i] == seqs[0][seqs[0].count - 1 - i] { i += 1 }
                common = i
            }
            return seqs.map { Row(tokens: $0, start: $0.count - common, end: $0.count, example: example) }
        case .languageModeling:
            let (without, with) = (seqs[0], seqs[1])
            guard without.count <= with.count, Array(with.prefix(without.count)) == without else {
                throw NanoChatError("language-modelling item \(example): the context's tokens are not a prefix of context + continuation")
            }
            return [Row(tokens: with, start: without.count, end: with.count, example: example)]
        }
    }

    /// The task's examples in upstream's order: shuffled with Random(1337), then the first `maxPerTask` (all if ≤ 0).
    public static func selectExamples(_ items: [EvalBundle.Item], maxPerTask: Int) -> [EvalBundle.Item] {
        var shuffled = items
        var rng = PythonRandom(seed: 1337)
        rng.shuffle(&shuffled)
        return maxPerTask > 0 && shuffled.count > maxPerTask ? Array(shuffled.prefix(maxPerTask)) : shuffled
    }

    /// Evaluates one task. `progress(done, total)` is called as rows are scored.
    public static func evaluate(model: GPT, tokenizer: Tokenizer, task: EvalBundle.Task, items allItems: [EvalBundle.Item],
                                maxPerTask: Int, tokensPerForward: Int = 16384, comm: Communicator = SingleProcess(),
                                progress: (Int, Int) -> Void = { _, _ in }) throws -> TaskResult {
        let started = Date()
        let items = selectExamples(allItems, maxPerTask: maxPerTask)
        // each example takes its shots from the other examples kept (as upstream, whose random.sample refuses fewer)
        if task.fewShot > 0 && items.count <= task.fewShot {
            throw NanoChatError("CORE \(task.label): \(task.fewShot)-shot needs more than \(task.fewShot) examples to draw the shots from, "
                                + "and \(items.count) are kept" + (maxPerTask > 0 ? " (--max-per-task \(maxPerTask)); give at least \(task.fewShot + 1)" : ""))
        }
        // rank r of W scores examples r, r+W, ... (as upstream); the right answers are summed across ranks
        let mine = Array(stride(from: comm.rank, to: items.count, by: comm.worldSize))
        var rows: [Row] = []
        for i in mine {
            let item = items[i]
            var shots: [EvalBundle.Item] = []
            if task.fewShot > 0 {
                var rng = PythonRandom(seed: 1234 + i)
                let others = (0..<items.count).filter { $0 != i }
                shots = rng.sample(others, task.fewShot).map { items[$0] }
            }
            rows += try tokenize(item, prompts: prompts(item, shots: shots, delimiter: task.delimiter), example: i, tokenizer: tokenizer)
        }
        // crop rows the rotary tables cannot hold to their last positions (upstream's rule for short-context models)
        let limit = model.maxPositions
        var cropped = 0
        for r in rows.indices where rows[r].tokens.count > limit {
            let cut = rows[r].tokens.count - limit
            rows[r].tokens.removeFirst(cut)
            rows[r].start = max(1, rows[r].start - cut)
            rows[r].end -= cut
            cropped += 1
        }
        let scores = scoreSharingPrefixes(model: model, rows: rows, pad: Int32(tokenizer.bosID), tokensPerForward: tokensPerForward,
                                          progress: progress)

        // per example: MC / schema take the option with the lowest mean loss, LM needs every argmax to match
        var details: [ExampleResult] = []
        var losses = [[Double]](repeating: [], count: items.count)
        var lmMatched = [Int](repeating: 0, count: items.count)
        var lmCorrect = [Bool](repeating: true, count: items.count)
        for (r, row) in rows.enumerated() {
            losses[row.example].append(scores[r].meanLoss)
            lmMatched[row.example] += scores[r].matched
            if scores[r].matched != row.end - row.start { lmCorrect[row.example] = false }
        }
        var correctCount = 0
        for i in mine {
            let item = items[i]
            let result: ExampleResult
            switch item {
            case .multipleChoice(_, _, let gold), .schema(_, _, let gold):
                var best = 0
                for o in losses[i].indices where losses[i][o] < losses[i][best] { best = o }
                result = ExampleResult(index: i, correct: best == gold, chosen: best, meanLosses: losses[i], matched: nil)
            case .languageModeling:
                result = ExampleResult(index: i, correct: lmCorrect[i], chosen: nil, meanLosses: nil, matched: lmMatched[i])
            }
            if result.correct { correctCount += 1 }
            details.append(result)
        }
        let totals = comm.sum([Double(correctCount), Double(cropped)])
        let accuracy = totals[0] / Double(items.count)
        let rb = 0.01 * task.randomBaseline
        return TaskResult(label: task.label, accuracy: accuracy, centered: (accuracy - rb) / (1 - rb), examples: items.count,
                          seconds: comm.max(Date().timeIntervalSince(started)), cropped: Int(totals[1]), details: details)
    }

    struct RowScore { var meanLoss: Double; var matched: Int }

    /// The options of one example share everything up to where they differ (the few-shot examples, the question):
    /// that prefix runs once into a KV cache, and only each option's remaining tokens run per option. Examples
    /// with one row (language modelling) or a short shared prefix go through the packed path below.
    /// Rows are right-padded with `pad` (BOS, as upstream); under causal attention padding never reaches a scored position.
    static func scoreSharingPrefixes(model: GPT, rows: [Row], pad: Int32, tokensPerForward: Int, minimumShared: Int = 16,
                                     progress: (Int, Int) -> Void) -> [RowScore] {
        var byExample: [Int: [Int]] = [:]
        for (r, row) in rows.enumerated() { byExample[row.example, default: []].append(r) }
        var out = [RowScore](repeating: RowScore(meanLoss: 0, matched: 0), count: rows.count)
        var packed: [Int] = []
        var done = 0
        for example in byExample.keys.sorted() {
            let members = byExample[example]!
            // shared = tokens every option has in common, stopping before the first scored prediction
            var shared = members.map { rows[$0].start - 1 }.min()!
            for r in members.dropFirst() {
                var i = 0
                while i < shared && rows[r].tokens[i] == rows[members[0]].tokens[i] { i += 1 }
                shared = i
            }
            let longest = members.map { rows[$0].tokens.count }.max()!
            guard members.count > 1, shared >= minimumShared else { packed += members; continue }
            let prefix = rows[members[0]].tokens[..<shared].map { Int32($0) }
            let one = KVCache(for: model, batch: 1, capacity: shared)
            _ = Tensor.withoutGrad { model.hiddenStates(prefix, batch: 1, time: shared, cache: one) }
            let S = longest - shared
            let cache = one.broadcast(batch: members.count, capacity: longest)
            var sub: [Row] = []
            var idx = [Int32](repeating: pad, count: members.count * S)
            for (b, r) in members.enumerated() {
                var row = rows[r]
                for (t, v) in row.tokens[shared...].enumerated() { idx[b * S + t] = Int32(v) }
                row.tokens = Array(row.tokens[shared...]); row.start -= shared; row.end -= shared
                sub.append(row)
            }
            let hidden = Tensor.withoutGrad { model.hiddenStates(idx, batch: members.count, time: S, cache: cache) }
            // scored positions are >= start - 1 >= shared, so every one of them is in this pass
            let scores = scoreHidden(model: model, hidden: hidden, rows: sub, time: S)
            for (b, r) in members.enumerated() { out[r] = scores[b] }
            done += members.count
            progress(done, rows.count)
        }
        if !packed.isEmpty {
            let sub = packed.map { rows[$0] }
            let scores = score(model: model, rows: sub, pad: pad, tokensPerForward: tokensPerForward) { d, _ in progress(done + d, rows.count) }
            for (i, r) in packed.enumerated() { out[r] = scores[i] }
        }
        return out
    }

    /// Mean loss and argmax matches of each row from the final hidden states [rows, time, C] of one forward.
    static func scoreHidden(model: GPT, hidden: Tensor, rows: [Row], time T: Int) -> [RowScore] {
        let vocab = model.config.vocab_size, C = model.config.n_embd
        var positions: [Int] = [], targets: [Int32] = []
        for (b, row) in rows.enumerated() {
            for p in (row.start - 1)..<(row.end - 1) { positions.append(b * T + p); targets.append(Int32(row.tokens[p + 1])) }
        }
        precondition(hidden.shape.last == C)
        let picked = gatherRows(hidden, positions)
        let logits = LMHead.logits(picked, model.lm_head, vocab: vocab, softcap: GPT.softcap).to(.cpu)
        var out: [RowScore] = []
        var k = 0
        for row in rows {
            let n = row.end - row.start
            var sum = 0.0, matched = 0
            for _ in 0..<n {
                let (loss, argmax) = crossEntropyAndArgmax(logits.data + k * vocab, vocab, Int(targets[k]))
                sum += loss
                if argmax == Int(targets[k]) { matched += 1 }
                k += 1
            }
            out.append(RowScore(meanLoss: n > 0 ? sum / Double(n) : .nan, matched: matched))
        }
        return out
    }

    /// Forward passes over length-sorted groups of rows; the head runs only at each row's scored positions.
    static func score(model: GPT, rows: [Row], pad: Int32, tokensPerForward: Int, progress: (Int, Int) -> Void) -> [RowScore] {
        let order = rows.indices.sorted { rows[$0].tokens.count < rows[$1].tokens.count }
        var out = [RowScore](repeating: RowScore(meanLoss: 0, matched: 0), count: rows.count)
        var g = 0
        var done = 0
        while g < order.count {
            // the group: rows of similar length, padded to the longest, about tokensPerForward tokens in all
            var group = [order[g]]
            var T = rows[order[g]].tokens.count
            while g + group.count < order.count {
                let nextT = rows[order[g + group.count]].tokens.count
                if (group.count + 1) * nextT > tokensPerForward { break }
                group.append(order[g + group.count]); T = nextT
            }
            g += group.count
            var idx = [Int32](repeating: pad, count: group.count * T)
            for (b, r) in group.enumerated() {
                for (t, v) in rows[r].tokens.enumerated() { idx[b * T + t] = Int32(v) }
            }
            let hidden = Tensor.withoutGrad { model.hiddenStates(idx, batch: group.count, time: T) }
            // position p predicts token p + 1: the span [start, end) is scored at [start - 1, end - 1)
            let scores = scoreHidden(model: model, hidden: hidden, rows: group.map { rows[$0] }, time: T)
            for (b, r) in group.enumerated() { out[r] = scores[b] }
            done += group.count
            progress(done, rows.count)
        }
        return out
    }

    /// Cross-entropy of one row of logits against `target` (log-sum-exp in Double), and the row's first argmax.
    @inline(__always)
    static func crossEntropyAndArgmax(_ row: UnsafeMutablePointer<Float>, _ n: Int, _ target: Int) -> (Double, Int) {
        var maxValue = row[0], argmax = 0
        for j in 1..<n where row[j] > maxValue { maxValue = row[j]; argmax = j }
        var s = 0.0  // summed in Double: 32k Float terms would lose ~1e-5 of the loss
        for j in 0..<n { s += Double(expf(row[j] - maxValue)) }
        return (log(s) + Double(maxValue) - Double(row[target]), argmax)
    }

    /// CORE: the mean of the centred accuracies.
    public static func core(_ results: [TaskResult]) -> Double {
        results.isEmpty ? .nan : results.map(\.centered).reduce(0, +) / Double(results.count)
    }

    /// Upstream's CSV: header `Task, Accuracy, Centered`, labels left-justified to 35 characters, numbers to 10
    /// with 6 decimals, then a `CORE` row with an empty accuracy.
    public static func csv(_ results: [TaskResult], core: Double) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        var out = "\(pad("Task", 35)), \(pad("Accuracy", 10)), \(pad("Centered", 10))\n"
        for r in results {
            out += "\(pad(r.label, 35)), \(pad(String(format: "%.6f", r.accuracy), 10)), \(pad(String(format: "%.6f", r.centered), 10))\n"
        }
        out += "\(pad("CORE", 35)), \(pad("", 10)), \(pad(String(format: "%.6f", core), 10))\n"
        return out
    }
}
