import CKernels
import Foundation
#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// The one threading policy of the process.
///
/// Our own kernels split work across `Threading.workers` threads with `parallelFor`, on a pool of threads that
/// stay awake between regions (CKernels' worker_pool.c says why); while they do,
/// BLAS runs on one thread, and while BLAS runs a large product it may use all cores. Two pools never
/// fight over the same cores (2 cores oversubscribed is slower than 1). There is one caller at a time: the
/// server decodes all its conversations together on one thread (`Batcher`) rather than one thread each; a region
/// started while another runs (nested, or from a second thread) runs on its caller's thread alone.
public enum Threading {
    /// Number of worker threads for our kernels: `NANOCHAT_NUM_THREADS` if set, else the active cores shared among
    /// the MPI ranks that run on this machine (mpirun says how many). BLAS starts with the same number.
    public static let workers: Int = {
        let env = ProcessInfo.processInfo.environment
        let n: Int
        if let s = env["NANOCHAT_NUM_THREADS"], let v = Int(s), v > 0 {
            n = v
        } else {
            let localRanks = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"].lazy.compactMap { env[$0].flatMap { Int($0) } }.first ?? 1
            n = max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, localRanks))
        }
        setBLASThreads(n)
        return n
    }()

    /// Runs `body(i)` for i in 0..<count on up to `workers` threads and returns when all are done.
    /// With `count <= 1` or one thread it runs inline, so callers need no special case.
    public static func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || workers == 1 {
            for i in 0..<count { body(i) }
            return
        }
        _ = pool
        // Our threads take the cores: BLAS calls inside run single-threaded until the region ends.
        setBLASThreads(1)
        withoutActuallyEscaping(body) { body in
            var job = body
            withUnsafeMutablePointer(to: &job) { nc_pool_run(count, runIndex, $0) }
        }
        setBLASThreads(workers)
    }

    /// How long an idle pool thread polls for the next region before it sleeps: longer than the gap between the
    /// products of one decode step (attention, norms), short enough that a thread left spinning after the last
    /// region costs nothing noticeable (it also yields to BLAS's threads while it polls).
    static let spinNanoseconds = 100_000

    /// Before a BLAS call outside our regions (where BLAS runs on all cores): our idle pool threads stop polling and
    /// sleep, so that they do not take cores from BLAS's threads. Measured on quantized prefill, which alternates
    /// a region (widening a tile of weights) and a BLAS product: polling helpers made it up to a quarter slower.
    @inline(__always)
    public static func yieldCoresToBLAS() {
        if workers > 1 && blasThreads > 1 { nc_pool_park() }
    }

    /// Starts the pool once, with `workers` threads in all.
    static let pool: Void = { _ = nc_pool_start(Int32(workers), spinNanoseconds) }()

    /// Splits 0..<n into `parts` contiguous ranges of near-equal size (the first ones one longer).
    public static func ranges(_ n: Int, parts: Int) -> [Range<Int>] {
        let p = max(1, min(parts, n))
        var out: [Range<Int>] = []
        out.reserveCapacity(p)
        var start = 0
        for i in 0..<p {
            let len = n / p + (i < n % p ? 1 : 0)
            out.append(start..<(start + len))
            start += len
        }
        return out
    }

    /// Sets how many threads BLAS may use for one product (OpenBLAS; Accelerate manages its own).
    public static func setBLASThreads(_ n: Int) {
        #if !canImport(Accelerate)
        openblas_set_num_threads(Int32(max(1, n)))
        #endif
    }

    /// Threads BLAS currently uses.
    public static var blasThreads: Int {
        #if canImport(Accelerate)
        return workers
        #else
        return Int(openblas_get_num_threads())
        #endif
    }
}

/// The pool's entry into a region's body: `context` points at the caller's closure for the region's lifetime.
/// Not inlined into the C pool's loop, so the closure is retained and released within this call, before the pool
/// counts the index as done.
private func runIndex(_ context: UnsafeMutableRawPointer?, _ index: Int) {
    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
}
