import Foundation
import XCTest
import NanoChat

final class CoreEvalTests: XCTestCase {
    /// A bundle in upstream's layout, core.yaml in DCLM's style (dash on its own line, quoted delimiter).
    func makeBundle(_ dir: URL, lines: [String: String] = [:]) throws {
        let yaml = """
        icl_tasks:
        -
          label: tiny_mc
          dataset_uri: a/mc.jsonl
          num_fewshot: [1]
          icl_task_type: multiple_choice
          continuation_delimiter: "\\nAnswer: "  # a comment
        - label: tiny_lm
          dataset_uri: b/lm.jsonl
          num_fewshot: [0]
          icl_task_type: language_modeling
        """
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("eval_data/a"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("eval_data/b"), withIntermediateDirectories: true)
        try yaml.write(to: dir.appendingPathComponent("core.yaml"), atomically: true, encoding: .utf8)
        try "Eval Task,Random baseline,Description\ntiny_mc,25,\"a task, with a comma\"\ntiny_lm,0,x\n"
            .write(to: dir.appendingPathComponent("eval_meta_data.csv"), atomically: true, encoding: .utf8)
        try (lines["mc"] ?? "{\"query\": \"Q1\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n{\"query\": \"Q2\", \"choices\": [\"c\", \"d\"], \"gold\": 0}\n")
            .write(to: dir.appendingPathComponent("eval_data/a/mc.jsonl"), atomically: true, encoding: .utf8)
        try (lines["lm"] ?? "{\"context\": \"Once upon a time  \", \"continuation\": \" there\"}\n")
            .write(to: dir.appendingPathComponent("eval_data/b/lm.jsonl"), atomically: true, encoding: .utf8)
    }

    func testReadsUpstreamLayout() throws {
        let dir = try temporaryDirectory()
        try makeBundle(dir)
        let bundle = try EvalBundle(directory: dir)
        XCTAssertEqual(bundle.tasks.map(\.label), ["tiny_mc", "tiny_lm"])
        XCTAssertEqual(bundle.tasks[0].delimiter, "\nAnswer: ")
        XCTAssertEqual(bundle.tasks[0].fewShot, 1)
        XCTAssertEqual(bundle.tasks[0].randomBaseline, 25)
        XCTAssertEqual(bundle.tasks[1].delimiter, " ")
        XCTAssertEqual(try bundle.items(for: bundle.tasks[0]).count, 2)
    }

    func testBadInputNamesFileAndLine() throws {
        let cases: [(String, String, String)] = [
            ("mc", "{\"query\": \"Q1\", \"choices\": [\"a\", \"b\"], \"gold\": 1}\n{not json\n", "mc.jsonl line 2: not a JSON object"),
            ("mc", "{\"query\": \"Q1\", \"choices\": [], \"gold\": 0}\n", "mc.jsonl line 1: a multiple_choice item needs `choices`"),
            ("mc", "{\"query\": \"Q1\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n", "mc.jsonl line 1: gold index 2 is out of range for 2 choices"),
            ("lm", "{\"context\": \"x\"}\n", "lm.jsonl line 1: a language_modeling item needs"),
        ]
        for (file, text, expected) in cases {
            let dir = try temporaryDirectory()
            try makeBundle(dir, lines: [file: text])
            let bundle = try EvalBundle(directory: dir)
            let task = bundle.tasks[file == "mc" ? 0 : 1]
            XCTAssertThrowsError(try bundle.items(for: task)) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
        let dir = try temporaryDirectory()
        try makeBundle(dir)
        try FileManager.default.removeItem(at: dir.appendingPathComponent("eval_data/b/lm.jsonl"))
        let bundle = try EvalBundle(directory: dir)
        XCTAssertThrowsError(try bundle.items(for: bundle.tasks[1])) { XCTAssertTrue("\($0)".contains("lm.jsonl"), "\($0)") }
        XCTAssertThrowsError(try EvalBundle(directory: dir.appendingPathComponent("nowhere"))) {
            XCTAssertTrue("\($0)".contains("nanochat dataset tasks"), "\($0)")
        }
    }

    func testOnlineBundleFromALocalServer() throws {
        // a zip holding eval_bundle/, served by a local server that fails the first request
        let src = try temporaryDirectory()
        try makeBundle(src.appendingPathComponent("eval_bundle"))
        let zip = src.appendingPathComponent("eval_bundle.zip")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["zip", "-q", "-r", zip.path, "eval_bundle"]
        p.currentDirectoryURL = src
        try p.run(); p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw XCTSkip("no zip command to build the test archive") }
        let body = [UInt8](try Data(contentsOf: zip))
        let lock = NSLock()
        nonisolated(unsafe) var hits = 0
        let server = try LocalHTTPServer { path in
            lock.lock(); hits += 1; let n = hits; lock.unlock()
            guard path == "/eval_bundle.zip" else { return (404, [], nil) }
            return n == 1 ? (200, body, body.count / 2) : (200, body, nil)  // the first transfer drops mid-file
        }
        defer { server.stop() }
        let dest = try temporaryDirectory().appendingPathComponent("eval_bundle")
        try EvalBundleDownload.download(from: "http://127.0.0.1:\(server.port)/eval_bundle.zip", to: dest, backoff: 0.01) { _ in }
        let bundle = try EvalBundle(directory: dest)
        XCTAssertEqual(bundle.tasks.map(\.label), ["tiny_mc", "tiny_lm"])
        XCTAssertEqual(hits, 2)
        // a URL that serves something else is refused, and nothing is replaced
        XCTAssertThrowsError(try EvalBundleDownload.download(from: "http://127.0.0.1:\(server.port)/missing.zip", to: dest,
                                                             attempts: 2, backoff: 0.01) { _ in })
        XCTAssertEqual(try EvalBundle(directory: dest).tasks.count, 2)
    }

    /// Upstream's templates: shots separated by a blank line; for language modelling the context is stripped and the
    /// prompt without the continuation loses the delimiter's trailing space.
    func testPromptTemplates() {
        let lm = CoreEval.prompts(.languageModeling(context: "Once upon a time  ", continuation: " there"),
                                  shots: [.languageModeling(context: " Shot ", continuation: "one")], delimiter: " ")
        XCTAssertEqual(lm, ["Shot one\n\nOnce upon a time", "Shot one\n\nOnce upon a time  there"])
        let mc = CoreEval.prompts(.multipleChoice(query: "Q", choices: ["x", "y"], gold: 0),
                                  shots: [.multipleChoice(query: "S", choices: ["a", "b"], gold: 1)], delimiter: "\nAnswer: ")
        XCTAssertEqual(mc, ["S\nAnswer: b\n\nQ\nAnswer: x", "S\nAnswer: b\n\nQ\nAnswer: y"])
        let schema = CoreEval.prompts(.schema(contextOptions: ["A went", "B went"], continuation: "home.", gold: 1), shots: [], delimiter: " ")
        XCTAssertEqual(schema, ["A went home.", "B went home."])
    }
}
