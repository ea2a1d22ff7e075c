import Foundation

/// `nanochat export --upstream DIR`: our checkpoints as a base directory upstream's scripts load (its
/// NANOCHAT_BASE_DIR): `tokenizer/tokenizer.pkl` and `token_bytes.pt`, and for each stage
/// `<stage>_checkpoints/<tag>/model_<step>.pt` (torch.save's format, float32, upstream's parameter names) with
/// `meta_<step>.json` (upstream's keys, user_config values as JSON numbers, booleans and nulls again). No Python.
public enum UpstreamExport {
    /// Upstream's folder for each of our model sources (it has no mid-training stage now; its history called it mid).
    public static let upstreamPhase = ["base": "base_checkpoints", "sft": "chatsft_checkpoints", "rl": "chatrl_checkpoints",
                                       "mid": "mid_checkpoints"]

    /// Exports `sources` (default: every stage with a checkpoint under the tag) to `out`. Returns the files written.
    @discardableResult
    public static func export(sources: [String]?, tag: String?, step: Int?, tokenizerDir: URL?, to out: URL,
                              say: (String) -> Void) throws -> [URL] {
        var written: [URL] = []
        let stages = sources ?? ["base", "sft", "rl"].filter { s in
            let phase = CheckpointManager.phases[s]!
            guard let t = try? tag ?? CheckpointManager.defaultTag(phase: phase) else { return false }
            return CheckpointManager.latestStep(in: CheckpointManager.directory(phase: phase, tag: t)) != nil
        }
        guard !stages.isEmpty else { throw NanoChatError("no checkpoints to export under \(BaseDir.url.path); train a model first (nanochat base-train)") }
        if step != nil && stages.count > 1 { throw NanoChatError("--step picks one checkpoint; name its stage with -i (base, sft or rl)") }
        var tokenizer: Tokenizer? = nil
        for source in stages {
            guard let dirName = upstreamPhase[source] else { throw NanoChatError("-i \(source): expected base, sft, rl or mid") }
            let loaded = try CheckpointManager.loadModel(source: source, tag: tag, step: step, fallbackToBase: false, tokenizerDir: tokenizerDir)
            tokenizer = loaded.tokenizer
            let dir = out.appendingPathComponent(dirName).appendingPathComponent(loaded.directory.lastPathComponent)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let model = loaded.model
            let entries = model.parameterNames.map { name -> TorchWriter.Entry in
                let p = model.param(name)
                return .floats(name, shape: p.shape, p.hostArray())
            }
            let s = CheckpointManager.stepName(loaded.step)
            let modelURL = dir.appendingPathComponent("model_\(s).pt"), metaURL = dir.appendingPathComponent("meta_\(s).json")
            try TorchWriter.save(entries, to: modelURL)
            try FileIO.writeAtomically(try upstreamMetaJSON(loaded.meta, step: loaded.step), to: metaURL)
            written += [modelURL, metaURL]
            say("\(source) \(loaded.label) -> \(modelURL.path)")
        }
        let tokDir = out.appendingPathComponent("tokenizer")
        try FileManager.default.createDirectory(at: tokDir, withIntermediateDirectories: true)
        let tok = tokenizer!
        let pkl = tokDir.appendingPathComponent("tokenizer.pkl"), bytes = tokDir.appendingPathComponent("token_bytes.pt")
        try FileIO.writeAtomically(TorchWriter.tokenizerPickle(tok), to: pkl)
        try TorchWriter.save([.int32s(nil, tok.tokenByteCounts)], to: bytes)
        written += [pkl, bytes]
        say("tokenizer (\(tok.vocabSize) ids) -> \(pkl.path), \(bytes.path)")
        return written
    }

    /// Our meta as upstream writes it: its keys, indent 2, and user_config's values typed again (our flags are
    /// text: "-1" is -1, "0.3" is 0.3, "true" is true, "" is null).
    public static func upstreamMetaJSON(_ meta: CheckpointMeta, step: Int) throws -> Data {
        var user: [String: Any] = [:]
        for (k, v) in meta.user_config {
            if v.isEmpty { user[k] = NSNull() } else if let i = Int(v) { user[k] = i } else if let d = Double(v) { user[k] = d }
            else if v == "true" || v == "false" { user[k] = v == "true" } else { user[k] = v }
        }
        let c = meta.model_config
        var obj: [String: Any] = [
            "step": step,
            "model_config": ["sequence_len": c.sequence_len, "vocab_size": c.vocab_size, "n_layer": c.n_layer, "n_head": c.n_head,
                             "n_kv_head": c.n_kv_head, "n_embd": c.n_embd, "window_pattern": c.window_pattern],
            "user_config": user,
        ]
        if let v = meta.val_bpb { obj["val_bpb"] = v }
        if let v = meta.device_batch_size { obj["device_batch_size"] = v }
        if let v = meta.max_seq_len { obj["max_seq_len"] = v }
        if let v = meta.total_batch_size { obj["total_batch_size"] = v }
        if let d = meta.dataloader_state_dict { obj["dataloader_state_dict"] = ["pq_idx": d.pq_idx, "rg_idx": d.rg_idx, "epoch": d.epoch] }
        if let l = meta.loop_state {
            obj["loop_state"] = ["min_val_bpb": l.min_val_bpb.map { $0 as Any } ?? NSNull(), "smooth_train_loss": l.smooth_train_loss,
                                 "total_training_time": l.total_training_time]
        }
        return try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
    }
}
