import Dispatch

/// Per-op wall time, for `nanochat bench train`'s breakdown of one step. Off by default (one branch per op).
///
/// Ops report themselves: the forward of an op is charged the time since the previous op finished (ops run one
/// after another, so that is the op's own time plus a little glue), and its backward is timed around the call.
/// The model code carries no timing calls; `mark()` starts the clock before a forward pass.
public enum Profiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) static var totals: [String: (seconds: Double, calls: Int)] = [:]
    nonisolated(unsafe) static var lastMark: UInt64 = 0

    /// Starts the clock for the next op (before a forward pass; the time before it is nobody's).
    public static func mark() { lastMark = DispatchTime.now().uptimeNanoseconds }

    /// An op's forward finished: charge it the time since the last mark.
    static func opFinished(_ name: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        add(name, Double(now &- lastMark) / 1e9)
        lastMark = now
    }

    @inline(__always)
    public static func measure<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        add(name, Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
        return r
    }

    static func add(_ name: String, _ seconds: Double) {
        let old = totals[name] ?? (0, 0)
        totals[name] = (old.seconds + seconds, old.calls + 1)
    }

    public static func reset() { totals = [:] }

    /// (name, seconds, calls), largest first.
    public static var report: [(String, Double, Int)] {
        totals.map { ($0.key, $0.value.seconds, $0.value.calls) }.sorted { $0.1 > $1.1 }
    }
}
