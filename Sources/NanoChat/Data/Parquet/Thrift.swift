/// Thrift's compact protocol, as parquet uses it for its footer and page headers: decoded into a small
/// generic tree (field id -> value), then read by field id. Every read is bounds-checked; a corrupt byte
/// stream gives a `ParquetError`, never a crash or a hang.
public enum ThriftValue {
    case int(Int64)
    case bool(Bool)
    case double(Double)
    case binary(ArraySlice<UInt8>)
    case list([ThriftValue])
    case strct([Int16: ThriftValue])
    case map([(ThriftValue, ThriftValue)])

    public var int: Int64? { if case .int(let v) = self { return v }; return nil }
    public var bool: Bool? { if case .bool(let v) = self { return v }; return nil }
    public var list: [ThriftValue]? { if case .list(let v) = self { return v }; return nil }
    public var fields: [Int16: ThriftValue]? { if case .strct(let v) = self { return v }; return nil }
    public var string: String? { if case .binary(let b) = self { return String(decoding: b, as: UTF8.self) }; return nil }
}

public struct ParquetError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

struct ThriftReader {
    let bytes: [UInt8]
    var pos: Int
    let end: Int
    var depth = 0

    init(_ bytes: [UInt8], from: Int = 0, to: Int? = nil) {
        self.bytes = bytes
        pos = from
        end = to ?? bytes.count
    }

    mutating func byte() throws -> UInt8 {
        guard pos < end else { throw ParquetError("thrift data ends early at byte \(pos)") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte()
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw ParquetError("thrift varint longer than 10 bytes at byte \(pos)") }
        }
    }

    mutating func zigzag() throws -> Int64 {
        let v = try varint()
        return Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1)))
    }

    mutating func value(type: UInt8) throws -> ThriftValue {
        switch type {
        case 1: return .bool(true)
        case 2: return .bool(false)
        case 3: return .int(Int64(Int8(bitPattern: try byte())))
        case 4, 5, 6: return .int(try zigzag())
        case 7:
            guard pos + 8 <= end else { throw ParquetError("thrift double past the end") }
            var bits: UInt64 = 0
            for i in 0..<8 { bits |= UInt64(bytes[pos + i]) << (8 * UInt64(i)) }
            pos += 8
            return .double(Double(bitPattern: bits))
        case 8:
            let n = try varint()
            guard n <= UInt64(end - pos) else { throw ParquetError("thrift binary of \(n) bytes runs past the end") }
            defer { pos += Int(n) }
            return .binary(bytes[pos..<(pos + Int(n))])
        case 9, 10:
            let h = try byte()
            var n = UInt64(h >> 4)
            if n == 15 { n = try varint() }
            guard n <= UInt64(end - pos) else { throw ParquetError("thrift list of \(n) elements cannot fit") }
            let et = h & 0x0F
            var items: [ThriftValue] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<n {
                if et == 1 || et == 2 { items.append(.bool(try byte() == 1)) } else { items.append(try value(type: et)) }
            }
            return .list(items)
        case 11:
            let n = try varint()
            guard n <= UInt64(end - pos) else { throw ParquetError("thrift map of \(n) entries cannot fit") }
            if n == 0 { return .map([]) }
            let kv = try byte()
            var out: [(ThriftValue, ThriftValue)] = []
            for _ in 0..<n { out.append((try value(type: kv >> 4), try value(type: kv & 0x0F))) }
            return .map(out)
        case 12: return try structValue()
        default: throw ParquetError("unknown thrift type \(type) at byte \(pos)")
        }
    }

    mutating func structValue() throws -> ThriftValue {
        depth += 1
        defer { depth -= 1 }
        guard depth < 64 else { throw ParquetError("thrift structs nested too deeply") }
        var fields: [Int16: ThriftValue] = [:]
        var lastID: Int16 = 0
        while true {
            let h = try byte()
            let type = h & 0x0F
            if type == 0 { return .strct(fields) }
            let delta = Int16(h >> 4)
            let id: Int16
            if delta == 0 {
                let z = try zigzag()
                guard let v = Int16(exactly: z) else { throw ParquetError("thrift field id \(z) out of range") }
                id = v
            } else {
                id = lastID &+ delta
            }
            lastID = id
            fields[id] = try value(type: type)
        }
    }
}
