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

/// Upstream's MuonAdamW on one rank. Later the distributed step shards the Muon stacks and the large
/// AdamW tensors across ranks; the per-group math below is the part every rank runs on its slice.
public final class MuonAdamW {
    public var groups: [OptimizerGroupSpec]
    let params: [[Tensor]]
    /// AdamW: first and second moments per parameter; Muon: momentum [K, rows, cols] and the factored second
    /// moment per group. Created on the first step.
    var adamM: [[Tensor]] = [], adamV: [[Tensor]] = []
    var muonMomentum: [Tensor?] = [], muonSecond: [Tensor?] = []
    public private(set) var adamStep: [Int]

    public init(model: GPT, groups: [OptimizerGroupSpec]) throws {
        self.groups = groups
        var seen = Set<String>()
        params = try groups.map { g in
            try g.params.map { name in
                guard let t = model.parameters[name] else { throw NanoChatError("optimizer group names unknown parameter \(name)") }
                guard seen.insert(name).inserted else { throw NanoChatError("parameter \(name) is in two optimizer groups") }
                return t
            }
        }
        for (gi, g) in groups.enumerated() where g.kind == .muon {
            let shapes = Set(params[gi].map(\.shape))
            guard shapes.count == 1, params[gi][0].shape.count == 2 else {
                throw NanoChatError("Muon group \(gi) must hold 2-D parameters of one shape, got \(shapes)")
            }
        }
        adamStep = Array(repeating: 0, count: groups.count)
        adamM = params.map { ps in ps.map { Tensor(shape: $0.shape) } }
        adamV = params.map { ps in ps.map { Tensor(shape: $0.shape) } }
        muonMomentum = groups.enumerated().map { gi, g in
            g.kind == .muon ? Tensor(shape: [params[gi].count] + params[gi][0].shape) : nil
        }
        muonSecond = groups.enumerated().map { gi, g in
            guard g.kind == .muon else { return nil }
            let (rows, cols) = (params[gi][0].shape[0], params[gi][0].shape[1])
            return Tensor(shape: rows >= cols ? [params[gi].count, rows, 1] : [params[gi].count, 1, cols])
        }
    }

    /// One optimizer step over every group; parameters without a gradient are treated as zero-gradient.
    public func step() {
        Tensor.withoutGrad {
            for gi in 0..<groups.count {
                switch groups[gi].kind {
                case .adamw: Profiler.measure("optimizer.adamw") { adamwStep(gi) }
                case .muon: Profiler.measure("optimizer.muon") { muonStep(gi) }
                }
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
        for (pi, p) in params[gi].enumerated() {
            let n = p.count
            let pp = p.data, m = adamM[gi][pi].data, v = adamV[gi][pi].data
            let grad = p.grad?.data
            let decay = 1 - lr * wd
            // element-wise and independent: split the big embedding tables over the cores
            let parts = Threading.ranges(n, parts: n >= 1 << 16 ? Threading.workers : 1)
            Threading.parallelFor(parts.count) { part in
                for i in parts[part] {
                    let gr = grad?[i] ?? 0
                    pp[i] *= decay
                    m[i] += (1 - b1) * (gr - m[i])
                    v[i] += (1 - b2) * (gr * gr - v[i])
                    pp[i] -= stepSize * m[i] / ((v[i]).squareRoot() / bias2Sqrt + eps)
                }
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
        // Each matrix of the group is independent: split them over the cores (BLAS single-threaded inside),
        // which beats two BLAS threads on one small matrix.
        Threading.parallelFor(ps.count) { k in
            let p = ps[k]
            let x = Tensor(shape: [rows, cols], zeroed: false), xn = Tensor(shape: [rows, cols], zeroed: false)
            let a = Tensor(shape: [small, small], zeroed: false), a2 = Tensor(shape: [small, small], zeroed: false)
            let stat = Tensor(shape: [perRow ? rows : cols], zeroed: false)
            let grad = p.grad?.data
            let mbuf = momentum + k * size
            var u = x.data
            // 1. Nesterov momentum: M = mu M + (1-mu) G ; U = (1-mu) G + mu M
            for i in 0..<size {
                let gr = grad?[i] ?? 0
                mbuf[i] += (1 - mu) * (gr - mbuf[i])
                u[i] = gr + mu * (mbuf[i] - gr)
            }
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
            let sbuf = second + k * (perRow ? rows : cols)
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
            let pp = p.data
            for i in 0..<size {
                let decay: Float = u[i] * pp[i] >= 0 ? lrEff * wd * pp[i] : 0
                pp[i] -= lrEff * u[i] + decay
            }
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
            values.withUnsafeBufferPointer { t.data.update(from: $0.baseAddress!, count: values.count) }
        }
        adamStep = adamSteps
    }
}
