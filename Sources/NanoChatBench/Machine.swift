import Foundation
import NanoTensor

// What every bench shares: the machine line printed before any figure, the side-by-side reference run, the timing.

/// The machine a figure comes from, printed before it: the CPU, its vector extensions, our kernel set, the threads
/// and the BLAS core, so that no number travels without the machine it was measured on.
public func printMachine() {
    print("machine: \(CPUInfo.current.description)")
    print("kernels: ours \(ourKernelSet) on \(Threading.workers) threads; \(OpenBLASCore.description)")
}

/// Runs a reference script from tools/ with a Python that has the reference package; nil (with a message)
/// when that is not possible, so the Swift figures still print.
public func runPythonReference(python: String, script: String, args: [String]) -> [String: Any]? {
    guard FileManager.default.fileExists(atPath: script) else {
        print("  (reference skipped: \(script) not found; run from the repository root or pass --tools-dir)")
        return nil
    }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [python, script] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    do { try p.run() } catch {
        print("  (reference skipped: cannot run \(python): \(error))")
        return nil
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0,
          let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
          let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
        let msg = String(decoding: errData, as: UTF8.self).split(separator: "\n").suffix(2).joined(separator: " | ")
        print("  (reference skipped: \(python) \(script) failed: \(msg))")
        return nil
    }
    return obj
}

/// The best time, in seconds, of `body` over runs that add up to two seconds (at least two runs): the throughput
/// benches' timing, which a shared machine's neighbours make noisy.
public func bestSeconds(_ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity, elapsed = 0.0, runs = 0
    while elapsed < 2 || runs < 2 {
        let t0 = DispatchTime.now().uptimeNanoseconds
        try body()
        let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        best = min(best, dt); elapsed += dt; runs += 1
    }
    return best
}
