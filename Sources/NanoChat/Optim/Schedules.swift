import Foundation

/// Upstream's parameter groups (SPEC §4.3) and schedules (SPEC §4.4).
public enum TrainingSchedule {
    /// AdamW groups for embeddings, lm_head and scalars; one Muon group per distinct matrix shape (sorted by shape).
    /// The embedding/unembedding/matrix/scalar learning rates arrive already multiplied by the batch LR scale.
    public static func parameterGroups(model: GPT, embeddingLR: Double, unembeddingLR: Double, matrixLR: Double,
                                       scalarLR: Double, weightDecay: Double) -> [OptimizerGroupSpec] {
        let dmodel = pow(Double(model.config.n_embd) / 768, -0.5)
        func adam(_ params: [String], _ lr: Double, _ betas: (Double, Double), _ wd: Double) -> OptimizerGroupSpec {
            var g = OptimizerGroupSpec(kind: .adamw, params: params, lr: lr, initialLR: lr)
            g.betas = betas
            g.eps = 1e-10
            g.weightDecay = wd
            return g
        }
        let ve = model.parameterNames.filter { $0.hasPrefix("value_embeds.") }
        var groups = [
            adam(["lm_head.weight"], unembeddingLR * dmodel, (0.8, 0.96), 0.01),
            adam(["transformer.wte.weight"], embeddingLR * dmodel, (0.8, 0.995), 0.001),
        ]
        if !ve.isEmpty { groups.append(adam(ve, embeddingLR * dmodel * 0.5, (0.8, 0.995), 0.01)) }
        groups += [
            adam(["resid_lambdas"], scalarLR * 0.01, (0.8, 0.95), 0.05),
            adam(["x0_lambdas"], scalarLR, (0.96, 0.95), 0),
            adam(["smear_gate.weight", "smear_lambda", "backout_lambda"], 0.2, (0.8, 0.95), 0),
        ]
        let matrices = model.parameterNames.filter { $0.hasPrefix("transformer.h.") }
        var byShape: [[Int]: [String]] = [:]
        for name in matrices { byShape[model.param(name).shape, default: []].append(name) }
        for shape in byShape.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            var g = OptimizerGroupSpec(kind: .muon, params: byShape[shape]!, lr: matrixLR, initialLR: matrixLR)
            g.momentum = 0.95
            g.nsSteps = 5
            g.beta2 = 0.9
            g.weightDecay = weightDecay
            groups.append(g)
        }
        return groups
    }

    /// LR multiplier: linear warmup over `warmup` steps, flat, then linear warmdown over round(ratio * N) steps
    /// to `finalFrac`.
    public static func lrMultiplier(step it: Int, total n: Int, warmup: Int = 40, warmdownRatio: Double = 0.65,
                                    finalFrac: Double = 0.05) -> Double {
        let warmdown = Int((warmdownRatio * Double(n)).rounded(.toNearestOrEven))
        if it < warmup { return Double(it + 1) / Double(warmup) }
        if it <= n - warmdown { return 1 }
        let p = Double(n - it) / Double(warmdown)
        return p + (1 - p) * finalFrac
    }

    /// Muon momentum: 0.85 -> 0.97 over the first 400 steps, 0.97 -> 0.90 over the warmdown, else 0.97.
    public static func muonMomentum(step it: Int, total n: Int, warmdownRatio: Double = 0.65) -> Double {
        let warmdown = Int((warmdownRatio * Double(n)).rounded(.toNearestOrEven))
        if it < 400 {
            let f = Double(it) / 400
            return (1 - f) * 0.85 + f * 0.97
        }
        if it >= n - warmdown && warmdown > 0 {
            let f = Double(it - (n - warmdown)) / Double(warmdown)
            return (1 - f) * 0.97 + f * 0.90
        }
        return 0.97
    }

    /// Muon weight decay: cosine from `wd` to zero over the run.
    public static func muonWeightDecay(step it: Int, total n: Int, weightDecay wd: Double) -> Double {
        wd * 0.5 * (1 + cos(Double.pi * Double(it) / Double(max(n, 1))))
    }
}

extension MuonAdamW {
    /// Sets every group's hyperparameters for step `it` of `n` (upstream does this before each optimizer step).
    public func applySchedule(step it: Int, total n: Int, warmup: Int, warmdownRatio: Double, finalFrac: Double,
                              muonWeightDecay wd: Double) -> Double {
        let lrm = TrainingSchedule.lrMultiplier(step: it, total: n, warmup: warmup, warmdownRatio: warmdownRatio, finalFrac: finalFrac)
        let mom = TrainingSchedule.muonMomentum(step: it, total: n, warmdownRatio: warmdownRatio)
        let decay = TrainingSchedule.muonWeightDecay(step: it, total: n, weightDecay: wd)
        for i in 0..<groups.count {
            groups[i].lr = groups[i].initialLR * lrm
            if groups[i].kind == .muon {
                groups[i].momentum = mom
                groups[i].weightDecay = decay
            }
        }
        return lrm
    }
}
