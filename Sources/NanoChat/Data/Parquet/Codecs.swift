import CZlib
import CZstd

/// Parquet's compression codecs: UNCOMPRESSED, SNAPPY (our own decoder), GZIP (zlib), ZSTD (libzstd).
enum ParquetCodec: Int {
    case uncompressed = 0, snappy = 1, gzip = 2, lzo = 3, brotli = 4, lz4 = 5, zstd = 6, lz4Raw = 7

    var name: String { ["UNCOMPRESSED", "SNAPPY", "GZIP", "LZO", "BROTLI", "LZ4", "ZSTD", "LZ4_RAW"][rawValue] }

    /// Decompresses exactly `size` bytes, or throws if the data is corrupt or the size does not match.
    func decompress(_ input: ArraySlice<UInt8>, size: Int) throws -> [UInt8] {
        switch self {
        case .uncompressed:
            guard input.count == size else { throw ParquetError("page holds \(input.count) bytes, header says \(size)") }
            return Array(input)
        case .snappy: return try snappyDecompress(input, expected: size)
        case .zstd:
            let declared = input.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
            if declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != UInt64(size) {
                throw ParquetError("zstd frame holds \(declared) bytes, header says \(size)")
            }
            var out = [UInt8](repeating: 0, count: size)
            let r = input.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in ZSTD_decompress(dst.baseAddress, size, src.baseAddress, src.count) }
            }
            if ZSTD_isError(r) != 0 { throw ParquetError("zstd: \(String(cString: ZSTD_getErrorName(r)))") }
            guard r == size else { throw ParquetError("zstd page decompressed to \(r) bytes, header says \(size)") }
            return out
        case .gzip:
            guard size <= max(1 << 20, input.count * 1032) else {  // deflate cannot expand more than ~1032x
                throw ParquetError("gzip page claims \(size) bytes from \(input.count)")
            }
            var out = [UInt8](repeating: 0, count: size)
            var stream = z_stream()
            guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
                throw ParquetError("zlib could not start")
            }
            defer { inflateEnd(&stream) }
            var input = Array(input)
            let status: Int32 = input.withUnsafeMutableBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    stream.next_in = src.baseAddress
                    stream.avail_in = UInt32(src.count)
                    stream.next_out = dst.baseAddress
                    stream.avail_out = UInt32(dst.count)
                    return inflate(&stream, Z_FINISH)
                }
            }
            guard status == Z_STREAM_END, Int(stream.total_out) == size else {
                throw ParquetError("gzip page does not decompress (zlib status \(status), \(stream.total_out) of \(size) bytes)")
            }
            return out
        default: throw ParquetError("codec \(name) is not supported (supported: UNCOMPRESSED, SNAPPY, GZIP, ZSTD)")
        }
    }
}

/// Snappy raw format: a varint length, then literals and back-references. Bounds-checked throughout.
func snappyDecompress(_ input: ArraySlice<UInt8>, expected: Int) throws -> [UInt8] {
    let src = Array(input)
    var pos = 0
    var length = 0
    var shift = 0
    while true {
        guard pos < src.count, shift < 35 else { throw ParquetError("snappy: bad length header") }
        let b = src[pos]; pos += 1
        length |= Int(b & 0x7F) << shift
        if b & 0x80 == 0 { break }
        shift += 7
    }
    guard length == expected else { throw ParquetError("snappy block holds \(length) bytes, header says \(expected)") }
    var out = [UInt8](repeating: 0, count: length)
    var o = 0
    try out.withUnsafeMutableBufferPointer { dst in
        try src.withUnsafeBufferPointer { s in
            while pos < s.count {
                let tag = s[pos]; pos += 1
                switch tag & 3 {
                case 0:
                    var len = Int(tag >> 2) + 1
                    if len > 60 {
                        let extra = len - 60
                        guard pos + extra <= s.count else { throw ParquetError("snappy: literal length past the end") }
                        len = 0
                        for i in 0..<extra { len |= Int(s[pos + i]) << (8 * i) }
                        len += 1
                        pos += extra
                    }
                    guard pos + len <= s.count, o + len <= dst.count else { throw ParquetError("snappy: literal past the end") }
                    (dst.baseAddress! + o).update(from: s.baseAddress! + pos, count: len)
                    pos += len; o += len
                default:
                    var len: Int, offset: Int
                    switch tag & 3 {
                    case 1:
                        guard pos < s.count else { throw ParquetError("snappy: truncated copy") }
                        len = 4 + Int((tag >> 2) & 7)
                        offset = Int(tag >> 5) << 8 | Int(s[pos]); pos += 1
                    case 2:
                        guard pos + 2 <= s.count else { throw ParquetError("snappy: truncated copy") }
                        len = Int(tag >> 2) + 1
                        offset = Int(s[pos]) | Int(s[pos + 1]) << 8; pos += 2
                    default:
                        guard pos + 4 <= s.count else { throw ParquetError("snappy: truncated copy") }
                        len = Int(tag >> 2) + 1
                        offset = Int(s[pos]) | Int(s[pos + 1]) << 8 | Int(s[pos + 2]) << 16 | Int(s[pos + 3]) << 24; pos += 4
                    }
                    guard offset > 0, offset <= o, o + len <= dst.count else { throw ParquetError("snappy: bad back-reference") }
                    for i in 0..<len { dst[o + i] = dst[o - offset + i] }  // may overlap: byte by byte
                    o += len
                }
            }
        }
    }
    guard o == length else { throw ParquetError("snappy: produced \(o) of \(length) bytes") }
    return out
}

/// zstd compression for the shards we write (upstream writes zstd level 3).
func zstdCompress(_ input: [UInt8], level: Int32 = 3) throws -> [UInt8] {
    let bound = ZSTD_compressBound(input.count)
    var out = [UInt8](repeating: 0, count: bound)
    let r = input.withUnsafeBytes { src in
        out.withUnsafeMutableBytes { dst in ZSTD_compress(dst.baseAddress, bound, src.baseAddress, src.count, level) }
    }
    if ZSTD_isError(r) != 0 { throw ParquetError("zstd compression failed: \(String(cString: ZSTD_getErrorName(r)))") }
    out.removeLast(bound - r)
    return out
}

/// A whole gzip (or dictzip) file, decompressed with zlib, output size unknown in advance.
public func gunzip(_ data: [UInt8]) throws -> [UInt8] {
    var stream = z_stream()
    guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw ParquetError("zlib could not start")
    }
    defer { inflateEnd(&stream) }
    var out = [UInt8]()
    var input = data
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    var status: Int32 = Z_OK
    input.withUnsafeMutableBufferPointer { src in
        stream.next_in = src.baseAddress
        stream.avail_in = UInt32(src.count)
        repeat {
            chunk.withUnsafeMutableBufferPointer { dst in
                stream.next_out = dst.baseAddress
                stream.avail_out = UInt32(dst.count)
                status = inflate(&stream, Z_NO_FLUSH)
                out += dst[0..<(dst.count - Int(stream.avail_out))]
            }
        } while status == Z_OK
    }
    guard status == Z_STREAM_END else { throw ParquetError("gzip data is corrupt (zlib status \(status))") }
    return out
}
