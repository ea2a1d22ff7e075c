import Foundation

/// A value read from parquet: scalars, strings/bytes, lists and groups (structs).
public indirect enum ParquetValue: Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case bytes([UInt8])
    case list([ParquetValue])
    case group([String: ParquetValue])
}

/// One node of the schema tree.
public struct SchemaNode {
    public var name: String
    public var physicalType: Int?      // nil for groups
    public var repetition: Int         // 0 required, 1 optional, 2 repeated
    public var convertedType: Int?
    public var logicalType: Int?       // field id of the LogicalType union member (1 STRING, 3 LIST, 2 MAP, ...)
    public var typeLength: Int
    public var children: [Int] = []
    public var isUTF8: Bool { convertedType == 0 || logicalType == 1 || convertedType == 16 || logicalType == 7 }
    public var isList: Bool { convertedType == 3 || logicalType == 3 }
    public var isMap: Bool { convertedType == 1 || convertedType == 2 || logicalType == 2 }
}

public struct ColumnChunkInfo {
    public var path: [String]
    public var physicalType: Int
    public var codec: Int
    public var numValues: Int
    public var start: Int
    public var length: Int
}

public struct RowGroupInfo {
    public var numRows: Int
    public var columns: [ColumnChunkInfo]
}

/// A leaf column: the chain of schema nodes from a top-level field down to it, and its max levels.
public struct LeafColumn {
    public var chain: [Int]
    public var maxDef: Int
    public var maxRep: Int
    public var path: [String]
}

/// A parquet file, read one row group at a time (memory is bounded by a row group): the footer is parsed up
/// front; each column chunk is read from disk when asked for.
public final class ParquetFile {
    public let url: URL
    public let fileSize: Int
    public private(set) var schema: [SchemaNode] = []
    public private(set) var rowGroups: [RowGroupInfo] = []
    public private(set) var leaves: [LeafColumn] = []
    public private(set) var numRows = 0
    public private(set) var createdBy: String?
    let handle: FileHandle

    static let magic: [UInt8] = Array("PAR1".utf8)
    static let typeNames = ["BOOLEAN", "INT32", "INT64", "INT96", "FLOAT", "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"]

    func fail(_ why: String) -> NanoChatError { NanoChatError("\(url.path): \(why)") }

    public init(url: URL) throws {
        self.url = url
        guard let h = FileHandle(forReadingAtPath: url.path) else {
            throw NanoChatError("\(url.path): cannot open (missing or unreadable)")
        }
        handle = h
        fileSize = Int((try? h.seekToEnd()) ?? 0)
        guard fileSize >= 12 else { throw fail("not a parquet file: only \(fileSize) bytes") }
        let head = try read(0, 4), tail = try read(fileSize - 8, 8)
        guard head == Self.magic, Array(tail[4..<8]) == Self.magic else {
            throw fail("not a parquet file: the PAR1 magic is missing at the start or end (truncated download?)")
        }
        let footerLen = Int(UInt32(tail[0]) | UInt32(tail[1]) << 8 | UInt32(tail[2]) << 16 | UInt32(tail[3]) << 24)
        guard footerLen > 0, footerLen <= fileSize - 12 else {
            throw fail("footer length \(footerLen) points outside the \(fileSize)-byte file")
        }
        let footer = try read(fileSize - 8 - footerLen, footerLen)
        do {
            var r = ThriftReader(footer)
            guard let meta = try r.structValue().fields else { throw ParquetError("footer is not a struct") }
            try parseMetadata(meta)
        } catch let e as ParquetError {
            throw fail("corrupt footer metadata: \(e.description)")
        }
    }

    deinit { try? handle.close() }

    func read(_ offset: Int, _ count: Int) throws -> [UInt8] {
        guard offset >= 0, count >= 0, offset + count <= fileSize else {
            throw fail("byte range \(offset)..<\(offset + count) is outside the \(fileSize)-byte file")
        }
        try handle.seek(toOffset: UInt64(offset))
        guard let d = try handle.read(upToCount: count), d.count == count else {
            throw fail("could not read \(count) bytes at \(offset)")
        }
        return [UInt8](d)
    }

    func parseMetadata(_ m: [Int16: ThriftValue]) throws {
        guard let elements = m[2]?.list, !elements.isEmpty else { throw ParquetError("no schema") }
        for e in elements {
            guard let f = e.fields else { throw ParquetError("schema element is not a struct") }
            var logical: Int? = nil
            if let lt = f[10]?.fields { logical = lt.keys.first.map(Int.init) }
            schema.append(SchemaNode(
                name: f[4]?.string ?? "", physicalType: f[1]?.int.map(Int.init), repetition: Int(f[3]?.int ?? 0),
                convertedType: f[6]?.int.map(Int.init), logicalType: logical, typeLength: Int(f[2]?.int ?? 0)))
        }
        // the flat list is the tree in depth-first order; element 0 is the root
        var next = 0
        func build(_ i: Int, _ depth: Int) throws {
            guard depth < 64 else { throw ParquetError("schema nested too deeply") }
            next = i + 1
            let n = Int(elements[i].fields?[5]?.int ?? 0)
            guard n >= 0, n <= elements.count else { throw ParquetError("schema element \(i) claims \(n) children") }
            for _ in 0..<n {
                guard next < schema.count else { throw ParquetError("schema ends before all children are listed") }
                let c = next
                schema[i].children.append(c)
                try build(c, depth + 1)
            }
        }
        try build(0, 0)
        func walk(_ i: Int, _ chain: [Int]) {
            let chain = chain + [i]
            if schema[i].children.isEmpty && schema[i].physicalType != nil {
                leaves.append(LeafColumn(chain: chain, maxDef: chain.filter { schema[$0].repetition != 0 }.count,
                                         maxRep: chain.filter { schema[$0].repetition == 2 }.count,
                                         path: chain.map { schema[$0].name }))
            } else {
                for c in schema[i].children { walk(c, chain) }
            }
        }
        for c in schema[0].children { walk(c, []) }
        numRows = Int(m[3]?.int ?? 0)
        createdBy = m[6]?.string
        for rg in m[4]?.list ?? [] {
            guard let f = rg.fields, let cols = f[1]?.list else { throw ParquetError("row group without columns") }
            var infos: [ColumnChunkInfo] = []
            for c in cols {
                guard let md = c.fields?[3]?.fields else { throw ParquetError("column chunk without metadata") }
                let dataOff = Int(md[9]?.int ?? -1)
                let dictOff = Int(md[11]?.int ?? -1)
                let start = (dictOff > 0 && dictOff < dataOff) ? dictOff : dataOff
                let len = Int(md[7]?.int ?? -1)
                let values = Int(md[5]?.int ?? 0)
                guard values >= 0, values <= 1 << 27 else { throw ParquetError("column chunk claims \(values) values") }
                guard start >= 4, len > 0, start + len <= fileSize else {
                    throw ParquetError("column chunk byte range \(start)+\(len) is outside the file")
                }
                infos.append(ColumnChunkInfo(path: (md[3]?.list ?? []).compactMap { $0.string }, physicalType: Int(md[1]?.int ?? -1),
                                             codec: Int(md[4]?.int ?? 0), numValues: Int(md[5]?.int ?? 0), start: start, length: len))
            }
            guard infos.count == leaves.count else {
                throw ParquetError("row group has \(infos.count) column chunks, the schema has \(leaves.count) leaf columns")
            }
            rowGroups.append(RowGroupInfo(numRows: Int(f[3]?.int ?? 0), columns: infos))
        }
    }

    public static func codecName(_ c: Int) -> String { ParquetCodec(rawValue: c)?.name ?? "codec\(c)" }

    /// Top-level field names.
    public var fields: [String] { schema[0].children.map { schema[$0].name } }

    /// A human-readable schema, one line per node.
    public func describeSchema() -> String {
        var out = ""
        func line(_ i: Int, _ indent: Int) {
            let n = schema[i]
            let rep = ["required", "optional", "repeated"][min(max(n.repetition, 0), 2)]
            var t = n.physicalType.map { $0 < Self.typeNames.count ? Self.typeNames[$0] : "type\($0)" } ?? "group"
            if n.isUTF8 { t += " (string)" }
            if n.isList { t += " (list)" }
            if n.isMap { t += " (map)" }
            out += String(repeating: "  ", count: indent) + "\(rep) \(t) \(n.name)\n"
            for c in n.children { line(c, indent + 1) }
        }
        for c in schema[0].children { line(c, 0) }
        return out
    }
}
