import Foundation
import NanoChat
import NanoTensor
import XCTest

/// The model and the optimizer against upstream's PyTorch outputs, and the depth table.
final class ModelFixtureTests: XCTestCase {
    func checkFixture(_ name: String) throws {
        let results = try Verify.run(Fixtures.url(name))
        XCTAssertGreaterThan(results.count, 10)
        for r in results { XCTAssertTrue(r.ok, "\(name): \(r.name) relative error \(r.relativeError) > \(r.tolerance)") }
    }

    func testTinyGQAWindowModel() throws { try checkFixture("gpt_tiny_gqa_window.safetensors") }
    func testSmallMHAModel() throws { try checkFixture("gpt_small_mha.safetensors") }
    /// One and two layers: the backout layer (n_layer // 2) is the last layer, where backout_lambda's true gradient
    /// is zero (the final norm is scale-invariant): these fixtures carry float64 gradients to judge it by.
    func testOneLayerModel() throws { try checkFixture("gpt_one_layer.safetensors") }
    func testTwoLayerModel() throws { try checkFixture("gpt_two_layers.safetensors") }
    func testOptimizerTwoSteps() throws { try checkFixture("optim_two_steps.safetensors") }

    func testDepthScalingTable() throws {
        let fx = try Fixtures.json("depth_scaling.json")
        let rows = fx["rows"] as! [[String: Any]]
        XCTAssertGreaterThan(rows.count, 10)
        for row in rows {
            let depth = row["depth"] as! Int
            let plan = DepthPlan(try BaseTrainOptions.parse(["--depth", "\(depth)"]), vocabSize: 32768)
            XCTAssertEqual(plan.config.n_embd, row["model_dim"] as? Int, "d\(depth)")
            XCTAssertEqual(plan.config.n_head, row["n_head"] as? Int, "d\(depth)")
            XCTAssertEqual(plan.config.windowSizes, (row["window_sizes"] as! [[Int]]).map { $0[0] }, "d\(depth)")
            let p = row["params"] as! [String: Int]
            XCTAssertEqual(plan.params.wte, p["wte"]); XCTAssertEqual(plan.params.lmHead, p["lm_head"])
            XCTAssertEqual(plan.params.valueEmbeds, p["value_embeds"])
            XCTAssertEqual(plan.params.transformerMatrices, p["transformer_matrices"], "d\(depth)")
            XCTAssertEqual(plan.params.scalars, p["scalars"]); XCTAssertEqual(plan.params.total, p["total"])
            XCTAssertEqual(plan.scalingParams, row["scaling_params"] as? Int)
            XCTAssertEqual(plan.flopsPerToken, row["flops_per_token"] as? Int, "d\(depth)")
            XCTAssertEqual(plan.targetTokens, row["target_tokens"] as? Int)
            XCTAssertEqual(plan.totalBatchSize, row["total_batch_size"] as? Int, "d\(depth)")
            XCTAssertEqual(plan.numIterations, row["num_iterations"] as? Int, "d\(depth)")
            XCTAssertEqual(plan.batchLRScale, row["batch_lr_scale"] as! Double, accuracy: 1e-12)
            XCTAssertEqual(plan.weightDecay, row["weight_decay"] as! Double, accuracy: 1e-12 * (row["weight_decay"] as! Double))
            XCTAssertEqual(plan.adamwDModelLRScale, row["adamw_dmodel_lr_scale"] as! Double, accuracy: 1e-12)
        }
    }

    func testWindowSizesUseFloorDivision() {
        func config(_ seq: Int, _ layers: Int, _ pattern: String) -> GPTConfig {
            GPTConfig(sequence_len: seq, vocab_size: 256, n_layer: layers, n_head: 6, n_kv_head: 6, n_embd: 768, window_pattern: pattern)
        }
        XCTAssertEqual(config(2048, 4, "SSSL").windowSizes, [512, 512, 512, 2048])
        XCTAssertEqual(config(2050, 2, "S").windowSizes, [640, 2050])
        XCTAssertEqual(config(512, 3, "sl").windowSizes, [128, 512, 512])
    }
}

/// Quantized inference weights on upstream's fixture models: the logits of the same inputs with bf16 and int8
/// matrices stay within a stated distance of float32's, and the greedy choice (argmax) almost always agrees.
final class QuantizedModelTests: XCTestCase {
    func testQuantizedLogitsStayCloseToFloat32() throws {
        for name in ["gpt_small_mha.safetensors", "gpt_tiny_gqa_window.safetensors", "gpt_two_layers.safetensors"] {
            let file = try SafeTensorsFile(url: try Fixtures.url(name))
            let meta = try JSONDecoder().decode(FixtureConfig.self, from: Data(file.metadata["meta"]!.utf8))
            let model = try GPT(config: meta.config)
            if let w = meta.window_sizes { model.windows = w.map { $0[0] } }
            try CheckpointManager.loadParameters(model, from: file, prefix: "param.")
            let (shape, idx) = try file.ints("input.idx")
            let logits = { Tensor.withoutGrad { model.forward(idx, batch: shape[0], time: shape[1]).array } }
            let f32 = logits()
            // relative distance of the logits (||q - f|| / ||f||): bf16 rounds each weight to 8 bits of mantissa,
            // int8 to 1/254 of its block's largest weight
            for (format, tolerance) in [(WeightFormat.bf16, 1e-2), (.int8, 2e-2)] {
                model.useWeights(format)
                let q = logits()
                let err = Verify.relativeError(q, f32)
                XCTAssertLessThan(err, tolerance, "\(name) \(format): logits off by \(err)")
                let vocab = meta.config.vocab_size
                let rows = f32.count / vocab
                var same = 0
                for r in 0..<rows {
                    let a = f32[(r * vocab)..<((r + 1) * vocab)], b = q[(r * vocab)..<((r + 1) * vocab)]
                    if a.firstIndex(of: a.max()!)! == b.firstIndex(of: b.max()!)! { same += 1 }
                }
                XCTAssertGreaterThanOrEqual(Double(same) / Double(rows), 0.9, "\(name) \(format): argmax agrees on \(same) of \(rows) positions")
            }
            model.useWeights(.f32)
            XCTAssertEqual(logits(), f32, "\(name): back to float32 gives the float32 logits")
        }
    }

    struct FixtureConfig: Decodable {
        var config: GPTConfig
        var window_sizes: [[Int]]?
    }
}
