/// A float32 tensor: contiguous row-major storage, a shape, an optional gradient, and — when it was made by an
/// op while gradients are on — the op's backward closure and inputs (the autograd tape is this graph).
///
/// Reshapes are views over the same storage; everything else that changes layout is an explicit op.
public final class Tensor {
    public private(set) var shape: [Int]
    public let storage: Storage
    public var grad: Tensor?
    /// Leaves that want gradients (parameters) and every tensor computed from one.
    public var requiresGrad: Bool
    public var name: String = ""
    /// Inference only: this weight in bf16 or int8 (`QuantizedWeights`); products then read it instead of `data`.
    public var quantized: QuantizedWeights?

    var parents: [Tensor] = []
    /// Called with this tensor once its gradient is complete; pushes gradients into `parents`.
    var backwardFn: ((Tensor) -> Void)?

    public var count: Int { storage.count }
    @inline(__always) public var data: UnsafeMutablePointer<Float> { storage.pointer }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    /// Whether ops record the graph. Off for evaluation and inference: no closures, no graph.
    nonisolated(unsafe) public static var gradEnabled = true

    /// A new tensor; its contents are zero when `zeroed`, otherwise undefined (the op will overwrite them).
    public init(shape: [Int], zeroed: Bool = true, requiresGrad: Bool = false) {
        let n = shape.reduce(1, *)
        storage = Storage(count: n)
        self.shape = shape
        self.requiresGrad = requiresGrad
        if zeroed { storage.pointer.initialize(repeating: 0, count: n) }
    }

    public convenience init(shape: [Int], values: [Float], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(shape: shape, zeroed: false, requiresGrad: requiresGrad)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    init(shape: [Int], sharing storage: Storage) {
        self.shape = shape
        self.storage = storage
        self.requiresGrad = false
    }

    public var array: [Float] { Array(buffer) }
    public var scalar: Float { data[0] }
    public var dimensions: Int { shape.count }

    /// Runs `body` with gradient recording off (evaluation, inference, optimizer updates).
    public static func withoutGrad<T>(_ body: () throws -> T) rethrows -> T {
        let saved = gradEnabled
        gradEnabled = false
        defer { gradEnabled = saved }
        return try body()
    }

    /// Registers `out` as computed from `inputs`, with `backward` to run once `out.grad` is complete.
    /// Does nothing when recording is off or no input needs a gradient.
    @inline(__always)
    public static func record(_ out: Tensor, _ inputs: [Tensor], op: String = "view", _ backward: @escaping (Tensor) -> Void) {
        guard gradEnabled, inputs.contains(where: { $0.requiresGrad }) else { return }
        out.requiresGrad = true
        out.parents = inputs
        if Profiler.enabled {
            Profiler.opFinished(op)
            out.backwardFn = { t in Profiler.measure(op + ".backward") { backward(t) } }
        } else {
            out.backwardFn = backward
        }
    }

    /// This tensor's gradient buffer, created zero-filled on first use; ops accumulate into it.
    @inline(__always)
    public func gradData() -> UnsafeMutablePointer<Float> {
        if let g = grad { return g.data }
        let g = Tensor(shape: shape)
        grad = g
        return g.data
    }

    /// Gradient buffer and whether it was just created (then a kernel may overwrite instead of accumulate;
    /// its contents are undefined).
    @inline(__always)
    public func gradForWrite() -> (UnsafeMutablePointer<Float>, fresh: Bool) {
        if let g = grad { return (g.data, false) }
        let g = Tensor(shape: shape, zeroed: false)
        grad = g
        return (g.data, true)
    }

    public func zeroGrad() { grad = nil }

    /// A view with another shape over the same storage (gradients flow through unchanged).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot view \(shape) as \(newShape)")
        let v = Tensor(shape: newShape, sharing: storage)
        Tensor.record(v, [self]) { [unowned self] out in
            let g = self.gradData()
            let og = out.grad!.data
            for i in 0..<self.count { g[i] += og[i] }
        }
        return v
    }

    /// Back-propagates from this scalar (seed gradient 1, or `seed`), then releases the graph.
    public func backward(seed: Float = 1) {
        precondition(count == 1, "backward() needs a scalar, got shape \(shape)")
        var order: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        // iterative DFS post-order (graphs are deep: one chain per layer)
        var stack: [(Tensor, Bool)] = [(self, false)]
        while let (t, expanded) = stack.popLast() {
            if expanded { order.append(t); continue }
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            stack.append((t, true))
            for p in t.parents where p.requiresGrad && !visited.contains(ObjectIdentifier(p)) { stack.append((p, false)) }
        }
        let g = gradData()
        g[0] += seed
        for t in order.reversed() {
            if let fn = t.backwardFn, t.grad != nil { fn(t) }
            if t.backwardFn != nil {  // an intermediate: drop its graph and gradient now
                t.backwardFn = nil
                t.parents = []
                t.grad = nil
            }
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let head = buffer.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 8 ? ", ..." : "")]"
    }
}

#if canImport(Foundation)
import Foundation
#endif
