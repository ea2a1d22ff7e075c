import Foundation

/// Thrift compact protocol encoder for the few structs a parquet writer needs.
struct ThriftWriter {
    var out: [UInt8] = []
    var lastID: [Int16] = [0]

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }
    mutating func zigzag(_ v: Int64) { varint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }

    mutating func fieldHeader(_ id: Int16, _ type: UInt8) {
        let delta = id - lastID[lastID.count - 1]
        if delta > 0 && delta <= 15 { out.append(UInt8(delta) << 4 | type) } else { out.append(type); zigzag(Int64(id)) }
        lastID[lastID.count - 1] = id
    }
    mutating func i32(_ id: Int16, _ v: Int) { fieldHeader(id, 5); zigzag(Int64(v)) }
    mutating func i64(_ id: Int16, _ v: Int) { fieldHeader(id, 6); zigzag(Int64(v)) }
    mutating func string(_ id: Int16, _ s: String) { fieldHeader(id, 8); varint(UInt64(s.utf8.count)); out += Array(s.utf8) }
    mutating func beginStruct(_ id: Int16) { fieldHeader(id, 12); lastID.append(0) }
    mutating func beginListElementStruct() { lastID.append(0) }
    mutating func endStruct() { out.append(0); lastID.removeLast() }
    mutating func listHeader(_ id: Int16, count: Int, elementType: UInt8) {
        fieldHeader(id, 9)
        if count < 15 { out.append(UInt8(count) << 4 | elementType) } else { out.append(0xF0 | elementType); varint(UInt64(count)) }
    }
}

/// Writes pretraining shards as upstream does: one string column `text`, row groups of 1024 documents,
/// zstd level 3, PLAIN encoding, no dictionary, no statistics. Written to a temporary name and renamed.
public enum ParquetWriter {
    public static let rowGroupSize = 1024

    public static func writeTextShard(_ documents: [[UInt8]], to url: URL, rowGroupSize: Int = rowGroupSize) throws {
        try writeStringTable([("text", documents)], to: url, rowGroupSize: rowGroupSize)
    }

    /// Flat, non-null string columns of equal length (shards have one, `text`; tests write task-like tables).
    public static func writeStringTable(_ columns: [(String, [[UInt8]])], to url: URL, rowGroupSize: Int = rowGroupSize) throws {
        precondition(!columns.isEmpty && Set(columns.map { $0.1.count }).count == 1, "columns of equal length")
        let numRows = columns[0].1.count
        var file: [UInt8] = Array("PAR1".utf8)
        var groups: [(rows: Int, chunks: [(offset: Int, compressed: Int, uncompressed: Int)])] = []
        var start = 0
        repeat {
            let end = min(start + rowGroupSize, numRows)
            var chunks: [(offset: Int, compressed: Int, uncompressed: Int)] = []
            for (_, values) in columns {
            let docs = values[start..<end]
            // v1 data page: definition levels (all 1: every document present), then PLAIN byte arrays
            var page: [UInt8] = []
            let n = docs.count
            // RLE run of n ones, bit width 1: header = n << 1, value byte 1
            var levels = ThriftWriter()
            levels.varint(UInt64(n) << 1)
            levels.out.append(1)
            page += le32(levels.out.count) + levels.out
            for d in docs { page += le32(d.count); page += d }
            let compressed = try zstdCompress(page)
            var header = ThriftWriter()
            header.i32(1, 0)                   // DATA_PAGE
            header.i32(2, page.count)
            header.i32(3, compressed.count)
            header.beginStruct(5)              // DataPageHeader
            header.i32(1, n)
            header.i32(2, 0)                   // PLAIN
            header.i32(3, 3)                   // RLE definition levels
            header.i32(4, 3)
            header.endStruct()
            header.out.append(0)
            let offset = file.count
            file += header.out
            file += compressed
            chunks.append((offset, header.out.count + compressed.count, header.out.count + page.count))
            }
            groups.append((end - start, chunks))
            start = end
        } while start < numRows

        var m = ThriftWriter()
        m.i32(1, 1)                                       // version
        m.listHeader(2, count: columns.count + 1, elementType: 12)   // schema: root, then one optional string per column
        m.beginListElementStruct(); m.string(4, "schema"); m.i32(5, columns.count); m.endStruct()
        for (name, _) in columns {
            m.beginListElementStruct(); m.i32(1, 6); m.i32(3, 1); m.string(4, name); m.i32(6, 0)
            m.beginStruct(10); m.beginStruct(1); m.endStruct(); m.endStruct()   // logicalType STRING
            m.endStruct()
        }
        m.i64(3, numRows)                                  // num_rows
        m.listHeader(4, count: groups.count, elementType: 12)
        for g in groups {
            m.beginListElementStruct()
            m.listHeader(1, count: g.chunks.count, elementType: 12)     // columns
            for (ci, chunk) in g.chunks.enumerated() {
                let name = columns[ci].0
                m.beginListElementStruct()
                m.i64(2, chunk.offset)                         // file_offset
                m.beginStruct(3)                               // ColumnMetaData
                m.i32(1, 6)                                    // BYTE_ARRAY
                m.listHeader(2, count: 2, elementType: 5); m.zigzag(0); m.zigzag(3)   // PLAIN, RLE
                m.listHeader(3, count: 1, elementType: 8); m.varint(UInt64(name.utf8.count)); m.out += Array(name.utf8)
                m.i32(4, 6)                                    // ZSTD
                m.i64(5, g.rows)
                m.i64(6, chunk.uncompressed)
                m.i64(7, chunk.compressed)
                m.i64(9, chunk.offset)                         // data_page_offset
                m.endStruct()
                m.endStruct()
            }
            m.i64(2, g.chunks.reduce(0) { $0 + $1.uncompressed })   // total_byte_size
            m.i64(3, g.rows)
            m.endStruct()
        }
        m.string(6, "nanochat-swift")
        m.out.append(0)
        file += m.out
        file += le32(m.out.count)
        file += Array("PAR1".utf8)
        try FileIO.writeAtomically(Data(file), to: url)
    }

    static func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }
}
