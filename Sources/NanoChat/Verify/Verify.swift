import Foundation
import NanoTensor

/// The fixture's computations on `device`: the same `GPT` and `MuonAdamW` wherever they run (moved there first).
enum VerifyRun {
    /// The model's softcapped logits [B·T·vocab] on `idx`, its mean loss on `targets`, and every parameter's
    /// gradient of that loss (by upstream name).
    static func modelOutputs(_ model: GPT, on device: Device, idx: [Int32], targets: [Int32], batch b: Int, time t: Int)
        -> (logits: [Float], loss: Float, grads: [String: [Float]]) {
        model.useDevice(device)
        let logits = Tensor.withoutGrad { model.forward(idx, batch: b, time: t) }
        let loss = model.forward(idx, batch: b, time: t, targets: targets)
        loss.backward()
        var grads: [String: [Float]] = [:]
        for name in model.parameterNames {
            let p = model.param(name)
            grads[name] = p.grad.map { $0.hostArray() } ?? [Float](repeating: 0, count: p.count)
        }
        return (logits.hostArray(), loss.scalar, grads)
    }

    /// Runs the optimizer of `groups` on `model` for each step's gradients; returns the parameters after each step.
    static func optimizerSteps(_ model: GPT, on device: Device, groups: [OptimizerGroupSpec], grads: [[String: [Float]]]) throws -> [[String: [Float]]] {
        model.useDevice(device)
        let opt = try MuonAdamW(model: model, groups: groups)
        return grads.map { step in
            for name in model.parameterNames {
                model.param(name).grad = Tensor(shape: model.param(name).shape, values: step[name]!).to(device)
            }
            opt.step()
            return Dictionary(uniqueKeysWithValues: model.parameterNames.map { ($0, model.param($0).hostArray()) })
        }
    }
}

/// Checks our implementation against a golden fixture from upstream's PyTorch code (the format of Tests/Fixtures):
/// model fixtures (forward logits and loss, backward gradients) and optimizer fixtures (parameters after steps).
public enum Verify {
    public struct Comparison {
        public var name: String
        public var relativeError: Double
        public var tolerance: Double
        public var ok: Bool { relativeError <= tolerance }
    }

    public static func relativeError(_ ours: [Float], _ ref: [Float]) -> Double {
        ours.withUnsafeBufferPointer { relativeError($0, ref) }
    }

    /// ||ours - ref|| / ||ref|| (norm of the difference over the norm of the reference).
    public static func relativeError(_ ours: UnsafeBufferPointer<Float>, _ ref: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for i in 0..<ref.count {
            let d = Double(ours[i]) - Double(ref[i])
            num += d * d
            den += Double(ref[i]) * Double(ref[i])
        }
        if den == 0 { return num == 0 ? 0 : .infinity }
        return (num / den).squareRoot()
    }

    struct FixtureMeta: Decodable {
        var config: GPTConfig
        var window_sizes: [[Int]]?
        var B: Int?
        var T: Int?
    }

    public static func run(_ url: URL, on device: Device = .cpu) throws -> [Comparison] {
        let file = try SafeTensorsFile(url: url)
        guard let metaText = file.metadata["meta"], let meta = try? JSONDecoder().decode(FixtureMeta.self, from: Data(metaText.utf8)) else {
            throw NanoChatError("\(url.path): metadata has no `meta` JSON with a model config")
        }
        if file.entries.keys.contains(where: { $0.hasPrefix("param_before.") }) {
            return try runOptimizer(file, config: meta.config, metaText: metaText, device: device)
        }
        return try runModel(file, config: meta.config, windows: meta.window_sizes?.map { $0[0] }, device: device)
    }

    static func runModel(_ file: SafeTensorsFile, config: GPTConfig, windows: [Int]?, device: Device) throws -> [Comparison] {
        let model = try GPT(config: config)
        if let windows { model.windows = windows }
        try CheckpointManager.loadParameters(model, from: file, prefix: "param.")
        let (ishape, idx) = try file.ints("input.idx")
        let (_, targets) = try file.ints("input.targets")
        let b = ishape[0], t = ishape[1]
        var out: [Comparison] = []
        let result = VerifyRun.modelOutputs(model, on: device, idx: idx, targets: targets, batch: b, time: t)
        out.append(Comparison(name: "logits", relativeError: relativeError(result.logits, try file.floats("output.logits").values), tolerance: 1e-4))
        out.append(Comparison(name: "loss", relativeError: relativeError([result.loss], try file.floats("output.loss").values), tolerance: 1e-4))
        for name in model.parameterNames {
            let ref = try file.floats("grad." + name).values
            let ours = result.grads[name]!
            guard file.entries["ref64.grad." + name] != nil else {
                out.append(Comparison(name: "grad." + name, relativeError: relativeError(ours, ref), tolerance: 1e-3))
                continue
            }
            // The fixture also holds the gradient in float64 (the true value). Where upstream's own float32
            // gradient is accurate, ours must match it; where the true gradient is (near) zero, both float32
            // values are rounding noise (backout on the last layer, before a scale-invariant norm, is such a
            // case): then ours must be no further from the truth than ten times upstream's own float32 error.
            let truth = try file.floats("ref64.grad." + name).values
            let upstreamError = relativeError(ref, truth)
            if upstreamError <= 1e-4 {
                out.append(Comparison(name: "grad." + name, relativeError: relativeError(ours, ref), tolerance: 1e-3))
            } else {
                out.append(Comparison(name: "grad." + name + " (vs float64; upstream's float32 is off by \(String(format: "%.1e", upstreamError)))",
                                      relativeError: relativeError(ours, truth), tolerance: 10 * upstreamError))
            }
        }
        return out
    }

    static func runOptimizer(_ file: SafeTensorsFile, config: GPTConfig, metaText: String, device: Device) throws -> [Comparison] {
        let model = try GPT(config: config)
        try CheckpointManager.loadParameters(model, from: file, prefix: "param_before.")
        let groups = try OptimizerGroupSpec.parse(fixtureMeta: metaText)
        guard let obj = try JSONSerialization.jsonObject(with: Data(metaText.utf8)) as? [String: Any],
              let steps = obj["steps"] as? Int else { throw NanoChatError("\(file.url.path): meta lacks `steps`") }
        let grads = try (0..<steps).map { s in
            try Dictionary(uniqueKeysWithValues: model.parameterNames.map { ($0, try file.floats("step\(s).grad.\($0)").values) })
        }
        let after = try VerifyRun.optimizerSteps(model, on: device, groups: groups, grads: grads)
        var out: [Comparison] = []
        for s in 0..<steps {
            for name in model.parameterNames {
                let ref = try file.floats("step\(s).param_after.\(name)").values
                out.append(Comparison(name: "step\(s).\(name)", relativeError: relativeError(after[s][name]!, ref), tolerance: 1e-4))
            }
        }
        return out
    }
}
