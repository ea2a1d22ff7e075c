import Foundation
import NanoChat
import XCTest

final class TaskDataTests: XCTestCase {
    func testShareGPTRecoveryFromATruncatedArray() throws {
        let json = """
        [{"id": "a", "conversations": [{"from": "human", "value": "Hi {there} \\"x\\""}, {"from": "gpt", "value": "Hello!"}]},
         {"id": "b", "conversations": [{"from": "gpt", "value": "orphan"}, {"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}, {"from": "human", "value": "dangling"}]},
         {"id": "c", "conversations": [{"from": "human", "value": "only one"}]},
         {"id": "d", "conversations": [{"from": "human", "value": "cut off mid-str
        """
        let ex = try TaskData.recoverShareGPT(Array(json.utf8))
        XCTAssertEqual(ex.map(\.id), ["sharegpt-a", "sharegpt-b"])
        XCTAssertEqual(ex[0].messages?.map { $0["role"]! }, ["user", "assistant"])
        XCTAssertEqual(ex[0].messages?[0]["content"], "Hi {there} \"x\"")
        XCTAssertEqual(ex[1].messages?.map { $0["content"]! }, ["Q", "A"], "starts with the user, ends with the assistant")
    }

    func testTaskFilesRoundTrip() throws {
        let dir = try temporaryDirectory()
        var mc = TaskExample(id: "q1", kind: "mc")
        mc.question = "2+2?"
        mc.choices = ["3", "4"]
        mc.answer = 1
        var chat = TaskExample(id: "c1", kind: "chat")
        chat.messages = [["role": "user", "content": "hi"], ["role": "assistant", "content": "hello"]]
        try TaskData.write([mc, chat], task: "demo", split: "test", to: dir)
        XCTAssertEqual(try TaskData.read(task: "demo", split: "test", root: dir), [mc, chat])
        try Data("{\"id\": 3}\n".utf8).write(to: dir.appendingPathComponent("demo/bad.jsonl"))
        XCTAssertThrowsError(try TaskData.read(task: "demo", split: "bad", root: dir)) { e in
            XCTAssertTrue("\(e)".contains("bad.jsonl line 1"), "\(e)")
        }
    }
}
