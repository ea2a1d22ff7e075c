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

/// Upstream's MuonAdamW, on one rank or sharded across ranks (upstream's ZeRO-2-style scheme), through a
/// `GradientTransport` (MPI over host memory, NCCL between GPUs; the logic below is the same for both):
///
/// 1. gradients are reduced: AdamW tensors under 1024 values (or whose first dimension the world size does not
///    divide) are all-reduced whole; larger ones are reduce-scattered along dimension 0, so rank r gets the reduced
///    gradient of its 1/W of the rows; each Muon group's K matrices are a stack padded to ceil(K/W)·W and
///    reduce-scattered so that rank r gets matrices [r·chunk, (r+1)·chunk) — one reduction per matrix onto the rank
///    that owns it (the same floats to the same ranks as one reduce-scatter of the stack; the padding, zeros that
///    nobody owns a use for, is never sent), so that a layer's matrices go as soon as the backward has made them;
/// 2. each rank updates what it owns with the averaged gradient, keeping optimizer state only for that;
/// 3. the updated slices are all-gathered so every rank holds the whole new model.
///
/// Overlap: the training loop hands each parameter's final gradient to `gradientReady` from inside the backward of
/// the last micro-step (`Tensor.backward(leafDone:)`), and its reduction starts there, while the backward of the
/// layers below it still runs. Reductions start in one fixed order on every rank (lm_head, then the layers from the
/// last down, then the embeddings and scalars): a gradient that is ready early waits for the ones before it in that
/// order, so ranks never start collectives in different orders. `step()` starts whatever has not started yet.
/// Without a transport (one process) nothing is reduced and each rank "owns" everything.
public final class MuonAdamW {
    public var groups: [OptimizerGroupSpec]
    let params: [[Tensor]]
    let comm: Communicator
    /// Where gradients are reduced and parameters gathered; nil in one process.
    public let transport: GradientTransport?
    /// This rank and the ranks that share the optimizer (1 and 0 without a transport).
    let world: Int, rank: Int
    /// AdamW: first and second moments per parameter (only this rank's rows of a sharded one); Muon: momentum
    /// [chunk, rows, cols] and the factored second moment per group, for this rank's matrices.
    var adamM: [[Tensor]] = [], adamV: [[Tensor]] = []
    var muonMomentum: [Tensor?] = [], muonSecond: [Tensor?] = []
    public private(set) var adamStep: [Int]
    /// Per AdamW parameter: true when its rows are split across ranks.
    let adamSharded: [[Bool]]
    /// Per Muon group: matrices per rank (K with one rank).
    let muonChunk: [Int]
    /// Scratch for the reduced gradients (AdamW: the shape of the state; Muon: this rank's matrices) and, per Muon
    /// group, the padded stack the updated matrices are gathered in; allocated once, beside the parameters.
    var reducedGrad: [[Tensor?]] = [], muonStack: [Tensor?] = [], muonOwnedGrad: [Tensor?] = []
    /// The reductions in the order every rank starts them: (group, parameter index) — for Muon the index is the
    /// matrix in its group.
    let reductionOrder: [(group: Int, index: Int)]
    /// A parameter's place in `reductionOrder`.
    let reductionSlot: [ObjectIdentifier: Int]
    /// Per slot: the final gradient handed over for this step (kept alive until its reduction has finished).
    var readyGradient: [Tensor?]
    /// Slots before this one have started their reduction this step.
    var started = 0
    /// Seconds spent in collectives during the last `step()` (starting them, and waiting for what was not hidden).
    public private(set) var lastCommunicationSeconds = 0.0
    /// Bytes this rank sent into collectives during the last `step()` (what each rank moves per step).
    public private(set) var lastCommunicationBytes = 0
    /// Of those, the gradient bytes whose reduction started inside the backward (the overlap).
    public private(set) var lastBytesStartedInBackward = 0
    var stepSeconds = 0.0, stepBytes = 0, stepBytesInBackward = 0

    /// AdamW tensors below this many values are all-reduced whole (as upstream): slicing them saves nothing.
    public static let shardThreshold = 1024

    /// `transport`: by default the communicator itself when it spans more than one rank (MPI); on a GPU, NCCL.
    public init(model: GPT, groups: [OptimizerGroupSpec], comm: Communicator = SingleProcess(), transport: GradientTransport? = nil) throws {
        self.groups = groups
        self.comm = comm
        // the parameters' GPU joined to others: NCCL; several ranks on the CPU: the communicator (MPI)
        let gpu = model.parameters.values.first?.gpu
        let transport = transport ?? gpu?.nccl ?? (comm.worldSize > 1 ? comm as? GradientTransport : nil)
        self.transport = transport
        let world = transport?.worldSize ?? 1, rank = transport?.rank ?? 0
        self.world = world
        self.rank = rank
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
        guard ps.allSatisfy({ $0.allSatisfy { $0.gpu === gpu } }) else { throw NanoChatError("the optimizer's parameters are on different devices") }
        if comm.worldSize > 1 && transport == nil {
            throw NanoChatError("\(comm.worldSize) ranks but no transport for the gradients: \(gpu != nil ? "the GPU needs NCCL" : "the communicator moves no gradients")")
        }
        if let transport {
            guard transport.device === gpu else {
                throw NanoChatError("the parameters are on \(gpu.map { $0.name } ?? "the CPU") but \(transport.transportName) moves \(transport.device.map { $0.name + " memory" } ?? "host memory"): on GPUs the gradients go through NCCL")
            }
            guard gpu == nil || transport.reductionAverages else { throw NanoChatError("the GPU's kernels take averaged gradients: \(transport.transportName) must average") }
        }
        let distributed = transport != nil
        let sharded = groups.enumerated().map { gi, g in
            g.kind == .adamw ? ps[gi].map { distributed && $0.count >= Self.shardThreshold && $0.shape[0] % world == 0 } : []
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
        if gpu != nil || distributed {
            // Muon's GPU kernel takes a group as one [K, rows, cols] stack, and the gather fills one: the padded stack,
            // and this rank's matrices' reduced (or, in one process, copied) gradients
            muonStack = groups.enumerated().map { gi, g in g.kind == .muon ? Tensor(shape: [chunks[gi] * world] + ps[gi][0].shape, zeroed: false, on: gpu) : nil }
            muonOwnedGrad = groups.enumerated().map { gi, g in g.kind == .muon ? Tensor(shape: [chunks[gi]] + ps[gi][0].shape, zeroed: false, on: gpu) : nil }
        }
        if distributed {
            // the reduced gradient of an AdamW tensor has the shape of its state (this rank's rows, or all of it)
            reducedGrad = ps.indices.map { gi in ps[gi].indices.map { groups[gi].kind == .adamw ? Tensor(shape: stateShape(gi, $0), zeroed: false, on: gpu) : nil } }
        }
        // the order the backward finishes them in, roughly: lm_head, the blocks from the last down (within one, the MLP
        // before the attention), then what the first layers and the scalars feed
        func layer(_ name: String) -> Int {
            if name.hasPrefix("lm_head") { return Int.max }
            // transformer.h.<l>.… and value_embeds.<l>.weight
            let parts = name.split(separator: ".")
            for (i, part) in parts.enumerated().dropLast() where part == "h" || part == "value_embeds" {
                if let l = Int(parts[i + 1]) { return l }
            }
            return -1
        }
        let within = ["mlp.c_proj", "mlp.c_fc", "attn.c_proj", "attn.ve_gate", "attn.c_v", "attn.c_k", "attn.c_q"]
        func place(_ name: String) -> Int { within.firstIndex { name.hasSuffix($0 + ".weight") } ?? within.count }
        let all = groups.indices.flatMap { gi in groups[gi].params.indices.map { (group: gi, index: $0) } }
        let order = all.enumerated().sorted { a, b in
            let (na, nb) = (groups[a.element.group].params[a.element.index], groups[b.element.group].params[b.element.index])
            if layer(na) != layer(nb) { return layer(na) > layer(nb) }
            if place(na) != place(nb) { return place(na) < place(nb) }
            return a.offset < b.offset
        }.map(\.element)
        reductionOrder = order
        reductionSlot = Dictionary(uniqueKeysWithValues: order.enumerated().map { (ObjectIdentifier(ps[$0.element.group][$0.element.index]), $0.offset) })
        readyGradient = Array(repeating: nil, count: order.count)
    }

    /// The parameters' names in the order their reductions start (the same on every rank).
    public var reductionOrderNames: [String] { reductionOrder.map { groups[$0.group].params[$0.index] } }

    /// The matrices of Muon group `gi` this rank updates.
    func ownedMatrices(_ gi: Int) -> Range<Int> {
        let k = params[gi].count, chunk = muonChunk[gi]
        return min(k, rank * chunk)..<min(k, (rank + 1) * chunk)
    }

    /// Runs a collective call (starting one, or waiting), adding its time and the bytes this rank sends to the step's.
    @inline(__always)
    func communicate(bytes: Int, _ body: () -> Void) {
        let t0 = DispatchTime.now().uptimeNanoseconds
        Profiler.measure("optimizer.communication", body)
        stepSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        stepBytes += bytes
    }

    /// `p`'s gradient for this step is final (`gradient`: where it is, when not `p.grad`): its reduction starts as soon
    /// as every reduction before it in the fixed order has. Called from inside the last micro-step's backward; a
    /// no-op in one process.
    public func gradientReady(_ p: Tensor, gradient: Tensor? = nil) {
        guard let transport, let slot = reductionSlot[ObjectIdentifier(p)], readyGradient[slot] == nil else { return }
        readyGradient[slot] = gradient ?? p.grad
        let before = started
        startReadyReductions()
        for s in before..<started { stepBytesInBackward += reductionBytes(s) }
        transport.progress()
    }

    /// Starts the reductions from `started` on while their gradients are there.
    func startReadyReductions() {
        while started < reductionOrder.count, let g = readyGradient[started] {
            startReduction(started, gradient: g)
            started += 1
        }
    }

    func reductionBytes(_ slot: Int) -> Int { params[reductionOrder[slot].group][reductionOrder[slot].index].count * 4 }

    /// Floats from `src` to `dst` where the parameters live.
    func copyFloats(_ src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>, count: Int) {
        if let gpu = params.first?.first?.gpu { gpu.copy(src, to: dst, floats: count) } else { dst.update(from: src, count: count) }
    }

    /// Phase 1 for one parameter (or Muon matrix).
    func startReduction(_ slot: Int, gradient: Tensor) {
        guard let transport else { return }
        let (gi, pi) = reductionOrder[slot]
        let p = params[gi][pi], grad = UnsafePointer(gradient.gpuData)
        communicate(bytes: p.count * 4) {
            switch groups[gi].kind {
            case .adamw:
                let out = reducedGrad[gi][pi]!
                if adamSharded[gi][pi] {
                    transport.startReduceScatter(grad, out.gpuData, countPerRank: out.count)
                } else {
                    copyFloats(grad, to: out.gpuData, count: p.count)
                    transport.startAllReduce(out.gpuData, count: out.count)
                }
            case .muon:
                let size = p.count, chunk = muonChunk[gi], owner = pi / chunk
                // the owner receives it among its matrices; elsewhere the receive buffer is not written
                let recv = owner == rank ? muonOwnedGrad[gi]!.gpuData + (pi - owner * chunk) * size : muonStack[gi]!.gpuData
                transport.startReduce(grad, into: recv, count: size, root: owner)
            }
        }
    }

    /// One optimizer step over every group; parameters without a gradient are treated as zero-gradient.
    public func step() {
        Tensor.withoutGrad {
            if let transport {
                // what the backward did not start (no hook, or a parameter without a gradient: zeros)
                for s in started..<readyGradient.count where readyGradient[s] == nil {
                    let (gi, pi) = reductionOrder[s]
                    let p = params[gi][pi]
                    if p.grad == nil { _ = p.gradData() }
                    readyGradient[s] = p.grad
                }
                startReadyReductions()
                communicate(bytes: 0) { transport.finishCollectives() }
            }
            if let gpu = params.first?.first?.gpu {
                stepOnGPU(gpu)
            } else {
                for gi in 0..<groups.count {
                    switch groups[gi].kind {
                    case .adamw: Profiler.measure("optimizer.adamw") { adamwStep(gi) }
                    case .muon: Profiler.measure("optimizer.muon") { muonStep(gi) }
                    }
                }
            }
            if transport != nil { gatherParameters() }
            // the products of the next step read the new weights' bf16 copies (made by their first product; none on a CPU)
            for p in params.joined() { p.refreshBF16Copy() }
        }
        readyGradient = Array(repeating: nil, count: readyGradient.count)
        started = 0
        (lastCommunicationSeconds, lastCommunicationBytes, lastBytesStartedInBackward) = (stepSeconds, stepBytes, stepBytesInBackward)
        (stepSeconds, stepBytes, stepBytesInBackward) = (0, 0, 0)
    }

    /// Phase 3: every rank's updated slices to every rank.
    func gatherParameters() {
        guard let transport else { return }
        for gi in groups.indices {
            switch groups[gi].kind {
            case .adamw:
                for (pi, p) in params[gi].enumerated() where adamSharded[gi][pi] {
                    communicate(bytes: p.count / world * 4) { transport.startAllGather(p.gpuData, countPerRank: p.count / world) }
                }
            case .muon:
                let stack = muonStack[gi]!.gpuData, size = params[gi][0].count, chunk = muonChunk[gi]
                // on a GPU the update already wrote this rank's matrices into the stack
                if params[gi][0].gpu == nil { for k in ownedMatrices(gi) { copyFloats(params[gi][k].gpuData, to: stack + k * size, count: size) } }
                communicate(bytes: chunk * size * 4) { transport.startAllGather(stack, countPerRank: chunk * size) }
            }
        }
        communicate(bytes: 0) { transport.finishCollectives() }
        for gi in groups.indices where groups[gi].kind == .muon {
            let stack = muonStack[gi]!.gpuData, size = params[gi][0].count, owned = ownedMatrices(gi)
            for (k, p) in params[gi].enumerated() where !owned.contains(k) { copyFloats(stack + k * size, to: p.gpuData, count: size) }
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
        let distributed = transport != nil
        // a reduction that sums: averaging is folded into the read (exactly 1 with one rank)
        let gscale = transport?.reductionAverages == false ? 1 / Float(world) : 1
        for (pi, p) in params[gi].enumerated() {
            let n = adamM[gi][pi].count
            // a sharded parameter's update touches only this rank's rows
            let pp = p.data + (adamSharded[gi][pi] ? rank * n : 0)
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

    /// The device body of the update: AdamW one kernel per parameter (adamw.cu, on this rank's rows of a sharded one);
    /// each Muon group as one [K, rows, cols] stack through muon.cu (this rank's matrices of it), its Polar Express
    /// products in bf16 when the GPU trains in bf16. With a transport the gradients are the reduced (averaged) ones.
    func stepOnGPU(_ gpu: GPU) {
        let distributed = transport != nil
        for (gi, g) in groups.enumerated() {
            switch g.kind {
            case .adamw:
                adamStep[gi] += 1
                for (pi, p) in params[gi].enumerated() {
                    let n = adamM[gi][pi].count
                    let grad = distributed ? reducedGrad[gi][pi]!.gpuData : p.gradData()
                    gpu.run(gpu.api.nc_adamw_step(gpu.ctx, p.gpuData + (adamSharded[gi][pi] ? rank * n : 0), grad, adamM[gi][pi].gpuData,
                                                  adamV[gi][pi].gpuData, Int64(n), Float(g.lr), Float(g.betas.0), Float(g.betas.1),
                                                  Float(g.eps), Float(g.weightDecay), Int32(adamStep[gi])), "AdamW \(p.name)")
                }
            case .muon:
                let ps = params[gi], size = ps[0].count, (rows, cols) = (ps[0].shape[0], ps[0].shape[1])
                let owned = ownedMatrices(gi)
                guard !owned.isEmpty else { continue }  // a rank that owns only padding
                let stack = muonStack[gi]!.gpuData + owned.lowerBound * size, grads = muonOwnedGrad[gi]!.gpuData
                for (j, k) in owned.enumerated() {
                    gpu.copy(ps[k].gpuData, to: stack + j * size, floats: size)
                    if !distributed { gpu.copy(ps[k].gradData(), to: grads + j * size, floats: size) }
                }
                gpu.run(gpu.api.nc_muon_step(gpu.ctx, stack, grads, muonMomentum[gi]!.gpuData, muonSecond[gi]!.gpuData, Int64(owned.count),
                                             Int64(rows), Int64(cols), Float(g.lr), Float(g.weightDecay), Float(g.momentum), Float(g.beta2),
                                             Int32(g.nsSteps), gpu.bf16 ? 1 : 0), "Muon group \(rows)x\(cols)")
                for (j, k) in owned.enumerated() { gpu.copy(stack + j * size, to: ps[k].gpuData, floats: size) }
            }
        }
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
        let distributed = transport != nil
        let gscale = transport?.reductionAverages == false ? 1 / Float(world) : 1
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
