import CNanoABI
import Foundation

/// One NVIDIA GPU, through nanochat's CUDA library (`cuda/`, built by nvcc into `libnanochat_cuda.so`) loaded at run
/// time with `dlopen`: nothing in `swift build` needs CUDA, and a machine without it gets a clear reason instead of a
/// link error. Where the library is looked for: `$NANOCHAT_CUDA_LIB`, beside the executable, then `.build/cuda/`.
///
/// A tensor whose storage lives here (`Tensor.gpu`) makes every op run its device body: one call into the library per
/// kernel, on the context's stream, without waiting. The only host <-> device copies are the ones a caller asks for
/// (`Tensor.to`, `Tensor.hostArray`, `TokenIds`); they are counted, so a test can say what a step moves.
///
/// Precision (upstream's policy): parameters, gradients and optimizer state in fp32; with `bf16` the matrix products
/// and attention run on bf16 operands with fp32 accumulation, and the activations that only they read are kept in
/// bf16 (`Tensor.isBF16`: the branches' norms, q, k, v, attention's output, the MLP's hidden layer), the residual
/// stream in fp32. Without it every op is exact fp32, the mode `nanochat verify --device-type cuda` checks against
/// upstream's fixtures.
public final class GPU {
    public var path: String { library.path }
    private let library: DynamicLibrary
    /// The library's context (its stream, cuBLASLt handle and caching allocator).
    public let ctx: OpaquePointer
    /// The functions of cuda/nanochat_cuda.h, with the types of their declarations there (CNanoABI's table).
    public let api: nc_cuda_api
    /// bf16 products and attention (fp32 accumulation); false: exact fp32.
    public var bf16: Bool
    public let name: String
    public let multiprocessors: Int
    public let memoryBytes: Int64
    /// What the bf16 attention runs: cuDNN's fused flash attention, or the WMMA kernels and why (cuda/context.cu).
    public let attentionBackend: String
    /// Upstream's peak for MFU on an H100 / H200 (bf16 dense).
    public static let peakBF16FLOPS = 989e12

    /// Host -> device and device -> host copies so far, and their bytes.
    public private(set) var uploads = 0, downloads = 0, uploadedBytes = 0, downloadedBytes = 0
    /// This GPU's communicator with the job's other GPUs (`NCCL.join`), or nil in a one-GPU run.
    public internal(set) var nccl: NCCL?
    /// The CUDA device number this context runs on (a rank's LOCAL_RANK on a machine of several GPUs).
    public let index: Int
    /// A device float holding 1 (the seed of a backward pass, without a copy per step).
    private(set) var one: UnsafeMutablePointer<Float>!

    public static let fileName = "libnanochat_cuda.so"
    static let rebuild = "build it on a machine with CUDA: cuda/build.sh, or set NANOCHAT_CUDA_LIB"

    /// The places `load()` tries, in order.
    public static var candidates: [String] {
        DynamicLibrary.candidates(fileName: fileName, environmentKey: "NANOCHAT_CUDA_LIB", buildFolder: "cuda")
    }

    /// Loads the library from `path`, or the first candidate that exists, and opens device `index`.
    public static func load(path: String? = nil, bf16: Bool = true, index: Int = 0) throws -> GPU {
        do {
            let library = try DynamicLibrary(candidates: path.map { [$0] } ?? candidates, global: false, rebuild: rebuild)
            return try GPU(library: library, api: library.table(nc_cuda_api_load, rebuild: rebuild).pointee, bf16: bf16, index: index)
        } catch let error as DeviceError {
            throw DeviceError("CUDA backend unavailable: \(error.description)")
        }
    }

    private init(library: DynamicLibrary, api: nc_cuda_api, bf16: Bool, index: Int) throws {
        self.library = library
        self.api = api
        self.bf16 = bf16
        self.index = index
        var ctx: OpaquePointer? = nil
        if api.nc_create(&ctx, Int32(index)) != 0 {
            let why = api.nc_error_string(ctx).map { String(cString: $0) } ?? "unknown error"
            api.nc_destroy(ctx)
            throw DeviceError("\(library.path) loaded, but no usable GPU\(index > 0 ? " \(index)" : ""): \(why)")
        }
        self.ctx = ctx!
        var buffer = [CChar](repeating: 0, count: 256)
        var sms: Int32 = 0
        var bytes: Int64 = 0
        guard api.nc_device_info(ctx, &buffer, Int32(buffer.count), &sms, &bytes) == 0 else {
            throw DeviceError(api.nc_error_string(ctx).map { String(cString: $0) } ?? "unknown error")
        }
        name = String(cString: buffer)
        multiprocessors = Int(sms)
        memoryBytes = bytes
        var backend = [CChar](repeating: 0, count: 256)
        _ = api.nc_attention_backend(ctx, &backend, Int32(backend.count))
        attentionBackend = String(cString: backend)
        one = allocate(floats: 1)
        var value: Float = 1
        try check(api.nc_copy_to_device(ctx, one, &value, 4), "copying to the GPU")
    }

    deinit { api.nc_destroy(ctx) }

    // MARK: errors and the profile

    /// NANOCHAT_CUDA_PROFILE=1: every op is waited for and its time added to `profile` under its name. Slow (the GPU
    /// idles between ops); it says where a step's time goes.
    public let profiling = ProcessInfo.processInfo.environment["NANOCHAT_CUDA_PROFILE"] == "1"
    public private(set) var profile: [String: (seconds: Double, calls: Int)] = [:]
    private var profileMark: UInt64 = 0

    /// Starts the profile's clock (call before a timed region, after host work the GPU waited for).
    public func profileStart() {
        guard profiling else { return }
        _ = api.nc_synchronize(ctx)
        profileMark = DispatchTime.now().uptimeNanoseconds
    }

    /// The profile, largest first: seconds, calls and share of the total per op.
    public func profileReport() -> String {
        let total = profile.values.reduce(0) { $0 + $1.seconds }
        return profile.sorted { $0.value.seconds > $1.value.seconds }.map { name, v in
            "  " + name.padding(toLength: 40, withPad: " ", startingAt: 0)
                + String(format: "%9.1f ms %6d calls %5.1f%%", v.seconds * 1000, v.calls, 100 * v.seconds / max(total, 1e-12))
        }.joined(separator: "\n")
    }

    /// A set-up or report call's status as a thrown error that says which call failed and why.
    public func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        guard status != 0 else { return }
        throw DeviceError("\(what()): \(api.nc_error_string(ctx).map { String(cString: $0) } ?? "unknown error")")
    }

    /// An op's status. Ops do not throw (they are the model's arithmetic): a failed kernel stops the process with the
    /// call that failed and the library's reason, as an out-of-memory in PyTorch does.
    @inline(__always)
    public func run(_ status: Int32, _ what: @autoclosure () -> String) {
        if profiling && status == 0 { record(what()) }
        if status != 0 {
            let why = api.nc_error_string(ctx).map { String(cString: $0) } ?? "unknown error"
            fatalError("GPU \(what()) failed: \(why)")
        }
    }

    private func record(_ name: String) {
        _ = api.nc_synchronize(ctx)
        let now = DispatchTime.now().uptimeNanoseconds
        let key = name.hasPrefix("copying") ? "host work, then a copy" : name
        profile[key, default: (0, 0)].seconds += Double(now - profileMark) / 1e9
        profile[key, default: (0, 0)].calls += 1
        profileMark = now
    }

    // MARK: memory

    /// `n` floats of device memory from the caching allocator (freed with `free`).
    public func allocate(floats n: Int) -> UnsafeMutablePointer<Float> {
        var p: UnsafeMutableRawPointer? = nil
        let bytes = Int64(4 * max(n, 1))
        if api.nc_malloc(ctx, &p, bytes) != 0 {
            let why = api.nc_error_string(ctx).map { String(cString: $0) } ?? "unknown error"
            fatalError(String(format: "GPU: cannot allocate %.2f GB (%@); lower --device-batch-size or the model's depth", Double(bytes) / 1e9, why))
        }
        return p!.assumingMemoryBound(to: Float.self)
    }

    public func free(_ p: UnsafeMutableRawPointer) { _ = api.nc_free(ctx, p) }

    public func upload(_ src: UnsafeRawPointer, bytes: Int, to dst: UnsafeMutableRawPointer) {
        uploads += 1
        uploadedBytes += bytes
        run(api.nc_copy_to_device(ctx, dst, src, Int64(bytes)), "copying \(bytes) bytes to the GPU")
    }

    public func download(_ src: UnsafeRawPointer, bytes: Int, into dst: UnsafeMutableRawPointer) {
        downloads += 1
        downloadedBytes += bytes
        run(api.nc_copy_to_host(ctx, dst, src, Int64(bytes)), "copying \(bytes) bytes from the GPU")
    }

    public func copy(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, floats n: Int) {
        copy(UnsafeRawPointer(src), to: UnsafeMutableRawPointer(dst), bytes: 4 * n)
    }

    public func copy(_ src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, bytes: Int) {
        run(api.nc_copy_on_device(ctx, dst, src, Int64(bytes)), "copying on the GPU")
    }

    public func zero(_ p: UnsafeMutablePointer<Float>, floats n: Int) { run(api.nc_zero(ctx, p, Int64(4 * n)), "zeroing GPU memory") }

    public func synchronize() { run(api.nc_synchronize(ctx), "waiting for the GPU") }

    /// The caching allocator's bookkeeping (cuda/caching_allocator.h): bytes handed out now and at the most, bytes held
    /// from the device, and the device allocations made so far (a steady training step adds none).
    public func allocatorStats() throws -> (inUse: Int64, peak: Int64, reserved: Int64, deviceAllocations: Int64) {
        var u: Int64 = 0, p: Int64 = 0, r: Int64 = 0, n: Int64 = 0
        try check(api.nc_allocator_stats(ctx, &u, &p, &r, &n), "reading the allocator's statistics")
        return (u, p, r, n)
    }

    /// (free, total) device memory on the card, and the most bytes handed out at once (PyTorch's max_memory_allocated).
    public func memoryInfo() throws -> (free: Int64, total: Int64, peak: Int64) {
        var f: Int64 = 0, t: Int64 = 0, p: Int64 = 0
        try check(api.nc_memory_info(ctx, &f, &t, &p), "reading GPU memory")
        return (f, t, p)
    }

    // MARK: the one op used everywhere

    /// c[m, n] = alpha op(a) op(b) + beta c, row-major; bf16 inputs when the GPU trains in bf16.
    @inline(__always)
    public func matmul(_ c: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, m: Int, n: Int, k: Int,
                       transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0) {
        run(api.nc_matmul(ctx, c, a, b, Int64(m), Int64(n), Int64(k), transA ? 1 : 0, transB ? 1 : 0, alpha, beta, bf16 ? 1 : 0),
            "matmul \(m)x\(n)x\(k)")
    }
}

/// Where a tensor lives and its ops run: the CPU (BLAS and our C kernels) or a GPU.
public enum Device: CustomStringConvertible {
    case cpu
    case gpu(GPU)

    public var gpu: GPU? { if case .gpu(let g) = self { return g } else { return nil } }

    public var description: String {
        switch self {
        case .cpu: return "cpu"
        case .gpu(let g): return "\(g.name), \(g.bf16 ? "bf16 products and attention (\(g.attentionBackend)), fp32 weights" : "exact fp32")"
        }
    }
}
