import Foundation
import NanoTensor

// Upstream keeps setup_optimizer in gpt.py; here it lives beside the optimizer, so that Model/ depends on nothing
// but NanoTensor and the model's own types.
extension GPT {
    /// Upstream's setup_optimizer: AdamW for lm_head, the embeddings, the value embeddings and the scalars
    /// (their learning rates scaled by (n_embd / 768)^-0.5 where upstream scales them), and one Muon group per
    /// distinct matrix shape of the blocks, sorted by shape. The learning rates arrive already multiplied by the
    /// batch-size LR scale.
    public func setupOptimizer(unembeddingLR: Double, embeddingLR: Double, matrixLR: Double, weightDecay: Double,
                               scalarLR: Double, comm: Communicator = SingleProcess()) throws -> MuonAdamW {
        try MuonAdamW(model: self, groups: optimizerGroups(unembeddingLR: unembeddingLR, embeddingLR: embeddingLR,
                                                           matrixLR: matrixLR, weightDecay: weightDecay, scalarLR: scalarLR), comm: comm)
    }

    /// The parameter groups of `setupOptimizer`.
    public func optimizerGroups(unembeddingLR: Double, embeddingLR: Double, matrixLR: Double, weightDecay: Double,
                                scalarLR: Double) -> [OptimizerGroupSpec] {
        let dmodel = pow(Double(config.n_embd) / 768, -0.5)
        func adam(_ params: [String], _ lr: Double, _ betas: (Double, Double), _ wd: Double) -> OptimizerGroupSpec {
            var g = OptimizerGroupSpec(kind: .adamw, params: params, lr: lr, initialLR: lr)
            g.betas = betas
            g.eps = 1e-10
            g.weightDecay = wd
            return g
        }
        let ve = parameterNames.filter { $0.hasPrefix("value_embeds.") }
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
        let matrices = parameterNames.filter { $0.hasPrefix("transformer.h.") }
        var byShape: [[Int]: [String]] = [:]
        for name in matrices { byShape[param(name).shape, default: []].append(name) }
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
}
