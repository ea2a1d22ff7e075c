import ArgumentParser
import Foundation
import NanoChat

struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the implementation against a golden fixture from upstream's PyTorch code.",
        discussion: """
        Model fixtures: logits, loss (tolerance 1e-4) and every gradient (1e-3). Optimizer fixtures: \
        every parameter after each step (1e-4). Prints the largest relative errors; exits non-zero beyond tolerance.
        """
    )

    @Argument(help: "A fixture .safetensors file (the format of Tests/Fixtures; its README describes it).")
    var file: String
    @Option(help: "How many of the largest errors to print.")
    var top: Int = 8
    @Option(help: "Where the model and optimizer run: cpu, cuda (every product in exact fp32) or auto.")
    var deviceType: DeviceType = .cpu

    func run() throws {
        try runReportingErrors {
            let device = try deviceType.open(precision: .fp32)  // the fixtures are checked in exact fp32
            let results = try Verify.run(URL(fileURLWithPath: file), on: device)
            let sorted = results.sorted { $0.relativeError / $0.tolerance > $1.relativeError / $1.tolerance }
            print("\(URL(fileURLWithPath: file).lastPathComponent): \(results.count) checks")
            for r in results where r.name == "logits" || r.name == "loss" {
                print(String(format: "  %-10@ rel err %.3e (tol %.0e)", r.name as NSString, r.relativeError, r.tolerance))
            }
            print("  largest relative errors:")
            for r in sorted.prefix(top) {
                print(String(format: "    %@ %.3e (tol %.0e) %@", r.name.padding(toLength: 52, withPad: " ", startingAt: 0),
                             r.relativeError, r.tolerance, r.ok ? "ok" : "FAIL"))
            }
            let failed = results.filter { !$0.ok }
            if failed.isEmpty {
                print("PASS: all \(results.count) within tolerance")
            } else {
                print("FAIL: \(failed.count) of \(results.count) beyond tolerance")
                throw ExitCode(1)
            }
        }
    }
}
