import Foundation
import NanoCUDA
import XCTest

/// The CUDA library is optional: where it is missing or cannot open a GPU, loading it says why and what to do.
final class CUDALibraryTests: XCTestCase {
    func testMissingLibraryIsAClearError() {
        let path = "/nonexistent/\(CUDALibrary.fileName)"
        XCTAssertThrowsError(try CUDALibrary.load(path: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("CUDA backend unavailable") && text.contains(path) && text.contains("cuda/build.sh"), text)
        }
    }

    func testAFileThatIsNotTheLibraryIsRefused() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-\(UUID().uuidString).so")
        try Data("not a shared library".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertThrowsError(try CUDALibrary.load(path: url.path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("cannot load") && text.contains(url.path), text)
        }
    }
}
