import Foundation

/// The CORE task bundle, in upstream's layout (DCLM's eval bundle):
///   core.yaml              `icl_tasks:` a list of {label, icl_task_type, dataset_uri, num_fewshot: [k], continuation_delimiter?}
///   eval_meta_data.csv     one row per task; columns `Eval Task` and `Random baseline` (in percent) are read
///   eval_data/<dataset_uri> JSONL, one item per line, in the task type's format:
///       multiple_choice   {"query": "...", "choices": ["...", ...], "gold": i}
///       schema            {"context_options": ["...", ...], "continuation": "...", "gold": i}
///       language_modeling {"context": "...", "continuation": "..."}
/// Upstream's download and our offline conversion (`nanochat dataset tasks`) both produce it; this reader scores
/// whatever tasks a directory's core.yaml lists.
public struct EvalBundle {
    public enum TaskType: String, Sendable { case multipleChoice = "multiple_choice", schema, languageModeling = "language_modeling" }

    public struct Task: Sendable {
        public var label: String
        public var type: TaskType
        public var datasetURI: String
        public var fewShot: Int
        public var delimiter: String
        public var randomBaseline: Double  // percent, from eval_meta_data.csv
    }

    public enum Item: Equatable, Sendable {
        case multipleChoice(query: String, choices: [String], gold: Int)
        case schema(contextOptions: [String], continuation: String, gold: Int)
        case languageModeling(context: String, continuation: String)
    }

    public let directory: URL
    public let tasks: [Task]
    /// What made this bundle (the `source` key of core.yaml, when the offline conversion wrote it), for the report.
    public let source: String?
    /// Tasks the bundle's maker could not provide (the `missing` key of core.yaml), so CORE can say "20 of 22".
    public let missing: [String]

    public static var defaultDirectory: URL { BaseDir.url.appendingPathComponent("eval_bundle", isDirectory: true) }

    public init(directory: URL) throws {
        self.directory = directory
        let yamlURL = directory.appendingPathComponent("core.yaml")
        guard FileManager.default.fileExists(atPath: yamlURL.path) else {
            throw NanoChatError("no CORE task bundle at \(directory.path) (core.yaml missing): run `nanochat dataset tasks` "
                                + "(offline: the tasks whose sources it finds, 20 of the 22 at most) or `nanochat dataset tasks --online` (upstream's bundle), or pass --eval-bundle DIR")
        }
        let yaml = try MiniYAML.parse(String(decoding: try FileIO.read(yamlURL, what: "CORE task list"), as: UTF8.self), file: yamlURL.path)
        let baselines = try Self.readBaselines(directory.appendingPathComponent("eval_meta_data.csv"))
        guard case .list(let entries)? = yaml["icl_tasks"] else {
            throw NanoChatError("\(yamlURL.path): expected a list under `icl_tasks:`")
        }
        var tasks: [Task] = []
        for (n, entry) in entries.enumerated() {
            guard case .map(let m) = entry else { throw NanoChatError("\(yamlURL.path): icl_tasks item \(n + 1) is not a mapping") }
            func string(_ key: String) throws -> String {
                guard case .scalar(let s)? = m[key] else { throw NanoChatError("\(yamlURL.path): icl_tasks item \(n + 1) has no `\(key)`") }
                return s
            }
            let label = try string("label")
            guard let type = TaskType(rawValue: try string("icl_task_type")) else {
                throw NanoChatError("\(yamlURL.path): task \(label): icl_task_type must be multiple_choice, schema or language_modeling")
            }
            var shots = 0
            switch m["num_fewshot"] {
            case .list(let l)?:
                guard l.count == 1, case .scalar(let s) = l[0], let k = Int(s), k >= 0 else {
                    throw NanoChatError("\(yamlURL.path): task \(label): num_fewshot must be a one-element list like [10]")
                }
                shots = k
            case .scalar(let s)?:
                guard let k = Int(s), k >= 0 else { throw NanoChatError("\(yamlURL.path): task \(label): num_fewshot is not a number") }
                shots = k
            default: break
            }
            var delimiter = " "
            if case .scalar(let d)? = m["continuation_delimiter"] { delimiter = d }
            guard let rb = baselines[label] else {
                throw NanoChatError("\(directory.appendingPathComponent("eval_meta_data.csv").path): no `Random baseline` for task \(label)")
            }
            tasks.append(Task(label: label, type: type, datasetURI: try string("dataset_uri"), fewShot: shots,
                              delimiter: delimiter, randomBaseline: rb))
        }
        guard !tasks.isEmpty else { throw NanoChatError("\(yamlURL.path): icl_tasks lists no task") }
        self.tasks = tasks
        if case .scalar(let s)? = yaml["source"] { source = s } else { source = nil }
        if case .list(let l)? = yaml["missing"] {
            missing = l.compactMap { if case .scalar(let s) = $0 { return s } else { return nil } }
        } else { missing = [] }
    }

    static func readBaselines(_ url: URL) throws -> [String: Double] {
        let rows = try CSV.parse(String(decoding: try FileIO.read(url, what: "CORE metadata"), as: UTF8.self))
        guard let header = rows.first, let taskCol = header.firstIndex(of: "Eval Task"),
              let rbCol = header.firstIndex(of: "Random baseline") else {
            throw NanoChatError("\(url.path): expected columns `Eval Task` and `Random baseline` in the header")
        }
        var out: [String: Double] = [:]
        for (i, row) in rows.dropFirst().enumerated() where row.count > max(taskCol, rbCol) && !row[taskCol].isEmpty {
            guard let v = Double(row[rbCol].trimmingCharacters(in: .whitespaces)) else {
                throw NanoChatError("\(url.path) line \(i + 2): `Random baseline` is not a number: \(row[rbCol])")
            }
            out[row[taskCol]] = v
        }
        return out
    }

    /// A task's items, checked: every line must parse and fit the task type (a gold index inside the choices,
    /// at least two choices), so that a broken file stops with its name and line instead of scoring wrong.
    public func items(for task: Task) throws -> [Item] {
        let url = directory.appendingPathComponent("eval_data").appendingPathComponent(task.datasetURI)
        let data = try FileIO.read(url, what: "CORE task \(task.label) data")
        var items: [Item] = []
        try forEachLine(of: data) { line, n in
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { return }
            func fail(_ why: String) -> NanoChatError { NanoChatError("\(url.path) line \(n): \(why)") }
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw fail("not a JSON object")
            }
            switch task.type {
            case .multipleChoice:
                guard let q = obj["query"] as? String else { throw fail("a multiple_choice item needs a string `query`") }
                guard let c = obj["choices"] as? [String], c.count >= 2 else { throw fail("a multiple_choice item needs `choices`, a list of at least two strings") }
                guard let g = obj["gold"] as? Int else { throw fail("a multiple_choice item needs an integer `gold`") }
                guard c.indices.contains(g) else { throw fail("gold index \(g) is out of range for \(c.count) choices") }
                items.append(.multipleChoice(query: q, choices: c, gold: g))
            case .schema:
                guard let o = obj["context_options"] as? [String], o.count >= 2 else { throw fail("a schema item needs `context_options`, a list of at least two strings") }
                guard let c = obj["continuation"] as? String else { throw fail("a schema item needs a string `continuation`") }
                guard let g = obj["gold"] as? Int else { throw fail("a schema item needs an integer `gold`") }
                guard o.indices.contains(g) else { throw fail("gold index \(g) is out of range for \(o.count) context options") }
                items.append(.schema(contextOptions: o, continuation: c, gold: g))
            case .languageModeling:
                guard let ctx = obj["context"] as? String, let c = obj["continuation"] as? String else {
                    throw fail("a language_modeling item needs string `context` and `continuation`")
                }
                items.append(.languageModeling(context: ctx, continuation: c))
            }
        }
        guard !items.isEmpty else { throw NanoChatError("\(url.path): no items") }
        if task.fewShot > 0 && task.fewShot >= items.count {
            throw NanoChatError("\(url.path): \(task.fewShot)-shot needs more than \(task.fewShot) items, found \(items.count)")
        }
        return items
    }

    /// Writes a bundle: core.yaml, eval_meta_data.csv and the JSONL files (the offline conversion and tests use it).
    /// Returns each task's item count and the sha256 of its JSONL file (the fingerprint `dataset tasks` compares
    /// with the reference conversion).
    @discardableResult
    public static func write(tasks: [(task: Task, items: [Item])], source: String, missing: [String], to directory: URL) throws -> [String: (count: Int, sha256: String)] {
        var fingerprints: [String: (count: Int, sha256: String)] = [:]
        var yaml = "# CORE tasks in upstream's eval-bundle layout, written by `nanochat dataset tasks`.\n"
        yaml += "source: \(MiniYAML.quote(source))\n"
        if !missing.isEmpty { yaml += "missing: [\(missing.joined(separator: ", "))]\n" }
        yaml += "icl_tasks:\n"
        var csv = "Eval Task,Task Category,Task Type,#shots,Random baseline,Centered Metric?,Description\n"
        for (task, items) in tasks {
            yaml += "-\n  label: \(task.label)\n  dataset_uri: \(task.datasetURI)\n  num_fewshot: [\(task.fewShot)]\n"
            yaml += "  icl_task_type: \(task.type.rawValue)\n"
            if task.delimiter != " " { yaml += "  continuation_delimiter: \(MiniYAML.quote(task.delimiter))\n" }
            csv += "\(task.label),,\(task.type.rawValue),\(task.fewShot),\(task.randomBaseline),,\n"
            var out = Data()
            for item in items {
                let obj: [String: Any]
                switch item {
                case .multipleChoice(let q, let c, let g): obj = ["query": q, "choices": c, "gold": g]
                case .schema(let o, let c, let g): obj = ["context_options": o, "continuation": c, "gold": g]
                case .languageModeling(let ctx, let c): obj = ["context": ctx, "continuation": c]
                }
                out += try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])
                out.append(0x0A)
            }
            try FileIO.writeAtomically(out, to: directory.appendingPathComponent("eval_data").appendingPathComponent(task.datasetURI))
            fingerprints[task.label] = (items.count, SHA256.hex(out))
        }
        try FileIO.writeAtomically(csv, to: directory.appendingPathComponent("eval_meta_data.csv"))
        // core.yaml last: its presence says the bundle is complete
        try FileIO.writeAtomically(yaml, to: directory.appendingPathComponent("core.yaml"))
        return fingerprints
    }
}

/// The YAML that core.yaml uses: nested mappings and lists (block `-` items, with the first key on the dash line or
/// below it), flow lists like `[10]`, plain, single- and double-quoted scalars, `#` comments.
enum MiniYAML {
    indirect enum Node: Equatable { case scalar(String), list([Node]), map([String: Node]) }

    static func parse(_ text: String, file: String) throws -> [String: Node] {
        var lines: [(indent: Int, text: String, number: Int)] = []
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = stripComment(String(raw)).replacingOccurrences(of: "\t", with: "  ")
            let body = line.drop(while: { $0 == " " })
            if body.trimmingCharacters(in: .whitespaces).isEmpty || body.hasPrefix("---") { continue }
            lines.append((line.count - body.count, String(body).trimmingCharacters(in: .whitespaces), i + 1))
        }
        var pos = 0
        func fail(_ why: String) -> NanoChatError {
            NanoChatError("\(file) line \(pos < lines.count ? lines[pos].number : lines.last?.number ?? 0): \(why)")
        }
        func parseBlock(indent: Int) throws -> Node {
            guard pos < lines.count else { return .scalar("") }
            return lines[pos].text.hasPrefix("-") ? try parseList(indent: lines[pos].indent) : try parseMap(indent: lines[pos].indent)
        }
        func parseList(indent: Int) throws -> Node {
            var items: [Node] = []
            while pos < lines.count, lines[pos].indent == indent, lines[pos].text.hasPrefix("-") {
                let rest = lines[pos].text.dropFirst().trimmingCharacters(in: .whitespaces)
                if rest.isEmpty {
                    pos += 1
                    items.append(pos < lines.count && lines[pos].indent > indent ? try parseBlock(indent: lines[pos].indent) : .scalar(""))
                } else if keyColon(rest) != nil {
                    // "- key: value" starts a mapping whose other keys sit at the key's column
                    let keyIndent = indent + (lines[pos].text.count - rest.count)
                    lines[pos] = (keyIndent, rest, lines[pos].number)
                    items.append(try parseMap(indent: keyIndent))
                } else {
                    items.append(try scalarOrFlow(rest))
                    pos += 1
                }
            }
            return .list(items)
        }
        func parseMap(indent: Int) throws -> Node {
            var map: [String: Node] = [:]
            while pos < lines.count, lines[pos].indent == indent, !lines[pos].text.hasPrefix("- "), lines[pos].text != "-" {
                let t = lines[pos].text
                guard let colon = keyColon(t) else { throw fail("expected `key: value`, found \(t)") }
                let key = unquote(String(t[..<colon]).trimmingCharacters(in: .whitespaces))
                let value = String(t[t.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
                pos += 1
                if value.isEmpty {
                    if pos < lines.count, lines[pos].indent > indent || (lines[pos].indent == indent && lines[pos].text.hasPrefix("-")) {
                        map[key] = try parseBlock(indent: lines[pos].indent)
                    } else { map[key] = .scalar("") }
                } else {
                    map[key] = try scalarOrFlow(value)
                }
            }
            return .map(map)
        }
        func scalarOrFlow(_ v: String) throws -> Node {
            if v.hasPrefix("[") {
                guard v.hasSuffix("]") else { throw fail("unterminated flow list \(v)") }
                let inner = v.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                if inner.isEmpty { return .list([]) }
                return .list(splitFlow(inner).map { .scalar(unquote($0.trimmingCharacters(in: .whitespaces))) })
            }
            return .scalar(unquote(v))
        }
        let root = try parseBlock(indent: 0)
        guard case .map(let m) = root else { throw NanoChatError("\(file): expected a mapping at the top level") }
        return m
    }

    /// The colon that ends a key (outside quotes, followed by a space or the end of the line).
    static func keyColon(_ s: String) -> String.Index? {
        var quote: Character? = nil
        var i = s.startIndex
        while i < s.endIndex {
            let c = s[i]
            if let q = quote { if c == q { quote = nil } } else if c == "\"" || c == "'" { if i == s.startIndex { quote = c } }
            else if c == ":" {
                let next = s.index(after: i)
                if next == s.endIndex || s[next] == " " { return i }
            }
            i = s.index(after: i)
        }
        return nil
    }

    static func stripComment(_ line: String) -> String {
        var quote: Character? = nil
        var previous: Character = " "
        for (offset, c) in line.enumerated() {
            if let q = quote {
                if c == q && previous != "\\" { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "#" && previous == " " {
                return String(line.prefix(offset))
            }
            previous = c
        }
        return line
    }

    static func splitFlow(_ s: String) -> [String] {
        var parts: [String] = [], current = "", quote: Character? = nil
        for c in s {
            if let q = quote { current.append(c); if c == q { quote = nil } }
            else if c == "\"" || c == "'" { quote = c; current.append(c) }
            else if c == "," { parts.append(current); current = "" }
            else { current.append(c) }
        }
        parts.append(current)
        return parts
    }

    static func unquote(_ v: String) -> String {
        if v.count >= 2, v.hasPrefix("'"), v.hasSuffix("'") {
            return String(v.dropFirst().dropLast()).replacingOccurrences(of: "''", with: "'")
        }
        guard v.count >= 2, v.hasPrefix("\""), v.hasSuffix("\"") else { return v }
        var out = "", escaped = false
        for c in v.dropFirst().dropLast() {
            if escaped {
                switch c {
                case "n": out.append("\n")
                case "t": out.append("\t")
                case "r": out.append("\r")
                case "0": out.append("\0")
                default: out.append(c)
                }
                escaped = false
            } else if c == "\\" { escaped = true } else { out.append(c) }
        }
        return out
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for c in s {
            switch c {
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            default: out.append(c)
            }
        }
        return out + "\""
    }
}

/// RFC 4180 CSV: quoted fields may hold commas, doubled quotes and newlines.
enum CSV {
    static func parse(_ text: String) throws -> [[String]] {
        var rows: [[String]] = [], row: [String] = [], field = ""
        var inQuotes = false
        var chars = Array(text.unicodeScalars)[...]
        while let c = chars.popFirst() {
            if inQuotes {
                if c == "\"" {
                    if chars.first == "\"" { field.unicodeScalars.append("\""); chars.removeFirst() } else { inQuotes = false }
                } else { field.unicodeScalars.append(c) }
            } else if c == "\"" { inQuotes = true }
            else if c == "," { row.append(field); field = "" }
            else if c == "\n" || c == "\r" {
                if c == "\r", chars.first == "\n" { chars.removeFirst() }
                row.append(field); field = ""
                if !(row.count == 1 && row[0].isEmpty) { rows.append(row) }
                row = []
            } else { field.unicodeScalars.append(c) }
        }
        if inQuotes { throw NanoChatError("unterminated quoted field") }
        if !field.isEmpty || !row.isEmpty { row.append(field); rows.append(row) }
        return rows
    }
}
