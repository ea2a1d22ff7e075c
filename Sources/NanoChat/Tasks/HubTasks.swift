import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The online path for task data (upstream's sources): ask the HuggingFace datasets API for a split's parquet files,
/// download them to `task_data/<owner>--<name>/<subset>/<split>/NNNNN.parquet` (verified, renamed into place,
/// `manifest.json` written last), then convert the rows into the same task format the offline path writes.
public enum HubTasks {
    public struct Source {
        public var task: String, repo: String, subset: String, splits: [String]
        public var convert: ([String: ParquetValue], Int) -> TaskExample?
    }

    /// `--hf-url`, else `NANOCHAT_HF_URL`, else the public hub.
    public static func baseURL(_ flag: String?) -> String {
        flag ?? ProcessInfo.processInfo.environment["NANOCHAT_HF_URL"] ?? "https://huggingface.co"
    }

    static func str(_ v: ParquetValue?) -> String? {
        if case .bytes(let b)? = v { return String(decoding: b, as: UTF8.self) }
        return nil
    }
    static func strings(_ v: ParquetValue?) -> [String]? {
        if case .list(let items)? = v { return items.map { str($0) ?? "" } }
        return nil
    }

    public static let sources: [Source] = [
        Source(task: "arc_easy", repo: "allenai/ai2_arc", subset: "ARC-Easy", splits: ["train", "validation", "test"], convert: arc),
        Source(task: "arc_challenge", repo: "allenai/ai2_arc", subset: "ARC-Challenge", splits: ["train", "validation", "test"], convert: arc),
        Source(task: "mmlu", repo: "cais/mmlu", subset: "all", splits: ["auxiliary_train", "validation", "dev", "test"], convert: mmlu),
        Source(task: "gsm8k", repo: "openai/gsm8k", subset: "main", splits: ["train", "test"], convert: gsm8k),
        Source(task: "humaneval", repo: "openai/openai_humaneval", subset: "openai_humaneval", splits: ["test"], convert: humaneval),
        Source(task: "hellaswag", repo: "Rowan/hellaswag", subset: "default", splits: ["train", "validation"], convert: hellaswag),
        Source(task: "smoltalk", repo: "HuggingFaceTB/smol-smoltalk", subset: "default", splits: ["train", "test"], convert: chat),
    ]

    /// ARC: choices {text, label}, answerKey is one of the labels.
    public static func arc(_ r: [String: ParquetValue], _ i: Int) -> TaskExample? {
        guard case .group(let c)? = r["choices"], let texts = strings(c["text"]), let labels = strings(c["label"]),
              let key = str(r["answerKey"]), let answer = labels.firstIndex(of: key) else { return nil }
        var e = TaskExample(id: str(r["id"]) ?? "arc-\(i)", kind: "mc")
        e.question = str(r["question"])
        e.choices = texts
        e.answer = answer
        return e
    }

    public static func mmlu(_ r: [String: ParquetValue], _ i: Int) -> TaskExample? {
        guard case .int(let a)? = r["answer"], let choices = strings(r["choices"]) else { return nil }
        var e = TaskExample(id: "mmlu-\(i)", kind: "mc")
        e.question = str(r["question"])
        e.choices = choices
        e.answer = Int(a)
        e.subject = str(r["subject"])
        return e
    }

    /// HellaSwag: context, four endings, label as a string index.
    public static func hellaswag(_ r: [String: ParquetValue], _ i: Int) -> TaskExample? {
        guard let endings = strings(r["endings"]), let label = str(r["label"]).flatMap(Int.init) else { return nil }
        var e = TaskExample(id: "hellaswag-\(str(r["ind"]) ?? String(i))", kind: "mc")
        e.question = str(r["ctx"])
        e.choices = endings
        e.answer = label
        return e
    }

    public static func gsm8k(_ r: [String: ParquetValue], _ i: Int) -> TaskExample? {
        guard let q = str(r["question"]), let a = str(r["answer"]) else { return nil }
        var e = TaskExample(id: "gsm8k-\(i)", kind: "gsm8k")
        e.question = q
        e.solution = a
        return e
    }

    public static func humaneval(_ r: [String: ParquetValue], _ i: Int) -> TaskExample? {
        guard let prompt = str(r["prompt"]) else { return nil }
        var e = TaskExample(id: str(r["task_id"]) ?? "humaneval-\(i)", kind: "code")
        e.prompt = prompt
        e.solution = str(r["canonical_solution"])
        e.test = str(r["test"])
        e.entry_point = str(r["entry_point"])
        return e
    }

    public static func chat(_ r: [String: ParquetValue], _ i: Int) -> TaskExample? {
        guard case .list(let ms)? = r["messages"] else { return nil }
        let messages: [[String: String]] = ms.compactMap { m in
            guard case .group(let g) = m, let role = str(g["role"]), let content = str(g["content"]) else { return nil }
            return ["role": role, "content": content]
        }
        guard messages.count >= 2 else { return nil }
        var e = TaskExample(id: "chat-\(i)", kind: "chat")
        e.messages = messages
        return e
    }

    /// Downloads one split's parquet files (skipped when its manifest exists) and returns their paths.
    public static func fetch(repo: String, subset: String, split: String, hub: String, root: URL) throws -> [URL] {
        let dir = root.appendingPathComponent("\(repo.replacingOccurrences(of: "/", with: "--"))/\(subset)/\(split)", isDirectory: true)
        let manifest = dir.appendingPathComponent("manifest.json")
        if let data = try? Data(contentsOf: manifest), let names = try? JSONDecoder().decode([String].self, from: data) {
            return names.map { dir.appendingPathComponent($0) }
        }
        let api = URL(string: "\(hub)/api/datasets/\(repo)/parquet/\(subset)/\(split)")!
        let listing = try httpGet(api)
        guard let urls = (try? JSONSerialization.jsonObject(with: listing)) as? [String], !urls.isEmpty else {
            throw NanoChatError("\(api.absoluteString) did not return a JSON list of parquet URLs")
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var names: [String] = []
        for (i, u) in urls.enumerated() {
            guard let url = URL(string: u) else { throw NanoChatError("bad parquet URL \(u) from \(api.absoluteString)") }
            let name = String(format: "%05d.parquet", i)
            var lastError: Error? = nil
            for attempt in 0..<3 {
                do { _ = try ShardDownloader.fetch(url, to: dir.appendingPathComponent(name), timeout: 60) { _ in }; lastError = nil; break }
                catch { lastError = error; Thread.sleep(forTimeInterval: 0.2 * pow(2, Double(attempt))) }
            }
            if let lastError { throw lastError }
            names.append(name)
        }
        try FileIO.writeAtomically(try JSONEncoder().encode(names), to: manifest)  // last: marks the split complete
        return names.map { dir.appendingPathComponent($0) }
    }

    static func httpGet(_ url: URL) throws -> Data {
        let r = blockingHTTP(URLRequest(url: url))
        if let error = r.error { throw NanoChatError("\(url.absoluteString): \(error.localizedDescription)") }
        guard r.status == 200 else { throw NanoChatError("\(url.absoluteString): HTTP \(r.status)") }
        return r.body
    }

    /// Every row of the parquet files as groups of top-level columns, one row group at a time.
    public static func rows(_ files: [URL]) throws -> [[String: ParquetValue]] {
        var out: [[String: ParquetValue]] = []
        for f in files {
            let pf = try ParquetFile(url: f)
            for rg in 0..<pf.rowGroups.count {
                let cols = try pf.fields.map { ($0, try pf.column($0, rowGroup: rg)) }
                for r in 0..<pf.rowGroups[rg].numRows {
                    out.append(Dictionary(uniqueKeysWithValues: cols.map { ($0.0, $0.1[r]) }))
                }
            }
        }
        return out
    }

    /// Fetches and converts the given sources (all by default) into `<root>/<task>/<split>.jsonl`.
    public static func prepare(hub: String, root: URL, only: Set<String>? = nil, log: (String) -> Void) throws {
        for s in sources where only?.contains(s.task) ?? true {
            for split in s.splits {
                let files = try fetch(repo: s.repo, subset: s.subset, split: split, hub: hub, root: root)
                let ex = try rows(files).enumerated().compactMap { s.convert($1, $0) }
                try TaskData.write(ex, task: s.task, split: split, to: root)
                log("\(s.task)/\(split): \(ex.count) examples from \(s.repo) (\(s.subset))")
            }
        }
    }
}
