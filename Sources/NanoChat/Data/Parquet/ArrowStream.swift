import Foundation

/// A reader for Arrow IPC stream files (what HuggingFace `datasets` saves as `data-*.arrow`), enough for task
/// data: integer, floating-point, bool, (large) utf8/binary, (large) list and struct columns, uncompressed.
/// The metadata is flatbuffers; every offset is bounds-checked.
public enum ArrowStream {
    struct FB {
        let b: [UInt8]
        func u8(_ p: Int) throws -> UInt8 { guard p >= 0 && p < b.count else { throw err("byte \(p)") }; return b[p] }
        func u16(_ p: Int) throws -> Int { Int(try u8(p)) | Int(try u8(p + 1)) << 8 }
        func i32(_ p: Int) throws -> Int { Int(Int32(bitPattern: UInt32(try u16(p)) | UInt32(try u16(p + 2)) << 16)) }
        func i64(_ p: Int) throws -> Int {
            guard p >= 0 && p + 8 <= b.count else { throw err("int64 at \(p)") }
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(b[p + k]) << (8 * UInt64(k)) }
            return Int(Int64(bitPattern: v))
        }
        func err(_ s: String) -> NanoChatError { NanoChatError("Arrow metadata is corrupt (\(s) out of range)") }
        /// Position of field `i` of the table at `t`, or nil when absent (default value).
        func field(_ t: Int, _ i: Int) throws -> Int? {
            let vt = t - (try i32(t))
            let vsize = try u16(vt)
            guard 4 + 2 * i < vsize else { return nil }
            let off = try u16(vt + 4 + 2 * i)
            return off == 0 ? nil : t + off
        }
        func deref(_ p: Int) throws -> Int { p + (try i32(p)) }
        func table(_ t: Int, _ i: Int) throws -> Int? { try field(t, i).map { try deref($0) } }
        func vector(_ t: Int, _ i: Int) throws -> (start: Int, count: Int)? {
            guard let p = try field(t, i) else { return nil }
            let v = try deref(p)
            let n = try i32(v)
            guard n >= 0, n < 1 << 24 else { throw err("vector length \(n)") }
            return (v + 4, n)
        }
        func string(_ t: Int, _ i: Int) throws -> String? {
            guard let (s, n) = try vector(t, i) else { return nil }
            guard s + n <= b.count else { throw err("string") }
            return String(decoding: b[s..<(s + n)], as: UTF8.self)
        }
    }

    struct Field {
        var name: String
        var type: Int        // the Type union id
        var typeTable: Int?
        var children: [Field]
    }

    /// All rows of every record batch, as column name -> values.
    public static func read(_ data: [UInt8], source: String) throws -> [String: [ParquetValue]] {
        var pos = 0
        var schema: [Field]? = nil
        var columns: [String: [ParquetValue]] = [:]
        func fail(_ s: String) -> NanoChatError { NanoChatError("\(source): \(s)") }
        while pos + 8 <= data.count {
            var len = Int(Int32(bitPattern: UInt32(data[pos]) | UInt32(data[pos + 1]) << 8 | UInt32(data[pos + 2]) << 16 | UInt32(data[pos + 3]) << 24))
            pos += 4
            if len == -1 {  // continuation marker, then the length
                len = Int(Int32(bitPattern: UInt32(data[pos]) | UInt32(data[pos + 1]) << 8 | UInt32(data[pos + 2]) << 16 | UInt32(data[pos + 3]) << 24))
                pos += 4
            }
            if len == 0 { break }  // end of stream
            guard len > 0, pos + len <= data.count else { throw fail("message length \(len) runs past the file") }
            let fb = FB(b: Array(data[pos..<(pos + len)]))
            pos += len
            let msg = try fb.deref(0)
            let headerType = try fb.field(msg, 1).map { Int(try fb.u8($0)) } ?? 0
            let bodyLength = try fb.field(msg, 3).map { try fb.i64($0) } ?? 0
            guard bodyLength >= 0, pos + bodyLength <= data.count else { throw fail("message body of \(bodyLength) bytes runs past the file") }
            let body = pos
            pos += bodyLength
            guard let header = try fb.table(msg, 2) else { continue }
            switch headerType {
            case 1:
                guard let (s, n) = try fb.vector(header, 1) else { throw fail("schema without fields") }
                schema = try (0..<n).map { try parseField(fb, try fb.deref(s + 4 * $0), depth: 0) }
            case 3:
                guard let schema else { throw fail("record batch before the schema") }
                if try fb.field(header, 3) != nil { throw fail("compressed record batches are not supported") }
                let rows = try fb.field(header, 0).map { try fb.i64($0) } ?? 0
                guard let (ns, nn) = try fb.vector(header, 1), let (bs, bn) = try fb.vector(header, 2) else { throw fail("record batch without nodes or buffers") }
                var nodes: [(Int, Int)] = try (0..<nn).map { (try fb.i64(ns + 16 * $0), try fb.i64(ns + 16 * $0 + 8)) }
                var buffers: [(Int, Int)] = try (0..<bn).map { (try fb.i64(bs + 16 * $0), try fb.i64(bs + 16 * $0 + 8)) }
                nodes.reverse(); buffers.reverse()  // consumed from the front in pre-order
                for f in schema {
                    let vals = try decode(f, data: data, body: body, bodyLength: bodyLength, nodes: &nodes, buffers: &buffers, source: source)
                    guard vals.count == rows else { throw fail("column \(f.name) has \(vals.count) values for \(rows) rows") }
                    columns[f.name, default: []] += vals
                }
            default: continue
            }
        }
        guard schema != nil else { throw fail("not an Arrow IPC stream (no schema message)") }
        return columns
    }

    static func parseField(_ fb: FB, _ t: Int, depth: Int) throws -> Field {
        guard depth < 32 else { throw NanoChatError("Arrow schema nested too deeply") }
        let name = try fb.string(t, 0) ?? ""
        let type = try fb.field(t, 2).map { Int(try fb.u8($0)) } ?? 0
        let typeTable = try fb.table(t, 3)
        var children: [Field] = []
        if let (s, n) = try fb.vector(t, 5) {
            children = try (0..<n).map { try parseField(fb, try fb.deref(s + 4 * $0), depth: depth + 1) }
        }
        var f = Field(name: name, type: type, typeTable: typeTable, children: children)
        if type == 2, let tt = typeTable {  // Int: remember width and signedness in typeTable's place
            let width = try fb.field(tt, 0).map { try fb.i32($0) } ?? 32
            let signed = try fb.field(tt, 1).map { try fb.u8($0) != 0 } ?? false
            f.typeTable = width * 2 + (signed ? 1 : 0)
        } else if type == 3, let tt = typeTable {  // FloatingPoint precision: 0 half, 1 single, 2 double
            f.typeTable = try fb.field(tt, 0).map { try fb.u16($0) } ?? 0
        }
        return f
    }

    static func decode(_ f: Field, data: [UInt8], body: Int, bodyLength: Int, nodes: inout [(Int, Int)],
                       buffers: inout [(Int, Int)], source: String) throws -> [ParquetValue] {
        func fail(_ s: String) -> NanoChatError { NanoChatError("\(source): column \(f.name): \(s)") }
        guard let (length, nullCount) = nodes.popLast(), length >= 0, length < 1 << 28 else { throw fail("missing field node") }
        func buffer() throws -> ArraySlice<UInt8> {
            guard let (off, len) = buffers.popLast(), off >= 0, len >= 0, off + len <= bodyLength else { throw fail("buffer outside the body") }
            return data[(body + off)..<(body + off + len)]
        }
        func le(_ s: ArraySlice<UInt8>, _ at: Int, _ n: Int) throws -> UInt64 {
            guard at >= 0, at + n <= s.count else { throw fail("value past its buffer") }
            var v: UInt64 = 0
            for k in 0..<n { v |= UInt64(s[s.startIndex + at + k]) << (8 * UInt64(k)) }
            return v
        }
        let validity = try buffer()
        func isNull(_ i: Int) throws -> Bool {
            guard nullCount > 0, !validity.isEmpty else { return false }
            return (try le(validity, i >> 3, 1) >> UInt64(i & 7)) & 1 == 0
        }
        var out: [ParquetValue] = []
        out.reserveCapacity(length)
        switch f.type {
        case 2:
            let vals = try buffer()
            let width = (f.typeTable ?? 64) / 2 / 8, signed = (f.typeTable ?? 1) & 1 == 1
            for i in 0..<length {
                if try isNull(i) { out.append(.null); continue }
                let raw = try le(vals, i * width, width)
                let shift = UInt64(64 - 8 * width)
                out.append(.int(signed ? Int64(bitPattern: raw << shift) >> Int64(shift) : Int64(bitPattern: raw)))
            }
        case 3:
            let vals = try buffer()
            let width = f.typeTable == 2 ? 8 : (f.typeTable == 1 ? 4 : 2)
            for i in 0..<length {
                if try isNull(i) { out.append(.null); continue }
                let raw = try le(vals, i * width, width)
                out.append(.double(width == 8 ? Double(bitPattern: raw) : width == 4 ? Double(Float(bitPattern: UInt32(raw))) : Double(Float16(bitPattern: UInt16(raw)))))
            }
        case 6:
            let vals = try buffer()
            for i in 0..<length { out.append(try isNull(i) ? .null : .bool((try le(vals, i >> 3, 1) >> UInt64(i & 7)) & 1 == 1)) }
        case 4, 5, 19, 20:
            let large = f.type >= 19
            let offsets = try buffer(), bytes = try buffer()
            let w = large ? 8 : 4
            for i in 0..<length {
                if try isNull(i) { out.append(.null); continue }
                let a = Int(try le(offsets, i * w, w)), b = Int(try le(offsets, (i + 1) * w, w))
                guard a >= 0, b >= a, b <= bytes.count else { throw fail("string offsets out of range") }
                out.append(.bytes(Array(bytes[(bytes.startIndex + a)..<(bytes.startIndex + b)])))
            }
        case 12, 21:
            let w = f.type == 21 ? 8 : 4
            let offsets = try buffer()
            guard let child = f.children.first else { throw fail("list without a child field") }
            let items = try decode(child, data: data, body: body, bodyLength: bodyLength, nodes: &nodes, buffers: &buffers, source: source)
            for i in 0..<length {
                if try isNull(i) { out.append(.null); continue }
                let a = Int(try le(offsets, i * w, w)), b = Int(try le(offsets, (i + 1) * w, w))
                guard a >= 0, b >= a, b <= items.count else { throw fail("list offsets out of range") }
                out.append(.list(Array(items[a..<b])))
            }
        case 13:
            let kids = try f.children.map { ($0.name, try decode($0, data: data, body: body, bodyLength: bodyLength, nodes: &nodes, buffers: &buffers, source: source)) }
            for i in 0..<length {
                if try isNull(i) { out.append(.null); continue }
                var g: [String: ParquetValue] = [:]
                for (n, v) in kids where i < v.count { g[n] = v[i] }
                out.append(.group(g))
            }
        default:
            throw fail("Arrow type \(f.type) is not supported")
        }
        return out
    }
}
