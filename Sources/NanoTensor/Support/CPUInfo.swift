import CKernels
import Foundation
#if canImport(Accelerate)
import Accelerate
#else
import CBLAS
#endif

/// The CPU as the kernels see it: model, vector extensions the OS lets it use, and which kernel set runs where.
public struct CPUInfo: Sendable {
    public var vendor: String
    public var brand: String
    public var family: Int
    public var model: Int
    public var sse42 = false, avx = false, fma = false, avx2 = false
    public var avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false
    public var amxTile = false, amxInt8 = false, amxBF16 = false

    public init(vendor: String, brand: String = "", family: Int = 0, model: Int = 0) {
        self.vendor = vendor; self.brand = brand; self.family = family; self.model = model
    }

    /// This machine's CPU, from CPUID and XGETBV.
    public static let current: CPUInfo = {
        var f = nc_cpu_detect()
        func string<T>(_ tuple: inout T) -> String {
            withUnsafeBytes(of: &tuple) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        var info = CPUInfo(vendor: string(&f.vendor), brand: string(&f.brand).trimmingCharacters(in: .whitespaces),
                           family: Int(f.family), model: Int(f.model))
        info.sse42 = f.sse42 != 0; info.avx = f.avx != 0; info.fma = f.fma != 0; info.avx2 = f.avx2 != 0
        info.avx512f = f.avx512f != 0; info.avx512dq = f.avx512dq != 0; info.avx512bw = f.avx512bw != 0
        info.avx512vl = f.avx512vl != 0; info.avx512vnni = f.avx512vnni != 0; info.avx512bf16 = f.avx512bf16 != 0
        info.amxTile = f.amx_tile != 0; info.amxInt8 = f.amx_int8 != 0; info.amxBF16 = f.amx_bf16 != 0
        return info
    }()

    /// AVX-512 as the BLAS kernels for it need it (foundation, DQ, BW, VL).
    public var avx512: Bool { avx512f && avx512dq && avx512bw && avx512vl }

    /// The vector extensions, widest last: "SSE4.2 AVX AVX2 FMA AVX-512 AVX-512-VNNI AVX-512-BF16 AMX".
    public var extensions: String {
        var e: [String] = []
        if sse42 { e.append("SSE4.2") }
        if avx { e.append("AVX") }
        if avx2 { e.append("AVX2") }
        if fma { e.append("FMA") }
        if avx512 { e.append("AVX-512") }
        if avx512vnni { e.append("AVX-512-VNNI") }
        if avx512bf16 { e.append("AVX-512-BF16") }
        if amxTile { e.append("AMX" + (amxBF16 ? "-BF16" : "") + (amxInt8 ? "-INT8" : "")) }
        return e.isEmpty ? "no vector extensions detected" : e.joined(separator: " ")
    }

    /// One line naming the machine: "AMD EPYC 9R14 (AuthenticAMD family 25 model 17): SSE4.2 AVX AVX2 FMA AVX-512 ...".
    public var description: String {
        "\(brand.isEmpty ? "unknown CPU" : brand) (\(vendor) family \(family) model \(model)): \(extensions)"
    }
}

/// The CPU's peak float32 rate on `threads` cores, as a spec sheet gives it: cores x FLOPs per cycle (two FMA pipes
/// of the widest vectors the CPU has: 16 lanes with AVX-512 on Intel and on AMD from Zen 5, 8 lanes with AVX2 and
/// on Zen 4, whose AVX-512 runs on 256-bit pipes) x the clock: the higher of what the kernel reports and what a
/// chain of dependent adds measures (a virtual machine reports the nominal clock while the core boosts above it).
/// MFU is measured against it, as upstream measures a GPU against its data sheet, so it stays under 100%.
public struct CPUPeak: Sendable {
    public var threads: Int
    public var flopsPerCycle: Int
    public var gigahertz: Double
    public var vectors: String
    public var flops: Double { Double(threads * flopsPerCycle) * gigahertz * 1e9 }
    public var description: String {
        String(format: "%d core(s) x %d FLOP/cycle (%@) x %.2f GHz = %.1f GFLOP/s", threads, flopsPerCycle, vectors, gigahertz, flops / 1e9)
    }

    public init(cpu: CPUInfo, threads: Int, gigahertz: Double) {
        let (lanes, vectors): (Int, String)
        if cpu.avx512f && (cpu.vendor != "AuthenticAMD" || cpu.family >= 26) { (lanes, vectors) = (16, "AVX-512 FMA") }
        else if cpu.avx512f { (lanes, vectors) = (8, "AVX-512 on 256-bit FMA pipes") }
        else if cpu.avx2 && cpu.fma { (lanes, vectors) = (8, "AVX2 FMA") }
        else if cpu.avx { (lanes, vectors) = (4, "AVX, no FMA") }
        else { (lanes, vectors) = (2, "SSE, no FMA") }
        // two pipes, each lanes x 2 FLOPs (multiply and add)
        self.init(threads: threads, flopsPerCycle: 2 * lanes * 2, gigahertz: gigahertz, vectors: vectors)
    }

    init(threads: Int, flopsPerCycle: Int, gigahertz: Double, vectors: String) {
        self.threads = threads; self.flopsPerCycle = flopsPerCycle; self.gigahertz = gigahertz; self.vectors = vectors
    }

    /// The clock the kernel reports: cpufreq's maximum where it exposes one (kHz), else /proc/cpuinfo's "cpu MHz".
    public static func reportedGigahertz(cpuinfo: String, maxKHz: String?) -> Double? {
        if let khz = maxKHz.flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) { return khz / 1e6 }
        let line = cpuinfo.split(separator: "\n").first { $0.hasPrefix("cpu MHz") }
        return line.flatMap { Double($0.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "") }.map { $0 / 1e3 }
    }

    /// The clock, measured once a process (0.1 s): the higher of the reported and the measured one.
    public static let clock: Double = {
        let reported = reportedGigahertz(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "",
                                         maxKHz: try? String(contentsOfFile: "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", encoding: .utf8))
        let best = max(reported ?? 0, nc_measure_clock_ghz(0.1))  // the measurement is 0 where it cannot run (not x86-64)
        return best > 0 ? best : 2.0  // neither known: a nominal 2 GHz, so that MFU still prints
    }()

    /// This machine's peak on `threads` cores.
    public static func current(threads: Int) -> CPUPeak { CPUPeak(cpu: .current, threads: threads, gigahertz: clock) }
}

/// Which OpenBLAS kernel set (its "core") the CPU should run, and the steering that makes it run it. OpenBLAS
/// built with DYNAMIC_ARCH picks a core from the CPU's family and model when it loads; a CPU newer than the library
/// is unknown to it, and it falls back to Prescott (SSE3) kernels: Debian's 0.3.21 does so on Intel's family 6
/// model 207, where sgemm then runs at a quarter of its speed. The choice from the CPU's features does not depend on
/// the model number, and the library takes it from OPENBLAS_CORETYPE, read once as it loads: so the program, seeing
/// a weaker core than the features allow, sets the variable and executes itself again (once; a core the user set
/// is never overridden).
public enum OpenBLASCore {
    /// OpenBLAS's x86-64 cores by the widest kernels they use (0: SSE3, 4: AVX2 + FMA, 5: AVX-512, 6: AVX-512 BF16).
    public static let rank: [String: Int] = [
        "prescott": 0, "katmai": 0, "coppermine": 0, "northwood": 0, "banias": 0, "athlon": 0, "atom": 1, "core2": 1,
        "penryn": 1, "dunnington": 1, "opteron": 1, "bobcat": 1, "barcelona": 2, "nehalem": 2, "sandybridge": 3,
        "bulldozer": 3, "piledriver": 3, "steamroller": 3, "excavator": 3, "haswell": 4, "zen": 4, "skylakex": 5,
        "cooperlake": 6, "sapphirerapids": 7]

    /// The best core for these features among those OpenBLAS 0.3.21 has.
    public static func best(for cpu: CPUInfo) -> String {
        if cpu.avx512 { return cpu.avx512bf16 ? "Cooperlake" : "SkylakeX" }
        if cpu.avx2 && cpu.fma { return cpu.vendor == "AuthenticAMD" ? "Zen" : "Haswell" }
        if cpu.avx { return "Sandybridge" }
        if cpu.sse42 { return "Nehalem" }
        return "Prescott"
    }

    /// The core to force, or nil when the library's own choice is as good (or is one this table does not know,
    /// or the user chose: `userChoice` is OPENBLAS_CORETYPE).
    public static func steer(current: String, cpu: CPUInfo, userChoice: String?) -> String? {
        guard userChoice == nil, let have = rank[current.lowercased()] else { return nil }
        let want = best(for: cpu)
        return have < rank[want.lowercased()]! ? want : nil
    }

    /// The core OpenBLAS runs, and its version ("0.3.21"); nil with Accelerate.
    public static var running: (core: String, version: String)? {
        #if canImport(Accelerate)
        return nil
        #else
        guard let core = openblas_get_corename(), let config = openblas_get_config() else { return nil }
        let words = String(cString: config).split(separator: " ")
        return (String(cString: core), words.count > 1 ? String(words[1]) : "?")
        #endif
    }

    /// Called first thing in `main`: when OpenBLAS runs a weaker core than the CPU allows, set OPENBLAS_CORETYPE
    /// and execute this program again with the same arguments. Returns when nothing needs steering (or exec fails).
    public static func steerBeforeStart() {
        let env = ProcessInfo.processInfo.environment
        guard env["NANOCHAT_BLAS_STEERED"] == nil, let (core, _) = running,
              let want = steer(current: core, cpu: .current, userChoice: env["OPENBLAS_CORETYPE"]) else { return }
        setenv("OPENBLAS_CORETYPE", want, 1)
        setenv("NANOCHAT_BLAS_STEERED", core, 1)  // what the library picked by itself; also stops a second exec
        execv("/proc/self/exe", CommandLine.unsafeArgv)
    }

    /// "OpenBLAS 0.3.21, Cooperlake kernels" (+ how the core was chosen), or "Accelerate".
    public static var description: String {
        guard let (core, version) = running else { return "Accelerate" }
        let env = ProcessInfo.processInfo.environment
        var how = "chosen by OpenBLAS"
        if let picked = env["NANOCHAT_BLAS_STEERED"] { how = "chosen from the CPU's features; OpenBLAS picked \(picked)" }
        else if let set = env["OPENBLAS_CORETYPE"] {
            // the user's (or the machine's) choice stands; say when it is weaker than the CPU allows
            how = "OPENBLAS_CORETYPE=\(set)"
            if let better = steer(current: core, cpu: .current, userChoice: nil) { how += "; this CPU could run \(better): unset it to let nanochat choose" }
        }
        return "OpenBLAS \(version), \(core) kernels (\(how))"
    }
}

/// The kernel set our own C kernels run on this CPU (picked at run time).
public var ourKernelSet: String {
    switch nc_kernel_level() {
    case 2: return "AVX-512 (training kernels, softcap, cached attention, skinny f32 product) and AVX2 + FMA (quantized products)"
    case 1: return "AVX2 + FMA"
    default: return "portable C"
    }
}
