import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A rank of an MPI job (`mpirun -np N nanochat ...`), through `libnanochat_mpi.so` (mpi/nanochat_mpi.c, built by
/// mpi/build.sh with the system's mpicc) loaded at run time: `swift build` needs no MPI, and a machine without it
/// runs single-process.
/// Where the library is looked for: `$NANOCHAT_MPI_LIB`, beside the executable, then `.build/mpi/` under the
/// current folder (mpirun starts every rank in the launch folder, on other machines too when it exists there).
public final class MPICommunicator: Communicator {
    public let rank: Int, worldSize: Int, localRank: Int, localSize: Int
    /// This machine's name as MPI knows it.
    public let host: String
    /// Seconds a collective may wait before this rank gives up on its peers.
    public let timeout: Double

    private typealias InitFn = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>,
                                               UnsafeMutablePointer<Int32>, Double) -> Int32
    private typealias ErrorFn = @convention(c) (Int32) -> UnsafePointer<CChar>
    private typealias NameFn = @convention(c) (UnsafeMutablePointer<CChar>, Int32) -> Void
    private typealias ReduceF32 = @convention(c) (UnsafeMutablePointer<Float>, Int) -> Int32
    private typealias ReduceF64 = @convention(c) (UnsafeMutablePointer<Double>, Int) -> Int32
    private typealias ScatterFn = @convention(c) (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Int32
    private typealias GatherFn = @convention(c) (UnsafePointer<Float>?, UnsafeMutablePointer<Float>, Int) -> Int32
    private typealias BroadcastFn = @convention(c) (UnsafeMutableRawPointer, Int, Int32) -> Int32
    private typealias VoidFn = @convention(c) () -> Int32
    private typealias AbortFn = @convention(c) (Int32) -> Void
    private let errorString: ErrorFn
    private let reduceF32: ReduceF32, reduceF64: ReduceF64, reduceMaxF64: ReduceF64
    private let scatter: ScatterFn, gather: GatherFn, bcast: BroadcastFn
    private let barrierFn: VoidFn, finalizeFn: VoidFn, abortFn: AbortFn

    public static let fileName = "libnanochat_mpi.so"
    /// Default seconds before a collective is declared hung (`NANOCHAT_COLLECTIVE_TIMEOUT` overrides; 0 = never).
    public static let defaultTimeout = 600.0

    public static var candidates: [String] {
        var out: [String] = []
        if let p = ProcessInfo.processInfo.environment["NANOCHAT_MPI_LIB"], !p.isEmpty { out.append(p) }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        out.append(exe.appendingPathComponent(fileName).path)
        out.append(URL(fileURLWithPath: ".build/mpi/" + fileName).path)
        return out
    }

    /// Loads the library, joins the job (MPI_Init) and starts the collective watchdog.
    public static func load() throws -> MPICommunicator {
        let tried = candidates
        guard let found = tried.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw NanoChatError("started by mpirun with \(Distributed.launcherWorldSize ?? 0) ranks, but there is no \(fileName) (looked at \(tried.joined(separator: ", "))); build it with mpi/build.sh (after scripts/bootstrap --with-mpi) on every machine of the job, or set NANOCHAT_MPI_LIB")
        }
        // RTLD_GLOBAL: Open MPI's own plugins look up libmpi's symbols in the global namespace
        guard let handle = dlopen(found, RTLD_NOW | RTLD_GLOBAL) else {
            throw NanoChatError("cannot load \(found): \(String(cString: dlerror())); rebuild it with mpi/build.sh")
        }
        return try MPICommunicator(path: found, handle: handle)
    }

    private init(path: String, handle: UnsafeMutableRawPointer) throws {
        func symbol<T>(_ name: String, _ type: T.Type) throws -> T {
            guard let p = dlsym(handle, name) else {
                throw NanoChatError("\(path) has no \(name): it was built from other sources than this nanochat; rebuild it with mpi/build.sh")
            }
            return unsafeBitCast(p, to: type)
        }
        let initFn = try symbol("ncmpi_init", InitFn.self)
        errorString = try symbol("ncmpi_error_string", ErrorFn.self)
        let name = try symbol("ncmpi_processor_name", NameFn.self)
        reduceF32 = try symbol("ncmpi_allreduce_sum_f32", ReduceF32.self)
        reduceF64 = try symbol("ncmpi_allreduce_sum_f64", ReduceF64.self)
        reduceMaxF64 = try symbol("ncmpi_allreduce_max_f64", ReduceF64.self)
        scatter = try symbol("ncmpi_reduce_scatter_sum_f32", ScatterFn.self)
        gather = try symbol("ncmpi_allgather_f32", GatherFn.self)
        bcast = try symbol("ncmpi_broadcast", BroadcastFn.self)
        barrierFn = try symbol("ncmpi_barrier", VoidFn.self)
        finalizeFn = try symbol("ncmpi_finalize", VoidFn.self)
        abortFn = try symbol("ncmpi_abort", AbortFn.self)
        let env = ProcessInfo.processInfo.environment
        timeout = env["NANOCHAT_COLLECTIVE_TIMEOUT"].flatMap(Double.init) ?? Self.defaultTimeout
        var r: Int32 = 0, n: Int32 = 0, lr: Int32 = 0, ln: Int32 = 0
        let rc = initFn(&r, &n, &lr, &ln, timeout)
        guard rc == 0 else { throw NanoChatError("MPI_Init failed: \(String(cString: errorString(rc)))") }
        rank = Int(r); worldSize = Int(n); localRank = Int(lr); localSize = Int(ln)
        var buf = [CChar](repeating: 0, count: 256)
        name(&buf, Int32(buf.count))
        host = String(cString: buf)
    }

    /// A failed collective: say which rank, where and why, then take the job down.
    private func check(_ rc: Int32, _ what: String) {
        guard rc != 0 else { return }
        FileHandle.standardError.write(Data("nanochat: rank \(rank) of \(worldSize) on \(host): \(what) failed: \(String(cString: errorString(rc))); ending the job\n".utf8))
        abort(code: 1)
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { check(reduceF32(buffer, count), "all-reduce of \(count) floats") }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { check(reduceF64(buffer, count), "all-reduce of \(count) doubles") }
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) { check(reduceMaxF64(buffer, count), "all-reduce (max)") }
    public func reduceScatterSum(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        check(scatter(send, recv, countPerRank), "reduce-scatter of \(countPerRank) floats per rank")
    }
    public func allGather(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        check(gather(send, recv, countPerRank), "all-gather of \(countPerRank) floats per rank")
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) { check(bcast(buffer, bytes, Int32(root)), "broadcast of \(bytes) bytes") }
    public func barrier() { check(barrierFn(), "barrier") }
    public func abort(code: Int32) -> Never {
        abortFn(code)
        exit(code)
    }
    public func finish() { _ = finalizeFn() }
}
