import CKernels
import Foundation
import NanoTensor
import XCTest

/// The CPU as the kernels and the BLAS see it: its peak (MFU's denominator) and the OpenBLAS core it should run.
final class CPUInfoTests: XCTestCase {
    func testCPUPeakFromFeatures() {
        func cpu(_ vendor: String, family: Int, avx: Bool = true, avx2: Bool = true, fma: Bool = true, avx512: Bool = false) -> CPUInfo {
            var c = CPUInfo(vendor: vendor, family: family)
            c.avx = avx; c.avx2 = avx2; c.fma = fma; c.avx512f = avx512
            return c
        }
        // Intel with AVX-512 (two 512-bit FMA pipes): 64 FLOP/cycle
        let xeon = CPUPeak(cpu: cpu("GenuineIntel", family: 6, avx512: true), threads: 2, gigahertz: 3.0)
        XCTAssertEqual(xeon.flopsPerCycle, 64)
        XCTAssertEqual(xeon.flops, 2 * 64 * 3.0e9, accuracy: 1)
        // Zen 4: AVX-512 on 256-bit pipes; Zen 5 (family 26): full width
        XCTAssertEqual(CPUPeak(cpu: cpu("AuthenticAMD", family: 25, avx512: true), threads: 1, gigahertz: 1).flopsPerCycle, 32)
        XCTAssertEqual(CPUPeak(cpu: cpu("AuthenticAMD", family: 26, avx512: true), threads: 1, gigahertz: 1).flopsPerCycle, 64)
        // Zen 3 / Haswell: AVX2 + FMA; Sandy Bridge: AVX without FMA; no AVX at all
        XCTAssertEqual(CPUPeak(cpu: cpu("AuthenticAMD", family: 25), threads: 1, gigahertz: 1).flopsPerCycle, 32)
        XCTAssertEqual(CPUPeak(cpu: cpu("GenuineIntel", family: 6, avx2: false, fma: false), threads: 1, gigahertz: 1).flopsPerCycle, 16)
        XCTAssertEqual(CPUPeak(cpu: cpu("GenuineIntel", family: 6, avx: false, avx2: false, fma: false), threads: 1, gigahertz: 1).flopsPerCycle, 8)
        // the reported clock: cpufreq's maximum (kHz) wins over the clock /proc/cpuinfo shows; nothing known: nil
        let info = "vendor_id\t: GenuineIntel\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu avx2\n"
        XCTAssertEqual(CPUPeak.reportedGigahertz(cpuinfo: info, maxKHz: "3800000\n")!, 3.8, accuracy: 1e-9)
        XCTAssertEqual(CPUPeak.reportedGigahertz(cpuinfo: info, maxKHz: nil)!, 2.6, accuracy: 1e-9)
        XCTAssertNil(CPUPeak.reportedGigahertz(cpuinfo: "", maxKHz: nil))
        // this machine's clock: at least what it reports (a VM's nominal clock), measured once
        XCTAssertGreaterThanOrEqual(CPUPeak.clock, CPUPeak.reportedGigahertz(cpuinfo: (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "", maxKHz: nil) ?? 0)
    }

    /// The property MFU rests on: what the BLAS reaches on this machine stays under the peak it is measured against.
    func testSgemmStaysUnderTheCPUPeak() {
        let peak = CPUPeak.current(threads: Threading.workers)
        let sgemm = measureSgemmGFLOPS(size: 512, seconds: 0.3)
        XCTAssertGreaterThan(peak.gigahertz, 0.5)
        XCTAssertLessThan(sgemm, peak.flops / 1e9 * 1.02, "sgemm \(sgemm) GFLOP/s against a peak of \(peak.description)")
    }

    /// The core from the CPU's features, including CPUs the library does not know (it then runs Prescott kernels).
    func testOpenBLASCoreFromFeatures() {
        var emerald = CPUInfo(vendor: "GenuineIntel", brand: "INTEL(R) XEON(R) PLATINUM 8581C", family: 6, model: 207)
        emerald.sse42 = true; emerald.avx = true; emerald.fma = true; emerald.avx2 = true
        emerald.avx512f = true; emerald.avx512dq = true; emerald.avx512bw = true; emerald.avx512vl = true
        emerald.avx512bf16 = true; emerald.amxTile = true
        XCTAssertEqual(OpenBLASCore.best(for: emerald), "Cooperlake")
        XCTAssertEqual(OpenBLASCore.steer(current: "Prescott", cpu: emerald, userChoice: nil), "Cooperlake", "an unknown CPU gets its features' core")
        XCTAssertNil(OpenBLASCore.steer(current: "Prescott", cpu: emerald, userChoice: "Haswell"), "a core the user set stands")
        XCTAssertNil(OpenBLASCore.steer(current: "Cooperlake", cpu: emerald, userChoice: nil))
        var skylake = emerald; skylake.avx512bf16 = false; skylake.amxTile = false
        XCTAssertEqual(OpenBLASCore.steer(current: "Haswell", cpu: skylake, userChoice: nil), "SkylakeX")
        // AVX-512 without BW/VL (Knights Landing) is not what the SkylakeX kernels need
        var knights = skylake; knights.avx512bw = false; knights.avx512vl = false
        XCTAssertEqual(OpenBLASCore.best(for: knights), "Haswell")
        var zen3 = CPUInfo(vendor: "AuthenticAMD", family: 25, model: 1)
        zen3.sse42 = true; zen3.avx = true; zen3.fma = true; zen3.avx2 = true
        XCTAssertNil(OpenBLASCore.steer(current: "Zen", cpu: zen3, userChoice: nil))
        XCTAssertEqual(OpenBLASCore.steer(current: "Prescott", cpu: zen3, userChoice: nil), "Zen")
        var zen4 = zen3; zen4.model = 17; zen4.avx512f = true; zen4.avx512dq = true; zen4.avx512bw = true; zen4.avx512vl = true; zen4.avx512bf16 = true
        XCTAssertEqual(OpenBLASCore.steer(current: "Zen", cpu: zen4, userChoice: nil), "Cooperlake")
        var old = CPUInfo(vendor: "GenuineIntel", family: 6, model: 23)
        old.sse42 = false
        XCTAssertNil(OpenBLASCore.steer(current: "Penryn", cpu: old, userChoice: nil), "nothing better to pick")
        XCTAssertNil(OpenBLASCore.steer(current: "SomeFutureCore", cpu: emerald, userChoice: nil), "a core this table does not know is left alone")
    }

    /// This machine: what CPUID and XGETBV say (cpu_features.c) against the kernel's own view in /proc/cpuinfo, and
    /// the core OpenBLAS runs is one the table knows (otherwise steering could never act on it).
    func testThisMachine() throws {
        let cpu = CPUInfo.current
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { throw XCTSkip("no /proc/cpuinfo") }
        // "key<tabs>: value", the first processor's
        let fields = text.split(separator: "\n").map { $0.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) } }
        let line = { (name: String) in fields.first { $0.count == 2 && $0[0] == name }?[1] ?? "" }
        let flags = Set(line("flags").split(separator: " ").map(String.init))
        for (name, have) in [("avx", cpu.avx), ("avx2", cpu.avx2), ("fma", cpu.fma), ("sse4_2", cpu.sse42), ("avx512f", cpu.avx512f),
                             ("avx512bw", cpu.avx512bw), ("avx512vl", cpu.avx512vl), ("avx512_bf16", cpu.avx512bf16), ("amx_tile", cpu.amxTile)] {
            XCTAssertEqual(have, flags.contains(name), "\(name): CPUID says \(have), /proc/cpuinfo says \(flags.contains(name))")
        }
        XCTAssertEqual(cpu.vendor, line("vendor_id"))
        XCTAssertEqual(cpu.family, Int(line("cpu family")))
        XCTAssertEqual(cpu.model, Int(line("model")))
        XCTAssertEqual(cpu.brand, line("model name"))
        XCTAssertEqual(Int(nc_kernel_supported()), cpu.avx512 && cpu.fma ? 2 : cpu.avx2 && cpu.fma ? 1 : 0)
        if let (core, version) = OpenBLASCore.running {
            XCTAssertFalse(version.isEmpty)
            XCTAssertNotNil(OpenBLASCore.rank[core.lowercased()], "OpenBLAS runs \(core), which the core table does not know")
        }
    }
}
