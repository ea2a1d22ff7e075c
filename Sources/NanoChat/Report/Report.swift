import Foundation

/// The report card (upstream's nanochat/report.py): `reset` writes a header (time, git state, hardware, code size),
/// every stage appends its section as it finishes (`log`), and `generate` joins them into `report/report.md` with a
/// summary table of every metric per stage, pictures of the training curves (SVG, made here), and an HTML page
/// `report/report.html` that shows the same with the pictures inline.
public enum Report {
    public static var directory: URL { BaseDir.url.appendingPathComponent("report", isDirectory: true) }

    /// Section files in the order the report shows them.
    public static let order = ["pretraining-data", "tokenizer-training", "tokenizer-evaluation", "base-model-training", "task-data", "base-model-evaluation",
                               "chat-evaluation-base", "midtraining", "chat-evaluation-mid", "chat-sft", "chat-evaluation-sft",
                               "chat-rl", "chat-evaluation-rl"]
    /// The metrics of the summary table, in its row order (CORE first, ChatCORE last).
    public static let metrics = ["CORE", "ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval", "SpellingBee", "ChatCORE"]
    static let stages = [("BASE", "base"), ("MID", "mid"), ("SFT", "sft"), ("RL", "rl")]

    static func slug(_ section: String) -> String {
        section.lowercased().map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
    }

    /// The report's one time format, written by `timestamp` and read back by `sectionTime`.
    static let timeFormat: DateFormatter = {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f
    }()

    static func timestamp(_ d: Date = Date()) -> String { timeFormat.string(from: d) }

    /// Writes `<slug>.md`: the section title, the time, the flags, then one `- key: value` line per item.
    public static func log(section: String, arguments: [String: String] = [:], data: [(String, String)]) throws {
        var s = "## \(section)\ntimestamp: \(timestamp())\n\n"
        if !arguments.isEmpty {
            s += "Flags: " + arguments.keys.sorted().map { "\($0)=\(arguments[$0]!)" }.joined(separator: ", ") + "\n\n"
        }
        for (k, v) in data { s += "- \(k): \(v)\n" }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try FileIO.writeAtomically(s + "\n", to: directory.appendingPathComponent(slug(section) + ".md"))
    }

    static func run(_ args: [String], in dir: URL? = nil) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        if let dir { p.currentDirectoryURL = dir }
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : nil
    }

    /// Deletes the sections and writes the header: when, what code (git), on what machine, how big the code is.
    public static func reset(repository: URL = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] where name.hasSuffix(".md") || name.hasSuffix(".svg") || name.hasSuffix(".html") {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
        }
        var s = "# nanochat training report\n\nGenerated: \(timestamp())\n\n## Environment\n\n### Git\n"
        if let commit = run(["git", "rev-parse", "--short", "HEAD"], in: repository) {
            let branch = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], in: repository) ?? "?"
            let dirty = (run(["git", "status", "--porcelain"], in: repository) ?? "").isEmpty ? "clean" : "dirty"
            let message = String((run(["git", "log", "-1", "--format=%s"], in: repository) ?? "").prefix(80))
            s += "- Branch: \(branch)\n- Commit: \(commit) (\(dirty))\n- Message: \(message)\n"
        } else {
            s += "- not a git checkout\n"
        }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
        s += "\n### Hardware\n- CPU: \(model)\n- Cores: \(ProcessInfo.processInfo.activeProcessorCount)\n"
        s += String(format: "- Memory: %.1f GB\n- GPU: none (this run used the CPU)\n", Double(ProcessInfo.processInfo.physicalMemory) / 1e9)
        s += "- System: \(ProcessInfo.processInfo.operatingSystemVersionString)\n"
        if let files = run(["git", "ls-files"], in: repository) {
            var chars = 0, lines = 0, count = 0
            for f in files.split(separator: "\n") where [".swift", ".md", ".sh", ".c", ".h", ".cu", ".py", ".html"].contains(where: { f.hasSuffix($0) }) {
                guard let text = try? String(contentsOf: repository.appendingPathComponent(String(f)), encoding: .utf8) else { continue }
                chars += text.count; lines += text.split(separator: "\n", omittingEmptySubsequences: false).count; count += 1
            }
            s += "\n### Bloat\n- Characters: \(formatThousands(chars))\n- Lines: \(formatThousands(lines))\n- Files: \(count)\n- Tokens (approx): \(formatThousands(chars / 4))\n"
        }
        s += "\nRun started: \(timestamp())\n\n---\n\n"
        try FileIO.writeAtomically(s, to: directory.appendingPathComponent("header.md"))
    }

    /// `- key: value` lines of a section file.
    static func items(_ text: String) -> [String: String] {
        var out: [String: String] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("- ") {
            let parts = line.dropFirst(2).split(separator: ":", maxSplits: 1)
            if parts.count == 2 { out[String(parts[0])] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        return out
    }

    static func sectionTime(_ text: String) -> Date? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("timestamp: ") }) else { return nil }
        return timeFormat.date(from: String(line.dropFirst(11)))
    }

    /// The training curves as SVG files next to the report; returns their file names with captions.
    static func charts(tag: String?) throws -> [(String, String)] {
        func metrics(_ phase: String) -> [[String: Any]] {
            let root = BaseDir.url.appendingPathComponent("\(phase)_checkpoints")
            let t = tag ?? (try? CheckpointManager.defaultTag(phase: phase))
            guard let t, let data = try? Data(contentsOf: root.appendingPathComponent("\(t)/metrics.jsonl")) else { return [] }
            return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        func series(_ rows: [[String: Any]], _ key: String, _ name: String) -> SVGPlot.Series? {
            let pts = rows.compactMap { r -> (Double, Double)? in
                guard let s = (r["step"] as? NSNumber)?.doubleValue, let v = (r[key] as? NSNumber)?.doubleValue else { return nil }
                return (s, v)
            }
            return pts.isEmpty ? nil : SVGPlot.Series(name, pts)
        }
        let phases = [("base", "pretraining"), ("mid", "midtraining"), ("chatsft", "SFT")]
        var out: [(String, String)] = []
        func write(_ name: String, _ caption: String, _ plot: SVGPlot) throws {
            guard !plot.series.isEmpty else { return }
            try FileIO.writeAtomically(plot.svg, to: directory.appendingPathComponent(name))
            out.append((name, caption))
        }
        for (phase, label) in phases {
            let rows = metrics(phase)
            try write("\(phase)-loss.svg", "\(label): training loss (smoothed) and validation bits per byte",
                      SVGPlot(title: "\(label): loss", xLabel: "step", yLabel: "loss (nats) / bpb",
                              series: [series(rows, "smooth_loss", "train loss"), series(rows, "val_bpb", "val bpb")].compactMap { $0 }))
        }
        try write("lr.svg", "learning-rate multiplier of each stage", SVGPlot(title: "learning-rate schedule", xLabel: "step", yLabel: "LR multiplier",
            series: (phases + [("chatrl", "RL")]).compactMap { series(metrics($0.0), "lrm", $0.1) }))
        let rl = metrics("chatrl")
        try write("rl-reward.svg", "RL: mean reward of the sampled answers per step", SVGPlot(title: "RL: reward", xLabel: "step", yLabel: "mean reward",
            series: [series(rl, "reward", "mean reward")].compactMap { $0 }))
        let ks = Set(rl.flatMap { $0.keys.filter { $0.hasPrefix("pass@") } }).sorted { Int($0.dropFirst(5))! < Int($1.dropFirst(5))! }
        try write("rl-passk.svg", "RL: pass@k and the fraction of right samples on held-out problems at each evaluation", SVGPlot(title: "RL: pass@k", xLabel: "step", yLabel: "pass@k",
            series: ks.compactMap { series(rl, $0, $0) } + [series(rl, "sample_accuracy", "right samples")].compactMap { $0 }))
        return out
    }

    /// Joins the header and sections into report.md (and report.html), with the charts and the summary table.
    @discardableResult
    public static func generate(tag: String? = nil, hourlyRate: Double = 0) throws -> URL {
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let headerURL = directory.appendingPathComponent("header.md")
        if !fm.fileExists(atPath: headerURL.path) { try reset() }
        let header = try String(contentsOf: headerURL, encoding: .utf8)
        var md = header
        var values: [String: [String: String]] = [:]
        var lastTime: Date? = nil
        var coreLabel = "CORE"
        var missingSources: [String] = [], notScored: [String] = []
        for name in order {
            guard let text = try? String(contentsOf: directory.appendingPathComponent(name + ".md"), encoding: .utf8) else { continue }
            md += text
            let kv = items(text)
            // sources that could not be had (dataset prepare, dataset tasks) and what they took with them
            for key in kv.keys.sorted() where key.hasPrefix("missing source ") {
                missingSources.append("\(key.dropFirst(15)): \(kv[key]!)")
            }
            if name == "base-model-evaluation", let core = kv["CORE"] { values["base", default: [:]]["CORE"] = core }
            if name == "base-model-evaluation", let tasks = kv["CORE tasks"] {
                // "14 of 22; not scored: ..." -> the row reads "CORE (14 of 22 tasks)"
                let parts = tasks.components(separatedBy: "; not scored: ")
                if parts.count == 2 { coreLabel = "CORE (\(parts[0]) tasks)"; notScored.append("CORE: " + parts[1]) }
            }
            if name.hasPrefix("chat-evaluation-"), let skipped = kv["not scored (no task data)"] {
                let line = "chat-eval: " + skipped
                if !notScored.contains(line) { notScored.append(line) }
            }
            if name.hasPrefix("chat-evaluation-") {
                let stage = String(name.dropFirst("chat-evaluation-".count))
                for m in metrics where kv[m] != nil { values[stage, default: [:]][m] = kv[m] }
            }
            if let t = sectionTime(text) { lastTime = max(lastTime ?? t, t) }
        }
        let charts = try charts(tag: tag)
        if !charts.isEmpty {
            md += "## Charts\n\n"
            for (file, caption) in charts { md += "![\(caption)](\(file))\n\n" }
        }
        md += "## Summary\n\n"
        if let bloat = header.range(of: "### Bloat\n") {
            md += header[bloat.upperBound...].split(separator: "\n").prefix(4).joined(separator: "\n") + "\n\n"
        }
        let columns = stages.filter { values[$0.1] != nil }
        if columns.isEmpty { md += "No evaluations yet (base-eval and chat-eval add their results).\n" } else {
        md += "| Metric | " + columns.map(\.0).joined(separator: " | ") + " |\n"
        md += "|---|" + columns.map { _ in "---|" }.joined() + "\n"
        for m in metrics where columns.contains(where: { values[$0.1]?[m] != nil }) {
            md += "| \(m == "CORE" ? coreLabel : m) | " + columns.map { values[$0.1]?[m] ?? "-" }.joined(separator: " | ") + " |\n"
        }
        }
        if !missingSources.isEmpty {
            md += "\nMissing sources (the run went on without them):\n\n" + missingSources.map { "- \($0)\n" }.joined()
        }
        if !notScored.isEmpty {
            md += "\nNot scored:\n\n" + notScored.map { "- \($0)\n" }.joined()
        }
        if let startLine = header.split(separator: "\n").first(where: { $0.hasPrefix("Run started: ") }),
           let start = sectionTime("timestamp: " + startLine.dropFirst(13)), let end = lastTime {
            let minutes = Int(end.timeIntervalSince(start) / 60)
            md += "\nTotal wall clock time: \(minutes / 60)h\(minutes % 60)m"
            md += hourlyRate > 0 ? String(format: "\n\nEstimated cost: $%.2f (at $%.2f/hour)", Double(minutes) / 60 * hourlyRate, hourlyRate)
                : "\n\nEstimated cost: the machine's own time (pass --hourly-rate to price it)"
            md += "\n"
        }
        let url = directory.appendingPathComponent("report.md")
        try FileIO.writeAtomically(md, to: url)
        try FileIO.writeAtomically(html(markdown: md), to: directory.appendingPathComponent("report.html"))
        return url
    }

    /// The report's markdown as a standalone page: headings, lists, tables, images and paragraphs (all the
    /// report uses).
    static func html(markdown: String) -> String {
        func esc(_ s: Substring) -> String { SVGPlot.escape(String(s)) }
        var body = "", inList = false, inTable = false
        func close() {
            if inList { body += "</ul>\n"; inList = false }
            if inTable { body += "</table>\n"; inTable = false }
        }
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("|") {
                if line.hasPrefix("|---") { continue }
                let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
                if !inTable { close(); body += "<table>\n<tr>" + cells.map { "<th>\(esc(Substring($0)))</th>" }.joined() + "</tr>\n"; inTable = true; continue }
                body += "<tr>" + cells.map { "<td>\(esc(Substring($0)))</td>" }.joined() + "</tr>\n"
                continue
            }
            if line.hasPrefix("- ") {
                if !inList { close(); body += "<ul>\n"; inList = true }
                body += "<li>\(esc(line.dropFirst(2)))</li>\n"
                continue
            }
            close()
            if let level = line.prefix(while: { $0 == "#" }).count as Int?, level > 0, line.dropFirst(level).hasPrefix(" ") {
                body += "<h\(level)>\(esc(line.dropFirst(level + 1)))</h\(level)>\n"
            } else if line.hasPrefix("!["), let mid = line.range(of: "]("), line.hasSuffix(")") {
                let alt = line[line.index(line.startIndex, offsetBy: 2)..<mid.lowerBound]
                let src = line[mid.upperBound..<line.index(before: line.endIndex)]
                body += "<figure><img src=\"\(esc(src))\" alt=\"\(esc(alt))\"><figcaption>\(esc(alt))</figcaption></figure>\n"
            } else if line == "---" {
                body += "<hr>\n"
            } else if !line.isEmpty {
                body += "<p>\(esc(line))</p>\n"
            }
        }
        close()
        return """
        <!doctype html>
        <html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>nanochat report</title>
        <style>
        body { font-family: -apple-system, system-ui, sans-serif; max-width: 900px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
        table { border-collapse: collapse; margin: 1em 0; } th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
        th:first-child, td:first-child { text-align: left; } figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #eee; }
        figcaption { color: #666; font-size: 0.9em; } li { overflow-wrap: anywhere; } p { overflow-wrap: anywhere; }
        </style></head><body>
        \(body)</body></html>

        """
    }
}
