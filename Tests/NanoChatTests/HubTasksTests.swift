import Foundation
import NanoChat
import XCTest

/// The online task path against a local stand-in for the HuggingFace parquet API.
final class HubTasksTests: XCTestCase {
    func testFetchConvertAndManifest() throws {
        let src = try temporaryDirectory()
        let q = (0..<30).map { Array("Question \($0): what is \($0) + 1?".utf8) }
        let a = (0..<30).map { Array("It is <<\($0)+1=\($0 + 1)>>\($0 + 1).\n#### \($0 + 1)".utf8) }
        try ParquetWriter.writeStringTable([("question", Array(q[0..<20])), ("answer", Array(a[0..<20]))],
                                           to: src.appendingPathComponent("p0.parquet"), rowGroupSize: 8)
        try ParquetWriter.writeStringTable([("question", Array(q[20...])), ("answer", Array(a[20...]))],
                                           to: src.appendingPathComponent("p1.parquet"))
        let files = [try Data(contentsOf: src.appendingPathComponent("p0.parquet")), try Data(contentsOf: src.appendingPathComponent("p1.parquet"))]
        var port: UInt16 = 0
        let lock = NSLock()
        var requests: [String] = []
        let server = try LocalHTTPServer { path in
            lock.lock(); requests.append(path); lock.unlock()
            if path == "/api/datasets/openai/gsm8k/parquet/main/test" {
                return (200, Array("[\"http://127.0.0.1:\(port)/files/0.parquet\", \"http://127.0.0.1:\(port)/files/1.parquet\"]".utf8), nil)
            }
            if path == "/files/0.parquet" { return (200, [UInt8](files[0]), nil) }
            if path == "/files/1.parquet" { return (200, [UInt8](files[1]), nil) }
            return (404, [], nil)
        }
        port = server.port
        defer { server.stop() }
        let root = try temporaryDirectory()
        let paths = try HubTasks.fetch(repo: "openai/gsm8k", subset: "main", split: "test", hub: "http://127.0.0.1:\(port)", root: root)
        XCTAssertEqual(paths.map(\.lastPathComponent), ["00000.parquet", "00001.parquet"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: root.appendingPathComponent("openai--gsm8k/main/test/manifest.json").path))
        let ex = try HubTasks.rows(paths).enumerated().compactMap { HubTasks.gsm8k($1, $0) }
        XCTAssertEqual(ex.count, 30)
        XCTAssertEqual(ex[25].question, "Question 25: what is 25 + 1?")
        XCTAssertTrue(ex[25].solution!.hasSuffix("#### 26"))
        // a second fetch reads the manifest and asks the server nothing
        lock.lock(); requests = []; lock.unlock()
        _ = try HubTasks.fetch(repo: "openai/gsm8k", subset: "main", split: "test", hub: "http://127.0.0.1:\(port)", root: root)
        XCTAssertEqual(requests, [])
        // an unknown split is an error naming the URL
        XCTAssertThrowsError(try HubTasks.fetch(repo: "openai/gsm8k", subset: "main", split: "nope", hub: "http://127.0.0.1:\(port)", root: root)) {
            XCTAssertTrue("\($0)".contains("404"), "\($0)")
        }
    }

    func testRowConverters() {
        func s(_ x: String) -> ParquetValue { .bytes(Array(x.utf8)) }
        let arc: [String: ParquetValue] = [
            "id": s("Mercury_1"), "question": s("Which?"), "answerKey": s("C"),
            "choices": .group(["text": .list([s("a"), s("b"), s("c")]), "label": .list([s("A"), s("B"), s("C")])]),
        ]
        let e = HubTasks.arc(arc, 0)!
        XCTAssertEqual(e.answer, 2)
        XCTAssertEqual(e.choices!, ["a", "b", "c"])
        XCTAssertEqual(e.id, "Mercury_1")
        let mmlu: [String: ParquetValue] = ["question": s("Q"), "subject": s("law"), "choices": .list([s("1"), s("2")]), "answer": .int(1)]
        XCTAssertEqual(HubTasks.mmlu(mmlu, 3)?.answer, 1)
        XCTAssertEqual(HubTasks.mmlu(mmlu, 3)?.subject, "law")
        let chat: [String: ParquetValue] = ["messages": .list([.group(["role": s("user"), "content": s("hi")]),
                                                               .group(["role": s("assistant"), "content": s("yo")])])]
        XCTAssertEqual(HubTasks.chat(chat, 0)?.messages?.count, 2)
        XCTAssertNil(HubTasks.arc(["question": s("no choices")], 0))
    }
}
