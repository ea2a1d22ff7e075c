import Foundation

/// Turns a stream of token ids into text without ever emitting half a UTF-8 character: complete characters
/// are returned as soon as their last byte arrives; an incomplete tail waits for the next token.
public struct StreamingDecoder {
    let tokenizer: Tokenizer
    var pending: [UInt8] = []
    public init(tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    public mutating func push(_ id: Int) -> String {
        pending += tokenizer.tokenBytes(id) ?? []
        // find the end of the longest prefix that is complete UTF-8 (an invalid byte is emitted as U+FFFD)
        var cut = pending.count
        var k = pending.count - 1
        var seen = 0
        while k >= 0 && seen < 4 {
            let b = pending[k]
            if b & 0xC0 == 0x80 { seen += 1; k -= 1; continue }
            let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
            if need > pending.count - k && b >= 0xC0 && b <= 0xF4 { cut = k }
            break
        }
        let out = String(decoding: pending[..<cut], as: UTF8.self)
        pending.removeFirst(cut)
        return out
    }

    /// Whatever is left (an incomplete character becomes U+FFFD).
    public mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }
}
