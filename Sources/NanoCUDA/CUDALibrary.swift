import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The CUDA library (`cuda/`, built by nvcc into `libnanochat_cuda.so`), loaded at run time with `dlopen`: nothing
/// in `swift build` needs CUDA, and a machine without it gets a clear reason instead of a link error.
/// Where it is looked for: `$NANOCHAT_CUDA_LIB`, beside the executable, then `.build/cuda/` (what `cuda/build.sh`
/// writes) under the current folder.
public final class CUDALibrary {
    public let path: String
    private let handle: UnsafeMutableRawPointer
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

    private typealias CreateFn = @convention(c) (UnsafeMutablePointer<OpaquePointer?>, Int32) -> Int32
    private typealias DestroyFn = @convention(c) (OpaquePointer?) -> Void
    private typealias ErrorFn = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    private typealias InfoFn = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int32,
                                               UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int64>?) -> Int32
    private let destroy: DestroyFn
    private let errorString: ErrorFn
    private let info: InfoFn
    /// The ops of nanochat_cuda.h, resolved once (CUDAOps.swift wraps them).
    let ops: CUDAOps

    public static let fileName = "libnanochat_cuda.so"

    /// The places `load()` tries, in order.
    public static var candidates: [String] {
        var out: [String] = []
        if let p = ProcessInfo.processInfo.environment["NANOCHAT_CUDA_LIB"], !p.isEmpty { out.append(p) }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        out.append(exe.appendingPathComponent(fileName).path)
        out.append(URL(fileURLWithPath: ".build/cuda/" + fileName).path)
        return out
    }

    /// Loads the library from `path`, or the first candidate that exists, and opens device 0.
    public static func load(path: String? = nil) throws -> CUDALibrary {
        let tried = path.map { [$0] } ?? candidates
        guard let found = tried.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw Unavailable(reason: "no \(fileName) (looked at \(tried.joined(separator: ", "))); build it on a machine with CUDA: cuda/build.sh, or set NANOCHAT_CUDA_LIB")
        }
        guard let handle = dlopen(found, RTLD_NOW | RTLD_LOCAL) else {
            throw Unavailable(reason: "cannot load \(found): \(String(cString: dlerror()))")
        }
        do {
            return try CUDALibrary(path: found, handle: handle)
        } catch {
            dlclose(handle)
            throw error
        }
    }

    private init(path: String, handle: UnsafeMutableRawPointer) throws {
        func symbol<T>(_ name: String, _ type: T.Type) throws -> T {
            guard let p = dlsym(handle, name) else {
                throw Unavailable(reason: "\(path) has no \(name): it was built from other sources than this nanochat; rebuild it with cuda/build.sh")
            }
            return unsafeBitCast(p, to: type)
        }
        self.path = path
        self.handle = handle
        let create = try symbol("nc_create", CreateFn.self)
        destroy = try symbol("nc_destroy", DestroyFn.self)
        errorString = try symbol("nc_error_string", ErrorFn.self)
        info = try symbol("nc_device_info", InfoFn.self)
        ops = try CUDAOps { name in
            guard let p = dlsym(handle, name) else {
                throw Unavailable(reason: "\(path) has no \(name): it was built from other sources than this nanochat; rebuild it with cuda/build.sh")
            }
            return p
        }
        var ctx: OpaquePointer? = nil
        if create(&ctx, 0) != 0 {
            let why = errorString(ctx).map { String(cString: $0) } ?? "unknown error"
            destroy(ctx)
            throw Unavailable(reason: "\(path) loaded, but no usable GPU: \(why)")
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
        _ = ops.synchronize(context)
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
            _ = ops.synchronize(context)
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
        let why = errorString(context).map { String(cString: $0) } ?? "unknown error"
        throw CUDAError(description: "\(what()): \(why)")
    }

    deinit {
        destroy(context)
        dlclose(handle)
    }

    /// The device the context opened.
    public func device() throws -> Device {
        var name = [CChar](repeating: 0, count: 256)
        var sms: Int32 = 0
        var bytes: Int64 = 0
        guard info(context, &name, Int32(name.count), &sms, &bytes) == 0 else {
            throw Unavailable(reason: String(cString: errorString(context)!))
        }
        return Device(name: String(cString: name), multiprocessors: Int(sms), memoryBytes: bytes)
    }
}
