import Foundation

/// A failed CUDA call: which op, and the library's reason.
public struct CUDAError: Error, CustomStringConvertible {
    public let description: String
}

/// A device pointer as the C ABI takes it (const or not: the same in C's calling convention).
public typealias DevicePointer = UnsafeMutableRawPointer

/// The C functions of `cuda/nanochat_cuda.h`, resolved once with `dlsym`. Each field is the C signature; the methods
/// on `CUDALibrary` below call them with the context and turn a non-zero status into a `CUDAError`.
struct CUDAOps {
    typealias P = UnsafeMutableRawPointer?
    typealias C = OpaquePointer?
    let malloc: @convention(c) (C, UnsafeMutablePointer<UnsafeMutableRawPointer?>, Int64) -> Int32
    let free: @convention(c) (C, P) -> Int32
    let toDevice: @convention(c) (C, P, UnsafeRawPointer?, Int64) -> Int32
    let toHost: @convention(c) (C, UnsafeMutableRawPointer?, P, Int64) -> Int32
    let onDevice: @convention(c) (C, P, P, Int64) -> Int32
    let zero: @convention(c) (C, P, Int64) -> Int32
    let synchronize: @convention(c) (C) -> Int32
    let memoryInfo: @convention(c) (C, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?, UnsafeMutablePointer<Int64>?) -> Int32
    let matmul: @convention(c) (C, P, P, P, Int64, Int64, Int64, Int32, Int32, Float, Float, Int32) -> Int32
    let rmsnormForward: @convention(c) (C, P, P, P, Int64, Int64) -> Int32
    let rmsnormBackward: @convention(c) (C, P, P, P, P, Int64, Int64, Int32) -> Int32
    let rotaryNormForward: @convention(c) (C, P, P, P, P, P, Int64, Int64, Int64, Int64, Int64, Float) -> Int32
    let rotaryNormBackward: @convention(c) (C, P, P, P, P, P, P, Int64, Int64, Int64, Int64, Int64, Float, Int32) -> Int32
    let attentionForward: @convention(c) (C, P, P, P, P, P, Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    let attentionBackward: @convention(c) (C, P, P, P, P, P, P, P, P, P, P, Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    let attentionForwardBF16: @convention(c) (C, P, P, P, P, P, Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    let attentionBackwardBF16: @convention(c) (C, P, P, P, P, P, P, P, P, P, P, Int64, Int64, Int64, Int64, Int64, Int64) -> Int32
    let embeddingForward: @convention(c) (C, P, P, P, Int64, Int64) -> Int32
    let embeddingBackward: @convention(c) (C, P, P, P, Int64, Int64) -> Int32
    let smearForward: @convention(c) (C, P, P, P, P, P, Int64, Int64, Int64, Int32) -> Int32
    let smearBackward: @convention(c) (C, P, P, P, P, P, P, P, P, Int64, Int64, Int64, Int32) -> Int32
    let veForward: @convention(c) (C, P, P, P, P, P, P, Int64, Int64, Int64, Int64, Int32) -> Int32
    let veBackward: @convention(c) (C, P, P, P, P, P, P, P, P, P, Int64, Int64, Int64, Int64, Int32) -> Int32
    let scalarMixForward: @convention(c) (C, P, P, P, P, Int64, P, Int64, Int64) -> Int32
    let scalarMixBackward: @convention(c) (C, P, P, P, P, P, P, P, P, Int64, P, Int64, Int64) -> Int32
    let backoutForward: @convention(c) (C, P, P, P, P, Int64) -> Int32
    let backoutBackward: @convention(c) (C, P, P, P, P, P, Int64) -> Int32
    let relu2Forward: @convention(c) (C, P, P, Int64) -> Int32
    let relu2Backward: @convention(c) (C, P, P, P, Int64, Int32) -> Int32
    let softcapCrossEntropy: @convention(c) (C, P, P, P, Int64, Int64, Int64, Float, Float) -> Int32
    let adamw: @convention(c) (C, P, P, P, P, Int64, Float, Float, Float, Float, Float, Int32) -> Int32
    let muon: @convention(c) (C, P, P, P, P, Int64, Int64, Int64, Float, Float, Float, Float, Int32, Int32) -> Int32

    init(_ resolve: (String) throws -> UnsafeMutableRawPointer) throws {
        func f<T>(_ name: String) throws -> T { unsafeBitCast(try resolve(name), to: T.self) }
        malloc = try f("nc_malloc"); free = try f("nc_free")
        toDevice = try f("nc_copy_to_device"); toHost = try f("nc_copy_to_host"); onDevice = try f("nc_copy_on_device")
        zero = try f("nc_zero"); synchronize = try f("nc_synchronize"); memoryInfo = try f("nc_memory_info")
        matmul = try f("nc_matmul")
        rmsnormForward = try f("nc_rmsnorm_forward"); rmsnormBackward = try f("nc_rmsnorm_backward")
        rotaryNormForward = try f("nc_rotary_norm_forward"); rotaryNormBackward = try f("nc_rotary_norm_backward")
        attentionForward = try f("nc_attention_forward"); attentionBackward = try f("nc_attention_backward")
        attentionForwardBF16 = try f("nc_attention_forward_bf16"); attentionBackwardBF16 = try f("nc_attention_backward_bf16")
        embeddingForward = try f("nc_embedding_forward"); embeddingBackward = try f("nc_embedding_backward")
        smearForward = try f("nc_smear_forward"); smearBackward = try f("nc_smear_backward")
        veForward = try f("nc_value_embedding_forward"); veBackward = try f("nc_value_embedding_backward")
        scalarMixForward = try f("nc_scalar_mix_forward"); scalarMixBackward = try f("nc_scalar_mix_backward")
        backoutForward = try f("nc_backout_forward"); backoutBackward = try f("nc_backout_backward")
        relu2Forward = try f("nc_relu2_forward"); relu2Backward = try f("nc_relu2_backward")
        softcapCrossEntropy = try f("nc_softcap_cross_entropy")
        adamw = try f("nc_adamw_step"); muon = try f("nc_muon_step")
    }
}

/// Device memory owned by Swift: freed when the last reference goes.
public final class DeviceBuffer {
    public let pointer: DevicePointer
    public let bytes: Int
    let cuda: CUDALibrary

    init(_ cuda: CUDALibrary, bytes: Int) throws {
        var p: UnsafeMutableRawPointer? = nil
        try cuda.check(cuda.ops.malloc(cuda.ctx, &p, Int64(max(bytes, 4))), "allocating \(bytes) bytes on the GPU")
        pointer = p!
        self.bytes = bytes
        self.cuda = cuda
    }

    deinit { _ = cuda.ops.free(cuda.ctx, pointer) }

    /// The float at `index` floats into the buffer.
    public func floats(at index: Int = 0) -> DevicePointer { pointer + 4 * index }
}

extension CUDALibrary {
    public func allocate(floats n: Int) throws -> DeviceBuffer { try DeviceBuffer(self, bytes: 4 * n) }

    public func upload(_ values: [Float], to p: DevicePointer) throws {
        try values.withUnsafeBytes { try check(ops.toDevice(ctx, p, $0.baseAddress, Int64($0.count)), "copying to the GPU") }
    }

    public func upload(_ values: [Int32], to p: DevicePointer) throws {
        try values.withUnsafeBytes { try check(ops.toDevice(ctx, p, $0.baseAddress, Int64($0.count)), "copying to the GPU") }
    }

    public func upload(_ src: UnsafePointer<Float>, count: Int, to p: DevicePointer) throws {
        try check(ops.toDevice(ctx, p, UnsafeRawPointer(src), Int64(4 * count)), "copying to the GPU")
    }

    public func download(_ p: DevicePointer, count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try check(ops.toHost(ctx, $0.baseAddress, p, Int64($0.count)), "copying from the GPU") }
        return out
    }

    public func download(_ p: DevicePointer, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
        try check(ops.toHost(ctx, UnsafeMutableRawPointer(dst), p, Int64(4 * count)), "copying from the GPU")
    }

    public func copy(_ src: DevicePointer, to dst: DevicePointer, floats n: Int) throws {
        try check(ops.onDevice(ctx, dst, src, Int64(4 * n)), "copying on the GPU")
    }

    public func zero(_ p: DevicePointer, floats n: Int) throws { try check(ops.zero(ctx, p, Int64(4 * n)), "zeroing GPU memory") }

    public func synchronize() throws { try check(ops.synchronize(ctx), "waiting for the GPU") }

    /// (free, total, peak in use) device memory in bytes.
    public func memoryInfo() throws -> (free: Int64, total: Int64, peak: Int64) {
        var f: Int64 = 0, t: Int64 = 0, p: Int64 = 0
        try check(ops.memoryInfo(ctx, &f, &t, &p), "reading GPU memory")
        return (f, t, p)
    }

    /// c[m, n] = alpha op(a) op(b) + beta c, row-major; `bf16` rounds a and b to bf16 for the product.
    public func matmul(_ c: DevicePointer, _ a: DevicePointer, _ b: DevicePointer, m: Int, n: Int, k: Int,
                       transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0, bf16: Bool) throws {
        try check(ops.matmul(ctx, c, a, b, Int64(m), Int64(n), Int64(k), transA ? 1 : 0, transB ? 1 : 0, alpha, beta, bf16 ? 1 : 0),
                  "matmul \(m)x\(n)x\(k)\(transA ? " (A^T)" : "")")
    }
}
