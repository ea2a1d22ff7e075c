import Foundation
import NanoTensor

/// The collectives the sharded optimizer (`MuonAdamW`) runs on gradients and parameters, where they live: host memory
/// through MPI (`MPICommunicator`), device memory through NCCL (`NCCLTransport`). The sharding, the padding and the
/// order are the optimizer's, written once; a transport only moves the floats.
///
/// Every `start…` returns at once: a gradient's reduction begins while the backward of the layers below it still
/// runs. The buffers it names stay untouched by the caller until `finishCollectives()` has returned (on a GPU: until
/// the compute stream has been made to wait for them). Every rank starts the same collectives in the same order.
public protocol GradientTransport: AnyObject {
    var rank: Int { get }
    var worldSize: Int { get }
    /// "MPI", "NCCL": for the logs.
    var transportName: String { get }
    /// True when the reductions average over the ranks (NCCL's ncclAvg) rather than sum them.
    var reductionAverages: Bool { get }
    /// The GPU whose memory the buffers are in, or nil for host memory.
    var device: GPU? { get }
    /// `buffer` summed over the ranks, in place.
    func startAllReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    /// `send` holds worldSize blocks of `countPerRank`; rank r receives the reduction of every rank's block r.
    func startReduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int)
    /// The reduction of every rank's `send` into `recv` on `root` (`recv` is not written on the other ranks).
    func startReduce(_ send: UnsafePointer<Float>, into recv: UnsafeMutablePointer<Float>, count: Int, root: Int)
    /// `buffer` holds worldSize blocks of `countPerRank`, rank r's own already in place; every block to every rank.
    func startAllGather(_ buffer: UnsafeMutablePointer<Float>, countPerRank: Int)
    /// Lets started collectives advance (MPI moves nonblocking ones only inside its calls); returns at once.
    func progress()
    /// Returns when every started collective has finished (a GPU: the compute stream waits for them).
    func finishCollectives()
}

extension MPICommunicator: GradientTransport {
    public var transportName: String { "MPI" }
    public var reductionAverages: Bool { false }
    public var device: GPU? { nil }
    public func startAllReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int) {
        check(api.pointee.ncmpi_start_allreduce_sum_f32(buffer, count), "starting an all-reduce of \(count) floats")
    }
    public func startReduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        check(api.pointee.ncmpi_start_reduce_scatter_sum_f32(send, recv, countPerRank), "starting a reduce-scatter of \(countPerRank) floats per rank")
    }
    public func startReduce(_ send: UnsafePointer<Float>, into recv: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        check(api.pointee.ncmpi_start_reduce_sum_f32(send, recv, count, Int32(root)), "starting a reduce of \(count) floats to rank \(root)")
    }
    public func startAllGather(_ buffer: UnsafeMutablePointer<Float>, countPerRank: Int) {
        check(api.pointee.ncmpi_start_allgather_f32(buffer, countPerRank), "starting an all-gather of \(countPerRank) floats per rank")
    }
    public func progress() { check(api.pointee.ncmpi_progress(), "advancing the gradient collectives") }
    public func finishCollectives() { check(api.pointee.ncmpi_wait_all(), "waiting for the gradient collectives") }
}

extension NCCL: GradientTransport {
    public var transportName: String { "NCCL" }
    public var reductionAverages: Bool { true }
    public var device: GPU? { gpu }
    // the start… and finishCollectives calls are NCCL's own (NanoTensor/Device/NCCL.swift)
    /// NCCL moves on its own stream: nothing to drive from the host.
    public func progress() {}
}

extension Distributed {
    /// Joins this rank's GPU to the job's NCCL communicator: rank 0 makes the id, `comm` (MPI, or torchrun's
    /// rendezvous) hands it to the others. Every rank then reduces its gradients on its GPU through NCCL, and a watchdog
    /// ends the rank (naming it) when NCCL reports a broken communicator or its collectives hang past the collective
    /// timeout. With one rank this runs only when NANOCHAT_NCCL=1 (every collective then really goes through NCCL).
    public static func joinNCCL(_ gpu: GPU, comm: Communicator, say: (String) -> Void) throws -> NCCL? {
        let forced = ProcessInfo.processInfo.environment["NANOCHAT_NCCL"] == "1"
        guard comm.worldSize > 1 || forced else { return nil }
        var id = comm.isMain ? try NCCL.uniqueId(gpu) : [UInt8](repeating: 0, count: 128)
        id.withUnsafeMutableBytes { comm.broadcast($0.baseAddress!, bytes: 128, root: 0) }
        let nccl = try NCCL.join(gpu, id: id, rank: comm.rank, worldSize: comm.worldSize)
        let (rank, world, device) = (comm.rank, comm.worldSize, gpu.index)
        let timeout = collectiveTimeout
        nccl.startWatchdog(timeout: timeout) { reason in
            FileHandle.standardError.write(Data("nanochat: rank \(rank) of \(world) (GPU \(device)): \(reason): another rank has stopped or died; ending this rank so that the launcher stops the job (NANOCHAT_COLLECTIVE_TIMEOUT sets the limit, now \(Int(timeout)) s)\n".utf8))
            _exit(75)
        }
        say("NCCL \(nccl.versionText): rank \(rank) of \(world) on GPU \(device), gradients reduced between GPUs")
        return nccl
    }

    /// Seconds a collective may wait before a rank gives up on its peers (`NANOCHAT_COLLECTIVE_TIMEOUT`; 0 = never).
    public static var collectiveTimeout: Double {
        ProcessInfo.processInfo.environment["NANOCHAT_COLLECTIVE_TIMEOUT"].flatMap(Double.init) ?? MPICommunicator.defaultTimeout
    }
}
