import Foundation
import NanoTensor

/// The safetensors format (what upstream's PyTorch loads with `safetensors.torch.load_file`): an 8-byte
/// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}},
/// then the raw little-endian tensor bytes. We write F32 (and I64 for integer arrays); we read F32, BF16,
/// F16 and I64/I32.
public struct SafeTensorsFile {
    public struct Entry {
        public var dtype: String
        public var shape: [Int]
        public var start: Int
        public var end: Int
    }

    public let url: URL
    public let data: Data
    public let entries: [String: Entry]
    public let metadata: [String: String]
    let dataStart: Int

    public var names: [String] { entries.keys.sorted() }

    /// Reads and validates the header: every tensor's byte range must lie inside the file and match its shape.
    public init(url: URL) throws {
        self.url = url
        let data = try FileIO.read(url, what: "safetensors file")
        self.data = data
        func bad(_ why: String) -> NanoChatError {
            NanoChatError("\(url.path) is not a valid safetensors file: \(why) (a torn or truncated write? re-create it)")
        }
        guard data.count >= 8 else { throw bad("only \(data.count) bytes") }
        let rawLen = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard rawLen > 1, rawLen <= UInt64(data.count - 8), rawLen < 100_000_000 else {
            throw bad("header length \(rawLen) does not fit in a \(data.count)-byte file")
        }
        let headerLen = Int(rawLen)
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLen))) as? [String: Any] else {
            throw bad("the header is not a JSON object")
        }
        dataStart = 8 + headerLen
        let payload = data.count - dataStart
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = value as? [String: String] ?? [:]
                continue
            }
            guard let obj = value as? [String: Any], let dtype = obj["dtype"] as? String,
                  let shape = obj["shape"] as? [Int], let offs = obj["data_offsets"] as? [Int], offs.count == 2 else {
                throw bad("entry \(name) lacks dtype, shape or data_offsets")
            }
            guard let size = Self.dtypeSize[dtype] else { throw bad("entry \(name) has unsupported dtype \(dtype)") }
            let n = shape.reduce(1, *)
            guard offs[0] >= 0, offs[1] >= offs[0], offs[1] <= payload, offs[1] - offs[0] == n * size else {
                throw bad("entry \(name) (\(dtype) \(shape)) has byte range \(offs) outside or inconsistent with the \(payload)-byte payload")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, start: offs[0], end: offs[1])
        }
        self.entries = entries
        self.metadata = metadata
    }

    static let dtypeSize = ["F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "F64": 8]

    func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw NanoChatError("\(url.path) has no tensor named \(name)") }
        return e
    }

    /// A tensor as float32 (converting BF16/F16/F64).
    public func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        let e = try entry(name)
        let n = e.shape.reduce(1, *)
        var out = [Float](repeating: 0, count: n)
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.start
            switch e.dtype {
            case "F32": for i in 0..<n { out[i] = Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case "BF16": for i in 0..<n { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
            case "F16": for i in 0..<n { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))) }
            case "F64": for i in 0..<n { out[i] = Float(Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case "I64": for i in 0..<n { out[i] = Float(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            default: for i in 0..<n { out[i] = Float(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            }
        }
        return (e.shape, out)
    }

    public func tensor(_ name: String) throws -> Tensor {
        let (shape, values) = try floats(name)
        return Tensor(shape: shape, values: values)
    }

    /// An integer tensor (I64 or I32) as Int32 values.
    public func ints(_ name: String) throws -> (shape: [Int], values: [Int32]) {
        let e = try entry(name)
        let n = e.shape.reduce(1, *)
        var out = [Int32](repeating: 0, count: n)
        try data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.start
            switch e.dtype {
            case "I64": for i in 0..<n { out[i] = Int32(truncatingIfNeeded: Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            case "I32": for i in 0..<n { out[i] = Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
            default: throw NanoChatError("\(url.path): tensor \(name) is \(e.dtype), expected an integer type")
            }
        }
        return (e.shape, out)
    }

    /// Writes tensors (float32, in name order) and string metadata atomically.
    public static func write(_ tensors: [(String, [Int], UnsafeBufferPointer<Float>)], metadata: [String: String],
                             to url: URL) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for (name, shape, values) in tensors {
            precondition(values.count == shape.reduce(1, *))
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [offset, offset + values.count * 4]]
            offset += values.count * 4
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }  // align the payload, as the reference writer does
        var out = Data(capacity: 8 + json.count + offset)
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(json)
        for (_, _, values) in tensors {
            out.append(UnsafeBufferPointer(start: UnsafeRawPointer(values.baseAddress!).assumingMemoryBound(to: UInt8.self),
                                           count: values.count * 4))
        }
        try FileIO.writeAtomically(out, to: url)
    }
}
