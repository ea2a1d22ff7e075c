import CZlib
import Foundation

/// Writes files in `torch.save`'s format that `torch.load` (weights_only=True, its default) and `pickle.load` read:
/// a state dict of float32 tensors, one int32 tensor (token_bytes.pt), and a tiktoken Encoding (tokenizer.pkl).
/// The pickles use only the opcodes and names torch.save writes; the zip stores entries uncompressed, each storage
/// aligned to 64 bytes as torch aligns them, with ZIP64 records when the file passes 4 GB.
public enum TorchWriter {
    /// One tensor to write: its name (a state-dict key, or nil for a file holding one tensor), shape, and bytes.
    public struct Entry {
        public var name: String?
        public var shape: [Int]
        public var dtype: TorchDType
        public var bytes: Data
        public init(name: String?, shape: [Int], dtype: TorchDType, bytes: Data) {
            self.name = name; self.shape = shape; self.dtype = dtype; self.bytes = bytes
        }
        public static func floats(_ name: String?, shape: [Int], _ values: [Float]) -> Entry {
            Entry(name: name, shape: shape, dtype: .float32, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) })
        }
        public static func int32s(_ name: String?, _ values: [Int32]) -> Entry {
            Entry(name: name, shape: [values.count], dtype: .int32, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) })
        }
    }

    /// A pickle stream being written (protocol 2 for torch's files, 4 for tokenizer.pkl's bytes keys).
    struct Pickler {
        var out: [UInt8]
        init(protocol p: UInt8) { out = [0x80, p] }
        mutating func op(_ b: UInt8) { out.append(b) }
        mutating func global(_ module: String, _ name: String) { out.append(0x63); out += Array("\(module)\n\(name)\n".utf8) }
        mutating func string(_ s: String) {
            let b = Array(s.utf8)
            out.append(0x58)
            out += withUnsafeBytes(of: UInt32(b.count).littleEndian, Array.init)
            out += b
        }
        mutating func bytes(_ b: [UInt8]) {
            // BINBYTES (protocol 3 and up)
            out.append(0x42)
            out += withUnsafeBytes(of: UInt32(b.count).littleEndian, Array.init)
            out += b
        }
        mutating func int(_ v: Int) {
            if v >= 0 && v < 256 { out += [0x4B, UInt8(v)] } else if v >= 0 && v < 65536 { out += [0x4D, UInt8(v & 0xFF), UInt8(v >> 8)] }
            else if v >= Int(Int32.min) && v <= Int(Int32.max) { out.append(0x4A); out += withUnsafeBytes(of: Int32(v).littleEndian, Array.init) }
            else { out += [0x8A, 8]; out += withUnsafeBytes(of: Int64(v).littleEndian, Array.init) }
        }
        mutating func tuple(_ items: [Int]) {
            out.append(0x28)
            items.forEach { int($0) }
            out.append(0x74)
        }
        /// `_rebuild_tensor_v2(storage key, offset 0, shape, contiguous strides, False, OrderedDict())`.
        mutating func tensor(key: String, dtype: TorchDType, shape: [Int]) {
            global("torch._utils", "_rebuild_tensor_v2")
            op(0x28)  // MARK: the arguments
            op(0x28)  // MARK: the persistent id
            string("storage"); global("torch", dtype.rawValue); string(key); string("cpu"); int(shape.reduce(1, *))
            op(0x74); op(0x51)  // TUPLE, BINPERSID
            int(0)
            tuple(shape)
            var strides = [Int](repeating: 1, count: shape.count)
            for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
            tuple(strides)
            op(0x89)  // False: requires_grad
            global("collections", "OrderedDict"); op(0x29); op(0x52)  // backward hooks: OrderedDict()
            op(0x74); op(0x52)  // TUPLE, REDUCE
        }
    }

    /// Writes `entries` as torch.save writes a state dict (or, with one unnamed entry, a single tensor) to `url`,
    /// atomically. `archive` is the folder name inside the zip (torch uses the file's stem).
    public static func save(_ entries: [Entry], to url: URL) throws {
        let archive = url.deletingPathExtension().lastPathComponent
        var p = Pickler(protocol: 2)
        let single = entries.count == 1 && entries[0].name == nil
        if !single {
            p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
            p.op(0x28)
        }
        for (i, e) in entries.enumerated() {
            guard e.bytes.count == e.shape.reduce(1, *) * e.dtype.size else {
                throw NanoChatError("internal: \(e.name ?? "tensor") has \(e.bytes.count) bytes for shape \(e.shape)")
            }
            if let name = e.name { p.string(name) }
            p.tensor(key: "\(i)", dtype: e.dtype, shape: e.shape)
        }
        if !single { p.op(0x75) }  // SETITEMS
        p.op(0x2E)
        var files: [(String, Data)] = [("data.pkl", Data(p.out)), (".format_version", Data("1".utf8)),
                                       (".storage_alignment", Data("64".utf8)), ("byteorder", Data("little".utf8))]
        for (i, e) in entries.enumerated() { files.append(("data/\(i)", e.bytes)) }
        files.append(("version", Data("3\n".utf8)))
        files.append((".data/serialization_id", Data(String(format: "%040d", entries.count).utf8)))
        try writeZip(files.map { ("\(archive)/\($0.0)", $0.1) }, to: url)
    }

    /// Writes upstream's `tokenizer.pkl`: what `pickle.dump(tiktoken.Encoding)` writes (the class, then its state:
    /// name, pat_str, mergeable_ranks as bytes -> rank, special_tokens as name -> id).
    public static func tokenizerPickle(_ tok: Tokenizer) -> Data {
        var p = Pickler(protocol: 4)
        p.global("tiktoken.core", "Encoding"); p.op(0x29); p.op(0x81)  // Encoding.__new__(Encoding)
        p.op(0x7D); p.op(0x28)  // the state: EMPTY_DICT, MARK
        p.string("name"); p.string("rustbpe")
        p.string("pat_str"); p.string(tok.pattern)
        p.string("mergeable_ranks"); p.op(0x7D); p.op(0x28)
        for r in 0..<tok.mergeableCount { p.bytes(tok.ranks.keyBytes(r)); p.int(r) }
        p.op(0x75)
        p.string("special_tokens"); p.op(0x7D); p.op(0x28)
        for (i, s) in tok.specialTokens.enumerated() { p.string(s); p.int(tok.mergeableCount + i) }
        p.op(0x75)
        p.op(0x75)  // SETITEMS of the state
        p.op(0x62)  // BUILD
        p.op(0x2E)
        return Data(p.out)
    }

    /// A zip of stored entries, each entry's data starting at a multiple of 64 (padding in the local header's extra
    /// field, as torch does), ZIP64 records where sizes or offsets pass 32 bits. Written to a temporary file, renamed.
    static func writeZip(_ files: [(String, Data)], to url: URL) throws {
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())")
        guard FileManager.default.createFile(atPath: tmp.path, contents: nil), let h = try? FileHandle(forWritingTo: tmp) else {
            throw NanoChatError("cannot write \(tmp.path)")
        }
        var ok = false
        defer { if !ok { try? FileManager.default.removeItem(at: tmp) } }
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        var offset = 0
        var central: [UInt8] = []
        for (name, data) in files {
            let nameBytes = Array(name.utf8)
            let crc = data.withUnsafeBytes { raw -> UInt32 in
                var c = crc32(0, nil, 0), done = 0
                while done < raw.count {
                    let chunk = min(raw.count - done, 1 << 30)
                    c = crc32(c, raw.baseAddress!.advanced(by: done).assumingMemoryBound(to: Bytef.self), uInt(chunk))
                    done += chunk
                }
                return UInt32(truncatingIfNeeded: c)
            }
            let big = data.count >= 0xFFFF_FFFF
            let bigOffset = offset >= 0xFFFF_FFFF
            // the local header: its extra holds the ZIP64 sizes when needed, then padding to align the data to 64
            var extra: [UInt8] = big ? le(UInt16(1)) + le(UInt16(16)) + le(UInt64(data.count)) + le(UInt64(data.count)) : []
            let headerEnd = offset + 30 + nameBytes.count + extra.count
            var pad = (64 - (headerEnd + 4) % 64) % 64
            if headerEnd % 64 == 0 { pad = -4 }  // aligned already: no padding field
            if pad >= 0 { extra += le(UInt16(0x4246)) + le(UInt16(pad)) + [UInt8](repeating: 0x5A, count: pad) }
            let size32 = big ? UInt32.max : UInt32(data.count)
            var local = le(UInt32(0x0403_4B50)) + le(UInt16(big ? 45 : 20)) + le(UInt16(0x800)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0x21))
            local += le(crc) + le(size32) + le(size32) + le(UInt16(nameBytes.count)) + le(UInt16(extra.count)) + nameBytes + extra
            h.write(Data(local))
            h.write(data)
            // the central directory entry: ZIP64 sizes and offset in its extra when they do not fit
            var cextra: [UInt8] = []
            if big { cextra += le(UInt64(data.count)) + le(UInt64(data.count)) }
            if bigOffset { cextra += le(UInt64(offset)) }
            if !cextra.isEmpty { cextra = le(UInt16(1)) + le(UInt16(cextra.count)) + cextra }
            central += le(UInt32(0x0201_4B50)) + le(UInt16(45)) + le(UInt16(big || bigOffset ? 45 : 20)) + le(UInt16(0x800)) + le(UInt16(0))
            central += le(UInt16(0)) + le(UInt16(0x21)) + le(crc) + le(size32) + le(size32) + le(UInt16(nameBytes.count))
            central += le(UInt16(cextra.count)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt32(0))
            central += le(bigOffset ? UInt32.max : UInt32(offset)) + nameBytes + cextra
            offset += local.count + data.count
        }
        let cdOffset = offset, cdSize = central.count
        h.write(Data(central))
        var end: [UInt8] = []
        let zip64 = cdOffset >= 0xFFFF_FFFF || files.count >= 0xFFFF
        if zip64 {
            let z = cdOffset + cdSize
            end += le(UInt32(0x0606_4B50)) + le(UInt64(44)) + le(UInt16(45)) + le(UInt16(45)) + le(UInt32(0)) + le(UInt32(0))
            end += le(UInt64(files.count)) + le(UInt64(files.count)) + le(UInt64(cdSize)) + le(UInt64(cdOffset))
            end += le(UInt32(0x0706_4B50)) + le(UInt32(0)) + le(UInt64(z)) + le(UInt32(1))
        }
        let count16 = zip64 ? UInt16.max : UInt16(files.count)
        end += le(UInt32(0x0605_4B50)) + le(UInt16(0)) + le(UInt16(0)) + le(count16) + le(count16)
        end += le(UInt32(cdSize)) + le(zip64 ? UInt32.max : UInt32(cdOffset)) + le(UInt16(0))
        h.write(Data(end))
        try h.synchronize()
        try h.close()
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: tmp, to: url)
        ok = true
    }
}
