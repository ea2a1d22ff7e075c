import Foundation

/// Where a conversation loader stands: enough to continue exactly (the buffered conversations are re-rendered
/// from their mixture indices).
public struct ConversationLoaderState: Codable, Equatable, Sendable {
    public var cursor: Int
    public var consumed: Int
    public var epoch: Int
    public var buffer: [Int]
}

/// Upstream's SFT loader (BOS-aligned best fit with padding): rows of T+1 tokens, each starting with a
/// conversation's BOS, filled with the largest buffered conversation that still fits; when none fits, the rest
/// of the row is BOS padding whose targets are ignored, so no conversation is ever cut in two.
///
/// `supervision`: `.assistant` (SFT) trains only on the tokens the render mask marks (the assistant's own text,
/// tool calls and `<|assistant_end|>`); `.everything` (mid-training, as upstream's seed-era stage) trains on every
/// token but the padding.
///
/// A conversation is rendered with at most T+1 tokens (upstream renders at most 2048, which with its 2048-token
/// rows always fits; with a shorter context a longer conversation is truncated instead of clogging the buffer).
/// Rank r of W takes conversations r, r+W, ... of the mixture.
public final class ConversationLoader {
    public enum Supervision { case assistant, everything }
    public let batch: Int, seqLen: Int
    let mixture: TaskMixture
    let tokenizer: Tokenizer
    let supervision: Supervision
    let rank: Int, world: Int
    let bufferSize = 100
    var buffer: [(index: Int, ids: [Int], mask: [Int])] = []
    var cursor: Int, consumed: Int, epoch: Int
    /// Conversations the tokenizer refused to render (counted and skipped, not fatal).
    public private(set) var renderFailures = 0

    public init(mixture: TaskMixture, tokenizer: Tokenizer, batch: Int, seqLen: Int, supervision: Supervision,
                rank: Int = 0, world: Int = 1, resume: ConversationLoaderState? = nil) {
        self.mixture = mixture; self.tokenizer = tokenizer; self.batch = batch; self.seqLen = seqLen
        self.supervision = supervision; self.rank = rank; self.world = world
        cursor = resume?.cursor ?? rank
        consumed = resume?.consumed ?? rank
        epoch = resume?.epoch ?? 1
        for i in resume?.buffer ?? [] { if let r = render(i) { buffer.append((i, r.ids, r.mask)) } }
    }

    public var state: ConversationLoaderState {
        ConversationLoaderState(cursor: cursor, consumed: consumed, epoch: epoch, buffer: buffer.map(\.index))
    }
    /// The fraction of the mixture consumed (can pass 1 when rows run past one epoch).
    public var progress: Double { Double(consumed) / Double(mixture.count) }
    public var currentEpoch: Int { epoch }

    func render(_ i: Int) -> (ids: [Int], mask: [Int])? {
        guard let r = try? tokenizer.renderConversation(mixture[i], maxTokens: min(2048, seqLen + 1)) else {
            renderFailures += 1
            return nil
        }
        return r
    }

    func refill() throws {
        var failedInARow = 0
        while buffer.count < bufferSize {
            let i = cursor
            cursor += world
            if cursor >= mixture.count { cursor %= mixture.count; epoch += 1 }
            if let r = render(i) { buffer.append((i, r.ids, r.mask)); failedInARow = 0; continue }
            failedInARow += 1
            if failedInARow > mixture.count {
                throw NanoChatError("no conversation of the mixture renders with this tokenizer (it needs nanochat's special tokens)")
            }
        }
    }

    /// One batch: inputs [batch * T] and targets [batch * T] (-1 = ignored).
    public func next() throws -> (inputs: [Int32], targets: [Int32]) {
        let capacity = seqLen + 1
        let bos = Int32(tokenizer.bosID)
        var inputs = [Int32](repeating: bos, count: batch * seqLen)
        var targets = [Int32](repeating: -1, count: batch * seqLen)
        var row = [Int32](), mask = [Int32]()
        row.reserveCapacity(capacity); mask.reserveCapacity(capacity)
        for b in 0..<batch {
            row.removeAll(keepingCapacity: true); mask.removeAll(keepingCapacity: true)
            while row.count < capacity {
                try refill()
                let remaining = capacity - row.count
                var best = -1, bestLength = 0
                for (i, c) in buffer.enumerated() where c.ids.count <= remaining && c.ids.count > bestLength {
                    best = i; bestLength = c.ids.count
                }
                guard best >= 0 else { break }  // nothing fits: the rest is padding
                let c = buffer.remove(at: best)
                row += c.ids.map(Int32.init)
                mask += c.mask.map { supervision == .everything ? 1 : Int32($0) }
                consumed += world
            }
            let content = row.count
            for t in 0..<seqLen {
                guard t < content else { break }
                inputs[b * seqLen + t] = row[t]
                if t + 1 < content && mask[t + 1] == 1 { targets[b * seqLen + t] = row[t + 1] }
            }
        }
        return (inputs, targets)
    }
}
