import Foundation
import NanoTensor

/// What `meta_<step>.json` holds (upstream's keys, plus our exact loader position).
public struct CheckpointMeta: Codable {
    public struct LoopState: Codable {
        public var min_val_bpb: Double?
        public var smooth_train_loss: Double
        public var total_training_time: Double
        public init(min_val_bpb: Double?, smooth_train_loss: Double, total_training_time: Double) {
            self.min_val_bpb = min_val_bpb
            self.smooth_train_loss = smooth_train_loss
            self.total_training_time = total_training_time
        }
    }
    public var step: Int
    public var val_bpb: Double?
    public var model_config: GPTConfig
    public var user_config: [String: String]
    public var device_batch_size: Int?
    public var max_seq_len: Int?
    public var total_batch_size: Int?
    public var dataloader_state_dict: LoaderState?
    public var loop_state: LoopState?
    public var loader_exact: ExactLoaderState?
    public var optimizer_adam_steps: [Int]?
    /// Which stage wrote it: base, mid, sft or rl (absent in base checkpoints from before the chat stages).
    public var stage: String?
    /// The conversation loader's position (mid-training and SFT), for an exact resume.
    public var conversation_loader: ConversationLoaderState?
    /// How many ranks trained it (absent = 1): each wrote its own optimizer shard, so a resume needs as many.
    public var world_size: Int?
    /// Every data lane's exact position, in lane order (base training: lane = micro-step · ranks + rank).
    public var loader_lanes: [ExactLoaderState]?
    /// Every lane's conversation loader position, in lane order (mid-training and SFT).
    public var conversation_lanes: [ConversationLoaderState]?
    /// "torch" when read from upstream's files (model_<step>.pt); absent for ours.
    public var format: String?

    public init(step: Int, val_bpb: Double? = nil, model_config: GPTConfig, user_config: [String: String] = [:],
                device_batch_size: Int? = nil, max_seq_len: Int? = nil, total_batch_size: Int? = nil,
                dataloader_state_dict: LoaderState? = nil, loop_state: LoopState? = nil, loader_exact: ExactLoaderState? = nil,
                stage: String? = nil, conversation_loader: ConversationLoaderState? = nil) {
        self.step = step; self.val_bpb = val_bpb; self.model_config = model_config; self.user_config = user_config
        self.device_batch_size = device_batch_size; self.max_seq_len = max_seq_len; self.total_batch_size = total_batch_size
        self.dataloader_state_dict = dataloader_state_dict; self.loop_state = loop_state; self.loader_exact = loader_exact
        self.stage = stage; self.conversation_loader = conversation_loader
    }
}

/// Checkpoints under `<base>/<phase>_checkpoints/<tag>/`: `model_<step>.safetensors` (upstream parameter names,
/// [out, in] layout, loadable by safetensors + PyTorch), `meta_<step>.json`, `optim_<step>_rank<r>.safetensors`.
/// Files are written to temporary names and renamed; a torn, truncated or mismatched file is refused.
public enum CheckpointManager {
    public static func directory(phase: String = "base", tag: String) -> URL {
        BaseDir.url.appendingPathComponent("\(phase)_checkpoints/\(tag)", isDirectory: true)
    }

    public static func stepName(_ step: Int) -> String { String(format: "%06d", step) }

    /// Writes a checkpoint from every rank of `comm`: each rank its optimizer shard, then (once all shards are on
    /// disk) rank 0 the model and, last, the meta, whose presence marks the checkpoint complete. Every file goes to
    /// a temporary name first and is renamed, so a job that dies mid-save leaves the previous checkpoint intact.
    public static func save(directory: URL, step: Int, model: GPT, optimizer: MuonAdamW?, meta: CheckpointMeta,
                            comm: Communicator = SingleProcess()) throws {
        var meta = meta
        meta.world_size = comm.worldSize
        let s = stepName(step)
        if let optimizer {
            let (tensors, steps) = optimizer.stateTensors()
            meta.optimizer_adam_steps = steps
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let host = tensors.map { ($0.0, $0.1.to(.cpu)) }  // from the GPU when the state lives there
            try SafeTensorsFile.write(host.map { ($0.0, $0.1.shape, UnsafeBufferPointer($0.1.buffer)) }, metadata: [:],
                                      to: directory.appendingPathComponent("optim_\(s)_rank\(comm.rank).safetensors"))
        }
        comm.barrier()
        guard comm.rank == 0 else { return }
        let cfg = String(decoding: try JSONEncoder().encode(model.config), as: UTF8.self)
        let host = model.parameterNames.map { ($0, model.param($0).to(.cpu)) }
        try SafeTensorsFile.write(host.map { ($0.0, $0.1.shape, UnsafeBufferPointer($0.1.buffer)) },
                                  metadata: ["format": "pt", "model_config": cfg],
                                  to: directory.appendingPathComponent("model_\(s).safetensors"))
        // meta last: its presence marks the checkpoint complete
        try FileIO.writeAtomically(try encodeMeta(meta), to: directory.appendingPathComponent("meta_\(s).json"))
    }

    public static func encodeMeta(_ meta: CheckpointMeta) throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(meta)
    }

    /// A resume with another number of ranks than the checkpoint's is refused: the optimizer state is sharded.
    public static func checkWorldSize(_ meta: CheckpointMeta, directory: URL, comm: Communicator) throws {
        let written = meta.world_size ?? 1
        guard written == comm.worldSize else {
            throw NanoChatError("\(directory.path) step \(meta.step) was written by \(written) rank(s), this run has \(comm.worldSize); the optimizer state is split across ranks (optim_<step>_rank<r>), so resume with the same number: \(written == 1 ? "without mpirun" : "mpirun -np \(written) ...")")
        }
    }

    /// The newest step with a model file, or nil.
    public static func latestStep(in directory: URL) -> Int? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.compactMap { n -> Int? in
            // ours (.safetensors) or upstream's (.pt)
            guard n.hasPrefix("model_") else { return nil }
            if n.hasSuffix(".safetensors") { return Int(n.dropFirst(6).dropLast(12)) }
            if n.hasSuffix(".pt") { return Int(n.dropFirst(6).dropLast(3)) }
            return nil
        }.max()
    }

    /// Default tag: the largest `d<N>` directory, else the most recently modified one (as upstream).
    public static func defaultTag(phase: String = "base") throws -> String {
        let root = BaseDir.url.appendingPathComponent("\(phase)_checkpoints")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).filter { !$0.hasPrefix(".") }
        guard !names.isEmpty else { throw NanoChatError("no checkpoints in \(root.path); train a model first (nanochat base-train)") }
        let depthTags = names.compactMap { n -> (Int, String)? in
            guard n.first == "d", let d = Int(n.dropFirst()) else { return nil }
            return (d, n)
        }
        if let best = depthTags.max(by: { $0.0 < $1.0 }) { return best.1 }
        return names.max { a, b in
            let ma = (try? FileManager.default.attributesOfItem(atPath: root.appendingPathComponent(a).path)[.modificationDate] as? Date) ?? .distantPast
            let mb = (try? FileManager.default.attributesOfItem(atPath: root.appendingPathComponent(b).path)[.modificationDate] as? Date) ?? .distantPast
            return ma < mb
        }!
    }

    public static func loadMeta(directory: URL, step: Int) throws -> CheckpointMeta {
        let url = directory.appendingPathComponent("meta_\(stepName(step)).json")
        let data = try FileIO.read(url, what: "checkpoint meta")
        do {
            return try JSONDecoder().decode(CheckpointMeta.self, from: data)
        } catch {
            throw NanoChatError("checkpoint meta \(url.path) is corrupt or not a nanochat meta file: \(error)")
        }
    }

    /// Loads a model: meta for the config, then every parameter by name with its shape checked (strict, as
    /// upstream's load_state_dict(strict=True)).
    public static func loadModel(directory: URL, step: Int) throws -> (GPT, CheckpointMeta) {
        let url = directory.appendingPathComponent("model_\(stepName(step)).safetensors")
        // upstream's checkpoint (model_<step>.pt) where ours is absent
        if !FileManager.default.fileExists(atPath: url.path)
            && FileManager.default.fileExists(atPath: upstreamModelURL(directory: directory, step: step).path) {
            return try loadUpstreamModel(directory: directory, step: step)
        }
        let meta = try loadMeta(directory: directory, step: step)
        let file = try SafeTensorsFile(url: url)
        let model = try GPT(config: meta.model_config)
        try loadParameters(model, from: file)
        return (model, meta)
    }

    public static func loadParameters(_ model: GPT, from file: SafeTensorsFile, prefix: String = "") throws {
        let expected = Set(model.parameterNames.map { prefix + $0 })
        let present = Set(file.entries.keys.filter { prefix.isEmpty || $0.hasPrefix(prefix) })
        let missing = expected.subtracting(present), extra = present.subtracting(expected)
        guard missing.isEmpty && (prefix.isEmpty ? extra.isEmpty : true) else {
            throw NanoChatError("\(file.url.path) does not match the model: missing \(missing.sorted().prefix(5)), unexpected \(extra.sorted().prefix(5))")
        }
        for name in model.parameterNames {
            let (shape, values) = try file.floats(prefix + name)
            let p = model.param(name)
            guard shape == p.shape else {
                throw NanoChatError("\(file.url.path): \(prefix)\(name) has shape \(shape), the model config needs \(p.shape)")
            }
            p.assign(values)
        }
    }

    /// Loads this rank's optimizer shard (`optim_<step>_rank<r>`), refusing one written by another number of ranks.
    public static func loadOptimizer(_ optimizer: MuonAdamW, directory: URL, step: Int, meta: CheckpointMeta) throws {
        if meta.format == "torch" {
            throw NanoChatError("\(directory.path) step \(step) is upstream's checkpoint; its optimizer shards (optim_\(stepName(step))_rank<r>.pt) are not read by this build, so the optimizer starts fresh")
        }
        try checkWorldSize(meta, directory: directory, comm: optimizer.comm)
        let url = directory.appendingPathComponent("optim_\(stepName(step))_rank\(optimizer.comm.rank).safetensors")
        let file = try SafeTensorsFile(url: url)
        guard let steps = meta.optimizer_adam_steps else {
            throw NanoChatError("checkpoint meta for step \(step) has no optimizer step counts; it cannot be resumed")
        }
        try optimizer.loadState(from: file, adamSteps: steps)
    }
}

/// A model loaded for a command: the GPT, its tokenizer, the checkpoint's meta, and where it came from.
public struct LoadedModel {
    public let model: GPT
    public let tokenizer: Tokenizer
    public let meta: CheckpointMeta
    public let directory: URL
    public let step: Int
    /// "d4 step 60", for the console.
    public var label: String { "\(directory.lastPathComponent) step \(step)" }
}

extension CheckpointManager {
    /// The checkpoint folder of each model source (upstream's names).
    public static let phases = ["base": "base", "mid": "mid", "sft": "chatsft", "rl": "chatrl"]

    /// Upstream's load_model: the newest (or the given) checkpoint of `source` (base, mid, sft or rl) under the
    /// largest (or the given) tag, or the folder `checkpoint`, with the tokenizer, refusing a tokenizer whose
    /// vocabulary differs from the model's. A chat source with no checkpoints yet falls back to the base model,
    /// saying so on stderr.
    public static func loadModel(source: String, tag: String? = nil, step: Int? = nil, checkpoint: URL? = nil,
                                 fallbackToBase: Bool = true, tokenizerDir: URL? = nil) throws -> LoadedModel {
        guard var phase = phases[source] else {
            throw NanoChatError("the model source must be one of \(phases.keys.sorted().joined(separator: ", ")), got \(source)")
        }
        let dir: URL
        if let checkpoint {
            dir = checkpoint
        } else {
            if phase != "base" && (try? defaultTag(phase: phase)) == nil {
                guard fallbackToBase else {
                    throw NanoChatError("no \(phase)_checkpoints in \(BaseDir.url.path); train that stage first (source \(source))")
                }
                FileHandle.standardError.write(Data("note: no \(phase)_checkpoints yet; using the base model\n".utf8))
                phase = "base"
            }
            dir = directory(phase: phase, tag: try tag ?? defaultTag(phase: phase))
        }
        guard let s = step ?? latestStep(in: dir) else { throw NanoChatError("no model_<step>.safetensors (ours) or model_<step>.pt (upstream's) in \(dir.path)") }
        let (model, meta) = try loadModel(directory: dir, step: s)
        // a checkpoint says which stage wrote it; one found under another stage's folder is refused
        let expected = phases.first { $0.value == phase }!.key
        if checkpoint == nil, let written = meta.stage, written != expected {
            throw NanoChatError("\(dir.path) step \(s) holds a \(written) checkpoint, not a \(expected) one; move it to \(written)'s folder")
        }
        let tokenizer = try Tokenizer.load(from: tokenizerDir ?? BaseDir.tokenizer)
        guard tokenizer.vocabSize == model.config.vocab_size else {
            throw NanoChatError("the tokenizer has \(tokenizer.vocabSize) ids but the model was trained with \(model.config.vocab_size); pass the tokenizer it was trained with (--tokenizer-dir)")
        }
        return LoadedModel(model: model, tokenizer: tokenizer, meta: meta, directory: dir, step: s)
    }
}
