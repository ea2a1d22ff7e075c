import Foundation
import NanoTensor

/// The collectives data-parallel training needs, whatever carries them: one process (`SingleProcess`, no MPI at
/// all), MPI across processes and machines (`MPICommunicator`), and later NCCL between GPUs.
///
/// Every rank calls the same collectives in the same order with the same sizes. A failed collective does not
/// return: the rank reports it on stderr, naming itself, and ends the whole job, because a data-parallel job with
/// a missing rank can only hang.
public protocol Communicator: AnyObject {
    /// This process's rank in 0..<worldSize.
    var rank: Int { get }
    var worldSize: Int { get }
    /// Rank and number of ranks on this machine (they share its cores).
    var localRank: Int { get }
    var localSize: Int { get }
    /// Sums `count` values across ranks, in place on every rank.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int)
    func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// Element-wise maximum across ranks, in place.
    func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int)
    /// `send` holds worldSize blocks of `countPerRank` values; rank r receives into `recv` the sum over ranks of block r.
    func reduceScatterSum(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int)
    /// `recv` holds worldSize blocks of `countPerRank`; rank r contributes block r, from `send`, or, with `send` nil,
    /// from where block r already sits in `recv`.
    func allGather(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int)
    /// Copies `bytes` bytes from `root` to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int)
    func barrier()
    /// Ends every rank of the job with `code` (after this rank has said why).
    func abort(code: Int32) -> Never
    /// Leaves the job in an orderly way (the last call).
    func finish()
}

extension Communicator {
    public var isMain: Bool { rank == 0 }

    /// Sums a few numbers across ranks (evaluation counts, losses).
    public func sum(_ values: [Double]) -> [Double] {
        guard worldSize > 1 else { return values }
        var v = values
        v.withUnsafeMutableBufferPointer { allReduceSum($0.baseAddress!, count: $0.count) }
        return v
    }

    public func sum(_ value: Double) -> Double { sum([value])[0] }

    public func max(_ value: Double) -> Double {
        guard worldSize > 1 else { return value }
        var v = value
        allReduceMax(&v, count: 1)
        return v
    }

    /// Every rank's string, in rank order (loader positions gathered for rank 0's checkpoint).
    public func allGather(_ text: String) -> [String] {
        guard worldSize > 1 else { return [text] }
        let bytes = Array(text.utf8)
        let longest = Int(self.max(Double(bytes.count)))
        // floats carry the bytes exactly (every byte value is a representable float)
        var recv = [Float](repeating: 0, count: (longest + 1) * worldSize)
        var mine = [Float](repeating: -1, count: longest + 1)
        for (i, b) in bytes.enumerated() { mine[i] = Float(b) }
        recv.withUnsafeMutableBufferPointer { r in
            mine.withUnsafeBufferPointer { allGather($0.baseAddress!, r.baseAddress!, countPerRank: longest + 1) }
        }
        return (0..<worldSize).map { r in
            let block = recv[(r * (longest + 1))..<((r + 1) * (longest + 1))]
            return String(decoding: block.prefix { $0 >= 0 }.map { UInt8($0) }, as: UTF8.self)
        }
    }

    /// Rank `root`'s string on every rank.
    public func broadcast(_ text: String, root: Int = 0) -> String {
        guard worldSize > 1 else { return text }
        var count = Double(rank == root ? text.utf8.count : 0)
        broadcast(&count, bytes: 8, root: root)
        var bytes = rank == root ? Array(text.utf8) : [UInt8](repeating: 0, count: Int(count))
        if !bytes.isEmpty { bytes.withUnsafeMutableBytes { broadcast($0.baseAddress!, bytes: $0.count, root: root) } }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One process: every collective is the identity.
public final class SingleProcess: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var worldSize: Int { 1 }
    public var localRank: Int { 0 }
    public var localSize: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) {}
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) {}
    public func reduceScatterSum(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        if UnsafePointer(recv) != send { recv.update(from: send, count: countPerRank) }
    }
    public func allGather(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        if let send, send != UnsafePointer(recv) { recv.update(from: send, count: countPerRank) }
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {}
    public func barrier() {}
    public func abort(code: Int32) -> Never { exit(code) }
    public func finish() {}
}

/// How this process was started: alone, or as one rank of an MPI job.
public enum Distributed {
    /// The job's size as the launcher tells it (Open MPI, MPICH/Hydra, PMIx), or nil when not started by mpirun.
    public static var launcherWorldSize: Int? {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"] {
            if let s = env[key], let n = Int(s) { return n }
        }
        return nil
    }

    /// The communicator for this process: MPI when mpirun started more than one rank; torchrun's ranks (RANK,
    /// WORLD_SIZE, MASTER_ADDR, MASTER_PORT) through its store and TCP (`TorchrunCommunicator`); otherwise
    /// `SingleProcess`. Under mpirun without the MPI library built, fails with what to do (N unaware copies of one run
    /// would overwrite each other's checkpoints), and so does a torchrun environment that lacks the store's address.
    public static func start() throws -> Communicator {
        if let n = launcherWorldSize, n > 1 { return try MPICommunicator.load() }
        if TorchrunCommunicator.launched { return try TorchrunCommunicator.start() }
        let env = ProcessInfo.processInfo.environment
        if let w = env["WORLD_SIZE"].flatMap(Int.init), w > 1 {
            throw NanoChatError("WORLD_SIZE=\(w) but no \(["RANK", "MASTER_ADDR", "MASTER_PORT"].filter { env[$0] == nil }.joined(separator: ", ")): start the ranks with torchrun (it sets them all) or `mpirun -np \(w) nanochat ...`, or unset WORLD_SIZE for one process")
        }
        return SingleProcess()
    }
}

/// Data lanes: a step's total batch cut into micro-batches, lane = micro-step · W + rank, L = micro-steps · W lanes.
/// Lane l reads its data as rank l of L would, so W ranks with A micro-steps read exactly what one process with
/// W·A micro-steps reads.
extension Communicator {
    /// This rank's lanes, in micro-step order.
    public func lanes(microSteps: Int) -> [Int] { (0..<microSteps).map { $0 * worldSize + rank } }

    /// The saved position of each of this rank's lanes (nil: start fresh), checking that the checkpoint was cut into as
    /// many lanes. `legacy` is a single-loader position from before lanes existed, valid for one lane.
    public func resumedLanes<State>(_ saved: [State]?, legacy: State?, microSteps: Int, checkpoint: String) throws -> [State?] {
        let count = microSteps * worldSize
        let all = saved ?? (count == 1 ? legacy.map { [$0] } : nil)
        if let all, all.count != count {
            throw NanoChatError("\(checkpoint) has \(all.count) data lanes, this run has \(count) (accumulation steps x ranks); resume with the same --device-batch-size and --total-batch-size")
        }
        return lanes(microSteps: microSteps).map { all?[$0] }
    }

    /// Every rank's lane positions gathered in lane order (for rank 0's checkpoint meta).
    public func gatherLanes<State: Codable>(_ mine: [State]) throws -> [State] {
        let text = String(decoding: try JSONEncoder().encode(mine), as: UTF8.self)
        let perRank = try allGather(text).map { try JSONDecoder().decode([State].self, from: Data($0.utf8)) }
        return (0..<(mine.count * worldSize)).map { lane in perRank[lane % worldSize][lane / worldSize] }
    }
}

extension Communicator {
    /// Every parameter of `model` from rank `root`, so all ranks start from the same weights.
    public func broadcastParameters(_ model: GPT, root: Int = 0) {
        guard worldSize > 1 else { return }
        for name in model.parameterNames {
            let p = model.param(name)
            broadcast(UnsafeMutableRawPointer(p.data), bytes: p.count * MemoryLayout<Float>.size, root: root)
        }
    }
}
