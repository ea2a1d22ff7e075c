import ArgumentParser
import Foundation
import NanoChat
import NanoTensor

extension WeightFormat: ExpressibleByArgument {}

/// The flags that pick a checkpoint, shared by every command that loads a model (upstream's -i/-g/-s).
struct ModelSource: ParsableArguments {
    @Option(name: [.customShort("i"), .long], help: "Model source: base, mid, sft or rl (default: sft; infer-bench: base).") var source: String?
    @Option(name: [.customShort("g"), .customLong("model-tag")], help: "Model tag (default: the largest d<N>).") var modelTag: String?
    @Option(name: [.customShort("s"), .customLong("step")], parsing: .unconditional, help: "Checkpoint step (default: the latest).") var step: Int?
    @Option(help: "A checkpoint directory to load instead of <base>/<source>_checkpoints/<tag>.") var checkpoint: String?
    @Option(help: "Tokenizer directory (default $NANOCHAT_BASE_DIR/tokenizer).") var tokenizerDir: String?
    @Option(help: "Inference weights of the matrices: f32, bf16, or int8 (one scale per 32 weights), converted at load.") var weights: WeightFormat = .f32
    @OptionGroup var device: DeviceFlags

    /// The source asked for, else the command's default (upstream: sft, infer_bench base).
    func sourceName(default fallback: String = "sft") -> String { source ?? fallback }

    /// `deviceIndex`: the GPU of this rank (its local rank) when several ranks share a machine.
    func load(defaultSource: String = "sft", deviceIndex: Int = 0) throws -> LoadedModel {
        let loaded = try CheckpointManager.loadModel(source: sourceName(default: defaultSource), tag: modelTag, step: step,
                                                     checkpoint: checkpoint.map { URL(fileURLWithPath: $0, isDirectory: true) },
                                                     tokenizerDir: tokenizerDir.map { URL(fileURLWithPath: $0, isDirectory: true) })
        // the device line goes to stderr: stdout is the conversation (chat-cli) or the results
        let target = try device.open(index: deviceIndex, say: { FileHandle.standardError.write(Data(($0 + "\n").utf8)) })
        if target.gpu != nil && weights != .f32 {
            throw NanoChatError("--weights \(weights.rawValue) is a CPU format (our int8/bf16 kernels); on the GPU the f32 weights run with --gpu-precision bf16")
        }
        loaded.model.useDevice(target)
        if weights != .f32 {
            let bytes = loaded.model.useWeights(weights)
            FileHandle.standardError.write(Data(String(format: "weights: %@, %.1f MB read per decoded token\n", weights.rawValue, Double(bytes) / 1e6).utf8))
        }
        return loaded
    }
}
