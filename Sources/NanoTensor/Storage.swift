/// A tensor's float32 buffer: in host memory, recycled through a per-size pool (a training step that repeats the
/// same shapes allocates nothing once the first step has warmed the pool up), or in a GPU's memory, from its caching
/// allocator (which does the same there).
public final class Storage {
    /// Host memory, or device memory when `gpu` is set (then only the GPU's kernels may read it).
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    public let gpu: GPU?

    init(count: Int) {
        self.count = count
        pointer = BufferPool.take(count)
        gpu = nil
    }

    init(count: Int, on gpu: GPU) {
        self.count = count
        pointer = gpu.allocate(floats: count)
        self.gpu = gpu
    }

    deinit {
        if let gpu { gpu.free(pointer) } else { BufferPool.give(pointer, count) }
    }
}

/// Free lists keyed by element count. Guarded by a lock: tensors may be created on worker threads.
public enum BufferPool {
    nonisolated(unsafe) static var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    nonisolated(unsafe) static var lock = Mutex()
    /// Buffers handed out by malloc (not from the free lists): a steady state shows no growth here.
    nonisolated(unsafe) public private(set) static var freshAllocations = 0
    nonisolated(unsafe) public private(set) static var bytesHeld = 0
    /// Bytes sitting in the free lists, and the most they may hold: a training step reuses the same sizes, but a
    /// chat or server session sees ever new prompt lengths, and those buffers must not pile up forever.
    nonisolated(unsafe) public private(set) static var bytesPooled = 0
    nonisolated(unsafe) public static var poolLimitBytes = 4 << 30

    static func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        lock.lock()
        if var list = free[count], let p = list.popLast() {
            free[count] = list
            bytesPooled -= count * 4
            lock.unlock()
            return p
        }
        freshAllocations += 1
        bytesHeld += count * 4
        lock.unlock()
        return .allocate(capacity: max(count, 1))
    }

    static func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        lock.lock()
        if bytesPooled + count * 4 > poolLimitBytes {
            bytesHeld -= count * 4
            lock.unlock()
            p.deallocate()
            return
        }
        free[count, default: []].append(p)
        bytesPooled += count * 4
        lock.unlock()
    }

    /// Returns every pooled buffer to the system (e.g. between benchmarks of different sizes).
    public static func drain() {
        lock.lock()
        for (count, list) in free {
            for p in list { p.deallocate() }
            bytesHeld -= count * 4 * list.count
        }
        free = [:]
        bytesPooled = 0
        lock.unlock()
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
