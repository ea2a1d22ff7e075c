import Foundation
import XCTest

/// Golden files from upstream's PyTorch code, kept in the repository under Tests/Fixtures (how each was made:
/// Tests/Fixtures/README.md). `NANOCHAT_FIXTURES` may point at another folder in the same format.
enum Fixtures {
    static let dir: URL = {
        if let s = ProcessInfo.processInfo.environment["NANOCHAT_FIXTURES"], !s.isEmpty { return URL(fileURLWithPath: s) }
        // this file is Tests/NanoChatTests/Fixtures.swift
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures")
    }()

    /// The fixture's URL; a missing file fails the calling test (with the path) instead of crashing the run.
    static func url(_ name: String) throws -> URL {
        let u = dir.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: u.path) else {
            throw FixtureError(message: "fixture \(u.path) is missing: the repository's Tests/Fixtures holds it (or set NANOCHAT_FIXTURES to a folder that does)")
        }
        return u
    }

    static func json(_ name: String) throws -> [String: Any] {
        guard let obj = try JSONSerialization.jsonObject(with: Data(contentsOf: url(name))) as? [String: Any] else {
            throw FixtureError(message: "fixture \(name) is not a JSON object")
        }
        return obj
    }

    static func text(_ name: String) throws -> String { try String(contentsOf: url(name), encoding: .utf8) }
}

/// Thrown by the fixture helpers: XCTest reports it as the test's failure and the other tests still run.
struct FixtureError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A value that the tests of a class share, computed once; a failure to compute it fails each test that asks
/// (with the reason) instead of stopping the process as `try!` in a static initialiser would.
final class Shared<Value> {
    private let make: () throws -> Value
    private var result: Result<Value, Error>?
    private let lock = NSLock()
    init(_ make: @escaping () throws -> Value) { self.make = make }
    func get() throws -> Value {
        lock.lock(); defer { lock.unlock() }
        if result == nil { result = Result { try make() } }
        return try result!.get()
    }
}

func temporaryDirectory() throws -> URL {
    let u = FileManager.default.temporaryDirectory.appendingPathComponent("nanochat-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
    return u
}
