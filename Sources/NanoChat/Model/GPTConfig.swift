/// The model's shape, with upstream's field names (it is stored in checkpoint meta as `model_config`).
public struct GPTConfig: Codable, Equatable, Sendable {
    public var sequence_len: Int
    public var vocab_size: Int
    public var n_layer: Int
    public var n_head: Int
    public var n_kv_head: Int
    public var n_embd: Int
    public var window_pattern: String

    public init(sequence_len: Int, vocab_size: Int, n_layer: Int, n_head: Int, n_kv_head: Int, n_embd: Int,
                window_pattern: String) {
        self.sequence_len = sequence_len
        self.vocab_size = vocab_size
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_kv_head = n_kv_head
        self.n_embd = n_embd
        self.window_pattern = window_pattern
    }

    public var headDim: Int { n_embd / n_head }
    /// Embedding and lm_head rows: the vocabulary padded up to a multiple of 64.
    public var paddedVocab: Int { (vocab_size + 63) / 64 * 64 }

    /// Layer i has a value embedding iff i and the last layer have the same parity (ceil(L/2) layers).
    public func hasValueEmbedding(_ layer: Int) -> Bool { layer % 2 == (n_layer - 1) % 2 }

    /// Left window per layer: the pattern tiled over the layers, the last layer always long;
    /// long = sequence_len, short = ceil_div(sequence_len / 4, 128) * 128 (Python's floor semantics).
    public var windowSizes: [Int] {
        let pattern = Array(window_pattern.uppercased())
        let long = sequence_len
        let short = -floorDiv(floorDiv(-sequence_len, 4), 128) * 128
        return (0..<n_layer).map { i in
            if i == n_layer - 1 { return long }
            return pattern.isEmpty || pattern[i % pattern.count] == "L" ? long : short
        }
    }

    /// Checks what the model needs; a clear message instead of a crash later.
    public func validate() throws {
        guard n_layer > 0, n_head > 0, n_kv_head > 0, n_embd > 0, vocab_size > 0, sequence_len > 0 else {
            throw NanoChatError("model config has a non-positive size: \(self)")
        }
        guard n_embd % n_head == 0 else { throw NanoChatError("n_embd \(n_embd) is not a multiple of n_head \(n_head)") }
        guard n_head % n_kv_head == 0 else { throw NanoChatError("n_head \(n_head) is not a multiple of n_kv_head \(n_kv_head)") }
        guard headDim % 2 == 0 else { throw NanoChatError("head dim \(headDim) must be even for rotary embeddings") }
        guard n_embd >= 24 else { throw NanoChatError("n_embd \(n_embd) must be at least 24 (the smear gate reads 24 channels)") }
        guard window_pattern.uppercased().allSatisfy({ $0 == "S" || $0 == "L" }), !window_pattern.isEmpty else {
            throw NanoChatError("window pattern \(window_pattern) must be a non-empty string of S and L")
        }
    }
}

/// Python's `//` (floor division), which upstream's formulas use.
@inline(__always)
public func floorDiv(_ a: Int, _ b: Int) -> Int {
    let q = a / b
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
}
