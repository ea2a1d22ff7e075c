import Foundation
import XCTest
import NanoChat

final class ChatTasksTests: XCTestCase {
    /// SpellingBee problems equal upstream's, draw for draw (Tests/Fixtures/spellingbee_test.json).
    func testSpellingBeeMatchesUpstream() throws {
        let obj = try Fixtures.json("spellingbee_test.json")
        let words = try XCTUnwrap(obj["words"] as? [String])
        for ex in try XCTUnwrap(obj["examples"] as? [[String: Any]]) {
            let index = try XCTUnwrap(ex["index"] as? Int)
            let problem = SpellingBee.problem(index: index, split: "test", words: words)
            let messages = problem.conversation.messages
            XCTAssertEqual(messages.count, 2)
            guard case .text(let user) = messages[0].content else { return XCTFail("user content should be text") }
            XCTAssertEqual(user, ex["user"] as? String, "example \(index)")
            guard case .parts(let parts) = messages[1].content else { return XCTFail("assistant content should be parts") }
            let expected = try XCTUnwrap(ex["parts"] as? [[String: String]])
            XCTAssertEqual(parts.map(\.type), expected.map { $0["type"]! }, "example \(index)")
            XCTAssertEqual(parts.map(\.text), expected.map { $0["text"]! }, "example \(index)")
            XCTAssertEqual(problem.reference, ChatTasks.extractAnswer(expected.last!["text"]!))
        }
    }

    func testGSM8KPartsAndAnswers() {
        let parts = ChatTasks.gsm8kParts("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs.\n#### 18")
        XCTAssertEqual(parts.map(\.type), ["text", "python", "python_output", "text"])
        XCTAssertEqual(parts[1].text, "16-3-4")
        XCTAssertEqual(parts[2].text, "9")
        XCTAssertEqual(ChatTasks.extractAnswer("so #### 1,234 dollars"), "1234")
        XCTAssertEqual(ChatTasks.extractAnswer("#### -3.5"), "-3.5")
        XCTAssertNil(ChatTasks.extractAnswer("the answer is 18"))
    }

    func testHumanEvalProgramAndMCPrompt() {
        let program = ChatTasks.humanEvalProgram(prompt: "from typing import List\n\ndef f(x: List[int]) -> int:\n",
                                                 completion: "Here:\n```python\ndef f(x):\n    return sum(x)\n```\nDone.",
                                                 test: "def check(c):\n    assert c([1, 2]) == 3", entryPoint: "f")
        XCTAssertEqual(program, "from typing import List\n\ndef f(x):\n    return sum(x)\n\ndef check(c):\n    assert c([1, 2]) == 3\ncheck(f)")
        XCTAssertEqual(ChatTasks.renderMC(question: "2+2?", letters: ["A", "B"], choices: ["4", "5"]),
                       "Multiple Choice question: 2+2?\n- 4=A\n- 5=B\n\nRespond only with the letter of the correct answer.")
    }
}

final class ArithmeticProblemsTests: XCTestCase {
    /// Every calculator span computes what it claims (checked with the engine's own calculator), the `####` answer is
    /// the last result, and the same seed gives the same problems.
    func testWorkedAnswersAreRightAndDeterministic() {
        for level in 1...3 {
            for i in 0..<300 {
                let p = ArithmeticProblems.problem(index: i, level: level, seed: 7)
                XCTAssertEqual(p, ArithmeticProblems.problem(index: i, level: level, seed: 7))
                let parts = ChatTasks.gsm8kParts(p.solution)
                let calls = parts.filter { $0.type == "python" }
                let outputs = parts.filter { $0.type == "python_output" }
                XCTAssertEqual(calls.count, level, "level \(level) problem \(i) should take \(level) steps: \(p.solution)")
                for (c, o) in zip(calls, outputs) {
                    XCTAssertEqual(Calculator.evaluate(c.text), o.text, "\(c.text) in \(p.solution)")
                }
                XCTAssertEqual(ChatTasks.extractAnswer(p.solution), String(p.answer))
                XCTAssertEqual(outputs.last?.text, String(p.answer))
                XCTAssertGreaterThanOrEqual(p.answer, 0)
            }
        }
        let a = ArithmeticProblems.examples(count: 9, seed: 1, idPrefix: "arith")
        let b = ArithmeticProblems.examples(count: 9, seed: 2, idPrefix: "arith")
        XCTAssertNotEqual(a.map(\.question), b.map(\.question))
        XCTAssertEqual(Set(a.map(\.question)).count, 9)
    }
}
