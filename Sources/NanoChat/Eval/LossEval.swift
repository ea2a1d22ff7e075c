import Foundation
import NanoTensor

/// Bits per byte (upstream's evaluate_bpb): per-token cross-entropy in nats over `steps` batches, counting only targets
/// whose token has bytes (special tokens and ignored targets never count), divided by ln 2 * total bytes.
/// Independent of the tokenizer's vocabulary size, so models with different tokenizers compare.
/// With W ranks, rank r scores batches r, r+W, ... of the same stream and the nats and bytes are summed across
/// ranks: the same number as one process's, W times faster.
public func evaluateBPB(model: GPT, loader: BestFitLoader, steps: Int, tokenBytes: [Int32],
                        comm: Communicator = SingleProcess()) throws -> Double {
    try evaluateBPB(model: model, batch: loader.batch, seqLen: loader.seqLen, steps: steps, tokenBytes: tokenBytes, comm: comm) {
        let (x, y, _) = try loader.next()
        return (x, y)
    }
}

/// The same over any source of (inputs, targets) batches: SFT's conversation loader, whose targets are -1 outside
/// the assistant's tokens, so only what training supervises counts.
public func evaluateBPB(model: GPT, batch: Int, seqLen: Int, steps: Int, tokenBytes: [Int32], comm: Communicator = SingleProcess(),
                        next: () throws -> (inputs: [Int32], targets: [Int32])) throws -> Double {
    try evaluateBPB(steps: steps, tokenBytes: tokenBytes, comm: comm, next: next) { x, y in
        Tensor.withoutGrad { model.forward(x, batch: batch, time: seqLen, targets: y, reduction: .none).array }
    }
}

/// The same with any per-position losses (`losses(inputs, targets)`: a GPU's, say).
public func evaluateBPB(steps: Int, tokenBytes: [Int32], comm: Communicator = SingleProcess(),
                        next: () throws -> (inputs: [Int32], targets: [Int32]),
                        losses lossesOf: ([Int32], [Int32]) throws -> [Float]) throws -> Double {
    var nats = 0.0
    var bytes = 0
    for step in 0..<steps {
        let (x, y) = try next()
        // every rank reads the one stream and scores every W-th batch: the result does not depend on the ranks
        guard step % comm.worldSize == comm.rank else { continue }
        let losses = try lossesOf(x, y)
        for (i, t) in y.enumerated() where t >= 0 {
            let b = Int(tokenBytes[Int(t)])
            if b > 0 {
                nats += Double(losses[i])
                bytes += b
            }
        }
    }
    let total = comm.sum([nats, Double(bytes)])
    return total[1] == 0 ? .infinity : total[0] / (log(2) * total[1])
}
