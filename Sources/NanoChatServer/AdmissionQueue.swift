import Foundation
import NanoChat
import NanoTensor

/// HTTP admission in front of the batcher: `size` slots, one per row of the continuous batcher (which decodes
/// every admitted answer together, one forward pass per token). A request waits in a bounded FIFO for a free
/// slot (503 when `queueLimit` are already waiting), holds it for its whole stream and gives it back when the
/// stream ends, fails, or the client goes away. The batcher's own list (`Batcher.arrivals`) then only holds
/// admitted requests between their arrival and their prefill, never more than there are free rows.
public final class AdmissionQueue: @unchecked Sendable {
    public let size: Int
    public let queueLimit: Int
    private let lock = NSCondition()
    private var free: [Int]
    private var waiting: [(Int) -> Void] = []
    private var tokensServed = 0
    private var requestsServed = 0
    /// Decodes every admitted request together, one row each (`size` rows); nil until the model has loaded.
    var batcher: Batcher? { lock.lock(); defer { lock.unlock() }; return loaded }
    private var loaded: Batcher?

    public init(size: Int, queueLimit: Int) {
        self.size = max(1, size)
        self.queueLimit = queueLimit
        free = Array(0..<self.size)
    }

    /// Installs the engine once the model has loaded (until then /health says 503).
    public func setEngine(_ e: Engine) {
        let b = Batcher(engine: e, slots: size)
        lock.lock(); loaded = b; lock.unlock()
    }

    public var isReady: Bool { batcher != nil }

    public struct Busy: Error {}

    /// Waits for a worker; throws `Busy` at once when `queueLimit` requests are already waiting.
    public func acquire() async throws -> Int {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Int, Error>) in
            lock.lock()
            if let w = free.popLast() {
                lock.unlock()
                c.resume(returning: w)
            } else if waiting.count >= queueLimit {
                lock.unlock()
                c.resume(throwing: Busy())
            } else {
                waiting.append { c.resume(returning: $0) }
                lock.unlock()
            }
        }
    }

    public func release(_ w: Int, tokens: Int) {
        lock.lock()
        tokensServed += tokens
        requestsServed += 1
        if waiting.isEmpty {
            free.append(w)
            lock.unlock()
        } else {
            let next = waiting.removeFirst()
            lock.unlock()
            next(w)
        }
    }

    public var stats: [String: Int] {
        lock.lock(); defer { lock.unlock() }
        return ["total_workers": size, "available_workers": free.count, "busy_workers": size - free.count,
                "queued": waiting.count, "tokens_served": tokensServed, "requests_served": requestsServed]
    }
}

/// A flag the request side sets when the client disconnects; the generating thread checks it every token.
public final class CancelFlag: @unchecked Sendable {
    private let lock = Mutex()
    private var cancelled = false
    public init() {}
    public func cancel() { lock.lock(); cancelled = true; lock.unlock() }
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return cancelled }
}
