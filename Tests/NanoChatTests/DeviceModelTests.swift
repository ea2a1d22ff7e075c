import Foundation
import NanoChat
import NanoTensor
import XCTest

/// The one GPT on a GPU, checked without one: cuda/host_emulation.c implements the CUDA library's C ABI on the host
/// with the kernels' semantics, so a model moved to that "GPU" runs every op's device body (a CPU body reached by a
/// device tensor would stop the test: `Tensor.data` refuses device memory). Each check compares with the same weights
/// on the CPU, in exact fp32.
final class DeviceModelTests: XCTestCase {
    nonisolated(unsafe) static var standInGPU: GPU?

    /// The host stand-in of the CUDA library, built once per test run.
    func standIn() throws -> GPU {
        if let g = Self.standInGPU { return g }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-standin-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let lib = dir.appendingPathComponent(GPU.fileName)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["cc", "-O2", "-shared", "-fPIC", "-I", root.appendingPathComponent("cuda").path,
                       root.appendingPathComponent("cuda/host_emulation.c").path, "-o", lib.path, "-lm"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("no C compiler to build the stand-in with") }
        let g = try GPU.load(path: lib.path, bf16: false)
        Self.standInGPU = g
        return g
    }

    /// Three layers (with two, the backout layer is the last one: x - lambda x, which the final norm makes independent
    /// of lambda), head dim 32 (the fp32 attention kernel's smallest), GQA, value embeddings, windows S and L.
    /// The output projections get small random weights: at initialisation they are zero, every layer's output is then
    /// a multiple of x0 that the final norm cancels, and the scalar mixes' true gradients are exactly zero (both devices
    /// would hold rounding noise there, which is no comparison).
    func model(seed: UInt64 = 5) throws -> GPT {
        let m = try GPT(config: GPTConfig(sequence_len: 64, vocab_size: 300, n_layer: 3, n_head: 4, n_kv_head: 2, n_embd: 128,
                                          window_pattern: "SL"), seed: seed)
        var rng = RNG(seed: seed + 100)
        for name in m.parameterNames where name.hasSuffix("c_proj.weight") {
            let p = m.param(name)
            for i in 0..<p.count { p.data[i] = rng.uniform(-0.05, 0.05) }
        }
        return m
    }

    func assertClose(_ a: [Float], _ b: [Float], _ tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        var num = 0.0, den = 0.0
        for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
        let rel = (num / max(den, 1e-30)).squareRoot()
        XCTAssertLessThanOrEqual(rel, tol, "\(what): relative difference \(rel)", file: file, line: line)
    }

    func testTheSameGPTGivesTheSameLogitsLossAndGradientsOnTheDevice() throws {
        let gpu = try standIn()
        let cpu = try model(), dev = try model()
        dev.useDevice(.gpu(gpu))
        XCTAssertTrue(dev.lm_head.gpu === gpu && dev.device.gpu === gpu)
        var rng = RNG(seed: 9)
        let (b, t) = (2, 40)
        let idx = (0..<(b * t)).map { _ in Int32(rng.next() % 300) }
        var targets = (0..<(b * t)).map { _ in Int32(rng.next() % 300) }
        targets[3] = -1
        let lc = Tensor.withoutGrad { cpu.forward(idx, batch: b, time: t) }
        let ld = Tensor.withoutGrad { dev.forward(idx, batch: b, time: t) }
        XCTAssertTrue(ld.gpu === gpu, "the logits stay on the device")
        assertClose(ld.hostArray(), lc.array, 1e-5, "logits")
        let before = (gpu.uploads, gpu.downloads)
        let lossC = cpu.forward(idx, batch: b, time: t, targets: targets), lossD = dev.forward(idx, batch: b, time: t, targets: targets)
        lossC.backward()
        lossD.backward()
        XCTAssertEqual(gpu.uploads - before.0, 2, "a training pass copies its ids and targets to the device")
        XCTAssertEqual(lossD.scalar, lossC.scalar, accuracy: 1e-5 * abs(lossC.scalar))
        XCTAssertEqual(gpu.downloads - before.1, 1, "and only its loss back")
        for name in cpu.parameterNames {
            assertClose(dev.param(name).grad!.hostArray(), cpu.param(name).grad!.array, 1e-4, "gradient of \(name)")
        }
    }

    /// Cached decoding on the device equals its own full forward, for rows at different positions (the continuous
    /// batcher's case) and across a window shorter than the sequence.
    func testCachedDecodingOnTheDeviceEqualsItsFullForward() throws {
        let gpu = try standIn()
        let dev = try model()
        dev.windows = [5, 64, 5]
        dev.useDevice(.gpu(gpu))
        var rng = RNG(seed: 4)
        let seqs = [(0..<14).map { _ in Int32(rng.next() % 300) }, (0..<11).map { _ in Int32(rng.next() % 300) }]
        let cache = KVCache(for: dev, batch: 2, capacity: 8)  // grows on the device as the rows need it
        XCTAssertTrue(cache.gpu === gpu)
        Tensor.withoutGrad {
            // prefill each row separately (different lengths), then decode both rows together token by token
            for (r, prefill) in [6, 3].enumerated() {
                _ = dev.forward(Array(seqs[r][0..<prefill]), batch: 1, time: prefill, cache: cache, rows: [r])
            }
            var pos = [6, 3]
            for _ in 0..<5 {
                let step = dev.forward([seqs[0][pos[0]], seqs[1][pos[1]]], batch: 2, time: 1, cache: cache, rows: [0, 1], lastOnly: true).hostArray()
                for r in 0..<2 {
                    let full = dev.forward(Array(seqs[r][0...pos[r]]), batch: 1, time: pos[r] + 1, lastOnly: true).hostArray()
                    assertClose(Array(step[(r * 300)..<((r + 1) * 300)]), full, 1e-5, "row \(r) at position \(pos[r])")
                }
                pos = pos.map { $0 + 1 }
            }
        }
    }

    /// With bf16 products the cache keeps bf16 keys and values (half the bytes a decode step streams): cached decoding
    /// then equals the full forward to bf16's precision.
    func testTheBF16CacheFollowsTheFullForward() throws {
        let gpu = try standIn()
        gpu.bf16 = true
        defer { gpu.bf16 = false }
        let dev = try GPT(config: GPTConfig(sequence_len: 64, vocab_size: 300, n_layer: 3, n_head: 2, n_kv_head: 1, n_embd: 128,
                                            window_pattern: "SL"), seed: 6)  // head dim 64: the bf16 attention's smallest
        dev.useDevice(.gpu(gpu))
        let cache = KVCache(for: dev, batch: 1, capacity: 16)
        XCTAssertTrue(cache.bf16 && cache.gpu === gpu)
        var rng = RNG(seed: 2)
        let seq = (0..<12).map { _ in Int32(rng.next() % 300) }
        Tensor.withoutGrad {
            _ = dev.forward(Array(seq[0..<8]), batch: 1, time: 8, cache: cache)
            for p in 8..<12 {
                let step = dev.forward([seq[p]], batch: 1, time: 1, cache: cache, lastOnly: true).hostArray()
                let full = dev.forward(Array(seq[0...p]), batch: 1, time: p + 1, lastOnly: true).hostArray()
                assertClose(step, full, 2e-2, "bf16 cache at position \(p)")
            }
        }
    }

    /// In bf16 mode a product reads its weight's bf16 copy (made once) instead of rounding the weight per call: the same
    /// values as rounding per call, before and after an optimizer step (which refreshes the copy).
    func testWeightsBF16CopyEqualsRoundingPerCallAndFollowsTheOptimizer() throws {
        let gpu = try standIn()
        gpu.bf16 = true
        defer { gpu.bf16 = false }
        var rng = RNG(seed: 12)
        let w = Tensor(shape: [24, 40], values: (0..<960).map { _ in rng.uniform(-1, 1) }, requiresGrad: true)
        let x = Tensor(shape: [5, 40], values: (0..<200).map { _ in rng.uniform(-1, 1) })
        w.move(to: .gpu(gpu))
        let xd = x.to(.gpu(gpu))
        func perCall() -> [Float] {
            let c = Tensor(shape: [5, 24], zeroed: false, on: gpu)
            gpu.matmul(c.gpuData, xd.gpuData, w.gpuData, m: 5, n: 24, k: 40, transB: true)  // both rounded in the call
            return c.hostArray()
        }
        let first = Tensor.withoutGrad { linear(xd, w) }.hostArray()
        XCTAssertNotNil(w.bf16Copy, "the product made the copy")
        XCTAssertEqual(first, perCall())
        // a model's optimizer step refreshes its copies: its next logits equal those of a fresh model holding the same
        // updated weights (whose copies are made from them)
        let config = GPTConfig(sequence_len: 32, vocab_size: 300, n_layer: 3, n_head: 2, n_kv_head: 1, n_embd: 128, window_pattern: "L")
        let trained = try GPT(config: config, seed: 4)
        trained.useDevice(.gpu(gpu))
        let idx = (0..<16).map { _ in Int32(rng.next() % 300) }
        _ = Tensor.withoutGrad { trained.forward(idx, batch: 1, time: 16) }  // makes the copies
        trained.forward(idx, batch: 1, time: 16, targets: idx.map { ($0 + 1) % 300 }).backward()
        let groups = trained.optimizerGroups(unembeddingLR: 0.004, embeddingLR: 0.2, matrixLR: 0.02, weightDecay: 0, scalarLR: 0.5)
        try MuonAdamW(model: trained, groups: groups).step()
        let fresh = try GPT(config: config, seed: 99)
        for name in fresh.parameterNames { fresh.param(name).assign(trained.param(name).hostArray()) }
        fresh.useDevice(.gpu(gpu))
        let after = Tensor.withoutGrad { trained.forward(idx, batch: 1, time: 16) }.hostArray()
        let expected = Tensor.withoutGrad { fresh.forward(idx, batch: 1, time: 16) }.hostArray()
        XCTAssertTrue(after == expected, "after the step the products read stale bf16 copies (largest difference "
                      + "\(zip(after, expected).map { abs($0 - $1) }.max() ?? 0))")
    }

    /// In bf16 mode the MLP is one op (`reluSquaredMLP`) that keeps its hidden layer in bf16 (relu(h)^2, written over
    /// h = x W_fc^T), half the bytes of the fp32 h that the composition `reluSquaredLinear(linear(x, fc), proj)` keeps,
    /// and runs its backward in bf16 through that layer (relu's from sqrt(relu(h)^2)): its output and gradients follow
    /// the CPU's exact ones to bf16's precision.
    func testTheBF16MLPKeepsItsHiddenLayerInBF16AndFollowsFP32() throws {
        let gpu = try standIn()
        var rng = RNG(seed: 21)
        let (n, c) = (24, 64)
        func random(_ shape: [Int], _ s: Float) -> [Float] { (0..<shape.reduce(1, *)).map { _ in rng.uniform(-s, s) } }
        let inputs = [("x", [n, c], random([n, c], 1)), ("fc", [4 * c, c], random([4 * c, c], 0.2)),
                      ("proj", [c, 4 * c], random([c, 4 * c], 0.1)), ("r", [n, c], random([n, c], 1))]
        let probe = random([1, n * c], 1)  // loss = probe . out: every output element gets its own gradient
        func run(on gpu: GPU?, bf16: Bool) throws -> (out: [Float], grads: [String: [Float]], keptBytes: Int64) {
            gpu?.bf16 = bf16
            defer { gpu?.bf16 = false }
            let ts = inputs.map { name, shape, values in
                let t = Tensor(shape: shape, values: values, requiresGrad: true)
                if let gpu { t.move(to: .gpu(gpu)) }
                t.name = name
                return t
            }
            let w = Tensor(shape: [1, n * c], values: probe)
            if let gpu { w.move(to: .gpu(gpu)) }
            _ = Tensor.withoutGrad { reluSquaredMLP(ts[0], ts[1], ts[2], residual: ts[3]) }  // makes the weights' bf16 copies
            let before = try gpu?.allocatorStats().inUse ?? 0
            let out = reluSquaredMLP(ts[0], ts[1], ts[2], residual: ts[3])
            let kept = try gpu.map { try $0.allocatorStats().inUse - before } ?? 0
            linear(out.reshaped([1, n * c]), w).backward()
            return (out.hostArray(), Dictionary(uniqueKeysWithValues: ts.map { ($0.name, $0.grad!.hostArray()) }), kept)
        }
        let exact = try run(on: nil, bf16: false), fp32 = try run(on: gpu, bf16: false), half = try run(on: gpu, bf16: true)
        XCTAssertEqual(fp32.keptBytes, Int64(4 * n * 4 * c + 4 * n * c), "fp32 keeps h [n, 4c] and the output in fp32")
        XCTAssertEqual(half.keptBytes, Int64(2 * n * 4 * c + 4 * n * c), "bf16 keeps the hidden layer (relu(h)^2) in bf16: half its bytes")
        assertClose(fp32.out, exact.out, 1e-6, "fp32 output")
        assertClose(half.out, exact.out, 2e-2, "bf16 output")
        XCTAssertNotEqual(half.out, exact.out, "the bf16 op rounds (it did not fall back to fp32)")
        for name in ["x", "fc", "proj", "r"] {
            assertClose(fp32.grads[name]!, exact.grads[name]!, 1e-5, "fp32 gradient of \(name)")
            assertClose(half.grads[name]!, exact.grads[name]!, 3e-2, "bf16 gradient of \(name)")
        }
    }

    /// `rotaryProjections` in bf16 on the device is one op that does not keep q and k from before the rotation and keeps
    /// q, k and v as bf16 activations: v is exactly its composition's (`linear(x, [wq, wk, wv])`, then `rotaryNorm` of q
    /// and of k) rounded to bf16, q and k follow the composition's within bf16's precision (rotated from the products in
    /// bf16), and so do the gradients (the rotation's backward reads the rounded output; x's gradient is one product
    /// over the joint gradient), v's weight gradient is the same bits, and it keeps q's and k's pre-rotation bytes fewer
    /// and q, k and v in half the bytes. GQA: 4 query heads, 2 key/value heads.
    func testRotaryProjectionsEqualTheirCompositionAndKeepLess() throws {
        let gpu = try standIn()
        gpu.bf16 = true
        defer { gpu.bf16 = false }
        var rng = RNG(seed: 31)
        let (b, t, c, heads, kvHeads, d) = (2, 12, 64, 4, 2, 16)
        let tables = rotaryTables(length: 40, headDim: d)
        let (cos, sin) = (tables.cos.to(.gpu(gpu)), tables.sin.to(.gpu(gpu)))
        let values = [("x", [b, t, c]), ("wq", [heads * d, c]), ("wk", [kvHeads * d, c]), ("wv", [kvHeads * d, c])].map { name, shape in
            (name, shape, (0..<shape.reduce(1, *)).map { _ in rng.uniform(-1, 1) })
        }
        let probes = [heads, kvHeads, kvHeads].map { h in (0..<(b * t * h * d)).map { _ in rng.uniform(-1, 1) } }
        func run(fused: Bool, uses: [Bool] = [true, true, true]) throws -> (outs: [[Float]], grads: [[Float]?], kept: Int64) {
            let ts = values.map { name, shape, v in
                let p = Tensor(shape: shape, values: v, requiresGrad: true)
                p.move(to: .gpu(gpu))
                p.name = name
                return p
            }
            let project = { () -> [Tensor] in
                if fused {
                    let r = rotaryProjections(ts[0], q: ts[1], k: ts[2], v: ts[3], heads: heads, kvHeads: kvHeads, cos: cos, sin: sin, gain: 1.2)
                    return [r.q, r.k, r.v]
                }
                let p = linear(ts[0], [ts[1], ts[2], ts[3]])
                return [rotaryNorm(p[0].reshaped([b, t, heads, d]), cos: cos, sin: sin, gain: 1.2),
                        rotaryNorm(p[1].reshaped([b, t, kvHeads, d]), cos: cos, sin: sin, gain: 1.2), p[2]]
            }
            _ = Tensor.withoutGrad { project() }  // the weights' bf16 copies
            let before = try gpu.allocatorStats().inUse
            let outs = project()
            let kept = try gpu.allocatorStats().inUse - before
            // loss = sum of probe . output over the outputs in use
            var loss: Tensor? = nil
            for ((o, probe), used) in zip(zip(outs, probes), uses) where used {
                let w = Tensor(shape: [1, probe.count], values: probe)
                w.move(to: .gpu(gpu))
                let term = linear(o.reshaped([1, o.count]), w)
                loss = loss.map { add($0, term) } ?? term
            }
            loss!.backward()
            return (outs.map { $0.hostArray() }, ts.map { $0.grad?.hostArray() }, kept)
        }
        let fused = try run(fused: true), composed = try run(fused: false)
        // a float rounded to bf16, nearest even (the device's rounding)
        func bf16(_ x: Float) -> Float {
            let bits = x.bitPattern
            return Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000)
        }
        // q and k: rotated from the products rounded to bf16 (as upstream's autocast), then rounded themselves
        assertClose(fused.outs[0], composed.outs[0], 1e-2, "q")
        assertClose(fused.outs[1], composed.outs[1], 1e-2, "k")
        XCTAssertEqual(fused.outs[0], fused.outs[0].map(bf16), "q holds bf16 values")
        XCTAssertEqual(fused.outs[1], fused.outs[1].map(bf16), "k holds bf16 values")
        XCTAssertNotEqual(fused.outs[0], composed.outs[0], "q is bf16")
        XCTAssertEqual(fused.outs[2], composed.outs[2].map(bf16), "v: the composition's, rounded to bf16")
        for (i, name) in ["x", "wq", "wk"].enumerated() {
            assertClose(fused.grads[i]!, composed.grads[i]!, 1e-2, "the gradient of \(name)")
        }
        XCTAssertEqual(fused.grads[3]!, composed.grads[3]!, "the gradient of wv (the rotation is not on its path)")
        // k reaches no loss: its part of the joint gradient is zero, and wk gets no gradient, as from its own product
        let fusedQV = try run(fused: true, uses: [true, false, true]), composedQV = try run(fused: false, uses: [true, false, true])
        XCTAssertNil(fusedQV.grads[2], "wk: no gradient")
        XCTAssertNil(composedQV.grads[2], "wk: no gradient (composition)")
        for (i, name) in [(0, "x"), (1, "wq"), (3, "wv")] {
            assertClose(fusedQV.grads[i]!, composedQV.grads[i]!, 1e-2, "without k: the gradient of \(name)")
        }
        let (rows, qk, v) = (b * t, (heads + kvHeads) * d, kvHeads * d)
        XCTAssertEqual(composed.kept - fused.kept, Int64(4 * rows * qk + 2 * rows * (qk + v)),
                       "q and k before the rotation are not kept; q, k and v are kept in bf16")
    }

    /// On a GPU in bf16 mode attention reads a bf16 output gradient (c_proj's dX, written in bf16) and writes bf16
    /// gradients for inputs that take them, as cuDNN makes them; inputs that do not take them get float32 ones. Both
    /// follow the same float32 reference within bf16's precision. GQA, a window shorter than the sequence.
    func testAttentionWritesBF16GradientsForInputsThatTakeThem() throws {
        let gpu = try standIn()
        gpu.bf16 = true
        defer { gpu.bf16 = false }
        var rng = RNG(seed: 41)
        let (b, t, heads, kvHeads, d) = (2, 20, 4, 2, 64)
        let shapes = [[b, t, heads, d], [b, t, kvHeads, d], [b, t, kvHeads, d]]
        let values = shapes.map { s in (0..<s.reduce(1, *)).map { _ in rng.uniform(-1, 1) } }
        let wValues = (0..<(8 * heads * d)).map { _ in rng.uniform(-0.1, 0.1) }
        let probe = (0..<(b * t * 8)).map { _ in rng.uniform(-1, 1) }
        func run(bf16Gradients: Bool) -> (grads: [[Float]], bf16: [Bool]) {
            // q, k, v: bf16 leaves (their gradients stay after the backward), the values rounded on the host
            let qkv = zip(shapes, values).map { shape, v -> Tensor in
                let tensor = Tensor(shape: shape, zeroed: false, on: gpu, bf16: true)
                let bits = v.map { UInt16(truncatingIfNeeded: ($0.bitPattern &+ 0x7FFF &+ (($0.bitPattern >> 16) & 1)) >> 16) }
                bits.withUnsafeBytes { gpu.upload($0.baseAddress!, bytes: $0.count, to: tensor.bf16Data) }
                tensor.requiresGrad = true
                tensor.acceptsBF16Gradient = bf16Gradients
                return tensor
            }
            let w = Tensor(shape: [8, heads * d], values: wValues).to(.gpu(gpu))
            let p = Tensor(shape: [1, b * t * 8], values: probe).to(.gpu(gpu))
            let y = causalAttention(qkv[0], qkv[1], qkv[2], window: 7)
            let out = linear(y.reshaped([b, t, heads * d]), w)
            linear(out.reshaped([1, b * t * 8]), p).backward()
            return (qkv.map { $0.grad!.hostArray() }, qkv.map { $0.grad!.isBF16 })
        }
        let half = run(bf16Gradients: true), full = run(bf16Gradients: false)
        XCTAssertEqual(half.bf16, [true, true, true], "attention wrote bf16 gradients")
        XCTAssertEqual(full.bf16, [false, false, false], "inputs that do not take bf16 gradients get float32 ones")
        for (i, name) in ["q", "k", "v"].enumerated() {
            assertClose(half.grads[i], full.grads[i], 1e-2, "the gradient of \(name)")
            XCTAssertNotEqual(half.grads[i], full.grads[i], "\(name): the bf16 gradient is rounded")
        }
    }

    func testTheEngineGeneratesTheSameTokensOnTheDevice() throws {
        let gpu = try standIn()
        let tok = try Tokenizer(mergeable: (0..<256).map { [UInt8($0)] }, specialTokens: specialTokenNames)
        let vocab = tok.vocabSize
        let config = GPTConfig(sequence_len: 64, vocab_size: vocab, n_layer: 2, n_head: 2, n_kv_head: 1, n_embd: 64, window_pattern: "L")
        let cpu = try GPT(config: config, seed: 8), dev = try GPT(config: config, seed: 8)
        dev.useDevice(.gpu(gpu))
        func run(_ m: GPT) throws -> [[Int]] {
            var out: [[Int]] = [[], []]
            try Engine(model: m, tokenizer: tok).generate([tok.bosID, 72, 105], numSamples: 2, maxTokens: 10, temperature: 0.8, topK: 20, seed: 3) { col, _ in
                for r in 0..<2 { out[r].append(col[r]) }
                return true
            }
            return out
        }
        XCTAssertEqual(try run(dev), try run(cpu), "sampled with the same seed from the same logits")
    }

    /// One RL step's loss and gradients (the advantage-weighted cross-entropy) from the same rollouts.
    func testAnRLStepOnTheDeviceEqualsTheCPU() throws {
        let gpu = try standIn()
        let cpu = try model(), dev = try model()
        dev.useDevice(.gpu(gpu))
        let prompt = [256, 257, 72, 105, 258, 259]
        let seqs = [prompt + [65, 66, 67, 68], prompt + [69, 70], prompt + [71, 72, 73, 74, 75, 76]]
        let masks = seqs.enumerated().map { i, s in [Int](repeating: 0, count: prompt.count) + (0..<(s.count - prompt.count)).map { j in i == 2 && j == 2 ? 0 : 1 } }
        let rollout = ChatRL.rollout(sequences: seqs, masks: masks, rewards: [1, 0, 1], pad: 260)
        let lossC = ChatRL.accumulate(model: cpu, rollout: rollout, rowsPerPass: 2, questions: 2)
        let lossD = ChatRL.accumulate(model: dev, rollout: rollout, rowsPerPass: 2, questions: 2)
        XCTAssertNotEqual(lossC, 0)
        XCTAssertEqual(lossD, lossC, accuracy: 1e-5 * abs(lossC))
        for name in cpu.parameterNames {
            assertClose(dev.param(name).grad!.hostArray(), cpu.param(name).grad!.array, 1e-4, "RL gradient of \(name)")
        }
        // and one optimizer step from those gradients gives the same weights
        let groups = cpu.optimizerGroups(unembeddingLR: 0.004, embeddingLR: 0.2, matrixLR: 0.02, weightDecay: 0.1, scalarLR: 0.5)
        try MuonAdamW(model: cpu, groups: groups).step()
        try MuonAdamW(model: dev, groups: groups).step()
        for name in cpu.parameterNames {
            // Muon's Polar Express iterations amplify the gradients' last-bit differences (the fixtures' tolerance)
            assertClose(dev.param(name).hostArray(), cpu.param(name).array, 1e-4, "\(name) after the step")
        }
    }
}
