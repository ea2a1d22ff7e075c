import Foundation

/// A value read from a Python pickle by `SafePickle`: data only. A pickle is a program for Python's unpickler, which
/// calls whatever callable the stream names; this reader runs none. It knows the few constructors that `torch.save`
/// writes for a state dict (an OrderedDict, tensors rebuilt from storages) and that `pickle.dump` writes for upstream's
/// tokenizer (a tiktoken `Encoding` and its state), and records them as values. Any other callable is an error that
/// names it.
public indirect enum PickleValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list([PickleValue])
    /// In insertion order (an OrderedDict keeps it; so do dicts).
    case dict([(PickleValue, PickleValue)])
    /// A class or function the stream named (`module.name`), from the allowed list.
    case global(String)
    /// A storage a tensor points into: `torch.save`'s persistent id ('storage', class, key, location, count).
    case storage(dtype: TorchDType, key: String, count: Int)
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    case tensor(TorchTensorRef)
    /// An object made by `cls()` and filled by BUILD with `state` (tiktoken's Encoding).
    case object(cls: String, state: PickleValue)

    public static func == (a: PickleValue, b: PickleValue) -> Bool {
        switch (a, b) {
        case (.none, .none): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.float(x), .float(y)): return x == y
        case let (.string(x), .string(y)): return x == y
        case let (.bytes(x), .bytes(y)): return x == y
        case let (.tuple(x), .tuple(y)), let (.list(x), .list(y)): return x == y
        case let (.dict(x), .dict(y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.global(x), .global(y)): return x == y
        default: return false
        }
    }

    /// The value under a string key of a dict, or nil.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let items) = self else { return nil }
        return items.first { $0.0 == .string(key) }?.1
    }

    public var kind: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let g): return g
        case .storage: return "storage"
        case .tensor: return "tensor"
        case .object(let c, _): return c
        }
    }
}

/// The element types of PyTorch's storages that we read (`torch.FloatStorage`, ...).
public enum TorchDType: String, CaseIterable {
    case float32 = "FloatStorage", bfloat16 = "BFloat16Storage", float16 = "HalfStorage", float64 = "DoubleStorage"
    case int64 = "LongStorage", int32 = "IntStorage", int16 = "ShortStorage", int8 = "CharStorage", uint8 = "ByteStorage"
    case bool = "BoolStorage"

    public var size: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .bfloat16, .float16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }
    /// The name `torch` gives it (`torch.float32`).
    public var torchName: String {
        switch self {
        case .float32: return "float32"
        case .bfloat16: return "bfloat16"
        case .float16: return "float16"
        case .float64: return "float64"
        case .int64: return "int64"
        case .int32: return "int32"
        case .int16: return "int16"
        case .int8: return "int8"
        case .uint8: return "uint8"
        case .bool: return "bool"
        }
    }
}

/// A tensor of a `torch.save` file: which storage, where in it, its shape and strides (in elements).
public struct TorchTensorRef: Equatable {
    public var dtype: TorchDType
    public var storageKey: String
    public var storageCount: Int
    public var offset: Int
    public var shape: [Int]
    public var stride: [Int]
}

/// Reads a pickle (protocols 2 to 5) into a `PickleValue` without running anything. Every length, memo index and
/// stack access is checked against the data, so a truncated or hostile stream is an error, never a crash.
public struct SafePickle {
    /// The classes and functions a pickle may name: what `torch.save(state_dict)` and `pickle.dump(tiktoken.Encoding)`
    /// write. Storage classes are named only as the dtype of a persistent id.
    static let callables: Set<String> = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                         "torch._utils._rebuild_parameter", "tiktoken.core.Encoding"]
    static let storageClasses = Set(TorchDType.allCases.map { "torch.\($0.rawValue)" })

    let bytes: [UInt8]
    /// Where the stream came from, for the messages.
    let what: String

    public init(_ bytes: [UInt8], what: String) {
        self.bytes = bytes
        self.what = what
    }

    func fail(_ message: String, at pos: Int) -> NanoChatError {
        NanoChatError("\(what): \(message) (pickle byte \(pos)); this file is not a state dict saved by torch.save or a tokenizer pickled by nanochat")
    }

    public func read() throws -> PickleValue {
        var pos = 0
        var stack: [PickleValue] = []
        var marks: [Int] = []
        var memo: [Int: PickleValue] = [:]

        func need(_ n: Int) throws {
            guard n >= 0, pos + n <= bytes.count else { throw fail("it ends in the middle of an opcode's argument (wants \(n) bytes, \(bytes.count - pos) left)", at: pos) }
        }
        func u8() throws -> Int { try need(1); defer { pos += 1 }; return Int(bytes[pos]) }
        func le(_ n: Int) throws -> UInt64 {
            try need(n)
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(bytes[pos + i]) << (8 * UInt64(i)) }
            pos += n
            return v
        }
        func length(_ n: Int) throws -> Int {
            let v = try le(n)
            guard v <= UInt64(bytes.count - pos) else { throw fail("an argument declares \(v) bytes but only \(bytes.count - pos) follow", at: pos) }
            return Int(v)
        }
        func text(_ n: Int) throws -> String {
            try need(n)
            defer { pos += n }
            guard let s = String(bytes: bytes[pos..<pos + n], encoding: .utf8) else { throw fail("a string is not UTF-8", at: pos) }
            return s
        }
        func line() throws -> String {
            guard let end = bytes[pos...].firstIndex(of: 0x0A) else { throw fail("a GLOBAL's name has no end of line", at: pos) }
            defer { pos = end + 1 }
            guard let s = String(bytes: bytes[pos..<end], encoding: .utf8) else { throw fail("a GLOBAL's name is not UTF-8", at: pos) }
            return s
        }
        func pop() throws -> PickleValue {
            guard let v = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw fail("an opcode pops from an empty stack", at: pos) }
            return v
        }
        func popMark() throws -> [PickleValue] {
            guard let m = marks.popLast(), m <= stack.count else { throw fail("an opcode wants a MARK that is not there", at: pos) }
            defer { stack.removeSubrange(m...) }
            return Array(stack[m...])
        }
        func global(_ name: String, at start: Int) throws -> PickleValue {
            guard Self.callables.contains(name) || Self.storageClasses.contains(name) else {
                throw NanoChatError("\(what): refused, the pickle names \(name) (byte \(start)); unpickling it would call code. nanochat reads only tensors, dicts, lists, numbers, strings and upstream's tokenizer, and never runs what a file names")
            }
            return .global(name)
        }
        func memoIndex(_ i: UInt64) throws -> Int {
            guard i < 100_000_000 else { throw fail("a memo index \(i) is out of range", at: pos) }
            return Int(i)
        }
        func setItems(_ dict: PickleValue, _ pairs: [PickleValue], at start: Int) throws -> PickleValue {
            guard case .dict(var items) = dict else { throw fail("SETITEM(S) on a \(dict.kind), not a dict", at: start) }
            guard pairs.count % 2 == 0 else { throw fail("SETITEMS with an odd number of values", at: start) }
            // appended as they come (torch.save and pickle.dump write each key once; a reader that needs unique keys,
            // the tokenizer's ranks, checks them itself)
            for i in stride(from: 0, to: pairs.count, by: 2) { items.append((pairs[i], pairs[i + 1])) }
            return .dict(items)
        }
        func appendItems(_ list: PickleValue, _ values: [PickleValue], at start: Int) throws -> PickleValue {
            guard case .list(let items) = list else { throw fail("APPEND(S) on a \(list.kind), not a list", at: start) }
            return .list(items + values)
        }

        while true {
            let start = pos
            let op = try u8()
            switch op {
            case 0x80: _ = try u8()  // PROTO
            case 0x95: _ = try le(8)  // FRAME: a length hint only
            case 0x2E:  // STOP
                guard stack.count == 1, marks.isEmpty else { throw fail("STOP with \(stack.count) values on the stack", at: start) }
                return stack[0]
            case 0x28: marks.append(stack.count)  // MARK
            case 0x30: _ = try pop()  // POP
            case 0x31: _ = try popMark()  // POP_MARK
            case 0x32: let v = try pop(); stack.append(v); stack.append(v)  // DUP
            case 0x4E: stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4B: stack.append(.int(try u8()))  // BININT1
            case 0x4D: stack.append(.int(Int(try le(2))))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(bitPattern: UInt32(try le(4))))))  // BININT
            case 0x8A, 0x8B:  // LONG1, LONG4: little-endian two's complement
                let n = op == 0x8A ? try u8() : try length(4)
                guard n <= 8 else { throw fail("an integer of \(n) bytes is larger than this reader takes", at: start) }
                try need(n)
                var v: UInt64 = 0
                for i in 0..<n { v |= UInt64(bytes[pos + i]) << (8 * UInt64(i)) }
                if n > 0 && n < 8 && bytes[pos + n - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }
                pos += n
                stack.append(.int(Int(Int64(bitPattern: v))))
            case 0x47:  // BINFLOAT: big-endian double
                try need(8)
                var v: UInt64 = 0
                for i in 0..<8 { v = v << 8 | UInt64(bytes[pos + i]) }
                pos += 8
                stack.append(.float(Double(bitPattern: v)))
            case 0x58: stack.append(.string(try text(try length(4))))  // BINUNICODE
            case 0x8C: stack.append(.string(try text(try length(1))))  // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try text(try length(8))))  // BINUNICODE8
            case 0x42, 0x43, 0x8E, 0x96:  // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8
                let n = try length(op == 0x43 ? 1 : op == 0x42 ? 4 : 8)
                stack.append(.bytes(Array(bytes[pos..<pos + n])))
                pos += n
            case 0x7D: stack.append(.dict([]))  // EMPTY_DICT
            case 0x5D: stack.append(.list([]))  // EMPTY_LIST
            case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popMark()))  // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
            case 0x6C: stack.append(.list(try popMark()))  // LIST
            case 0x64:  // DICT
                let items = try popMark()
                stack.append(try setItems(.dict([]), items, at: start))
            case 0x73:  // SETITEM
                let v = try pop(), k = try pop()
                stack.append(try setItems(try pop(), [k, v], at: start))
            case 0x75:  // SETITEMS
                let items = try popMark()
                stack.append(try setItems(try pop(), items, at: start))
            case 0x61:  // APPEND
                let v = try pop()
                stack.append(try appendItems(try pop(), [v], at: start))
            case 0x65:  // APPENDS
                let items = try popMark()
                stack.append(try appendItems(try pop(), items, at: start))
            case 0x71: memo[try u8()] = try stack.last.orThrow(fail("BINPUT on an empty stack", at: start))  // BINPUT
            case 0x72: memo[try memoIndex(try le(4))] = try stack.last.orThrow(fail("LONG_BINPUT on an empty stack", at: start))
            case 0x94: memo[memo.count] = try stack.last.orThrow(fail("MEMOIZE on an empty stack", at: start))
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let i = op == 0x68 ? try u8() : try memoIndex(try le(4))
                guard let v = memo[i] else { throw fail("a memo entry \(i) is read before it is written", at: start) }
                stack.append(v)
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try line(), name = try line()
                stack.append(try global("\(module).\(name)", at: start))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard case .string(let n) = name, case .string(let m) = module else { throw fail("STACK_GLOBAL without two strings", at: start) }
                stack.append(try global("\(m).\(n)", at: start))
            case 0x51:  // BINPERSID: torch.save's storage reference
                let pid = try pop()
                guard case .tuple(let t) = pid, t.count == 5, t[0] == .string("storage"), case .global(let cls) = t[1],
                      case .string(let key) = t[2], case .int(let count) = t[4], count >= 0,
                      let dtype = TorchDType(rawValue: String(cls.dropFirst("torch.".count))), cls.hasPrefix("torch.") else {
                    throw fail("a persistent id that is not torch.save's ('storage', class, key, location, count)", at: start)
                }
                stack.append(.storage(dtype: dtype, key: key, count: count))
            case 0x52:  // REDUCE: callable(*args), for the allowed callables only
                let args = try pop(), callable = try pop()
                guard case .global(let name) = callable, case .tuple(let a) = args else { throw fail("REDUCE on a \(callable.kind)", at: start) }
                stack.append(try reduce(name, a, at: start))
            case 0x81:  // NEWOBJ: cls.__new__(cls, *args)
                let args = try pop(), cls = try pop()
                guard case .global(let name) = cls, name == "tiktoken.core.Encoding", args == .tuple([]) else {
                    throw fail("NEWOBJ of \(cls.kind) (only tiktoken's Encoding is made this way)", at: start)
                }
                stack.append(.object(cls: name, state: .none))
            case 0x62:  // BUILD: obj.__setstate__(state)
                let state = try pop(), obj = try pop()
                switch obj {
                case .object(let cls, .none): stack.append(.object(cls: cls, state: state))
                case .dict, .tensor: stack.append(obj)  // an OrderedDict's _metadata, a tensor's hooks: not needed
                default: throw fail("BUILD on a \(obj.kind)", at: start)
                }
            default:
                throw fail(String(format: "opcode 0x%02X is not one that torch.save or pickle.dump writes for these files", op), at: start)
            }
        }
    }

    func reduce(_ name: String, _ args: [PickleValue], at pos: Int) throws -> PickleValue {
        switch name {
        case "collections.OrderedDict":
            guard args.isEmpty else { throw fail("OrderedDict with arguments", at: pos) }
            return .dict([])
        case "torch._utils._rebuild_tensor_v2":
            guard args.count >= 4, case .storage(let dtype, let key, let count) = args[0], case .int(let offset) = args[1],
                  case .tuple(let size) = args[2], case .tuple(let stride) = args[3], size.count == stride.count else {
                throw fail("_rebuild_tensor_v2 without (storage, offset, size, stride)", at: pos)
            }
            let shape = try size.map { v -> Int in
                guard case .int(let n) = v, n >= 0, n < 1 << 40 else { throw fail("a tensor dimension \(v.kind) is not a size", at: pos) }
                return n
            }
            let strides = try stride.map { v -> Int in
                guard case .int(let n) = v, n >= 0, n < 1 << 40 else { throw fail("a tensor stride is not a non-negative integer", at: pos) }
                return n
            }
            guard offset >= 0 else { throw fail("a negative storage offset", at: pos) }
            // the last element it reaches must lie inside its storage
            if !shape.contains(0) {
                let last = offset + zip(shape, strides).reduce(0) { $0 + ($1.0 - 1) * $1.1 }
                guard last < count else { throw fail("a tensor of shape \(shape) reaches element \(last) of a storage of \(count)", at: pos) }
            }
            return .tensor(TorchTensorRef(dtype: dtype, storageKey: key, storageCount: count, offset: offset, shape: shape, stride: strides))
        case "torch._utils._rebuild_parameter":
            guard let first = args.first, case .tensor = first else { throw fail("_rebuild_parameter without a tensor", at: pos) }
            return first
        default:
            throw fail("\(name) is not called this way by torch.save", at: pos)
        }
    }
}

extension Optional {
    func orThrow(_ error: @autoclosure () -> Error) throws -> Wrapped {
        guard let v = self else { throw error() }
        return v
    }
}
