import CNanoABI
import Foundation
import NanoChat

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CUDA library (`cuda/`, built by nvcc into `libnanochat_cuda.so`), loaded at run time with `dlopen`
/// (`DynamicLibrary`, as the MPI shim): nothing in `swift build` needs CUDA, and a machine without it gets a clear
/// reason instead of a link error. Where it is looked for: `$NANOCHAT_CUDA_LIB`, beside the executable, then
/// `.build/cuda/` (what `cuda/build.sh` writes) under the current folder.
public final class CUDALibrary {
    public var path: String { library.path }
    private let library: DynamicLibrary
    private let context: OpaquePointer

    public struct Device: Sendable {
        public let name: String
        public let multiprocessors: Int
        public let memoryBytes: Int64
    }

    /// Why the backend cannot be used: what was tried and what to do about it.
    public struct Unavailable: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { "CUDA backend unavailable: \(reason)" }
    }

    /// The functions of cuda/nanochat_cuda.h, with the types of their declarations there (CNanoABI's table).
    let api: nc_cuda_api

    public static let fileName = "libnanochat_cuda.so"
    static let rebuild = "build it on a machine with CUDA: cuda/build.sh, or set NANOCHAT_CUDA_LIB"

    /// The places `load()` tries, in order.
    public static var candidates: [String] {
        DynamicLibrary.candidates(fileName: fileName, environmentKey: "NANOCHAT_CUDA_LIB", buildFolder: "cuda")
    }

    /// Loads the library from `path`, or the first candidate that exists, and opens device 0.
    public static func load(path: String? = nil) throws -> CUDALibrary {
        do {
            let library = try DynamicLibrary(candidates: path.map { [$0] } ?? candidates, global: false, rebuild: rebuild)
            return try CUDALibrary(library: library, api: library.table(nc_cuda_api_load, rebuild: rebuild).pointee)
        } catch let error as NanoChatError {
            throw Unavailable(reason: error.description)
        }
    }

    private init(library: DynamicLibrary, api: nc_cuda_api) throws {
        self.library = library
        self.api = api
        var ctx: OpaquePointer? = nil
        if api.nc_create(&ctx, 0) != 0 {
            let why = api.nc_error_string(ctx).map { String(cString: $0) } ?? "unknown error"
            api.nc_destroy(ctx)
            throw Unavailable(reason: "\(library.path) loaded, but no usable GPU: \(why)")
        }
        context = ctx!
    }

    /// The context every op runs on.
    var ctx: OpaquePointer { context }

    /// NANOCHAT_CUDA_PROFILE=1: every op is waited for and its time added to `profile` under its name. Slow (the GPU
    /// idles between ops); it says where a step's time goes.
    public let profiling = ProcessInfo.processInfo.environment["NANOCHAT_CUDA_PROFILE"] == "1"
    public private(set) var profile: [String: (seconds: Double, calls: Int)] = [:]
    private var profileMark: UInt64 = 0

    /// Starts the profile's clock (call before a timed region, after host work the GPU waited for).
    public func profileStart() {
        guard profiling else { return }
        _ = api.nc_synchronize(context)
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

    /// Turns an op's status into a thrown error that says which call failed and why.
    func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        if status == 0 && profiling {
            _ = api.nc_synchronize(context)
            let now = DispatchTime.now().uptimeNanoseconds
            let name = what()
            if !name.hasPrefix("allocating") && !name.hasPrefix("reading GPU memory") {  // set-up and reports, not a step's work
                // a copy waits for the GPU: its time is the host's work since the last op (data, Swift) plus the copy
                let key = name.hasPrefix("copying to") || name.hasPrefix("copying from") ? "host work, then a copy"
                    : name.hasPrefix("AdamW") ? "AdamW" : name
                profile[key, default: (0, 0)].seconds += Double(now - profileMark) / 1e9
                profile[key, default: (0, 0)].calls += 1
            }
            profileMark = now
        }
        guard status != 0 else { return }
        let why = api.nc_error_string(context).map { String(cString: $0) } ?? "unknown error"
        throw CUDAError(description: "\(what()): \(why)")
    }

    deinit { api.nc_destroy(context) }

    /// The device the context opened.
    public func device() throws -> Device {
        var name = [CChar](repeating: 0, count: 256)
        var sms: Int32 = 0
        var bytes: Int64 = 0
        guard api.nc_device_info(context, &name, Int32(name.count), &sms, &bytes) == 0 else {
            throw Unavailable(reason: api.nc_error_string(context).map { String(cString: $0) } ?? "unknown error")
        }
        return Device(name: String(cString: name), multiprocessors: Int(sms), memoryBytes: bytes)
    }
}
