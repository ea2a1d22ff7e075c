import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// This GPU's place in a job of several GPUs: NCCL's communicator, through the CUDA library (cuda/nccl.cu loads
/// NCCL with dlopen). Collectives are float32 and average over the ranks; each runs on the library's collectives
/// stream once the compute stream has run what was queued before it, and `wait()` makes the compute stream wait for
/// them, so the host never blocks on the network. The calls made are counted (`calls`), so a one-GPU run can show
/// that every collective really went through NCCL.
public final class NCCL {
    public unowned let gpu: GPU
    public let rank: Int, worldSize: Int
    /// NCCL's version as it reports it (major*10000 + minor*100 + patch; 0 under the host emulation).
    public let version: Int
    /// Collectives started, by kind.
    public private(set) var calls: [String: Int] = [:]
    public private(set) var bytes = 0

    /// The id rank 0 makes and hands to the others (over MPI, or torchrun's rendezvous) before `join`.
    public static func uniqueId(_ gpu: GPU) throws -> [UInt8] {
        var id = [CChar](repeating: 0, count: 128)
        try gpu.check(gpu.api.nc_nccl_unique_id(gpu.ctx, &id, Int32(id.count)), "making NCCL's id")
        return id.map { UInt8(bitPattern: $0) }
    }

    /// Joins the job's communicator (ncclCommInitRank: returns once every rank has joined) and attaches it to `gpu`.
    public static func join(_ gpu: GPU, id: [UInt8], rank: Int, worldSize: Int) throws -> NCCL {
        precondition(id.count == 128, "NCCL's id is 128 bytes")
        var v: Int32 = 0
        try gpu.check(gpu.api.nc_nccl_version(gpu.ctx, &v), "loading NCCL")
        let chars = id.map { CChar(bitPattern: $0) }
        try gpu.check(gpu.api.nc_nccl_init(gpu.ctx, chars, Int32(worldSize), Int32(rank)), "joining NCCL's communicator as rank \(rank) of \(worldSize)")
        let nccl = NCCL(gpu: gpu, rank: rank, worldSize: worldSize, version: Int(v))
        gpu.nccl = nccl
        return nccl
    }

    private init(gpu: GPU, rank: Int, worldSize: Int, version: Int) {
        self.gpu = gpu
        self.rank = rank
        self.worldSize = worldSize
        self.version = version
    }

    public var versionText: String { version == 0 ? "emulated" : "\(version / 10000).\(version / 100 % 100).\(version % 100)" }

    private func count(_ kind: String, floats: Int) {
        calls[kind, default: 0] += 1
        bytes += floats * 4
    }

    public func startAllReduce(_ buffer: UnsafeMutablePointer<Float>, count n: Int) {
        count("all-reduce", floats: n)
        gpu.run(gpu.api.nc_nccl_all_reduce(gpu.ctx, buffer, Int64(n)), "NCCL all-reduce of \(n) floats")
    }

    public func startReduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank n: Int) {
        count("reduce-scatter", floats: n * worldSize)
        gpu.run(gpu.api.nc_nccl_reduce_scatter(gpu.ctx, send, recv, Int64(n)), "NCCL reduce-scatter of \(n) floats per rank")
    }

    public func startReduce(_ send: UnsafePointer<Float>, into recv: UnsafeMutablePointer<Float>, count n: Int, root: Int) {
        count("reduce", floats: n)
        gpu.run(gpu.api.nc_nccl_reduce(gpu.ctx, send, recv, Int64(n), Int32(root)), "NCCL reduce of \(n) floats to rank \(root)")
    }

    public func startAllGather(_ buffer: UnsafeMutablePointer<Float>, countPerRank n: Int) {
        count("all-gather", floats: n)
        gpu.run(gpu.api.nc_nccl_all_gather(gpu.ctx, buffer, Int64(n)), "NCCL all-gather of \(n) floats per rank")
    }

    /// The compute stream waits for every collective started so far (the host does not wait).
    public func finishCollectives() { gpu.run(gpu.api.nc_nccl_wait(gpu.ctx), "waiting for NCCL's collectives") }

    /// A thread that asks NCCL every second whether the communicator broke (a peer died) or the collectives the compute
    /// stream waits for have taken longer than `timeout` seconds (a peer stopped); then it aborts the communicator and
    /// calls `fail` with the reason (which ends the process: the launcher then stops the other ranks).
    /// The thread holds the GPU for the rest of the process: its context (and NCCL's) is never freed under it.
    public func startWatchdog(timeout: Double, fail: @escaping @Sendable (String) -> Never) {
        nonisolated(unsafe) let held = gpu
        let check = gpu.api.nc_nccl_check, abort = gpu.api.nc_nccl_abort
        let thread = Thread {
            let ctx = held.ctx
            var reason = [CChar](repeating: 0, count: 256)
            while true {
                sleep(1)
                var failed: Int32 = 0
                _ = check(ctx, timeout, &failed, &reason, Int32(reason.count))
                if failed != 0 {
                    _ = abort(ctx)
                    fail(String(cString: reason))
                }
            }
        }
        thread.name = "nccl-watchdog"
        thread.start()
    }

    /// What this run sent through NCCL, for its log.
    public var summary: String {
        let kinds = calls.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        return String(format: "NCCL %@, rank %d of %d: %@; %.1f MB", versionText, rank, worldSize, kinds.isEmpty ? "no collectives" : kinds, Double(bytes) / 1e6)
    }
}
