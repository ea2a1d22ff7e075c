import Foundation

/// A task of training conversations (upstream's `Task` for SFT and mid-training): a name, a size, and the i-th
/// conversation, made on demand so that 200,000 SimpleSpelling rows cost nothing until they are read.
public struct ConversationTask {
    public let name: String
    public let count: Int
    /// Rows of the source that broke the conversation format and were left out (counted, not fatal).
    public let skipped: Int
    let make: (Int) -> Conversation

    public init(name: String, count: Int, skipped: Int = 0, make: @escaping (Int) -> Conversation) {
        self.name = name; self.count = count; self.skipped = skipped; self.make = make
    }

    public subscript(i: Int) -> Conversation { make(i) }

    /// The same task listed `times` times (upstream oversamples a task by listing it again in the mixture).
    public func repeated(_ times: Int) -> [ConversationTask] { Array(repeating: self, count: max(0, times)) }

    /// The first `n` rows (all when n < 0).
    public func prefix(_ n: Int) -> ConversationTask {
        n < 0 || n >= count ? self : ConversationTask(name: name, count: n, skipped: skipped, make: make)
    }
}

/// Upstream's TaskMixture: every (task, row) pair in order, shuffled once with Python's `random.Random(42)`, so
/// each step sees a blend of the tasks; a task listed twice is seen twice as often.
public struct TaskMixture {
    public let tasks: [ConversationTask]
    let index: [(task: Int32, row: Int32)]

    public init(_ tasks: [ConversationTask]) throws {
        self.tasks = tasks
        var pairs: [(task: Int32, row: Int32)] = []
        for (t, task) in tasks.enumerated() { for r in 0..<task.count { pairs.append((Int32(t), Int32(r))) } }
        guard !pairs.isEmpty else {
            throw NanoChatError("the training mixture is empty (tasks: \(tasks.map(\.name).joined(separator: ", "))); run `nanochat dataset tasks` to write the conversation data")
        }
        var rng = PythonRandom(seed: 42)
        rng.shuffle(&pairs)
        index = pairs
    }

    public var count: Int { index.count }
    public subscript(i: Int) -> Conversation { let p = index[i]; return tasks[Int(p.task)][Int(p.row)] }

    /// "name rows (xN)" per distinct task, for the console and the report.
    public var summary: String {
        var order: [String] = [], rows: [String: Int] = [:], times: [String: Int] = [:], skipped: [String: Int] = [:]
        for t in tasks {
            if rows[t.name] == nil { order.append(t.name) }
            rows[t.name] = t.count; times[t.name, default: 0] += 1; skipped[t.name] = t.skipped
        }
        return order.map { n in
            "\(n) \(rows[n]!)" + (times[n]! > 1 ? " x\(times[n]!)" : "") + (skipped[n]! > 0 ? " (\(skipped[n]!) skipped)" : "")
        }.joined(separator: ", ") + "; \(count) conversations"
    }
}

/// The conversation tasks, from `<base>/task_data` (written by `nanochat dataset tasks`), all in one format.
public enum ConversationTasks {
    /// Checks a conversation's shape: an optional leading system message, then user, assistant, user, ...
    /// (at least one exchange), every content non-empty; a trailing user message is dropped (it teaches nothing).
    /// Returns nil for a conversation that breaks the format.
    public static func validated(_ messages: [ChatMessage]) -> Conversation? {
        var m = messages
        var start = 0
        if m.first?.role == "system" { start = 1 }
        if m.count > start, m.last?.role == "user", (m.count - start) % 2 == 1 { m.removeLast() }
        guard m.count - start >= 2 else { return nil }
        for (i, message) in m.enumerated() {
            if i < start { guard case .text(let s) = message.content, !s.isEmpty else { return nil }; continue }
            guard message.role == ((i - start) % 2 == 0 ? "user" : "assistant") else { return nil }
            switch message.content {
            case .text(let s): if s.isEmpty { return nil }
            case .parts(let p): if p.isEmpty || message.role == "user" { return nil }
            }
        }
        return Conversation(messages: m)
    }

    /// General chat rows (ShareGPT, chatterbot, SmolTalk) from the task format's `messages`; rows that break the
    /// format are skipped and counted.
    public static func chat(_ task: String, split: String = "train", root: URL = TaskData.directory) throws -> ConversationTask {
        var convs: [Conversation] = [], skipped = 0
        for e in try TaskData.read(task: task, split: split, root: root) {
            let messages = (e.messages ?? []).map { ChatMessage(role: $0["role"] ?? "", $0["content"] ?? "") }
            if let c = validated(messages) { convs.append(c) } else { skipped += 1 }
        }
        return ConversationTask(name: "\(task)/\(split)", count: convs.count, skipped: skipped) { convs[$0] }
    }

    /// Multiple-choice rows rendered as upstream renders ARC and MMLU (`renderMC`, the answer is the bare letter).
    public static func multipleChoice(_ task: String, split: String = "train", root: URL = TaskData.directory) throws -> ConversationTask {
        var convs: [Conversation] = [], skipped = 0
        for e in try TaskData.read(task: task, split: split, root: root) {
            guard let q = e.question, let c = e.choices, let a = e.answer, c.indices.contains(a), c.count <= 26, !q.isEmpty else {
                skipped += 1; continue
            }
            let letters = c.indices.map { String(UnicodeScalar(UInt8(65 + $0))) }
            convs.append(Conversation(messages: [ChatMessage(role: "user", ChatTasks.renderMC(question: q, letters: letters, choices: c)),
                                                 ChatMessage(role: "assistant", letters[a])]))
        }
        return ConversationTask(name: "\(task)/\(split)", count: convs.count, skipped: skipped) { convs[$0] }
    }

    /// GSM8K-format rows (GSM8K itself, or the generated arithmetic problems): the worked solution's calculator
    /// spans become python calls and their outputs.
    public static func gsm8k(_ task: String, split: String, root: URL = TaskData.directory) throws -> ConversationTask {
        var convs: [Conversation] = [], skipped = 0
        for e in try TaskData.read(task: task, split: split, root: root) {
            guard let q = e.question, let s = e.solution, ChatTasks.extractAnswer(s) != nil else { skipped += 1; continue }
            convs.append(Conversation(messages: [ChatMessage(role: "user", q),
                                                 ChatMessage(role: "assistant", content: .parts(ChatTasks.gsm8kParts(s)))]))
        }
        return ConversationTask(name: "\(task)/\(split)", count: convs.count, skipped: skipped) { convs[$0] }
    }

    public static func spellingBee(size: Int, split: String = "train", words: [String]) -> ConversationTask {
        ConversationTask(name: "SpellingBee", count: size) { SpellingBee.problem(index: $0, split: split, words: words).conversation }
    }

    /// Upstream's SimpleSpelling: `Spell the word: w` -> `w:l,e,t,t,e,r,s`, the word drawn with `random.Random(i)`
    /// (test: 10,000,000 + i) from the word list shuffled once with `random.Random(42)`.
    public static func simpleSpelling(size: Int, split: String = "train", words: [String]) -> ConversationTask {
        var shuffled = words
        var rng = PythonRandom(seed: 42)
        rng.shuffle(&shuffled)
        return ConversationTask(name: "SimpleSpelling", count: size) { i in
            var r = PythonRandom(seed: split == "train" ? i : SpellingBee.testSeedOffset + i)
            let word = r.choice(shuffled)
            return Conversation(messages: [ChatMessage(role: "user", "Spell the word: \(word)"),
                                           ChatMessage(role: "assistant", "\(word):\(word.map(String.init).joined(separator: ","))")])
        }
    }

    /// Upstream's CustomJSON: one JSON array of {role, content} messages per line, user first, alternating,
    /// string contents. A line that breaks the format is refused with its line number.
    public static func customJSON(_ url: URL, name: String? = nil) throws -> ConversationTask {
        let data = try FileIO.read(url, what: "conversations file (JSON Lines, one array of {role, content} per line)")
        var convs: [Conversation] = []
        try forEachLine(of: data) { line, n in
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
            guard let messages = try? JSONDecoder().decode([ChatMessage].self, from: Data(line)),
                  messages.allSatisfy({ if case .text = $0.content { return true }; return false }),
                  messages.first?.role == "user", messages.count % 2 == 0, let c = validated(messages) else {
                throw NanoChatError("\(url.path) line \(n): expected a JSON array of at least 2 messages {\"role\", \"content\"} alternating user, assistant with string contents")
            }
            convs.append(c)
        }
        return ConversationTask(name: name ?? url.deletingPathExtension().lastPathComponent, count: convs.count) { convs[$0] }
    }

    /// The identity conversations `nanochat dataset tasks` writes (see `IdentityConversations`).
    public static var identityFile: URL { BaseDir.url.appendingPathComponent("identity_conversations.jsonl") }

    static func exists(_ task: String, _ split: String, _ root: URL) -> Bool {
        FileManager.default.fileExists(atPath: root.appendingPathComponent("\(task)/\(split).jsonl").path)
    }

    /// General chat for training: SmolTalk when it was downloaded (upstream), else the offline ShareGPT and
    /// chatterbot conversations.
    public static func generalChat(split: String, root: URL) throws -> [ConversationTask] {
        if exists("smoltalk", split, root) { return [try chat("smoltalk", split: split, root: root)] }
        guard split == "train" else { return [] }
        return try ["sharegpt", "chatterbot"].filter { exists($0, "train", root) }.map { try chat($0, root: root) }
    }

    /// Multiple choice for training: MMLU auxiliary_train when downloaded (upstream), else the offline train splits
    /// of the tasks MMLU's auxiliary_train is itself made of (ARC, OpenBookQA) plus CommonsenseQA.
    public static func multipleChoiceTrain(root: URL) throws -> [ConversationTask] {
        if exists("mmlu", "auxiliary_train", root) { return [try multipleChoice("mmlu", split: "auxiliary_train", root: root)] }
        return try ["arc_easy", "arc_challenge", "openbookqa", "csqa"].filter { exists($0, "train", root) }
            .map { try multipleChoice($0, root: root) }
    }

    /// Math word problems for training: GSM8K train when downloaded (upstream), else the generated arithmetic
    /// problems (GSM8K's test split is kept for evaluation either way).
    public static func mathTrain(root: URL) throws -> ConversationTask {
        exists("gsm8k", "train", root) ? try gsm8k("gsm8k", split: "train", root: root) : try gsm8k("arithmetic", split: "train", root: root)
    }
}
