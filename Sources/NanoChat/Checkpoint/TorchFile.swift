import CZlib
import Foundation

/// A file written by `torch.save` (PyTorch's zip format, the default since PyTorch 1.6): a zip archive, every entry
/// stored uncompressed under one folder, holding `data.pkl` (the pickled object, storages referenced by key),
/// `data/<key>` (each storage's raw little-endian bytes), `byteorder` and `version`. The pickle is read by
/// `SafePickle` (nothing runs); the zip's structure, every size and offset, and each entry's CRC-32 are checked, so a
/// truncated or altered file is refused with the reason. The file is memory-mapped: a storage's bytes are read when a
/// tensor asks for them.
public final class TorchFile {
    public let url: URL
    let data: Data
    /// Entries by their name inside the archive's folder (`data.pkl`, `data/0`): where the bytes start, how many, CRC.
    public let entries: [String: (offset: Int, size: Int, crc: UInt32)]
    /// The object `torch.save` was given.
    public let root: PickleValue

    public init(url: URL) throws {
        self.url = url
        let what = url.path
        guard FileManager.default.fileExists(atPath: url.path) else { throw NanoChatError("\(what) does not exist") }
        do { data = try Data(contentsOf: url, options: .alwaysMapped) } catch { throw NanoChatError("cannot read \(what): \(error.localizedDescription)") }
        let all = try Self.readZip(data, what: what)
        // one folder holds everything: <name>/data.pkl
        let pickles = all.keys.filter { $0.hasSuffix("/data.pkl") && $0.split(separator: "/").count == 2 }
        guard pickles.count == 1, let pkl = pickles.first else {
            throw NanoChatError("\(what) is a zip archive but not one torch.save wrote (expected one <name>/data.pkl, found \(pickles.count))")
        }
        let prefix = String(pkl.dropLast("data.pkl".count))
        var inner: [String: (offset: Int, size: Int, crc: UInt32)] = [:]
        for (name, e) in all where name.hasPrefix(prefix) { inner[String(name.dropFirst(prefix.count))] = e }
        entries = inner
        if let order = inner["byteorder"] {
            let text = String(decoding: data[order.offset..<order.offset + order.size], as: UTF8.self)
            guard text == "little" else { throw NanoChatError("\(what) was saved on a \(text)-endian machine; only little-endian storages are read") }
        }
        let pickleBytes = try Self.checkedBytes(data, inner["data.pkl"]!, name: "data.pkl", what: what)
        root = try SafePickle(pickleBytes, what: "\(what) (data.pkl)").read()
    }

    /// The zip's central directory: name -> (data offset, size, CRC-32). Only stored (uncompressed) entries, as
    /// torch.save writes; ZIP64 sizes and offsets are read (checkpoints over 4 GB).
    static func readZip(_ data: Data, what: String) throws -> [String: (offset: Int, size: Int, crc: UInt32)] {
        let n = data.count
        func bad(_ m: String) -> NanoChatError { NanoChatError("\(what) is not a readable torch.save file: \(m)") }
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [String: (offset: Int, size: Int, crc: UInt32)] in
            func u(_ at: Int, _ len: Int) throws -> UInt64 {
                guard at >= 0, len >= 0, at + len <= n else { throw bad("a field at byte \(at) lies past the end (the file is truncated)") }
                var v: UInt64 = 0
                for i in 0..<len { v |= UInt64(raw[at + i]) << (8 * UInt64(i)) }
                return v
            }
            // the end-of-central-directory record: in the last 64 KB + 22 bytes
            guard n >= 22 else { throw bad("\(n) bytes is too short for a zip archive") }
            var eocd = -1
            var i = n - 22
            while i >= max(0, n - 22 - 65_535) {
                if raw[i] == 0x50 && raw[i + 1] == 0x4B && raw[i + 2] == 0x05 && raw[i + 3] == 0x06 { eocd = i; break }
                i -= 1
            }
            guard eocd >= 0 else {
                if n >= 2 && raw[0] == 0x80 { throw bad("it is a bare pickle (torch.save's legacy format, before PyTorch 1.6); save it again with a current PyTorch") }
                throw bad("no zip end record (the file is truncated or not a zip archive)")
            }
            var count = Int(try u(eocd + 10, 2)), cdSize = Int(try u(eocd + 12, 4)), cdOffset = Int(try u(eocd + 16, 4))
            if count == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
                // ZIP64: the locator sits just before the end record
                guard try u(eocd - 20, 4) == 0x0706_4B50 else { throw bad("a ZIP64 archive without its locator") }
                let z = Int(try u(eocd - 12, 8))
                guard try u(z, 4) == 0x0606_4B50 else { throw bad("a ZIP64 locator that points at no ZIP64 end record") }
                count = Int(try u(z + 32, 8)); cdSize = Int(try u(z + 40, 8)); cdOffset = Int(try u(z + 48, 8))
            }
            guard count <= 10_000_000, cdOffset >= 0, cdSize >= 0, cdOffset + cdSize <= n else { throw bad("a central directory outside the file") }
            var out: [String: (offset: Int, size: Int, crc: UInt32)] = [:]
            var p = cdOffset
            for _ in 0..<count {
                guard try u(p, 4) == 0x0201_4B50 else { throw bad("a broken central directory entry at byte \(p)") }
                let method = try u(p + 10, 2), crc = UInt32(try u(p + 16, 4))
                var csize = Int(try u(p + 20, 4)), usize = Int(try u(p + 24, 4))
                let nameLen = Int(try u(p + 28, 2)), extraLen = Int(try u(p + 30, 2)), commentLen = Int(try u(p + 32, 2))
                var local = Int(try u(p + 42, 4))
                guard p + 46 + nameLen <= n else { throw bad("an entry name past the end") }
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: raw[(p + 46)..<(p + 46 + nameLen)]), as: UTF8.self)
                // ZIP64 extra field: the 8-byte values of the fields that hold 0xFFFFFFFF, in this order
                var e = p + 46 + nameLen
                let extraEnd = e + extraLen
                while e + 4 <= extraEnd {
                    let id = try u(e, 2), len = Int(try u(e + 2, 2))
                    if id == 1 {
                        var q = e + 4
                        if usize == 0xFFFF_FFFF { usize = Int(try u(q, 8)); q += 8 }
                        if csize == 0xFFFF_FFFF { csize = Int(try u(q, 8)); q += 8 }
                        if local == 0xFFFF_FFFF { local = Int(try u(q, 8)) }
                    }
                    e += 4 + len
                }
                guard method == 0, csize == usize else {
                    throw bad("entry \(name) is compressed (method \(method)); torch.save stores entries uncompressed")
                }
                guard try u(local, 4) == 0x0403_4B50 else { throw bad("entry \(name) has no local header at byte \(local)") }
                let start = local + 30 + Int(try u(local + 26, 2)) + Int(try u(local + 28, 2))
                guard start >= 0, usize >= 0, start + usize <= n else { throw bad("entry \(name)'s \(usize) bytes run past the end (the file is truncated)") }
                out[name] = (start, usize, crc)
                p += 46 + nameLen + extraLen + commentLen
            }
            return out
        }
    }

    /// An entry's bytes after its CRC-32 is checked.
    static func checkedBytes(_ data: Data, _ e: (offset: Int, size: Int, crc: UInt32), name: String, what: String) throws -> [UInt8] {
        let bytes = [UInt8](data[e.offset..<e.offset + e.size])
        try checkCRC(bytes.withUnsafeBufferPointer { UnsafeRawBufferPointer($0) }, e.crc, name: name, what: what)
        return bytes
    }

    static func checkCRC(_ bytes: UnsafeRawBufferPointer, _ expected: UInt32, name: String, what: String) throws {
        var crc: uLong = crc32(0, nil, 0)
        var done = 0
        while done < bytes.count {
            let chunk = min(bytes.count - done, 1 << 30)
            crc = crc32(crc, bytes.baseAddress!.advanced(by: done).assumingMemoryBound(to: Bytef.self), uInt(chunk))
            done += chunk
        }
        guard UInt32(truncatingIfNeeded: crc) == expected else {
            throw NanoChatError("\(what): entry \(name) fails its CRC-32 check (the file was altered or damaged)")
        }
    }

    /// A tensor's values as Float, in row-major order of its shape (any strides), from float32, bfloat16, float16,
    /// float64 or integer storages.
    public func floats(_ t: TorchTensorRef, name: String) throws -> [Float] {
        try values(t, name: name) { raw, i in
            switch t.dtype {
            case .float32: return raw.load(fromByteOffset: 4 * i, as: Float.self)
            case .bfloat16: return Float(bitPattern: UInt32(raw.load(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            case .float16: return Float(Float16(bitPattern: raw.load(fromByteOffset: 2 * i, as: UInt16.self)))
            case .float64: return Float(raw.load(fromByteOffset: 8 * i, as: Double.self))
            case .int64: return Float(raw.load(fromByteOffset: 8 * i, as: Int64.self))
            case .int32: return Float(raw.load(fromByteOffset: 4 * i, as: Int32.self))
            case .int16: return Float(raw.load(fromByteOffset: 2 * i, as: Int16.self))
            case .int8: return Float(raw.load(fromByteOffset: i, as: Int8.self))
            case .uint8, .bool: return Float(raw.load(fromByteOffset: i, as: UInt8.self))
            }
        }
    }

    /// An integer tensor's values (int64, int32, int16, int8, uint8, bool), row-major.
    public func ints(_ t: TorchTensorRef, name: String) throws -> [Int] {
        guard ![.float32, .bfloat16, .float16, .float64].contains(t.dtype) else {
            throw NanoChatError("\(url.path): \(name) is \(t.dtype.torchName), expected an integer tensor")
        }
        return try values(t, name: name) { raw, i in
            switch t.dtype {
            case .int64: return Int(raw.load(fromByteOffset: 8 * i, as: Int64.self))
            case .int32: return Int(raw.load(fromByteOffset: 4 * i, as: Int32.self))
            case .int16: return Int(raw.load(fromByteOffset: 2 * i, as: Int16.self))
            case .int8: return Int(raw.load(fromByteOffset: i, as: Int8.self))
            default: return Int(raw.load(fromByteOffset: i, as: UInt8.self))
            }
        }
    }

    private func values<T>(_ t: TorchTensorRef, name: String, _ read: (UnsafeRawBufferPointer, Int) -> T) throws -> [T] {
        guard let e = entries["data/\(t.storageKey)"] else {
            throw NanoChatError("\(url.path): \(name)'s storage data/\(t.storageKey) is missing from the archive")
        }
        guard e.size == t.storageCount * t.dtype.size else {
            throw NanoChatError("\(url.path): storage data/\(t.storageKey) holds \(e.size) bytes, its \(t.storageCount) \(t.dtype.torchName) elements need \(t.storageCount * t.dtype.size)")
        }
        let count = t.shape.reduce(1, *)
        return try data.withUnsafeBytes { (all: UnsafeRawBufferPointer) -> [T] in
            let raw = UnsafeRawBufferPointer(rebasing: all[e.offset..<e.offset + e.size])
            try Self.checkCRC(raw, e.crc, name: "data/\(t.storageKey)", what: url.path)
            var out = [T]()
            out.reserveCapacity(count)
            if count == 0 { return out }
            // walk the shape's indices in row-major order, each element at offset + sum(index * stride)
            var index = [Int](repeating: 0, count: t.shape.count)
            var at = t.offset
            for _ in 0..<count {
                out.append(read(raw, at))
                var d = t.shape.count - 1
                while d >= 0 {
                    index[d] += 1
                    at += t.stride[d]
                    if index[d] < t.shape[d] { break }
                    at -= t.stride[d] * t.shape[d]
                    index[d] = 0
                    d -= 1
                }
            }
            return out
        }
    }

    /// The saved object as a state dict: name -> tensor, in the file's order. Anything else is an error.
    public func stateDict() throws -> [(String, TorchTensorRef)] {
        guard case .dict(let items) = root else {
            throw NanoChatError("\(url.path) holds a \(root.kind), not a state dict (a dict of tensors)")
        }
        return try items.map { k, v in
            guard case .string(let name) = k else { throw NanoChatError("\(url.path): a state-dict key is a \(k.kind), not a name") }
            guard case .tensor(let t) = v else { throw NanoChatError("\(url.path): \(name) is a \(v.kind), not a tensor") }
            return (name, t)
        }
    }
}
