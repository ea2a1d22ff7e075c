import Foundation
import NanoChat

/// Upstream's MuonAdamW on the GPU, one process: the same groups as `MuonAdamW` (`GPT.optimizerGroups`), its state
/// in device memory. AdamW runs one kernel per parameter; each Muon group updates its whole [K, rows, cols] stack
/// at once (the model lays each group's matrices out back to back), its Polar Express products in bf16 when the
/// model trains in bf16 and in exact fp32 otherwise.
public final class CUDAMuonAdamW {
    public var groups: [OptimizerGroupSpec]
    let model: CUDAGPT
    public internal(set) var adamStep: [Int]
    /// AdamW: first and second moments per parameter; Muon: momentum [K, rows, cols] and the factored second
    /// moment ([K, rows] or [K, cols]) per group.
    let adamM: [[DeviceBuffer]], adamV: [[DeviceBuffer]]
    let muonMomentum: [DeviceBuffer?], muonSecond: [DeviceBuffer?]

    public init(model: CUDAGPT, groups: [OptimizerGroupSpec]) throws {
        self.model = model
        self.groups = groups
        let cuda = model.cuda
        for g in groups {
            for name in g.params where model.shapes[name] == nil { throw CUDAError(description: "optimizer group names unknown parameter \(name)") }
        }
        for (gi, g) in groups.enumerated() where g.kind == .muon {
            // the stack must be contiguous: the names in the model's memory order, one after another
            let offsets = g.params.map { model.offsets[$0]! }
            let size = model.shapes[g.params[0]]!.reduce(1, *)
            guard Set(g.params.map { model.shapes[$0]! }).count == 1, model.shapes[g.params[0]]!.count == 2,
                  offsets.enumerated().allSatisfy({ $0.element == offsets[0] + $0.offset * size }) else {
                throw CUDAError(description: "Muon group \(gi) is not one contiguous stack of same-shape matrices on the GPU")
            }
        }
        adamStep = Array(repeating: 0, count: groups.count)
        func zeros(_ n: Int) throws -> DeviceBuffer {
            let b = try cuda.allocate(floats: n)
            try cuda.zero(b.pointer, floats: n)
            return b
        }
        adamM = try groups.map { g in try g.kind == .adamw ? g.params.map { try zeros(model.slot($0).count) } : [] }
        adamV = try groups.map { g in try g.kind == .adamw ? g.params.map { try zeros(model.slot($0).count) } : [] }
        muonMomentum = try groups.map { g in
            g.kind == .muon ? try zeros(g.params.count * model.slot(g.params[0]).count) : nil
        }
        muonSecond = try groups.map { g in
            guard g.kind == .muon else { return nil }
            let s = model.shapes[g.params[0]]!
            return try zeros(g.params.count * (s[0] >= s[1] ? s[0] : s[1]))
        }
    }

    /// One step over every group with the gradients the model holds; the caller zeroes them afterwards.
    public func step() throws {
        let cuda = model.cuda
        for gi in groups.indices {
            let g = groups[gi]
            switch g.kind {
            case .adamw:
                adamStep[gi] += 1
                for (pi, name) in g.params.enumerated() {
                    let s = model.slot(name)
                    try cuda.check(cuda.api.nc_adamw_step(cuda.ctx, s.param, s.grad, adamM[gi][pi].pointer, adamV[gi][pi].pointer, Int64(s.count),
                                                  Float(g.lr), Float(g.betas.0), Float(g.betas.1), Float(g.eps), Float(g.weightDecay),
                                                  Int32(adamStep[gi])), "AdamW \(name)")
                }
            case .muon:
                let first = model.slot(g.params[0]), shape = model.shapes[g.params[0]]!
                try cuda.check(cuda.api.nc_muon_step(cuda.ctx, first.param, first.grad, muonMomentum[gi]!.pointer, muonSecond[gi]!.pointer,
                                             Int64(g.params.count), Int64(shape[0]), Int64(shape[1]), Float(g.lr), Float(g.weightDecay),
                                             Float(g.momentum), Float(g.beta2), Int32(g.nsSteps), model.bf16 ? 1 : 0),
                               "Muon group \(shape)")
            }
        }
    }

    /// The device buffer behind a state tensor of `MuonAdamW.stateTensors()` (same names, same sizes).
    func stateBuffer(_ name: String) throws -> DeviceBuffer {
        for (gi, g) in groups.enumerated() {
            switch g.kind {
            case .adamw:
                if let pi = g.params.firstIndex(where: { name == "adam_m.\($0)" }) { return adamM[gi][pi] }
                if let pi = g.params.firstIndex(where: { name == "adam_v.\($0)" }) { return adamV[gi][pi] }
            case .muon:
                if name == "muon_momentum.group\(gi)" { return muonMomentum[gi]! }
                if name == "muon_second.group\(gi)" { return muonSecond[gi]! }
            }
        }
        throw CUDAError(description: "the GPU optimizer has no state tensor \(name)")
    }

    /// `TrainingSchedule.apply` on this optimizer's groups.
    public func applySchedule(step: Int, total: Int, warmup: Int, warmdownRatio: Double, finalFrac: Double, muonWeightDecay: Double) -> Double {
        TrainingSchedule.apply(to: &groups, step: step, total: total, warmup: warmup, warmdownRatio: warmdownRatio, finalFrac: finalFrac,
                               muonWeightDecay: muonWeightDecay)
    }
}
