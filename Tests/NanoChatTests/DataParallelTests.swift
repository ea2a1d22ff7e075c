import Foundation
import NanoChat
import NanoTensor
import XCTest

/// The data-parallel optimizer's logic without MPI: the backward's per-parameter reports, and MuonAdamW's sharded path
/// through a transport of one rank (every collective the identity, each call recorded).
final class DataParallelTests: XCTestCase {
    /// One rank in host memory: reductions copy, gathers leave the buffer as it is; every call is recorded.
    final class RecordingTransport: GradientTransport {
        var calls: [String] = []
        var rank: Int { 0 }
        var worldSize: Int { 1 }
        var transportName: String { "recording" }
        var reductionAverages: Bool { false }
        var device: GPU? { nil }
        func startAllReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int) { calls.append("all-reduce \(count)") }
        func startReduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
            calls.append("reduce-scatter \(countPerRank)")
            recv.update(from: send, count: countPerRank)
        }
        func startReduce(_ send: UnsafePointer<Float>, into recv: UnsafeMutablePointer<Float>, count: Int, root: Int) {
            calls.append("reduce \(count) to \(root)")
            recv.update(from: send, count: count)
        }
        func startAllGather(_ buffer: UnsafeMutablePointer<Float>, countPerRank: Int) { calls.append("all-gather \(countPerRank)") }
        func progress() {}
        func finishCollectives() { calls.append("finish") }
    }

    func tinyModel() throws -> GPT {
        try GPT(config: GPTConfig(sequence_len: 32, vocab_size: 96, n_layer: 2, n_head: 2, n_kv_head: 1, n_embd: 64, window_pattern: "SL"),
                seed: 7)
    }

    func batch(_ step: Int) -> (x: [Int32], y: [Int32]) {
        var rng = RNG(seed: 100 + UInt64(step))
        let ids = (0..<(2 * 33)).map { _ in Int32(rng.next() % 96) }
        var x: [Int32] = [], y: [Int32] = []
        for r in 0..<2 { x += ids[(r * 33)..<(r * 33 + 32)]; y += ids[(r * 33 + 1)..<(r * 33 + 33)] }
        return (x, y)
    }

    func testBackwardReportsEachParameterOnceItsGradientIsFinal() throws {
        let model = try tinyModel()
        let (x, y) = batch(0)
        let loss = model.forward(x, batch: 2, time: 32, targets: y)
        var reported: [String] = []
        var atReport: [String: [Float]] = [:]
        let names = Dictionary(uniqueKeysWithValues: model.parameterNames.map { (ObjectIdentifier(model.param($0)), $0) })
        loss.backward(leafDone: { p in
            let name = names[ObjectIdentifier(p)]!
            reported.append(name)
            atReport[name] = p.grad.map { Array($0.buffer) }
        })
        XCTAssertEqual(reported.count, Set(reported).count, "a parameter reported twice: \(reported)")
        XCTAssertEqual(Set(reported), Set(model.parameterNames.filter { model.param($0).grad != nil }))
        for name in reported {
            // nothing was added to the gradient after it was reported
            XCTAssertEqual(atReport[name]!, Array(model.param(name).grad!.buffer), "\(name) changed after its report")
        }
        // the last layers' gradients come first: lm_head before the last block, the last block before the first
        let place = { (name: String) in reported.firstIndex(of: name)! }
        XCTAssertLessThan(place("lm_head.weight"), place("transformer.h.1.mlp.c_fc.weight"))
        XCTAssertLessThan(place("transformer.h.1.mlp.c_fc.weight"), place("transformer.h.0.mlp.c_fc.weight"))
        XCTAssertLessThan(place("transformer.h.0.attn.c_q.weight"), place("transformer.wte.weight"))
    }

    /// The sharded path at one rank is the one-process step exactly, whether the reductions start inside the backward
    /// (the hook) or at the step, and in the same order either way.
    func testShardedStepThroughATransportEqualsOneProcessInOneOrder() throws {
        func train(_ transport: RecordingTransport?, hook: Bool) throws -> (GPT, [String]) {
            let model = try tinyModel()
            let groups = model.optimizerGroups(unembeddingLR: 0.004, embeddingLR: 0.2, matrixLR: 0.02, weightDecay: 0.1, scalarLR: 0.5)
            let opt = try MuonAdamW(model: model, groups: groups, transport: transport)
            for step in 0..<3 {
                let (x, y) = batch(step)
                let loss = model.forward(x, batch: 2, time: 32, targets: y)
                loss.backward(leafDone: hook ? { opt.gradientReady($0) } : nil)
                opt.step()
                model.zeroGrad()
            }
            return (model, transport?.calls ?? [])
        }
        let (plain, _) = try train(nil, hook: false)
        let (early, earlyCalls) = try train(RecordingTransport(), hook: true)
        let (late, lateCalls) = try train(RecordingTransport(), hook: false)
        for name in plain.parameterNames {
            XCTAssertEqual(Array(early.param(name).buffer), Array(plain.param(name).buffer), "\(name): reduced in the backward")
            XCTAssertEqual(Array(late.param(name).buffer), Array(plain.param(name).buffer), "\(name): reduced at the step")
        }
        XCTAssertEqual(earlyCalls, lateCalls, "the collectives' order depends on when the gradients were ready")
        for kind in ["all-reduce", "reduce-scatter", "reduce", "all-gather"] {
            XCTAssertTrue(earlyCalls.contains { $0.hasPrefix(kind + " ") }, "no \(kind) called: \(earlyCalls)")
        }
        // every step: lm_head's reduction first, then the last block's MLP (Muon matrices, reduced one by one)
        let fc = plain.param("transformer.h.1.mlp.c_fc.weight").count
        XCTAssertEqual(Array(earlyCalls.prefix(3)), ["reduce-scatter \(plain.param("lm_head.weight").count)", "reduce \(fc) to 0", "reduce \(fc) to 0"])
    }

    func testReductionOrderRunsFromTheLastLayerDown() throws {
        let model = try tinyModel()
        let groups = model.optimizerGroups(unembeddingLR: 0.004, embeddingLR: 0.2, matrixLR: 0.02, weightDecay: 0.1, scalarLR: 0.5)
        let opt = try MuonAdamW(model: model, groups: groups, transport: RecordingTransport())
        let order = opt.reductionOrderNames
        XCTAssertEqual(order.first, "lm_head.weight")
        let place = { (name: String) in order.firstIndex(of: name)! }
        XCTAssertLessThan(place("transformer.h.1.mlp.c_proj.weight"), place("transformer.h.1.attn.c_q.weight"))
        XCTAssertLessThan(place("transformer.h.1.attn.c_q.weight"), place("transformer.h.0.mlp.c_proj.weight"))
        XCTAssertLessThan(place("transformer.h.0.attn.c_q.weight"), place("transformer.wte.weight"))
        XCTAssertEqual(Set(order), Set(model.parameterNames))
    }

}
