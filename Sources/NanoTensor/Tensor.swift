/// A float32 tensor (or, on a GPU in bf16 mode, a bf16 activation: `isBF16`): contiguous row-major storage on a device
/// (the CPU or a GPU), a shape, an optional gradient (float32, on the same device), and — when it was made by an op while gradients are on — the op's backward closure and inputs
/// (the autograd tape is this graph). Every op runs where its inputs live: the CPU body, or the GPU's kernels.
///
/// Reshapes are views over the same storage; everything else that changes layout is an explicit op.
public final class Tensor {
    public private(set) var shape: [Int]
    /// Replaced only by `move(to:)` (a parameter going to the GPU keeps its identity for the optimizer). Unchecked
    /// exclusivity: every op reads it (`data`), and a dynamic access check per read would cost the hot loops.
    @exclusivity(unchecked) public private(set) var storage: Storage
    public var grad: Tensor?
    /// Leaves that want gradients (parameters) and every tensor computed from one.
    public var requiresGrad: Bool
    public var name: String = ""
    /// Inference only: this weight in bf16 or int8 (`QuantizedWeights`); products then read it instead of `data`.
    public var quantized: QuantizedWeights?

    /// On a GPU running its products in bf16: this weight rounded to bf16 (half the floats' count, rounded up), made by
    /// the first product that reads it and refreshed by the optimizer step (`refreshBF16Copy`), so a product reads it
    /// as it is instead of rounding the fp32 weight on every call. Dropped whenever the values are replaced.
    public private(set) var bf16Copy: Storage?
    /// Where this weight's copy starts in `bf16Copy`, in bf16 elements: 0, or its place among weights stacked into one
    /// buffer (`stackedBF16Weights`).
    private var bf16Offset = 0

    /// Its backward reads a bf16 gradient as it is (set by the ops whose backward does: attention's inputs and output on
    /// a GPU in bf16 mode, whose gradients attention and c_proj write in bf16 as cuDNN makes them). Any other tensor's
    /// bf16 gradient is widened to float32 before its backward runs, and before an op adds to it.
    public var acceptsBF16Gradient = false

    var parents: [Tensor] = []
    /// Called with this tensor once its gradient is complete; pushes gradients into `parents`.
    var backwardFn: ((Tensor) -> Void)?

    /// Elements (of the shape): `storage.count` floats for float32, half as many (rounded up) for bf16.
    public let count: Int
    /// The elements are bf16, two to a float of storage: an activation on a GPU in bf16 mode that only bf16 products,
    /// attention and the ops written for it read (the norms the projections read, q, k, v, attention's output), kept in
    /// half the memory, as upstream's autocast keeps them. Its ops read `bf16Data`; its gradient is float32.
    public let isBF16: Bool
    /// The values in host memory. A tensor on a GPU has none here: reading them is a bug (an op without a device
    /// body, or a caller that forgot `hostArray()`), and stops with the tensor's name rather than reading device memory.
    @inline(__always) public var data: UnsafeMutablePointer<Float> {
        precondition(storage.gpu == nil, "tensor \(name.isEmpty ? "\(shape)" : name) is on the GPU: its values are read with hostArray()")
        return storage.pointer
    }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }
    /// The GPU holding this tensor, or nil on the CPU.
    @inline(__always) public var gpu: GPU? { storage.gpu }
    public var device: Device { gpu.map { .gpu($0) } ?? .cpu }
    /// The storage's address on its device (device memory on a GPU): for the GPU ops' kernel arguments.
    @inline(__always) public var gpuData: UnsafeMutablePointer<Float> {
        precondition(!isBF16, "tensor \(name.isEmpty ? "\(shape)" : name) holds bf16 values: this op reads float32 (use bf16Data, or an op that takes bf16)")
        return storage.pointer
    }
    /// The device address of a bf16 tensor's values.
    @inline(__always) public var bf16Data: UnsafeMutableRawPointer {
        precondition(isBF16, "tensor \(name.isEmpty ? "\(shape)" : name) holds float32 values, not bf16")
        return UnsafeMutableRawPointer(storage.pointer)
    }
    /// The device address of either kind, for a kernel that takes both (with `isBF16` as its flag).
    @inline(__always) public var deviceBytes: UnsafeMutableRawPointer { UnsafeMutableRawPointer(storage.pointer) }

    /// Whether ops record the graph. Off for evaluation and inference: no closures, no graph.
    nonisolated(unsafe) public static var gradEnabled = true

    /// A new tensor; its contents are zero when `zeroed`, otherwise undefined (the op will overwrite them).
    public convenience init(shape: [Int], zeroed: Bool = true, requiresGrad: Bool = false) {
        self.init(shape: shape, zeroed: zeroed, on: nil)
        self.requiresGrad = requiresGrad
    }

    /// A new tensor on `gpu` (the CPU when nil): what an op makes for its output, beside its inputs. `bf16`: its
    /// elements in bf16 (on a GPU only).
    public init(shape: [Int], zeroed: Bool = true, on gpu: GPU?, bf16: Bool = false) {
        let n = shape.reduce(1, *)
        precondition(!bf16 || gpu != nil, "bf16 tensors live on a GPU")
        self.shape = shape
        count = n
        isBF16 = bf16
        self.requiresGrad = false
        if let gpu {
            let floats = bf16 ? (n + 1) / 2 : n
            storage = Storage(count: floats, on: gpu)
            if zeroed { gpu.zero(storage.pointer, floats: floats) }
        } else {
            storage = Storage(count: n)
            if zeroed { storage.pointer.initialize(repeating: 0, count: n) }
        }
    }

    public convenience init(shape: [Int], values: [Float], requiresGrad: Bool = false) {
        precondition(values.count == shape.reduce(1, *), "\(values.count) values for shape \(shape)")
        self.init(shape: shape, zeroed: false, requiresGrad: requiresGrad)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    init(shape: [Int], sharing storage: Storage, bf16: Bool = false) {
        self.shape = shape
        self.storage = storage
        count = shape.reduce(1, *)
        isBF16 = bf16
        self.requiresGrad = false
    }

    public var array: [Float] { Array(buffer) }
    /// The first value, from wherever the tensor lives (a loss: the one copy a training step makes back).
    public var scalar: Float { gpu == nil ? data[0] : hostArray(count: 1)[0] }

    /// The values on the host, copied from the GPU when the tensor lives there (the first `count` of them).
    public func hostArray(count n: Int? = nil) -> [Float] {
        let n = n ?? count
        guard let gpu else { return Array(UnsafeBufferPointer(start: storage.pointer, count: n)) }
        if isBF16 {  // the bits downloaded, widened here (a bf16 value is the top half of a float's)
            var bits = [UInt16](repeating: 0, count: n)
            bits.withUnsafeMutableBytes { gpu.download(storage.pointer, bytes: 2 * n, into: $0.baseAddress!) }
            return bits.map { Float(bitPattern: UInt32($0) << 16) }
        }
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBytes { gpu.download(storage.pointer, bytes: 4 * n, into: $0.baseAddress!) }
        return out
    }

    /// Overwrites the values with `values` (a checkpoint being loaded), on whichever device the tensor lives.
    public func assign(_ values: [Float]) {
        precondition(values.count == count, "\(name): \(values.count) values for \(count) elements")
        precondition(!isBF16, "\(name): assign writes float32 values")
        defer { refreshBF16Copy() }
        values.withUnsafeBytes { src in
            if let gpu { gpu.upload(src.baseAddress!, bytes: src.count, to: storage.pointer) }
            else { UnsafeMutableRawPointer(storage.pointer).copyMemory(from: src.baseAddress!, byteCount: src.count) }
        }
    }

    /// The bf16 copy for a product on `gpu` (made on first use): its device address.
    public func bf16Weights(on gpu: GPU) -> UnsafeRawPointer {
        if bf16Copy == nil {
            bf16Copy = Storage(count: (count + 1) / 2, on: gpu)
            bf16Offset = 0
            refreshBF16Copy()
        }
        return UnsafeRawPointer(bf16Copy!.pointer) + 2 * bf16Offset
    }

    /// The bf16 copies of `ws` (weights of one width on `gpu`) as consecutive rows of one buffer, the matrix
    /// [ws[0]; ws[1]; ...] in bf16, for a product that reads them as one (the attention projections' backward: x's
    /// gradient from q's, k's and v's in one product). Made on first use; from then on each weight's own copy is its
    /// block of that buffer, refreshed by the optimizer step as any copy.
    public static func stackedBF16Weights(_ ws: [Tensor], on gpu: GPU) -> UnsafeRawPointer {
        let width = ws[0].shape.last!
        precondition(ws.allSatisfy { $0.gpu === gpu && $0.shape.last == width && $0.count % 2 == 0 },
                     "stackedBF16Weights: weights of one (even-sized) width on the GPU")
        var offset = 0
        let stacked = ws.allSatisfy { w in
            defer { offset += w.count }
            return w.bf16Copy != nil && w.bf16Copy === ws[0].bf16Copy && w.bf16Offset == offset
        }
        if !stacked {
            let block = Storage(count: ws.reduce(0) { $0 + $1.count } / 2, on: gpu)
            offset = 0
            for w in ws {
                w.bf16Copy = block
                w.bf16Offset = offset
                w.refreshBF16Copy()
                offset += w.count
            }
        }
        return UnsafeRawPointer(ws[0].bf16Copy!.pointer)
    }

    /// Rounds the current values into the bf16 copy, when there is one (the optimizer, after updating them).
    public func refreshBF16Copy() {
        guard let copy = bf16Copy, let gpu else { return }
        gpu.run(gpu.api.nc_to_bf16(gpu.ctx, UnsafeMutableRawPointer(copy.pointer) + 2 * bf16Offset, storage.pointer, Int64(count)),
                "bf16 copy of \(name)")
    }

    /// A copy on `device` (this tensor itself when it already lives there); no gradient or graph.
    public func to(_ device: Device) -> Tensor {
        if isBF16, gpu !== device.gpu {  // widened on the host (bf16 activations are for inspection off the GPU)
            let host = Tensor(shape: shape, values: hostArray())
            host.name = name
            return host.to(device)
        }
        switch (gpu, device.gpu) {
        case (nil, nil): return self
        case (let a?, let b?) where a === b: return self
        case (nil, let b?):
            let out = Tensor(shape: shape, zeroed: false, on: b)
            b.upload(storage.pointer, bytes: 4 * count, to: out.storage.pointer)
            out.name = name
            return out
        case (let a?, nil):
            let out = Tensor(shape: shape, zeroed: false)
            a.download(storage.pointer, bytes: 4 * count, into: out.storage.pointer)
            out.name = name
            return out
        case (let a?, let b?):
            let host = Tensor(shape: shape, zeroed: false)
            a.download(storage.pointer, bytes: 4 * count, into: host.storage.pointer)
            return host.to(.gpu(b))
        }
    }

    /// Moves this tensor's values to `device` in place (parameters: the optimizer and the model keep referring to
    /// the same object). Its gradient is dropped; a quantized copy is refused (inference weights stay on the CPU).
    public func move(to device: Device) {
        precondition(quantized == nil, "\(name): quantized weights (--dtype int8/bf16) are a CPU format; load fp32 weights for the GPU")
        let moved = to(device)
        guard moved !== self else { return }
        storage = moved.storage
        grad = nil
        bf16Copy = nil
    }
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
    /// On a GPU the buffer is device memory, zeroed there.
    @inline(__always)
    public func gradData() -> UnsafeMutablePointer<Float> {
        if let g = grad { return widenedGradient(g).gpuData }
        let g = Tensor(shape: shape, on: gpu)
        grad = g
        return g.gpuData
    }

    /// Gradient buffer and whether it was just created (then a kernel may overwrite instead of accumulate;
    /// its contents are undefined).
    @inline(__always)
    public func gradForWrite() -> (UnsafeMutablePointer<Float>, fresh: Bool) {
        if let g = grad { return (widenedGradient(g).gpuData, false) }
        let g = Tensor(shape: shape, zeroed: false, on: gpu)
        grad = g
        return (g.gpuData, true)
    }

    /// The gradient `g` as float32: a bf16 gradient is widened and replaces it (an op adds float32 to it, or a backward
    /// that reads float32 is about to run).
    func widenedGradient(_ g: Tensor) -> Tensor {
        guard g.isBF16 else { return g }
        let wide = float32(g)
        grad = wide
        return wide
    }

    /// A gradient in bf16 for this bf16 activation, written by an op that makes it so (no gradient may be there yet).
    public func bf16GradientForWrite() -> UnsafeMutableRawPointer {
        precondition(grad == nil && isBF16 && acceptsBF16Gradient, "\(name): a bf16 gradient is made fresh, for a bf16 activation that takes one")
        let g = Tensor(shape: shape, zeroed: false, on: gpu, bf16: true)
        grad = g
        return g.bf16Data
    }

    public func zeroGrad() { grad = nil }

    /// A view with another shape over the same storage (gradients flow through unchanged).
    public func reshaped(_ newShape: [Int]) -> Tensor {
        precondition(newShape.reduce(1, *) == count, "cannot view \(shape) as \(newShape)")
        let v = Tensor(shape: newShape, sharing: storage, bf16: isBF16)
        v.acceptsBF16Gradient = acceptsBF16Gradient
        Tensor.record(v, [self]) { [unowned self] out in
            // the first gradient to reach the base is the view's own, element for element: shared, not copied into a
            // zeroed buffer (no fill, no pass; a bf16 one stays bf16: the base takes it too); a later one adds to it
            if self.grad == nil, let og = out.grad {
                self.grad = Tensor(shape: self.shape, sharing: og.storage, bf16: og.isBF16)
                return
            }
            let g = self.gradData()
            if let gpu = self.gpu {
                gpu.run(gpu.api.nc_axpby(gpu.ctx, g, out.widenedGradient(out.grad!).gpuData, 1, nil, 1, Int64(self.count)), "view gradient")
                return
            }
            let og = out.grad!.data
            for i in 0..<self.count { g[i] += og[i] }
        }
        return v
    }

    /// Back-propagates from this scalar (seed gradient 1, or `seed`), then releases the graph.
    ///
    /// `leafDone`, when given, is called with each leaf that wants a gradient (a parameter) as soon as the backward of
    /// the last op that used it has run: its gradient is then final while the backward of the earlier layers still
    /// runs (data parallelism starts reducing it there). Counting the uses, not the leaf's place in the order, is what
    /// makes this early: a topological order may put a leaf long after its last use.
    public func backward(seed: Float = 1, leafDone: ((Tensor) -> Void)? = nil) {
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
        // uses of each leaf still to run their backward (only counted when someone listens)
        var usesLeft: [ObjectIdentifier: Int] = [:]
        if leafDone != nil {
            for t in order where t.backwardFn != nil {
                for p in t.parents where p.requiresGrad && p.backwardFn == nil { usesLeft[ObjectIdentifier(p), default: 0] += 1 }
            }
        }
        let g = gradData()
        if let gpu { gpu.run(gpu.api.nc_axpby(gpu.ctx, g, gpu.one, seed, nil, 1, 1), "backward seed") } else { g[0] += seed }
        // taken from the end (the root first) so that each tensor is released once its backward has run: an
        // activation's memory is freed as the backward passes it, not when the whole backward is done
        while let t = order.popLast() {
            if let g = t.grad, g.isBF16, !t.acceptsBF16Gradient { _ = t.widenedGradient(g) }
            if let fn = t.backwardFn, t.grad != nil { fn(t) }
            if t.backwardFn != nil {  // an intermediate: drop its graph and gradient now
                if let leafDone {
                    for p in t.parents where p.requiresGrad && p.backwardFn == nil {
                        let id = ObjectIdentifier(p)
                        usesLeft[id]! -= 1
                        if usesLeft[id] == 0 { leafDone(p) }
                    }
                }
                t.backwardFn = nil
                t.parents = []
                t.grad = nil
            }
        }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        if let gpu { return "Tensor\(shape) on \(gpu.name)" }
        let head = buffer.prefix(8).map { String(format: "%.4g", $0) }.joined(separator: ", ")
        return "Tensor\(shape)[\(head)\(count > 8 ? ", ..." : "")]"
    }
}

#if canImport(Foundation)
import Foundation
#endif
