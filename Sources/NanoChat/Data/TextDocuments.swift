import Foundation

/// Documents from files: `.parquet` (the `text` column, one row group at a time), `.jsonl` (one JSON string per
/// line, or an object with a "text" field) and `.txt` (the whole file is one document, or each
/// blank-line-separated paragraph with `splitBlankLines`).
/// Folders are read recursively in sorted path order, following symbolic links; other files in them are skipped.
public struct TextDocuments {
    public let files: [URL]
    public var splitBlankLines = false

    public static let extensions: Set<String> = ["txt", "jsonl", "parquet"]

    /// Expands paths (files or folders) into the list of readable files, in order.
    public init(paths: [URL], splitBlankLines: Bool = false) throws {
        var files: [URL] = []
        for path in paths {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path.path, isDirectory: &isDir) else {
                throw NanoChatError("input \(path.path) does not exist")
            }
            if isDir.boolValue {
                // recursive, in sorted relative-path order, following symbolic links
                let found = FileIO.files(under: path) { Self.extensions.contains($0.pathExtension) }
                if found.isEmpty { throw NanoChatError("folder \(path.path) has no .parquet, .txt or .jsonl files") }
                files += found
            } else {
                guard Self.extensions.contains(path.pathExtension) else {
                    throw NanoChatError("input \(path.path): expected a .parquet, .txt or .jsonl file (or a folder of them)")
                }
                files.append(path)
            }
        }
        self.files = files
        self.splitBlankLines = splitBlankLines
    }

    /// Calls `body` with each document's UTF-8 bytes; `body` returns false to stop early.
    public func forEach(_ body: ([UInt8]) throws -> Bool) throws {
        for file in files {
            if file.pathExtension == "parquet" {
                let pf = try ParquetFile(url: file)
                for rg in 0..<pf.rowGroups.count {
                    for doc in try pf.strings("text", rowGroup: rg) {
                        if let doc, try !body(doc) { return }
                    }
                }
                continue
            }
            let data = try FileIO.read(file, what: "input")
            if file.pathExtension == "jsonl" {
                var stop = false
                try forEachLine(of: data) { line, lineNo in
                    if stop || line.allSatisfy({ JSONText.isSpace($0) }) { return }
                    let doc: [UInt8]
                    do {
                        doc = try Self.parseDocumentLine(line)
                    } catch let e as NanoChatError {
                        throw NanoChatError("\(file.path) line \(lineNo): \(e.description)")
                    }
                    if try !body(doc) { stop = true }
                }
                if stop { return }
            } else if splitBlankLines {
                let bytes = [UInt8](data)
                var start = 0
                var i = 0
                while i + 1 < bytes.count {
                    if bytes[i] == 0x0A && bytes[i + 1] == 0x0A {
                        if try !body(Array(bytes[start..<i])) { return }
                        i += 2
                        start = i
                    } else {
                        i += 1
                    }
                }
                if try !body(Array(bytes[start...])) { return }
            } else {
                if try !body([UInt8](data)) { return }
            }
        }
    }

    static func parseDocumentLine(_ line: UnsafeBufferPointer<UInt8>) throws -> [UInt8] {
        var i = 0
        while i < line.count && JSONText.isSpace(line[i]) { i += 1 }
        if i < line.count && line[i] == 0x7B {  // {"text": ...}
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                  let text = obj["text"] as? String else {
                throw NanoChatError("expected a JSON string or an object with a string \"text\" field")
            }
            return Array(text.utf8)
        }
        return try JSONText.decodeString(line)
    }
}
