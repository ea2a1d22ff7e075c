import Dispatch

/// Per-op wall time, for `nanochat bench train`'s breakdown of one step. Off by default (one branch per op).
public enum Profiler {
    nonisolated(unsafe) public static var enabled = false
    nonisolated(unsafe) static var totals: [String: (seconds: Double, calls: Int)] = [:]

    @inline(__always)
    public static func measure<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let r = try body()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let old = totals[name] ?? (0, 0)
        totals[name] = (old.seconds + dt, old.calls + 1)
        return r
    }

    public static func reset() { totals = [:] }

    /// (name, seconds, calls), largest first.
    public static var report: [(String, Double, Int)] {
        totals.map { ($0.key, $0.value.seconds, $0.value.calls) }.sorted { $0.1 > $1.1 }
    }
}
