import Foundation
import NanoTensor

/// One parameter group of the combined optimizer (upstream's setup_optimizer): AdamW for embeddings, lm_head and scalars;
/// Muon for the matrices under transformer.h, one group per shape.
public struct OptimizerGroupSpec: Equatable {
    public enum Kind: String { case adamw, muon }
    public var kind: Kind
    public var params: [String]
    public var lr: Double
    public var initialLR: Double
    public var betas: (Double, Double) = (0.9, 0.95)
    public var eps: Double = 1e-10
    public var weightDecay: Double = 0
    public var momentum: Double = 0.95
    public var nsSteps: Int = 5
    public var beta2: Double = 0.9

    public static func == (a: Self, b: Self) -> Bool {
        a.kind == b.kind && a.params == b.params && a.lr == b.lr && a.initialLR == b.initialLR && a.betas == b.betas
            && a.eps == b.eps && a.weightDecay == b.weightDecay && a.momentum == b.momentum && a.nsSteps == b.nsSteps
            && a.beta2 == b.beta2
    }

    /// Groups as listed in an optimizer fixture's meta JSON.
    public static func parse(fixtureMeta: String) throws -> [OptimizerGroupSpec] {
        guard let obj = try JSONSerialization.jsonObject(with: Data(fixtureMeta.utf8)) as? [String: Any],
              let groups = obj["groups"] as? [[String: Any]] else {
            throw NanoChatError("optimizer meta has no `groups` list")
        }
        return try groups.map { g in
            guard let kind = (g["kind"] as? String).flatMap(Kind.init), let params = g["params"] as? [String],
                  let lr = g["lr"] as? Double else { throw NanoChatError("optimizer group lacks kind, params or lr: \(g)") }
            var spec = OptimizerGroupSpec(kind: kind, params: params, lr: lr, initialLR: g["initial_lr"] as? Double ?? lr)
            if let b = g["betas"] as? [Double], b.count == 2 { spec.betas = (b[0], b[1]) }
            if let e = g["eps"] as? Double { spec.eps = e }
            if let w = g["weight_decay"] as? Double { spec.weightDecay = w }
            if let m = g["momentum"] as? Double { spec.momentum = m }
            if let n = g["ns_steps"] as? Int { spec.nsSteps = n }
            if let b2 = g["beta2"] as? Double { spec.beta2 = b2 }
            return spec
        }
    }
}

/// Upstream's MuonAdamW, on one rank or sharded across the ranks of `comm` (upstream's ZeRO-2-style scheme):
///
/// 1. gradients are reduced: AdamW tensors under 1024 values (or whose first dimension the world size does not
///    divide) are all-reduced whole; larger ones are reduce-scattered along dimension 0, so rank r gets the summed
///    gradient of its 1/W of the rows; each Muon group stacks its K matrices' gradients, zero-padded to
///    ceil(K/W)·W, and reduce-scatters them so rank r gets matrices [r·chunk, (r+1)·chunk);
/// 2. each rank updates what it owns with the averaged gradient (sum / W), keeping optimizer state only for that;
/// 3. the updated slices are all-gathered so every rank holds the whole new model.
/// With one rank every phase is the identity and each rank "owns" everything.
public final class MuonAdamW {
    public var groups: [OptimizerGroupSpec]
    let params: [[Tensor]]
    let comm: Communicator
    /// AdamW: first and second moments per parameter (only this rank's rows of a sharded one); Muon: momentum
    /// [chunk, rows, cols] and the factored second moment per group, for this rank's matrices.
    var adamM: [[Tensor]] = [], adamV: [[Tensor]] = []
    var muonMomentum: [Tensor?] = [], muonSecond: [Tensor?] = []
    public private(set) var adamStep: [Int]
    /// Per AdamW parameter: true when its rows are split across ranks.
    let adamSharded: [[Bool]]
    /// Per Muon group: matrices per rank (K with one rank).
    let muonChunk: [Int]
    /// Scratch for the reduced gradients (sharded AdamW slices, Muon stacks); allocated once.
    var reducedGrad: [[Tensor?]] = [], muonStack: [Tensor?] = [], muonOwnedGrad: [Tensor?] = []
    /// Seconds spent in collectives during the last `step()`.
    public private(set) var lastCommunicationSeconds = 0.0
    /// Bytes this rank sent into collectives during the last `step()` (what each rank moves per step).
    public private(set) var lastCommunicationBytes = 0

    /// AdamW tensors below this many values are all-reduced whole (as upstream): slicing them saves nothing.
    public static let shardThreshold = 1024

    public init(model: GPT, groups: [OptimizerGroupSpec], comm: Communicator = SingleProcess()) throws {
        self.groups = groups
        self.comm = comm
        let world = comm.worldSize
        var seen = Set<String>()
        let ps = try groups.map { g in
            try g.params.map { name in
                guard let t = model.parameters[name] else { throw NanoChatError("optimizer group names unknown parameter \(name)") }
                guard seen.insert(name).inserted else { throw NanoChatError("parameter \(name) is in two optimizer groups") }
                return t
            }
        }
        for (gi, g) in groups.enumerated() where g.kind == .muon {
            let shapes = Set(ps[gi].map(\.shape))
            guard shapes.count == 1, ps[gi][0].shape.count == 2 else {
                throw NanoChatError("Muon group \(gi) must hold 2-D parameters of one shape, got \(shapes)")
            }
        }
        adamStep = Array(repeating: 0, count: groups.count)
        params = ps
        // the state lives beside the parameters: on their GPU when the model was moved there first
        let gpu = ps.first?.first?.gpu
        guard ps.allSatisfy({ $0.allSatisfy { $0.gpu === gpu } }) else { throw NanoChatError("the optimizer's parameters are on different devices") }
        guard gpu == nil || world == 1 else {
            throw NanoChatError("training on the GPU takes one process for now (\(world) ranks asked for): data parallelism between GPUs needs NCCL, which is not built yet; run without mpirun")
        }
        let sharded = groups.enumerated().map { gi, g in
            g.kind == .adamw ? ps[gi].map { world > 1 && $0.count >= Self.shardThreshold && $0.shape[0] % world == 0 } : []
        }
        let chunks = groups.enumerated().map { gi, g in g.kind == .muon ? (ps[gi].count + world - 1) / world : 0 }
        adamSharded = sharded
        muonChunk = chunks
        // Adam moments: this rank's rows of a sharded tensor, the whole of a replicated one, none for Muon's matrices
        func stateShape(_ gi: Int, _ pi: Int) -> [Int] {
            guard groups[gi].kind == .adamw else { return [0] }
            let p = ps[gi][pi]
            return sharded[gi][pi] ? [p.shape[0] / world] + p.shape.dropFirst() : p.shape
        }
        adamM = ps.indices.map { gi in ps[gi].indices.map { Tensor(shape: stateShape(gi, $0), on: gpu) } }
        adamV = ps.indices.map { gi in ps[gi].indices.map { Tensor(shape: stateShape(gi, $0), on: gpu) } }
        muonMomentum = groups.enumerated().map { gi, g in
            g.kind == .muon ? Tensor(shape: [chunks[gi]] + ps[gi][0].shape, on: gpu) : nil
        }
        muonSecond = groups.enumerated().map { gi, g in
            guard g.kind == .muon else { return nil }
            let (rows, cols) = (ps[gi][0].shape[0], ps[gi][0].shape[1])
            return Tensor(shape: rows >= cols ? [chunks[gi], rows, 1] : [chunks[gi], 1, cols], on: gpu)
        }
        if gpu != nil {
            // Muon's kernel takes a group as one [K, rows, cols] stack: its parameters and gradients are copied into
            // these around each step (device to device)
            muonStack = groups.enumerated().map { gi, g in g.kind == .muon ? Tensor(shape: [ps[gi].count] + ps[gi][0].shape, zeroed: false, on: gpu) : nil }
            muonOwnedGrad = groups.enumerated().map { gi, g in g.kind == .muon ? Tensor(shape: [ps[gi].count] + ps[gi][0].shape, zeroed: false, on: gpu) : nil }
        }
        if world > 1 {
            // the reduced gradient of an AdamW tensor has the shape of its state (this rank's rows, or all of it)
            reducedGrad = ps.indices.map { gi in ps[gi].indices.map { groups[gi].kind == .adamw ? Tensor(shape: stateShape(gi, $0)) : nil } }
            muonStack = groups.enumerated().map { gi, g in g.kind == .muon ? Tensor(shape: [chunks[gi] * world] + ps[gi][0].shape) : nil }
            muonOwnedGrad = groups.enumerated().map { gi, g in g.kind == .muon ? Tensor(shape: [chunks[gi]] + ps[gi][0].shape) : nil }
        }
    }

    /// The matrices of Muon group `gi` this rank updates.
    func ownedMatrices(_ gi: Int) -> Range<Int> {
        let k = params[gi].count, chunk = muonChunk[gi]
        return min(k, comm.rank * chunk)..<min(k, (comm.rank + 1) * chunk)
    }

    /// Runs a collective, adding its time and the bytes this rank sends to the step's totals.
    @inline(__always)
    func communicate(bytes: Int, _ body: () -> Void) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        Profiler.measure("optimizer.communication", body)
        lastCommunicationSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        lastCommunicationBytes += bytes
    }

    /// One optimizer step over every group; parameters without a gradient are treated as zero-gradient.
    public func step() {
        lastCommunicationSeconds = 0
        lastCommunicationBytes = 0
        if let gpu = params.first?.first?.gpu {
            Tensor.withoutGrad { stepOnGPU(gpu) }
            return
        }
        Tensor.withoutGrad {
            if comm.worldSize > 1 { reduceGradients() }
            for gi in 0..<groups.count {
                switch groups[gi].kind {
                case .adamw: Profiler.measure("optimizer.adamw") { adamwStep(gi) }
                case .muon: Profiler.measure("optimizer.muon") { muonStep(gi) }
                }
                if comm.worldSize > 1 { gatherParameters(gi) }
            }
        }
    }

    /// Phase 1: every group's gradients summed across ranks, each rank receiving what it owns.
    func reduceGradients() {
        let world = comm.worldSize
        for gi in 0..<groups.count {
            switch groups[gi].kind {
            case .adamw:
                for (pi, p) in params[gi].enumerated() {
                    let out = reducedGrad[gi][pi]!
                    let send = p.gradData()  // zero-filled when this rank's batch gave the parameter no gradient
                    if adamSharded[gi][pi] {
                        communicate(bytes: p.count * 4) { comm.reduceScatterSum(send, out.data, countPerRank: out.count) }
                    } else {
                        out.data.update(from: send, count: p.count)
                        communicate(bytes: p.count * 4) { comm.allReduceSum(out.data, count: out.count) }
                    }
                }
            case .muon:
                let stack = muonStack[gi]!, size = params[gi][0].count
                for (k, p) in params[gi].enumerated() {
                    if let g = p.grad { (stack.data + k * size).update(from: g.data, count: size) }
                    else { (stack.data + k * size).update(repeating: 0, count: size) }
                }
                let padded = muonChunk[gi] * world
                if padded > params[gi].count {
                    (stack.data + params[gi].count * size).update(repeating: 0, count: (padded - params[gi].count) * size)
                }
                // the summed gradients of this rank's matrices (MPI forbids overlapping send and receive buffers)
                communicate(bytes: stack.count * 4) {
                    comm.reduceScatterSum(stack.data, muonOwnedGrad[gi]!.data, countPerRank: muonChunk[gi] * size)
                }
            }
        }
    }

    /// Phase 3 for one group: every rank's updated slices to every rank.
    func gatherParameters(_ gi: Int) {
        let world = comm.worldSize
        switch groups[gi].kind {
        case .adamw:
            for (pi, p) in params[gi].enumerated() where adamSharded[gi][pi] {
                communicate(bytes: p.count / world * 4) { comm.allGather(nil, p.data, countPerRank: p.count / world) }
            }
        case .muon:
            let stack = muonStack[gi]!, size = params[gi][0].count, chunk = muonChunk[gi], owned = ownedMatrices(gi)
            for k in owned { (stack.data + k * size).update(from: params[gi][k].data, count: size) }
            communicate(bytes: chunk * size * 4) { comm.allGather(nil, stack.data, countPerRank: chunk * size) }
            for (k, p) in params[gi].enumerated() where !owned.contains(k) {
                p.data.update(from: stack.data + k * size, count: size)
            }
        }
    }

    func adamwStep(_ gi: Int) {
        let g = groups[gi]
        adamStep[gi] += 1
        let step = Double(adamStep[gi])
        let lr = Float(g.lr), wd = Float(g.weightDecay), b1 = Float(g.betas.0), b2 = Float(g.betas.1), eps = Float(g.eps)
        let bias1 = Float(1 - pow(g.betas.0, step)), bias2 = Float(1 - pow(g.betas.1, step))
        let stepSize = lr / bias1
        let bias2Sqrt = bias2.squareRoot()
        let distributed = comm.worldSize > 1
        // the reduced gradient is a sum over ranks: averaging is folded into the read (exactly 1 with one rank)
        let gscale = 1 / Float(comm.worldSize)
        for (pi, p) in params[gi].enumerated() {
            let n = adamM[gi][pi].count
            // a sharded parameter's update touches only this rank's rows
            let pp = p.data + (adamSharded[gi][pi] ? comm.rank * n : 0)
            let m = adamM[gi][pi].data, v = adamV[gi][pi].data
            let grad = distributed ? reducedGrad[gi][pi]!.data : p.grad?.data
            let decay = 1 - lr * wd
            // element-wise and independent: split the big embedding tables over the cores
            let parts = Threading.ranges(n, parts: n >= 1 << 16 ? Threading.workers : 1)
            Threading.parallelFor(parts.count) { part in
                let i = parts[part].lowerBound
                OptimizerKernels.adamw(pp + i, m: m + i, v: v + i, grad: grad.map { UnsafePointer($0 + i) }, count: parts[part].count,
                                       gradScale: gscale, decay: decay, beta1: b1, beta2: b2, stepSize: stepSize, bias2Sqrt: bias2Sqrt, eps: eps)
            }
        }
    }

    /// The device body of `step` (one process): AdamW one kernel per parameter (adamw.cu); each Muon group as one
    /// [K, rows, cols] stack through muon.cu, its Polar Express products in bf16 when the GPU trains in bf16.
    func stepOnGPU(_ gpu: GPU) {
        for (gi, g) in groups.enumerated() {
            switch g.kind {
            case .adamw:
                adamStep[gi] += 1
                for (pi, p) in params[gi].enumerated() {
                    gpu.run(gpu.api.nc_adamw_step(gpu.ctx, p.gpuData, p.gradData(), adamM[gi][pi].gpuData, adamV[gi][pi].gpuData, Int64(p.count),
                                                  Float(g.lr), Float(g.betas.0), Float(g.betas.1), Float(g.eps), Float(g.weightDecay),
                                                  Int32(adamStep[gi])), "AdamW \(p.name)")
                }
            case .muon:
                let ps = params[gi], size = ps[0].count, (rows, cols) = (ps[0].shape[0], ps[0].shape[1])
                let stack = muonStack[gi]!.gpuData, grads = muonOwnedGrad[gi]!.gpuData
                for (k, p) in ps.enumerated() {
                    gpu.copy(p.gpuData, to: stack + k * size, floats: size)
                    gpu.copy(p.gradData(), to: grads + k * size, floats: size)
                }
                gpu.run(gpu.api.nc_muon_step(gpu.ctx, stack, grads, muonMomentum[gi]!.gpuData, muonSecond[gi]!.gpuData, Int64(ps.count),
                                             Int64(rows), Int64(cols), Float(g.lr), Float(g.weightDecay), Float(g.momentum), Float(g.beta2),
                                             Int32(g.nsSteps), gpu.bf16 ? 1 : 0), "Muon group \(rows)x\(cols)")
                for (k, p) in ps.enumerated() { gpu.copy(stack + k * size, to: p.gpuData, floats: size) }
            }
        }
        // the products of the next step read the new weights' bf16 copies (made by their first product)
        for p in params.joined() { p.refreshBF16Copy() }
    }

    /// Polar Express coefficients (a, b, c) per iteration.
    static let polarExpress: [(Float, Float, Float)] = [
        (8.156554524902461, -22.48329292557795, 15.878769915207462),
        (4.042929935166739, -2.808917465908714, 0.5000178451051316),
        (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
        (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
        (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
    ]

    func muonStep(_ gi: Int) {
        let g = groups[gi]
        let ps = params[gi]
        let (rows, cols) = (ps[0].shape[0], ps[0].shape[1])
        let size = rows * cols
        let mu = Float(g.momentum), lr = Float(g.lr), wd = Float(g.weightDecay), beta2 = Float(g.beta2)
        let lrEff = lr * Float(max(1, Double(rows) / Double(cols))).squareRoot()
        let momentum = muonMomentum[gi]!.data, second = muonSecond[gi]!.data
        let perRow = rows >= cols
        let small = min(rows, cols)
        let owned = ownedMatrices(gi)
        let distributed = comm.worldSize > 1
        let gscale = 1 / Float(comm.worldSize)
        // Each matrix of the group is independent: split them over the cores (BLAS single-threaded inside),
        // which beats two BLAS threads on one small matrix. State slot j belongs to matrix owned.lowerBound + j.
        Threading.parallelFor(owned.count) { j in
            let p = ps[owned.lowerBound + j]
            let x = Tensor(shape: [rows, cols], zeroed: false), xn = Tensor(shape: [rows, cols], zeroed: false)
            let a = Tensor(shape: [small, small], zeroed: false), a2 = Tensor(shape: [small, small], zeroed: false)
            let stat = Tensor(shape: [perRow ? rows : cols], zeroed: false)
            let grad = distributed ? muonOwnedGrad[gi]!.data + j * size : p.grad?.data
            let mbuf = momentum + j * size
            var u = x.data
            // 1. Nesterov momentum: M = mu M + (1-mu) G ; U = (1-mu) G + mu M
            OptimizerKernels.muonMomentum(mbuf, grad: grad.map { UnsafePointer($0) }, into: u, count: size, gradScale: gscale, mu: mu)
            // 3. MuonEq: every row rescaled to the same norm, ||U||_F / sqrt(rows)
            let target = Float(frobenius(u, size)) / Float(rows).squareRoot()
            for r in 0..<rows {
                let row = u + r * cols
                let s = target / max(dot(row, row, cols).squareRoot(), 1e-6)
                for j in 0..<cols { row[j] *= s }
            }
            // 4. normalise so the spectral norm is below 1
            let inv = 1 / (Float(frobenius(u, size)) * 1.01 + 1e-6)
            for i in 0..<size { u[i] *= inv }
            // 5. Polar Express iterations towards the orthogonal polar factor
            var xCur = x, xNext = xn
            for it in 0..<g.nsSteps {
                let (ca, cb, cc) = Self.polarExpress[min(it, Self.polarExpress.count - 1)]
                let xc = xCur.data
                if rows > cols {
                    sgemm(transA: true, transB: false, m: cols, n: cols, k: rows, a: xc, lda: cols, b: xc, ldb: cols, c: a.data, ldc: cols)
                } else {
                    sgemm(transA: false, transB: true, m: rows, n: rows, k: cols, a: xc, lda: cols, b: xc, ldb: cols, c: a.data, ldc: rows)
                }
                // B = b A + c A^2  (into a2)
                sgemm(transA: false, transB: false, m: small, n: small, k: small, alpha: cc, a: a.data, lda: small,
                      b: a.data, ldb: small, c: a2.data, ldc: small)
                for i in 0..<(small * small) { a2.data[i] += cb * a.data[i] }
                xNext.data.update(from: xc, count: size)
                if rows > cols {  // X = a X + X B
                    sgemm(transA: false, transB: false, m: rows, n: cols, k: cols, a: xc, lda: cols, b: a2.data, ldb: cols,
                          beta: ca, c: xNext.data, ldc: cols)
                } else {          // X = a X + B X
                    sgemm(transA: false, transB: false, m: rows, n: cols, k: rows, a: a2.data, lda: rows, b: xc, ldb: cols,
                          beta: ca, c: xNext.data, ldc: cols)
                }
                swap(&xCur, &xNext)
            }
            u = xCur.data
            // 6. Muon+: rescale to Frobenius norm sqrt(min(rows, cols))
            let plus = Float(small).squareRoot() / max(Float(frobenius(u, size)), 1e-6)
            for i in 0..<size { u[i] *= plus }
            // 7. NorMuon: per-row (or per-column) second moment, renormalised to keep the overall norm
            let sbuf = second + j * (perRow ? rows : cols)
            let st = stat.data
            let n = Float(perRow ? cols : rows)
            if perRow {
                for r in 0..<rows { st[r] = dot(u + r * cols, u + r * cols, cols) / n }
            } else {
                for j in 0..<cols { st[j] = 0 }
                for r in 0..<rows { let row = u + r * cols; for j in 0..<cols { st[j] += row[j] * row[j] } }
                for j in 0..<cols { st[j] /= n }
            }
            let m = perRow ? rows : cols
            var vnormSq: Double = 0, vnormNewSq: Double = 0
            for i in 0..<m {
                vnormSq += Double(st[i] * n)
                sbuf[i] += (1 - beta2) * (st[i] - sbuf[i])
                let stepSize = 1 / max(sbuf[i], 1e-10).squareRoot()
                vnormNewSq += Double(st[i] * n * stepSize * stepSize)
                st[i] = stepSize
            }
            let ratio = Float(vnormSq.squareRoot()) / max(Float(vnormNewSq.squareRoot()), 1e-10)
            for r in 0..<rows {
                let row = u + r * cols
                for j in 0..<cols { row[j] *= (perRow ? st[r] : st[j]) * ratio }
            }
            // 9. cautious weight decay and the update
            OptimizerKernels.muonUpdate(p.data, u, count: size, lr: lrEff, weightDecay: wd)
        }
    }

    @inline(__always)
    func frobenius(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Double { Double(dot(p, p, n)).squareRoot() }
}

extension MuonAdamW {
    /// Optimizer state as named tensors (for `optim_<step>_rank<r>.safetensors`) plus AdamW step counts.
    public func stateTensors() -> (tensors: [(String, Tensor)], adamSteps: [Int]) {
        var out: [(String, Tensor)] = []
        for (gi, g) in groups.enumerated() {
            switch g.kind {
            case .adamw:
                for (pi, name) in g.params.enumerated() {
                    out.append(("adam_m.\(name)", adamM[gi][pi]))
                    out.append(("adam_v.\(name)", adamV[gi][pi]))
                }
            case .muon:
                out.append(("muon_momentum.group\(gi)", muonMomentum[gi]!))
                out.append(("muon_second.group\(gi)", muonSecond[gi]!))
            }
        }
        return (out, adamStep)
    }

    /// Restores what `stateTensors` saved; every tensor must be present with the same shape.
    public func loadState(from file: SafeTensorsFile, adamSteps: [Int]) throws {
        guard adamSteps.count == groups.count else {
            throw NanoChatError("\(file.url.path): optimizer state has \(adamSteps.count) groups, the optimizer has \(groups.count)")
        }
        for (name, t) in stateTensors().tensors {
            let (shape, values) = try file.floats(name)
            guard shape == t.shape else {
                throw NanoChatError("\(file.url.path): \(name) has shape \(shape), expected \(t.shape) (checkpoint from another model or world size?)")
            }
            t.assign(values)
        }
        adamStep = adamSteps
    }

    /// Sets the AdamW step counts (an accelerator handing its state back).
    public func setAdamSteps(_ steps: [Int]) {
        precondition(steps.count == groups.count, "\(steps.count) step counts for \(groups.count) groups")
        adamStep = steps
    }
}
