import Foundation

/// Upstream's base_train schedules: the learning-rate multiplier, Muon's momentum and its weight decay, as
/// functions of the step.
public enum TrainingSchedule {
    /// LR multiplier: linear warmup over `warmup` steps, flat, then linear warmdown over round(ratio * N) steps
    /// to `finalFrac`.
    public static func lrMultiplier(step it: Int, total n: Int, warmup: Int, warmdownRatio: Double,
                                    finalFrac: Double) -> Double {
        let warmdown = Int((warmdownRatio * Double(n)).rounded(.toNearestOrEven))
        if it < warmup { return Double(it + 1) / Double(warmup) }
        if it <= n - warmdown { return 1 }
        let p = Double(n - it) / Double(warmdown)
        return p + (1 - p) * finalFrac
    }

    /// Muon momentum: 0.85 -> 0.97 over the first 400 steps, 0.97 -> 0.90 over the warmdown, else 0.97.
    public static func muonMomentum(step it: Int, total n: Int, warmdownRatio: Double) -> Double {
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

extension TrainingSchedule {
    /// Sets every group's hyperparameters for step `it` of `n` (upstream does this before each optimizer step):
    /// learning rates, and Muon's momentum and weight decay. Returns the learning-rate multiplier.
    public static func apply(to groups: inout [OptimizerGroupSpec], step it: Int, total n: Int, warmup: Int, warmdownRatio: Double,
                             finalFrac: Double, muonWeightDecay wd: Double) -> Double {
        let lrm = lrMultiplier(step: it, total: n, warmup: warmup, warmdownRatio: warmdownRatio, finalFrac: finalFrac)
        let mom = muonMomentum(step: it, total: n, warmdownRatio: warmdownRatio)
        let decay = muonWeightDecay(step: it, total: n, weightDecay: wd)
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

extension MuonAdamW {
    /// `TrainingSchedule.apply` on this optimizer's groups.
    public func applySchedule(step it: Int, total n: Int, warmup: Int, warmdownRatio: Double, finalFrac: Double,
                              muonWeightDecay wd: Double) -> Double {
        TrainingSchedule.apply(to: &groups, step: it, total: n, warmup: warmup, warmdownRatio: warmdownRatio, finalFrac: finalFrac,
                               muonWeightDecay: wd)
    }
}
