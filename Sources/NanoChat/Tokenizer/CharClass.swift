/// Character classes the split pattern distinguishes, one byte per code point.
///
/// `\p{L}` (letters: Lu Ll Lt Lm Lo), `\p{N}` (numbers: Nd Nl No), `\s` (Unicode White_Space, the
/// meaning in Rust's regex and so in tiktoken), with CR and LF apart because the pattern names them.
public enum CharClass {
    public static let other: UInt8 = 0
    public static let letter: UInt8 = 1
    public static let number: UInt8 = 2
    public static let space: UInt8 = 3      // White_Space other than CR and LF
    public static let newline: UInt8 = 4    // CR or LF (also White_Space)

    /// Two-stage table: `blockIndex[cp >> 8]` names a 256-entry block of `blocks`; identical blocks are
    /// stored once, so the whole of Unicode fits in a few tens of kilobytes that stay in cache.
    /// Built once from the standard library's Unicode data (no hand-copied tables to go stale).
    public static let table: (blockIndex: [UInt16], blocks: [UInt8]) = {
        var blockIndex = [UInt16](repeating: 0, count: 0x1100)
        var blocks: [UInt8] = []
        var seen: [[UInt8]: UInt16] = [:]
        var block = [UInt8](repeating: 0, count: 256)
        for hi in 0..<0x1100 {
            for lo in 0..<256 {
                block[lo] = classify(UInt32(hi << 8 | lo))
            }
            if let idx = seen[block] {
                blockIndex[hi] = idx
            } else {
                let idx = UInt16(blocks.count / 256)
                seen[block] = idx
                blocks.append(contentsOf: block)
                blockIndex[hi] = idx
            }
        }
        return (blockIndex, blocks)
    }()

    /// Class of one code point, straight from the Unicode properties (used to build the table).
    public static func classify(_ cp: UInt32) -> UInt8 {
        if cp == 0x0A || cp == 0x0D { return newline }
        guard let scalar = Unicode.Scalar(cp) else { return other }  // surrogates
        let props = scalar.properties
        if props.isWhitespace { return space }
        switch props.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return other
        }
    }

    /// ASCII fast path (indexed by byte), so English text never touches the big table.
    /// Raw pointers to immutable tables that live for the whole process: no array bounds checks or
    /// retain/release in the scanner's inner loop.
    public static let asciiTable: UnsafePointer<UInt8> = permanentCopy((0..<128).map { classify(UInt32($0)) })
    static let blockIndexTable: UnsafePointer<UInt16> = permanentCopy(table.blockIndex)
    static let blockTable: UnsafePointer<UInt8> = permanentCopy(table.blocks)

    /// Class of any code point (below 0x110000) through the two-stage table.
    @inline(__always)
    public static func lookup(_ cp: UInt32) -> UInt8 {
        let block = Int(blockIndexTable[Int(cp >> 8)])
        return blockTable[block << 8 | Int(cp & 0xFF)]
    }

    private static func permanentCopy<T>(_ a: [T]) -> UnsafePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: a.count)
        p.initialize(from: a, count: a.count)
        return UnsafePointer(p)
    }
}
