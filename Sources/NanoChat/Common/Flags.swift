import ArgumentParser
import Foundation
import NanoTensor

/// A flag's parsed value, whatever its type (ArgumentParser's property wrappers).
protocol ParsedFlag { var parsedValue: Any { get } }
extension Option: ParsedFlag { var parsedValue: Any { wrappedValue } }
extension Flag: ParsedFlag { var parsedValue: Any { wrappedValue } }

/// Every flag of a parsed options struct by its snake_case name (`aspectRatio` -> `aspect_ratio`, the names
/// upstream's argparse gives), values as text, nil ones as "". Derived from the struct itself, so a new flag
/// is recorded without another line anywhere.
func flagValues<T: ParsableArguments>(_ options: T) -> [String: String] { flagValues(of: options) }

/// The same for a parsed command of any type (NANOCHAT_PARSE_ONLY prints it).
public func parsedFlagValues(_ command: Any) -> [String: String] { flagValues(of: command) }

/// An option group's parsed struct (its flags count as the enclosing struct's).
protocol ParsedGroup { var parsedGroup: Any { get } }
extension OptionGroup: ParsedGroup { var parsedGroup: Any { wrappedValue } }

private func flagValues(of options: Any) -> [String: String] {
    var out: [String: String] = [:]
    for child in Mirror(reflecting: options).children {
        if let group = child.value as? ParsedGroup { out.merge(flagValues(of: group.parsedGroup)) { a, _ in a }; continue }
        guard let label = child.label, let flag = child.value as? ParsedFlag else { continue }
        out[snakeCase(label.hasPrefix("_") ? String(label.dropFirst()) : label)] = describeFlag(flag.parsedValue)
    }
    return out
}

private func describeFlag(_ value: Any) -> String {
    let m = Mirror(reflecting: value)
    if m.displayStyle == .optional { return m.children.first.map { describeFlag($0.value) } ?? "" }
    return "\(value)"
}

/// `embeddingLR` -> `embedding_lr`, `finalLRFrac` -> `final_lr_frac`: an underscore before each capital that
/// starts a word (a run of capitals is one word).
func snakeCase(_ s: String) -> String {
    let chars = Array(s)
    var out = ""
    for (i, ch) in chars.enumerated() {
        if ch.isUppercase && i > 0 {
            let prevLower = chars[i - 1].isLowercase || chars[i - 1].isNumber
            let nextLower = i + 1 < chars.count && chars[i + 1].isLowercase
            if prevLower || (chars[i - 1].isUppercase && nextLower) { out.append("_") }
        }
        out.append(Character(ch.lowercased()))
    }
    return out
}

/// A folder given on the command line.
func directoryURL(_ path: String) -> URL { URL(fileURLWithPath: path, isDirectory: true) }

/// `--device-type` (upstream's name): where a command's model runs. `auto` takes the GPU when the CUDA library loads
/// and finds one, else the CPU (it says which); `cuda` insists (a clear error says why it cannot); `cpu` never looks.
public enum DeviceType: String, ExpressibleByArgument, CaseIterable, Sendable {
    case cpu, cuda, auto

    /// Upstream's spellings too: `--device-type ""` (its default) is `auto`. `mps` (Apple's GPU) is not a device here,
    /// so it is refused by the parser with the three that are.
    public init?(argument: String) {
        if argument.isEmpty { self = .auto; return }
        guard let value = DeviceType(rawValue: argument.lowercased()) else { return nil }
        self = value
    }

    /// The `Device` this asks for: the GPU loaded with `precision`, or the CPU.
    /// `index`: the CUDA device (a rank's LOCAL_RANK when several share a machine).
    public func open(precision: GPUPrecision = .bf16, index: Int = 0, say: (String) -> Void = { print($0) }) throws -> Device {
        switch self {
        case .cpu: return .cpu
        case .cuda:
            let gpu = try GPU.load(bf16: precision == .bf16, index: index)
            say("device: \(gpu.name) (\(gpu.path))")
            return .gpu(gpu)
        case .auto:
            do {
                let gpu = try GPU.load(bf16: precision == .bf16, index: index)
                say("device: \(gpu.name) (\(gpu.path))")
                return .gpu(gpu)
            } catch {
                // the common case, a machine without the library, in one short line; anything else (a library that
                // loads but finds no GPU, one built from other sources) with its whole reason
                let text = "\(error)"
                say(text.contains("no \(GPU.fileName)") ? "device: cpu (no CUDA library here; --device-type cuda says where it looked)"
                                                        : "device: cpu (\(text))")
                return .cpu
            }
        }
    }
}

/// Where a command's model runs: `--device-type` (upstream's name) and, on a GPU, `--gpu-precision`. Every command that
/// loads or trains a model takes this group, so the two flags and their defaults are written here only.
public struct DeviceFlags: ParsableArguments {
    @Option(help: "Where the model runs: cpu, cuda (the GPU library, cuda/build.sh) or auto (the GPU when it loads and finds one).")
    public var deviceType: DeviceType = .auto
    @Option(help: "On the GPU: bf16 products and attention with fp32 accumulation (upstream's policy), or fp32 (exact, slow).")
    public var gpuPrecision: GPUPrecision = .bf16

    public init() {}

    /// Opens the device; `say` gets the line naming it.
    public func open(index: Int = 0, say: (String) -> Void = { print($0) }) throws -> Device {
        try deviceType.open(precision: gpuPrecision, index: index, say: say)
    }
}

/// `--gpu-precision`: upstream's policy (bf16 operands, fp32 accumulation and master weights) or exact fp32.
public enum GPUPrecision: String, ExpressibleByArgument, CaseIterable, Sendable {
    case bf16, fp32
}

/// `--run` (upstream's name): the run's name, written into each line of its metrics log and into the report's
/// arguments. `dummy`, upstream's default, means an unnamed run (upstream: no wandb logging; we log only locally).
public struct RunName: ParsableArguments {
    @Option(help: "Name of the run in its metrics log and the report (dummy: unnamed).") public var run = "dummy"
    public init() {}
    /// The name to record, nil for `dummy`.
    public var recorded: String? { run == "dummy" || run.isEmpty ? nil : run }
}
