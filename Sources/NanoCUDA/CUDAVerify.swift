import Foundation
import NanoChat

/// `nanochat verify --device cuda`: the fixtures' model and optimizer checks on the GPU, everything in exact fp32.
public struct CUDAVerifyBackend: VerifyBackend {
    let cuda: CUDALibrary

    public init(cuda: CUDALibrary) { self.cuda = cuda }

    public func modelOutputs(_ model: GPT, idx: [Int32], targets: [Int32], batch: Int, time: Int) throws
        -> (logits: [Float], loss: Float, grads: [String: [Float]]) {
        let gpu = try CUDAGPT(model, cuda: cuda, batch: batch, time: time, bf16: false)
        let logits = try gpu.logitsOf(inputs: idx)
        let loss = try gpu.loss(inputs: idx, targets: targets, backward: true)
        let grads = try Dictionary(uniqueKeysWithValues: model.parameterNames.map { ($0, try gpu.gradient($0)) })
        return (logits, loss, grads)
    }

    public func optimizerSteps(_ model: GPT, groups: [OptimizerGroupSpec], grads: [[String: [Float]]]) throws -> [[String: [Float]]] {
        let gpu = try CUDAGPT(model, cuda: cuda, batch: 1, time: 1, bf16: false)
        let opt = try CUDAMuonAdamW(model: gpu, groups: groups)
        return try grads.map { step in
            for name in model.parameterNames { try cuda.upload(step[name]!, to: gpu.g(name)) }
            try opt.step()
            return try Dictionary(uniqueKeysWithValues: model.parameterNames.map {
                ($0, try cuda.download(gpu.p($0), count: gpu.shapes[$0]!.reduce(1, *)))
            })
        }
    }
}
