import Foundation

/// Decoded values of one column chunk: repetition and definition levels (empty when the column has none) and
/// the non-null values. Byte arrays live back to back in one arena.
public struct ColumnData {
    public enum Values {
        case bools([Bool]), ints([Int64]), doubles([Double])
        case bytes(arena: [UInt8], offsets: [Int])  // value i is arena[offsets[i]..<offsets[i+1]]
        var count: Int {
            switch self {
            case .bools(let v): return v.count
            case .ints(let v): return v.count
            case .doubles(let v): return v.count
            case .bytes(_, let o): return o.count - 1
            }
        }
        func value(_ i: Int) -> ParquetValue {
            switch self {
            case .bools(let v): return .bool(v[i])
            case .ints(let v): return .int(v[i])
            case .doubles(let v): return .double(v[i])
            case .bytes(let a, let o): return .bytes(Array(a[o[i]..<o[i + 1]]))
            }
        }
    }
    public var reps: [Int32] = []
    public var defs: [Int32] = []
    public var values: Values
}

extension ParquetFile {
    static func bitWidth(_ maxLevel: Int) -> Int {
        var w = 0
        while (1 << w) <= maxLevel { w += 1 }
        return w
    }

    /// Reads and decodes one column chunk of a row group.
    public func readColumn(rowGroup: Int, leaf: Int) throws -> ColumnData {
        let info = rowGroups[rowGroup].columns[leaf]
        let lc = leaves[leaf]
        let type = info.physicalType
        guard let codec = ParquetCodec(rawValue: info.codec) else { throw fail("unknown codec \(info.codec) in column \(lc.path.joined(separator: "."))") }
        let chunk = try read(info.start, info.length)
        var col = ColumnData(values: Self.emptyValues(type))
        var dict: ColumnData.Values? = nil
        var pos = 0
        var seen = 0
        do {
            while seen < info.numValues {
                guard pos < chunk.count else { throw ParquetError("column chunk ends after \(seen) of \(info.numValues) values") }
                var tr = ThriftReader(chunk, from: pos)
                guard let h = try tr.structValue().fields else { throw ParquetError("page header is not a struct") }
                pos = tr.pos
                let pageType = Int(h[1]?.int ?? -1)
                let uncompressed = Int(h[2]?.int ?? -1), compressed = Int(h[3]?.int ?? -1)
                guard compressed >= 0, uncompressed >= 0, uncompressed < 1 << 31, pos + compressed <= chunk.count else {
                    throw ParquetError("page sizes \(compressed)/\(uncompressed) do not fit the column chunk")
                }
                let body = chunk[pos..<(pos + compressed)]
                pos += compressed
                switch pageType {
                case 2:  // dictionary
                    guard let dh = h[7]?.fields, let n = dh[1]?.int, n >= 0 else { throw ParquetError("dictionary page without header") }
                    let raw = try codec.decompress(body, size: uncompressed)
                    var p = 0
                    dict = try Self.decodePlain(raw, &p, count: Int(n), type: type, typeLength: schema[lc.chain.last!].typeLength)
                case 0, 3:  // data page v1 / v2
                    let v2 = pageType == 3
                    guard let dh = (v2 ? h[8] : h[5])?.fields, let nv = dh[1]?.int, nv >= 0 else { throw ParquetError("data page without header") }
                    let n = Int(nv)
                    guard n <= info.numValues - seen else {
                        throw ParquetError("page holds \(n) values but only \(info.numValues - seen) remain in the column chunk")
                    }
                    let encoding = Int((v2 ? dh[4] : dh[2])?.int ?? 0)
                    var raw: [UInt8]
                    var p = 0
                    var pageDefs: [Int32] = []
                    if v2 {
                        let defLen = Int(dh[5]?.int ?? 0), repLen = Int(dh[6]?.int ?? 0)
                        guard defLen >= 0, repLen >= 0, defLen + repLen <= body.count else { throw ParquetError("v2 level lengths exceed the page") }
                        let levels = Array(body.prefix(repLen + defLen))
                        if lc.maxRep > 0 { col.reps += try Self.decodeRLE(levels, 0, repLen, count: n, bitWidth: Self.bitWidth(lc.maxRep)) }
                        if lc.maxDef > 0 { pageDefs = try Self.decodeRLE(levels, repLen, repLen + defLen, count: n, bitWidth: Self.bitWidth(lc.maxDef)) }
                        let rest = body.dropFirst(repLen + defLen)
                        let compressedValues = dh[7]?.bool ?? true
                        raw = compressedValues && codec != .uncompressed
                            ? try codec.decompress(rest, size: uncompressed - repLen - defLen) : Array(rest)
                    } else {
                        raw = try codec.decompress(body, size: uncompressed)
                        if lc.maxRep > 0 { col.reps += try Self.levels(raw, &p, count: n, maxLevel: lc.maxRep) }
                        if lc.maxDef > 0 { pageDefs = try Self.levels(raw, &p, count: n, maxLevel: lc.maxDef) }
                    }
                    let nonNull = lc.maxDef > 0 ? pageDefs.reduce(0) { $0 + ($1 == lc.maxDef ? 1 : 0) } : n
                    col.defs += pageDefs
                    let vals: ColumnData.Values
                    switch encoding {
                    case 0:
                        vals = try Self.decodePlain(raw, &p, count: nonNull, type: type, typeLength: schema[lc.chain.last!].typeLength)
                    case 2, 8:
                        guard let dict else { throw ParquetError("dictionary-encoded page without a dictionary page") }
                        guard p < raw.count || nonNull == 0 else { throw ParquetError("dictionary page data is empty") }
                        let width = nonNull == 0 ? 0 : Int(raw[p])
                        guard width <= 32 else { throw ParquetError("dictionary index bit width \(width) > 32") }
                        let idx = nonNull == 0 ? [] : try Self.decodeRLE(raw, p + 1, raw.count, count: nonNull, bitWidth: width)
                        vals = try Self.gather(dict, idx)
                    case 3 where type == 0:
                        guard p + 4 <= raw.count else { throw ParquetError("boolean RLE page too short") }
                        let len = Int(raw[p]) | Int(raw[p + 1]) << 8 | Int(raw[p + 2]) << 16 | Int(raw[p + 3]) << 24
                        guard len >= 0, p + 4 + len <= raw.count else { throw ParquetError("boolean RLE length past the page") }
                        vals = .bools(try Self.decodeRLE(raw, p + 4, p + 4 + len, count: nonNull, bitWidth: 1).map { $0 != 0 })
                    default:
                        throw ParquetError("encoding \(encoding) is not supported (supported: PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY, RLE booleans)")
                    }
                    Self.append(&col.values, vals)
                    seen += n
                case 1: continue  // index page
                default: throw ParquetError("unknown page type \(pageType)")
                }
            }
        } catch let e as ParquetError {
            throw fail("column \(lc.path.joined(separator: ".")), row group \(rowGroup): \(e.description)")
        }
        return col
    }

    static func emptyValues(_ type: Int) -> ColumnData.Values {
        switch type {
        case 0: return .bools([])
        case 1, 2: return .ints([])
        case 4, 5: return .doubles([])
        default: return .bytes(arena: [], offsets: [0])
        }
    }

    static func append(_ a: inout ColumnData.Values, _ b: ColumnData.Values) {
        switch (a, b) {
        case (.bools(let x), .bools(let y)): a = .bools(x + y)
        case (.ints(let x), .ints(let y)): a = .ints(x + y)
        case (.doubles(let x), .doubles(let y)): a = .doubles(x + y)
        case (.bytes(var ar, var off), .bytes(let br, let boff)):
            let base = ar.count
            ar += br
            off += boff.dropFirst().map { $0 + base }
            a = .bytes(arena: ar, offsets: off)
        default: break
        }
    }

    static func gather(_ dict: ColumnData.Values, _ idx: [Int32]) throws -> ColumnData.Values {
        let n = dict.count
        for i in idx where i < 0 || Int(i) >= n { throw ParquetError("dictionary index \(i) out of range (\(n) entries)") }
        switch dict {
        case .bools(let v): return .bools(idx.map { v[Int($0)] })
        case .ints(let v): return .ints(idx.map { v[Int($0)] })
        case .doubles(let v): return .doubles(idx.map { v[Int($0)] })
        case .bytes(let a, let o):
            var arena: [UInt8] = []
            var off = [0]
            off.reserveCapacity(idx.count + 1)
            for i in idx {
                arena += a[o[Int(i)]..<o[Int(i) + 1]]
                off.append(arena.count)
            }
            return .bytes(arena: arena, offsets: off)
        }
    }

    /// v1 levels: a 4-byte length, then RLE/bit-packed hybrid data.
    static func levels(_ raw: [UInt8], _ p: inout Int, count: Int, maxLevel: Int) throws -> [Int32] {
        guard p + 4 <= raw.count else { throw ParquetError("level data missing") }
        let len = Int(raw[p]) | Int(raw[p + 1]) << 8 | Int(raw[p + 2]) << 16 | Int(raw[p + 3]) << 24
        guard len >= 0, p + 4 + len <= raw.count else { throw ParquetError("level length \(len) past the page") }
        let out = try decodeRLE(raw, p + 4, p + 4 + len, count: count, bitWidth: bitWidth(maxLevel))
        p += 4 + len
        for v in out where v < 0 || v > maxLevel { throw ParquetError("level \(v) above the maximum \(maxLevel)") }
        return out
    }

    /// The RLE / bit-packed hybrid encoding.
    static func decodeRLE(_ b: [UInt8], _ start: Int, _ end: Int, count: Int, bitWidth: Int) throws -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(count)
        var pos = start
        let byteWidth = (bitWidth + 7) / 8
        while out.count < count {
            guard pos < end else { throw ParquetError("RLE data ends after \(out.count) of \(count) values") }
            var header: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard pos < end, shift < 64 else { throw ParquetError("bad RLE run header") }
                let byte = b[pos]; pos += 1
                header |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            if header & 1 == 0 {
                let run = Int(min(header >> 1, UInt64(count - out.count)))
                guard pos + byteWidth <= end else { throw ParquetError("RLE run value past the end") }
                var v: UInt32 = 0
                for i in 0..<byteWidth { v |= UInt32(b[pos + i]) << (8 * UInt32(i)) }
                pos += byteWidth
                out += repeatElement(Int32(bitPattern: v), count: run)
            } else {
                let groups = Int(min(header >> 1, UInt64(1 << 26)))
                let nbytes = groups * bitWidth
                guard pos + nbytes <= end else { throw ParquetError("bit-packed run past the end") }
                let n = min(groups * 8, count - out.count)
                if bitWidth == 0 {
                    out += repeatElement(0, count: n)
                } else {
                    var bit = 0
                    for _ in 0..<n {
                        var v: UInt32 = 0
                        for k in 0..<bitWidth {
                            let idx = bit + k
                            if b[pos + idx >> 3] >> UInt8(idx & 7) & 1 == 1 { v |= 1 << UInt32(k) }
                        }
                        bit += bitWidth
                        out.append(Int32(bitPattern: v))
                    }
                }
                pos += nbytes
            }
        }
        return out
    }

    static func decodePlain(_ raw: [UInt8], _ p: inout Int, count: Int, type: Int, typeLength: Int) throws -> ColumnData.Values {
        func need(_ n: Int) throws { guard n >= 0, p + n <= raw.count else { throw ParquetError("PLAIN values run past the page") } }
        func le(_ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(raw[at + i]) << (8 * UInt64(i)) }
            return v
        }
        // `count` values of `width` bytes each, decoded from their offsets
        func fixed<T>(_ width: Int, _ value: (Int) -> T) throws -> [T] {
            try need(width * count)
            let v = (0..<count).map { value(p + width * $0) }
            p += width * count
            return v
        }
        switch type {
        case 0:
            try need((count + 7) / 8)
            let v = (0..<count).map { raw[p + $0 >> 3] >> UInt8($0 & 7) & 1 == 1 }
            p += (count + 7) / 8
            return .bools(v)
        case 1: return .ints(try fixed(4) { Int64(Int32(bitPattern: UInt32(le($0, 4)))) })
        case 2: return .ints(try fixed(8) { Int64(bitPattern: le($0, 8)) })
        case 4: return .doubles(try fixed(4) { Double(Float(bitPattern: UInt32(le($0, 4)))) })
        case 5: return .doubles(try fixed(8) { Double(bitPattern: le($0, 8)) })
        case 6:
            var offsets = [Int]()
            offsets.reserveCapacity(count + 1)
            offsets.append(0)
            var arena = [UInt8]()
            arena.reserveCapacity(raw.count - p)
            for _ in 0..<count {
                try need(4)
                let len = Int(le(p, 4))
                p += 4
                try need(len)
                arena += raw[p..<(p + len)]
                p += len
                offsets.append(arena.count)
            }
            return .bytes(arena: arena, offsets: offsets)
        case 3, 7:
            let w = type == 3 ? 12 : typeLength
            guard w > 0 else { throw ParquetError("fixed-length column without a type length") }
            try need(w * count)
            let arena = Array(raw[p..<(p + w * count)])
            p += w * count
            return .bytes(arena: arena, offsets: (0...count).map { $0 * w })
        default:
            throw ParquetError("physical type \(type) is not supported")
        }
    }
}
