/// The pre-tokenizer: upstream's split pattern, executed by hand over UTF-8 bytes.
///
///     '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+
///
/// Each `nextEnd` call tries the alternatives in order, exactly as a backtracking engine would (fancy-regex in
/// rustbpe, Rust regex in tiktoken), and returns where the chunk starting at `start` ends. `maxDigits` is 2 for
/// nanochat's pattern and 3 for GPT-4's (cl100k), which differs in nothing else.
/// Invalid UTF-8 bytes stand alone as "other" characters, so any byte string splits and round-trips.
public struct SplitScanner: Sendable {
    public let maxDigits: Int
    /// GPT-2's older pattern (r50k/p50k), used only to compare against GPT-2 in tok-eval.
    public let gpt2: Bool

    /// nanochat's pattern (numbers in runs of 1-2 digits).
    public static let nanochatPattern =
        #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"#
    /// GPT-4's cl100k pattern (numbers in runs of 1-3 digits).
    public static let cl100kPattern =
        #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"#

    /// GPT-2's pattern.
    public static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// The scanner for a pattern string, or nil when the pattern is not one this scanner executes.
    public init?(pattern: String) {
        switch pattern {
        case Self.nanochatPattern: self.init(maxDigits: 2)
        case Self.cl100kPattern: self.init(maxDigits: 3)
        case Self.gpt2Pattern: self.init(maxDigits: 0, gpt2: true)
        default: return nil
        }
    }

    public init(maxDigits: Int = 2, gpt2: Bool = false) {
        self.maxDigits = maxDigits
        self.gpt2 = gpt2
    }

    public var pattern: String {
        gpt2 ? Self.gpt2Pattern : (maxDigits == 3 ? Self.cl100kPattern : Self.nanochatPattern)
    }

    /// Calls `body(start, end)` for every chunk of `text[0..<count]`, in order.
    @inline(__always)
    public func forEachChunk(_ text: UnsafePointer<UInt8>, count: Int, _ body: (Int, Int) -> Void) {
        var i = 0
        while i < count {
            let e = nextEnd(text, i, count)
            body(i, e)
            i = e
        }
    }

    /// Splits a byte array into chunk ranges (convenience for tests and tools; the hot paths use `forEachChunk`).
    public func split(_ bytes: [UInt8]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        bytes.withUnsafeBufferPointer { buf in
            guard let base = buf.baseAddress else { return }
            forEachChunk(base, count: buf.count) { out.append($0..<$1) }
        }
        return out
    }

    /// End of the chunk that starts at `i` (`i < n`).
    @inline(__always)
    public func nextEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        if gpt2 { return gpt2NextEnd(p, i, n) }
        let (c0, l0) = Self.char(p, i, n)

        // 1. '(?i:[sdmt]|ll|ve|re)   (case-insensitive in Unicode: 's' also matches U+017F LONG S)
        if p[i] == 0x27 && i + 1 < n {
            let b1 = p[i + 1]
            let l1 = Self.asciiLower(b1)
            if l1 == 0x73 || l1 == 0x64 || l1 == 0x6D || l1 == 0x74 { return i + 2 }  // s d m t
            if b1 == 0xC5 && i + 2 < n && p[i + 2] == 0xBF { return i + 3 }           // ſ
            if i + 2 < n {
                let l2 = Self.asciiLower(p[i + 2])
                if (l1 == 0x6C && l2 == 0x6C) || (l1 == 0x76 && l2 == 0x65) || (l1 == 0x72 && l2 == 0x65) {
                    return i + 3  // ll ve re
                }
            }
        }
        // 2. [^\r\n\p{L}\p{N}]?+\p{L}+
        if c0 == CharClass.letter { return scan(p, i + l0, n, CharClass.letter) }
        if c0 == CharClass.other || c0 == CharClass.space, i + l0 < n {
            let (c1, l1) = Self.char(p, i + l0, n)
            if c1 == CharClass.letter { return scan(p, i + l0 + l1, n, CharClass.letter) }
        }
        // 3. \p{N}{1,maxDigits}
        if c0 == CharClass.number {
            var j = i + l0
            var k = 1
            while k < maxDigits && j < n {
                let (c, l) = Self.char(p, j, n)
                if c != CharClass.number { break }
                j += l
                k += 1
            }
            return j
        }
        // 4. ' ?[^\s\p{L}\p{N}]++[\r\n]*'
        var punctStart = -1
        if c0 == CharClass.other {
            punctStart = i
        } else if p[i] == 0x20 && i + 1 < n && Self.char(p, i + 1, n).cls == CharClass.other {
            punctStart = i + 1
        }
        if punctStart >= 0 {
            var j = scan(p, punctStart, n, CharClass.other)
            while j < n && (p[j] == 0x0D || p[j] == 0x0A) { j += 1 }
            return j
        }
        // 5-7. \s*[\r\n] | \s+(?!\S) | \s+      (c0 is whitespace here)
        var j = i
        var afterLastNewline = -1
        var lastCharStart = i
        while j < n {
            let (c, l) = Self.char(p, j, n)
            if c != CharClass.space && c != CharClass.newline { break }
            if c == CharClass.newline { afterLastNewline = j + l }
            lastCharStart = j
            j += l
        }
        if afterLastNewline >= 0 { return afterLastNewline }  // \s*[\r\n], greedy: up to the last newline
        if j == n { return j }                                 // \s+(?!\S) at the end of the text
        if lastCharStart > i { return lastCharStart }          // \s+(?!\S): leave one space for the next word
        return j                                               // \s+
    }

    /// GPT-2: '(s|t|re|ve|m|ll|d) | ' ?' + a run of letters, numbers or other | \s+(?!\S) | \s+
    func gpt2NextEnd(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> Int {
        if p[i] == 0x27 && i + 1 < n {
            let b1 = p[i + 1]
            if b1 == 0x73 || b1 == 0x74 || b1 == 0x6D || b1 == 0x64 { return i + 2 }  // s t m d
            if i + 2 < n {
                let b2 = p[i + 2]
                if (b1 == 0x72 && b2 == 0x65) || (b1 == 0x76 && b2 == 0x65) || (b1 == 0x6C && b2 == 0x6C) { return i + 3 }
            }
        }
        let start = (p[i] == 0x20 && i + 1 < n) ? i + 1 : i
        let (c, _) = Self.char(p, start, n)
        if c == CharClass.letter || c == CharClass.number || c == CharClass.other {
            return scan(p, start, n, c)
        }
        var j = i
        var lastCharStart = i
        while j < n {
            let (cj, l) = Self.char(p, j, n)
            if cj != CharClass.space && cj != CharClass.newline { break }
            lastCharStart = j
            j += l
        }
        if j == n || lastCharStart == i { return j }
        return lastCharStart
    }

    /// End of the run of characters of class `cls` starting at `j`.
    @inline(__always)
    func scan(_ p: UnsafePointer<UInt8>, _ j0: Int, _ n: Int, _ cls: UInt8) -> Int {
        var j = j0
        while j < n {
            let b = p[j]
            if b < 0x80 {
                if CharClass.asciiTable[Int(b)] != cls { return j }
                j += 1
            } else {
                let (c, l) = Self.char(p, j, n)
                if c != cls { return j }
                j += l
            }
        }
        return j
    }

    @inline(__always)
    static func asciiLower(_ b: UInt8) -> UInt8 {
        (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b
    }

    /// Class and byte length of the character at `i`; an invalid or truncated sequence is one "other" byte.
    @inline(__always)
    public static func char(_ p: UnsafePointer<UInt8>, _ i: Int, _ n: Int) -> (cls: UInt8, len: Int) {
        let b0 = p[i]
        if b0 < 0x80 { return (CharClass.asciiTable[Int(b0)], 1) }
        if b0 >= 0xC2 && b0 <= 0xDF {
            if i + 1 < n, p[i + 1] & 0xC0 == 0x80 {
                return (CharClass.lookup(UInt32(b0 & 0x1F) << 6 | UInt32(p[i + 1] & 0x3F)), 2)
            }
        } else if b0 >= 0xE0 && b0 <= 0xEF {
            if i + 2 < n {
                let b1 = p[i + 1], b2 = p[i + 2]
                let lo: UInt8 = b0 == 0xE0 ? 0xA0 : 0x80
                let hi: UInt8 = b0 == 0xED ? 0x9F : 0xBF
                if b1 >= lo && b1 <= hi && b2 & 0xC0 == 0x80 {
                    let cp = UInt32(b0 & 0x0F) << 12 | UInt32(b1 & 0x3F) << 6 | UInt32(b2 & 0x3F)
                    return (CharClass.lookup(cp), 3)
                }
            }
        } else if b0 >= 0xF0 && b0 <= 0xF4 {
            if i + 3 < n {
                let b1 = p[i + 1], b2 = p[i + 2], b3 = p[i + 3]
                let lo: UInt8 = b0 == 0xF0 ? 0x90 : 0x80
                let hi: UInt8 = b0 == 0xF4 ? 0x8F : 0xBF
                if b1 >= lo && b1 <= hi && b2 & 0xC0 == 0x80 && b3 & 0xC0 == 0x80 {
                    let cp = UInt32(b0 & 0x07) << 18 | UInt32(b1 & 0x3F) << 12 | UInt32(b2 & 0x3F) << 6
                        | UInt32(b3 & 0x3F)
                    return (CharClass.lookup(cp), 4)
                }
            }
        }
        return (CharClass.other, 1)
    }
}
