import Foundation

/// Minimal JSON string reading and writing for the JSON Lines tools (tok-encode, corpora), working on bytes
/// so that megabytes of text never pass through `JSONSerialization`.
public enum JSONText {
    /// Decodes one JSON string literal (surrounding whitespace allowed) into UTF-8 bytes. A lone surrogate
    /// escape becomes U+FFFD, as Python does when encoding such a string with errors="replace".
    public static func decodeString(_ line: UnsafeBufferPointer<UInt8>) throws -> [UInt8] {
        var i = 0
        let n = line.count
        while i < n && isSpace(line[i]) { i += 1 }
        guard i < n && line[i] == 0x22 else { throw NanoChatError("expected a JSON string (a line starting with \"), found \(preview(line))") }
        i += 1
        var out: [UInt8] = []
        out.reserveCapacity(n)
        var closed = false
        while i < n {
            let c = line[i]
            if c == 0x22 { closed = true; i += 1; break }
            if c == 0x5C {
                guard i + 1 < n else { break }
                let e = line[i + 1]
                i += 2
                switch e {
                case 0x22: out.append(0x22)
                case 0x5C: out.append(0x5C)
                case 0x2F: out.append(0x2F)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x75:
                    guard var u = hex4(line, i) else { throw NanoChatError("bad \\u escape in JSON string: \(preview(line))") }
                    i += 4
                    if u >= 0xD800 && u < 0xDC00 {
                        if i + 6 <= n && line[i] == 0x5C && line[i + 1] == 0x75, let lo = hex4(line, i + 2), lo >= 0xDC00 && lo < 0xE000 {
                            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
                            i += 6
                        } else {
                            u = 0xFFFD
                        }
                    } else if u >= 0xDC00 && u < 0xE000 {
                        u = 0xFFFD
                    }
                    appendUTF8(&out, u)
                default:
                    throw NanoChatError("bad escape \\\(Character(Unicode.Scalar(e))) in JSON string: \(preview(line))")
                }
            } else {
                if c < 0x20 { throw NanoChatError("raw control character \(c) inside a JSON string: \(preview(line))") }
                out.append(c)
                i += 1
            }
        }
        guard closed else { throw NanoChatError("unterminated JSON string: \(preview(line))") }
        while i < n && isSpace(line[i]) { i += 1 }
        guard i == n else { throw NanoChatError("expected one JSON string per line, found more after it: \(preview(line))") }
        return out
    }

    /// Appends `bytes` as a JSON string literal (invalid UTF-8 bytes become U+FFFD).
    public static func appendString(_ bytes: [UInt8], to out: inout [UInt8]) {
        out.append(0x22)
        for scalar in String(decoding: bytes, as: UTF8.self).unicodeScalars {
            switch scalar.value {
            case 0x22: out += [0x5C, 0x22]
            case 0x5C: out += [0x5C, 0x5C]
            case 0x0A: out += [0x5C, 0x6E]
            case 0x0D: out += [0x5C, 0x72]
            case 0x09: out += [0x5C, 0x74]
            case 0..<0x20: out += Array(String(format: "\\u%04x", scalar.value).utf8)
            default: appendUTF8(&out, scalar.value)
            }
        }
        out.append(0x22)
    }

    /// Appends `[1,2,3]`.
    public static func appendIntArray(_ ids: [Int], to out: inout [UInt8]) {
        out.append(0x5B)
        for (k, id) in ids.enumerated() {
            if k > 0 { out.append(0x2C) }
            appendInt(id, to: &out)
        }
        out.append(0x5D)
    }

    @inline(__always)
    static func appendInt(_ v: Int, to out: inout [UInt8]) {
        if v < 0 { out.append(0x2D); appendInt(-v, to: &out); return }
        if v >= 10 { appendInt(v / 10, to: &out) }
        out.append(UInt8(0x30 + v % 10))
    }

    static func appendUTF8(_ out: inout [UInt8], _ u: UInt32) {
        switch u {
        case 0..<0x80: out.append(UInt8(u))
        case 0x80..<0x800: out += [UInt8(0xC0 | (u >> 6)), UInt8(0x80 | (u & 0x3F))]
        case 0x800..<0x10000:
            out += [UInt8(0xE0 | (u >> 12)), UInt8(0x80 | ((u >> 6) & 0x3F)), UInt8(0x80 | (u & 0x3F))]
        default:
            out += [UInt8(0xF0 | (u >> 18)), UInt8(0x80 | ((u >> 12) & 0x3F)),
                    UInt8(0x80 | ((u >> 6) & 0x3F)), UInt8(0x80 | (u & 0x3F))]
        }
    }

    private static func hex4(_ b: UnsafeBufferPointer<UInt8>, _ i: Int) -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = b[i + k]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: return nil
            }
            v = v << 4 | d
        }
        return v
    }

    @inline(__always)
    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0D || c == 0x0A }

    static func preview(_ b: UnsafeBufferPointer<UInt8>) -> String {
        let s = String(decoding: b.prefix(60), as: UTF8.self)
        return b.count > 60 ? s + "..." : s
    }
}

/// Reads a file line by line as raw bytes, without building a String per line.
public func forEachLine(of data: Data, _ body: (UnsafeBufferPointer<UInt8>, Int) throws -> Void) rethrows {
    try data.withUnsafeBytes { raw in
        let buf = raw.bindMemory(to: UInt8.self)
        guard let base = buf.baseAddress else { return }
        var start = 0
        var lineNo = 1
        while start < buf.count {
            var end = start
            while end < buf.count && base[end] != 0x0A { end += 1 }
            try body(UnsafeBufferPointer(start: base + start, count: end - start), lineNo)
            start = end + 1
            lineNo += 1
        }
    }
}
