import CNanoABI
import NanoTensor
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
/// Its functions are called through the table CNanoABI types from mpi/nanochat_mpi.h.
public final class MPICommunicator: Communicator {
    public let rank: Int, worldSize: Int, localRank: Int, localSize: Int
    /// This machine's name as MPI knows it.
    public let host: String
    /// Seconds a collective may wait before this rank gives up on its peers.
    public let timeout: Double

    /// The shim's functions (mpi/nanochat_mpi.h), typed from its header.
    let api: UnsafePointer<ncmpi_api>
    private let library: DynamicLibrary

    public static let fileName = "libnanochat_mpi.so"
    /// Default seconds before a collective is declared hung (`NANOCHAT_COLLECTIVE_TIMEOUT` overrides; 0 = never).
    public static let defaultTimeout = 600.0

    public static var candidates: [String] {
        DynamicLibrary.candidates(fileName: fileName, environmentKey: "NANOCHAT_MPI_LIB", buildFolder: "mpi")
    }

    /// Loads the library, joins the job (MPI_Init) and starts the collective watchdog.
    public static func load() throws -> MPICommunicator {
        let rebuild = "build it with mpi/build.sh (after scripts/bootstrap --with-mpi) on every machine of the job, or set NANOCHAT_MPI_LIB"
        let library: DynamicLibrary
        do {
            // global: Open MPI's own plugins look up libmpi's symbols in the global namespace
            library = try DynamicLibrary(candidates: candidates, global: true, rebuild: rebuild)
        } catch {
            throw NanoChatError("started by mpirun with \(Distributed.launcherWorldSize ?? 0) ranks, but \(error)")
        }
        return try MPICommunicator(library: library, api: library.table(ncmpi_api_load, rebuild: rebuild))
    }

    private init(library: DynamicLibrary, api: UnsafePointer<ncmpi_api>) throws {
        self.library = library
        self.api = api
        let env = ProcessInfo.processInfo.environment
        timeout = env["NANOCHAT_COLLECTIVE_TIMEOUT"].flatMap(Double.init) ?? Self.defaultTimeout
        var r: Int32 = 0, n: Int32 = 0, lr: Int32 = 0, ln: Int32 = 0
        let rc = api.pointee.ncmpi_init(&r, &n, &lr, &ln, timeout)
        guard rc == 0 else { throw NanoChatError("MPI_Init failed: \(Self.errorText(api, rc))") }
        rank = Int(r); worldSize = Int(n); localRank = Int(lr); localSize = Int(ln)
        var buf = [CChar](repeating: 0, count: 256)
        api.pointee.ncmpi_processor_name(&buf, Int32(buf.count))
        host = String(cString: buf)
    }

    private static func errorText(_ api: UnsafePointer<ncmpi_api>, _ rc: Int32) -> String {
        api.pointee.ncmpi_error_string(rc).map { String(cString: $0) } ?? "MPI error \(rc)"
    }

    /// A failed collective: say which rank, where and why, then take the job down.
    func check(_ rc: Int32, _ what: String) {
        guard rc != 0 else { return }
        FileHandle.standardError.write(Data("nanochat: rank \(rank) of \(worldSize) on \(host): \(what) failed: \(Self.errorText(api, rc)); ending the job\n".utf8))
        abort(code: 1)
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { check(api.pointee.ncmpi_allreduce_sum_f32(buffer, count), "all-reduce of \(count) floats") }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { check(api.pointee.ncmpi_allreduce_sum_f64(buffer, count), "all-reduce of \(count) doubles") }
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) { check(api.pointee.ncmpi_allreduce_max_f64(buffer, count), "all-reduce (max)") }
    public func reduceScatterSum(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        check(api.pointee.ncmpi_reduce_scatter_sum_f32(send, recv, countPerRank), "reduce-scatter of \(countPerRank) floats per rank")
    }
    public func allGather(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        check(api.pointee.ncmpi_allgather_f32(send, recv, countPerRank), "all-gather of \(countPerRank) floats per rank")
    }
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
        check(api.pointee.ncmpi_broadcast(buffer, bytes, Int32(root)), "broadcast of \(bytes) bytes")
    }
    public func barrier() { check(api.pointee.ncmpi_barrier(), "barrier") }
    public func abort(code: Int32) -> Never {
        api.pointee.ncmpi_abort(code)
        exit(code)
    }
    public func finish() { _ = api.pointee.ncmpi_finalize() }
}
