import Foundation

/// A failed CUDA call: which op, and the library's reason.
public struct CUDAError: Error, CustomStringConvertible {
    public let description: String
}

/// A pointer to float32 values in device memory (what most of the ABI's arguments are).
public typealias DevicePointer = UnsafeMutablePointer<Float>

/// Device memory owned by Swift: freed when the last reference goes.
public final class DeviceBuffer {
    public let raw: UnsafeMutableRawPointer
    public let bytes: Int
    let cuda: CUDALibrary

    init(_ cuda: CUDALibrary, bytes: Int) throws {
        var p: UnsafeMutableRawPointer? = nil
        try cuda.check(cuda.api.nc_malloc(cuda.ctx, &p, Int64(max(bytes, 4))), "allocating \(bytes) bytes on the GPU")
        raw = p!
        self.bytes = bytes
        self.cuda = cuda
    }

    deinit { _ = cuda.api.nc_free(cuda.ctx, raw) }

    /// The buffer as float32 values (device memory: for the ABI's arguments, never dereferenced here).
    public var pointer: DevicePointer { raw.assumingMemoryBound(to: Float.self) }
    /// The buffer as int32 values (token ids, targets).
    public var ints: UnsafeMutablePointer<Int32> { raw.assumingMemoryBound(to: Int32.self) }

    /// The float at `index` floats into the buffer.
    public func floats(at index: Int = 0) -> DevicePointer { pointer + index }
}

extension CUDALibrary {
    public func allocate(floats n: Int) throws -> DeviceBuffer { try DeviceBuffer(self, bytes: 4 * n) }

    public func upload(_ values: [Float], to p: DevicePointer) throws {
        try values.withUnsafeBytes { try check(api.nc_copy_to_device(ctx, p, $0.baseAddress, Int64($0.count)), "copying to the GPU") }
    }

    public func upload(_ values: [Int32], to p: UnsafeMutablePointer<Int32>) throws {
        try values.withUnsafeBytes { try check(api.nc_copy_to_device(ctx, p, $0.baseAddress, Int64($0.count)), "copying to the GPU") }
    }

    public func upload(_ src: UnsafePointer<Float>, count: Int, to p: DevicePointer) throws {
        try check(api.nc_copy_to_device(ctx, p, UnsafeRawPointer(src), Int64(4 * count)), "copying to the GPU")
    }

    public func download(_ p: DevicePointer, count: Int) throws -> [Float] {
        var out = [Float](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try check(api.nc_copy_to_host(ctx, $0.baseAddress, p, Int64($0.count)), "copying from the GPU") }
        return out
    }

    public func download(_ p: DevicePointer, count: Int, into dst: UnsafeMutablePointer<Float>) throws {
        try check(api.nc_copy_to_host(ctx, UnsafeMutableRawPointer(dst), p, Int64(4 * count)), "copying from the GPU")
    }

    public func copy(_ src: DevicePointer, to dst: DevicePointer, floats n: Int) throws {
        try check(api.nc_copy_on_device(ctx, dst, src, Int64(4 * n)), "copying on the GPU")
    }

    public func zero(_ p: DevicePointer, floats n: Int) throws { try check(api.nc_zero(ctx, p, Int64(4 * n)), "zeroing GPU memory") }

    public func synchronize() throws { try check(api.nc_synchronize(ctx), "waiting for the GPU") }

    /// The caching allocator's bookkeeping (cuda/caching_allocator.h): bytes handed out now and at the most, bytes held
    /// from the device, and the device allocations made so far (a steady training step adds none).
    public func allocatorStats() throws -> (inUse: Int64, peak: Int64, reserved: Int64, deviceAllocations: Int64) {
        var u: Int64 = 0, p: Int64 = 0, r: Int64 = 0, n: Int64 = 0
        try check(api.nc_allocator_stats(ctx, &u, &p, &r, &n), "reading the allocator's statistics")
        return (u, p, r, n)
    }

    /// (free, total) device memory on the card, and the most bytes handed out at once (PyTorch's max_memory_allocated).
    public func memoryInfo() throws -> (free: Int64, total: Int64, peak: Int64) {
        var f: Int64 = 0, t: Int64 = 0, p: Int64 = 0
        try check(api.nc_memory_info(ctx, &f, &t, &p), "reading GPU memory")
        return (f, t, p)
    }

    /// c[m, n] = alpha op(a) op(b) + beta c, row-major; `bf16` rounds a and b to bf16 for the product.
    public func matmul(_ c: DevicePointer, _ a: DevicePointer, _ b: DevicePointer, m: Int, n: Int, k: Int,
                       transA: Bool = false, transB: Bool = false, alpha: Float = 1, beta: Float = 0, bf16: Bool) throws {
        try check(api.nc_matmul(ctx, c, a, b, Int64(m), Int64(n), Int64(k), transA ? 1 : 0, transB ? 1 : 0, alpha, beta, bf16 ? 1 : 0),
                  "matmul \(m)x\(n)x\(k)\(transA ? " (A^T)" : "")")
    }
}
