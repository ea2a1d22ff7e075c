import Foundation
import NanoTensor
import XCTest

/// The CUDA library is optional: where it is missing or cannot open a GPU, loading it says why and what to do.
final class DeviceTests: XCTestCase {
    func testMissingLibraryIsAClearError() {
        let path = "/nonexistent/\(GPU.fileName)"
        XCTAssertThrowsError(try GPU.load(path: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("CUDA backend unavailable") && text.contains(path) && text.contains("cuda/build.sh"), text)
        }
    }

    func testAFileThatIsNotTheLibraryIsRefused() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-\(UUID().uuidString).so")
        try Data("not a shared library".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try GPU.load(path: url.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("cannot load") && text.contains(url.path), text)
        }
    }
}

/// The typed tables of the libraries loaded at run time (Sources/CNanoABI): every function the headers declare is in
/// its table, a library that lacks one is refused by name, and the host stand-in of the CUDA ABI loads in full.
final class RuntimeABITests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func read(_ path: String) throws -> String { try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8) }

    /// The function names a header declares (`int nc_x(`, `const char *nc_x(`, `void nc_x(` at the start of a line).
    func declared(in header: String, prefix: String) throws -> Set<String> {
        let text = try read(header)
        let regex = try NSRegularExpression(pattern: "^(?:int|void|const char \\*)\\s*(\(prefix)\\w+)\\(", options: [.anchorsMatchLines])
        return Set(regex.matches(in: text, range: NSRange(text.startIndex..., in: text)).map { String(text[Range($0.range(at: 1), in: text)!]) })
    }

    /// The names in a CNanoABI list macro (`X(nc_x)` entries).
    func listed(_ macro: String) throws -> Set<String> {
        let text = try read("Sources/CNanoABI/include/CNanoABI.h")
        let start = text.range(of: "#define \(macro)(X)")!.upperBound
        let body = text[start...].prefix { $0 != "#" }
        let regex = try NSRegularExpression(pattern: "X\\((\\w+)\\)")
        let s = String(body)
        return Set(regex.matches(in: s, range: NSRange(s.startIndex..., in: s)).map { String(s[Range($0.range(at: 1), in: s)!]) })
    }

    func testEveryDeclaredFunctionIsInItsTable() throws {
        let cuda = try declared(in: "cuda/nanochat_cuda.h", prefix: "nc_"), mpi = try declared(in: "mpi/nanochat_mpi.h", prefix: "ncmpi_")
        XCTAssertGreaterThan(cuda.count, 30)
        XCTAssertGreaterThan(mpi.count, 10)
        XCTAssertEqual(try listed("NC_CUDA_FUNCTIONS"), cuda, "cuda/nanochat_cuda.h against NC_CUDA_FUNCTIONS")
        XCTAssertEqual(try listed("NC_MPI_FUNCTIONS"), mpi, "mpi/nanochat_mpi.h against NC_MPI_FUNCTIONS")
    }

    /// Compiles C sources into a shared library in a temporary folder (the C compiler every Swift toolchain has).
    func sharedLibrary(_ sources: [String], named name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-abi-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let out = dir.appendingPathComponent(name)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["cc", "-O1", "-shared", "-fPIC", "-I", root.appendingPathComponent("cuda").path] + sources + ["-o", out.path, "-lm"]
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("no C compiler to build a test library with") }
        return out
    }

    func testALibraryMissingAFunctionIsRefusedByName() throws {
        let src = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-abi-\(UUID().uuidString).c")
        try "int nc_create(void **ctx, int device) { (void)ctx; (void)device; return 0; }\n".write(to: src, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: src) }
        let lib = try sharedLibrary([src.path], named: GPU.fileName)
        XCTAssertThrowsError(try GPU.load(path: lib.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("has no nc_destroy") && text.contains("built from other sources") && text.contains("cuda/build.sh"), text)
        }
    }

    func testTheHostStandInLoadsThroughTheTable() throws {
        let lib = try sharedLibrary([root.appendingPathComponent("cuda/host_emulation.c").path], named: GPU.fileName)
        let gpu = try GPU.load(path: lib.path, bf16: false)
        XCTAssertEqual(gpu.path, lib.path)
        XCTAssertTrue(gpu.name.contains("host emulation"), gpu.name)
        // a product through the table: [1 2; 3 4] [5 6]^T = [17; 39], made by the op `linear` on device tensors
        let a = Tensor(shape: [2, 2], values: [1, 2, 3, 4]).to(.gpu(gpu)), w = Tensor(shape: [1, 2], values: [5, 6]).to(.gpu(gpu))
        let c = Tensor.withoutGrad { linear(a, w) }
        XCTAssertTrue(c.gpu === gpu, "an op's output lives beside its inputs")
        XCTAssertEqual(c.hostArray(), [17, 39])
        XCTAssertEqual(gpu.uploads, 2, "the two inputs (copies are counted)")
        XCTAssertEqual(gpu.downloads, 1)
    }

    /// The caching allocator (cuda/caching_allocator.h, the same code on the GPU): freed blocks are handed out again,
    /// so a second round of the same allocations makes no device allocation; the peak counts bytes handed out.
    func testTheCachingAllocatorReusesFreedBlocks() throws {
        let lib = try sharedLibrary([root.appendingPathComponent("cuda/host_emulation.c").path], named: GPU.fileName)
        let gpu = try GPU.load(path: lib.path)
        let base = try gpu.allocatorStats()  // the GPU's own constant
        func round() throws {
            let a = Tensor(shape: [1000], on: gpu), b = Tensor(shape: [300], on: gpu)  // 4000 -> 4096 bytes, 1200 -> 1536
            XCTAssertEqual(try gpu.allocatorStats().inUse - base.inUse, 4096 + 1536)
            _ = (a, b)
        }
        try round()  // both freed when the round's tensors go
        let first = try gpu.allocatorStats()
        XCTAssertEqual(first.inUse, base.inUse)
        XCTAssertEqual(first.deviceAllocations - base.deviceAllocations, 2)
        XCTAssertEqual(first.reserved - base.reserved, 4096 + 1536, "the freed blocks stay cached")
        try round()
        let second = try gpu.allocatorStats()
        XCTAssertEqual(second.deviceAllocations - base.deviceAllocations, 2, "the second round reused the cached blocks")
        XCTAssertEqual(second.peak - base.inUse, 4096 + 1536)
        XCTAssertEqual(try gpu.memoryInfo().peak, second.peak, "the reported peak is the allocator's")
        // only a block of the request's (rounded) size is reused: a smaller request does not take a larger block
        let small = Tensor(shape: [200], on: gpu)  // 800 -> 1024 bytes: the cached 1536-byte block stays for its size
        XCTAssertEqual(try gpu.allocatorStats().deviceAllocations - base.deviceAllocations, 3)
        let same = Tensor(shape: [380], on: gpu)  // 1520 -> 1536 bytes: the cached block
        XCTAssertEqual(try gpu.allocatorStats().deviceAllocations - base.deviceAllocations, 3)
        _ = (small, same)
    }
}
