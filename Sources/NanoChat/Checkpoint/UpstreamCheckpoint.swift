import Foundation

/// Upstream's checkpoints as its users have them on disk: `model_<step>.pt` (torch.save of the state dict: bf16
/// embeddings from a GPU run, float32 otherwise), `meta_<step>.json` (its model_config, a user_config of any JSON
/// values, the loop state), and its tokenizer folder (`tokenizer.pkl`, a pickled tiktoken Encoding, and
/// `token_bytes.pt`). Every command that loads a model reads them where it would read ours; nothing is converted on
/// disk. As upstream's loader: a `_orig_mod.` key prefix (torch.compile) is dropped, bf16 becomes float32, a missing
/// `window_pattern` is "L", missing `resid_lambdas` / `x0_lambdas` are ones / zeros, and the load is strict.
extension CheckpointManager {
    /// The model_config keys upstream's GPTConfig has; any other key is an architecture variant this build cannot run.
    static let upstreamConfigKeys: Set<String> = ["sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "window_pattern"]

    public static func upstreamModelURL(directory: URL, step: Int) -> URL {
        directory.appendingPathComponent("model_\(stepName(step)).pt")
    }

    /// Upstream's meta JSON as our `CheckpointMeta` (`step` from the file name when absent: RL's meta has only the
    /// model config). `user_config` values of any JSON type become text, as ours are.
    public static func upstreamMeta(_ data: Data, step: Int, url: URL) throws -> CheckpointMeta {
        guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw NanoChatError("\(url.path) is not a JSON object")
        }
        guard let mc = obj["model_config"] as? [String: Any] else { throw NanoChatError("\(url.path) has no model_config") }
        if let unknown = mc.keys.sorted().first(where: { !upstreamConfigKeys.contains($0) }) {
            throw NanoChatError("\(url.path): model_config has \(unknown), an architecture variant this build cannot run (it runs upstream's GPT with \(upstreamConfigKeys.sorted().joined(separator: ", ")))")
        }
        func int(_ key: String) throws -> Int {
            guard let v = mc[key] as? Int else { throw NanoChatError("\(url.path): model_config.\(key) is missing or not an integer") }
            return v
        }
        let config = GPTConfig(sequence_len: try int("sequence_len"), vocab_size: try int("vocab_size"), n_layer: try int("n_layer"),
                               n_head: try int("n_head"), n_kv_head: try int("n_kv_head"), n_embd: try int("n_embd"),
                               window_pattern: mc["window_pattern"] as? String ?? "L")
        do { try config.validate() } catch { throw NanoChatError("\(url.path): \(error)") }
        var user: [String: String] = [:]
        for (k, v) in obj["user_config"] as? [String: Any] ?? [:] {
            user[k] = v is NSNull ? "" : (v as? String) ?? "\(v)"
        }
        var meta = CheckpointMeta(step: obj["step"] as? Int ?? step, val_bpb: obj["val_bpb"] as? Double, model_config: config,
                                  user_config: user, device_batch_size: obj["device_batch_size"] as? Int,
                                  max_seq_len: obj["max_seq_len"] as? Int, total_batch_size: obj["total_batch_size"] as? Int)
        if let d = obj["dataloader_state_dict"] as? [String: Any], let pq = d["pq_idx"] as? Int, let rg = d["rg_idx"] as? Int {
            meta.dataloader_state_dict = LoaderState(pq_idx: pq, rg_idx: rg, epoch: d["epoch"] as? Int ?? 1)
        }
        if let l = obj["loop_state"] as? [String: Any] {
            meta.loop_state = .init(min_val_bpb: l["min_val_bpb"] as? Double, smooth_train_loss: l["smooth_train_loss"] as? Double ?? 0,
                                    total_training_time: l["total_training_time"] as? Double ?? 0)
        }
        meta.format = "torch"
        return meta
    }

    /// Loads upstream's `model_<step>.pt` and `meta_<step>.json` from `directory`.
    public static func loadUpstreamModel(directory: URL, step: Int) throws -> (GPT, CheckpointMeta) {
        let metaURL = directory.appendingPathComponent("meta_\(stepName(step)).json")
        let meta = try upstreamMeta(try FileIO.read(metaURL, what: "checkpoint meta"), step: step, url: metaURL)
        let file = try TorchFile(url: upstreamModelURL(directory: directory, step: step))
        let model = try GPT(config: meta.model_config)
        try loadParameters(model, from: file)
        return (model, meta)
    }

    /// Upstream's state dict into `model`: strict (every parameter present with its shape, nothing else), with
    /// upstream's loader's patches.
    public static func loadParameters(_ model: GPT, from file: TorchFile) throws {
        var tensors: [String: TorchTensorRef] = [:]
        for (name, t) in try file.stateDict() {
            let key = name.hasPrefix("_orig_mod.") ? String(name.dropFirst("_orig_mod.".count)) : name
            guard tensors[key] == nil else { throw NanoChatError("\(file.url.path): \(key) appears twice") }
            tensors[key] = t
        }
        let expected = Set(model.parameterNames)
        let patched: Set<String> = ["resid_lambdas", "x0_lambdas"]
        let missing = expected.subtracting(tensors.keys).subtracting(patched), extra = Set(tensors.keys).subtracting(expected)
        guard missing.isEmpty && extra.isEmpty else {
            throw NanoChatError("\(file.url.path) does not match the model its meta describes: missing \(missing.sorted().prefix(5)), unexpected \(extra.sorted().prefix(5))")
        }
        for name in model.parameterNames {
            let p = model.param(name)
            guard let t = tensors[name] else {
                // upstream's _patch_missing_keys: checkpoints from before these scalars
                p.assign([Float](repeating: name == "resid_lambdas" ? 1 : 0, count: p.count))
                continue
            }
            guard t.shape == p.shape else {
                throw NanoChatError("\(file.url.path): \(name) has shape \(t.shape), the model config needs \(p.shape)")
            }
            guard [.float32, .bfloat16, .float16, .float64].contains(t.dtype) else {
                throw NanoChatError("\(file.url.path): \(name) is \(t.dtype.torchName), expected a floating-point tensor")
            }
            p.assign(try file.floats(t, name: name))
        }
    }
}

extension Tokenizer {
    /// Upstream's tokenizer file: `pickle.dump` of a tiktoken Encoding (name, pat_str, mergeable_ranks, special_tokens).
    public static let upstreamPickleName = "tokenizer.pkl"

    /// Reads upstream's `tokenizer.pkl` (nothing in it runs: `SafePickle`). The ranks must be 0..<n, each once, and
    /// the special tokens must follow them; the split pattern must be one this build runs.
    public static func loadUpstreamPickle(_ url: URL) throws -> Tokenizer {
        let bytes = [UInt8](try FileIO.read(url, what: "tokenizer pickle"))
        let value = try SafePickle(bytes, what: url.path).read()
        guard case .object("tiktoken.core.Encoding", let state) = value else {
            throw NanoChatError("\(url.path) holds a \(value.kind), expected a pickled tiktoken Encoding (upstream's tokenizer.pkl)")
        }
        guard case .string(let pattern)? = state["pat_str"], case .dict(let rankItems)? = state["mergeable_ranks"],
              case .dict(let specialItems)? = state["special_tokens"] else {
            throw NanoChatError("\(url.path): the Encoding's state lacks pat_str, mergeable_ranks or special_tokens")
        }
        var mergeable = [[UInt8]?](repeating: nil, count: rankItems.count)
        for (k, v) in rankItems {
            guard case .bytes(let token) = k, case .int(let rank) = v else { throw NanoChatError("\(url.path): a mergeable rank is not bytes -> int") }
            guard rank >= 0, rank < mergeable.count, mergeable[rank] == nil else {
                throw NanoChatError("\(url.path): rank \(rank) is out of 0..<\(mergeable.count) or given twice")
            }
            mergeable[rank] = token
        }
        var specials: [String: Int] = [:]
        for (k, v) in specialItems {
            guard case .string(let name) = k, case .int(let id) = v, specials[name] == nil else {
                throw NanoChatError("\(url.path): a special token is not str -> int, or is given twice")
            }
            specials[name] = id
        }
        guard let scanner = SplitScanner(pattern: pattern) else {
            throw NanoChatError("\(url.path) has a split pattern this build cannot run: \(pattern)")
        }
        return try make(mergeable: mergeable.map { $0! }, specials: specials, scanner: scanner, source: url.path)
    }
}
