import Foundation
import XCTest

/// Golden files from upstream, in ../shared/fixtures beside the repository (or $NANOCHAT_FIXTURES).
enum Fixtures {
    static let dir: URL = {
        if let s = ProcessInfo.processInfo.environment["NANOCHAT_FIXTURES"] { return URL(fileURLWithPath: s) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return root.deletingLastPathComponent().appendingPathComponent("shared/fixtures")
    }()

    static func url(_ name: String) throws -> URL {
        let u = dir.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: u.path) else {
            XCTFail("fixture \(u.path) is missing: clone the repository with ../shared beside it or set NANOCHAT_FIXTURES")
            throw XCTSkip("missing fixture")
        }
        return u
    }

    static func json(_ name: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: url(name))) as! [String: Any]
    }
}

func temporaryDirectory() -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-test-\(UUID().uuidString)")
    try! FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}
