import Foundation
import XCTest
import NanoChat

/// Each attack must end as a reported failure while the evaluator (this process) keeps running.
final class SandboxTests: XCTestCase {
    let limits = Sandbox.Limits(timeout: 3, memoryBytes: 256 << 20, processes: 16, outputBytes: 1 << 20)

    func run(_ code: String) throws -> Sandbox.Result { try Sandbox.execute(code, limits: limits) }

    func testPassingAndFailingPrograms() throws {
        let ok = try run("def add(a, b):\n    return a + b\nassert add(2, 3) == 5\nprint('fine')")
        XCTAssertTrue(ok.success, ok.stderr)
        XCTAssertEqual(ok.stdout, "fine\n")
        XCTAssertNil(ok.error)
        let bad = try run("assert 1 + 1 == 3, 'arithmetic is broken'")
        XCTAssertFalse(bad.success)
        XCTAssertEqual(bad.error, "AssertionError: arithmetic is broken")
        // the code sees fresh globals: none of the guard's names
        let globals = try run("assert '_work' not in globals() and '_guarded_open' not in globals()")
        XCTAssertTrue(globals.success, globals.stderr)
    }

    func testInfiniteLoopIsKilled() throws {
        let start = Date()
        let r = try run("while True:\n    pass")
        XCTAssertTrue(r.timeout)
        XCTAssertFalse(r.success)
        XCTAssertEqual(r.error, "Execution timed out (process killed)")
        XCTAssertLessThan(Date().timeIntervalSince(start), 6)
    }

    func testForkBombIsContained() throws {
        // os.fork is disabled; posix.fork and ctypes reach the real fork, which RLIMIT_NPROC stops
        let viaOS = try run("import os\nwhile True:\n    os.fork()")
        XCTAssertFalse(viaOS.success)
        let viaCtypes = try run("""
        import ctypes
        libc = ctypes.CDLL(None)
        n = 0
        while True:
            pid = libc.fork()
            if pid < 0:
                raise SystemExit('fork refused after %d children' % n)
            if pid == 0:
                while True:
                    pass
            n += 1
        """)
        XCTAssertFalse(viaCtypes.success)
        let after = try run("print('still working')")
        XCTAssertTrue(after.success, "the sandbox must keep working after a fork bomb: \(after.stderr)")
    }

    func testMemoryBombFails() throws {
        let r = try run("x = bytearray(4 << 30)")
        XCTAssertFalse(r.success)
        XCTAssertTrue(r.memoryExceeded, r.stderr)
    }

    func testFilesOutsideItsDirectoryAreSafe() throws {
        let dir = try temporaryDirectory()
        let victim = dir.appendingPathComponent("victim.txt")
        try "precious".write(to: victim, atomically: true, encoding: .utf8)
        for attack in ["open(\(pyQuote(victim.path)), 'w').write('gone')",
                       "import os\nos.remove(\(pyQuote(victim.path)))",
                       "import posix\nposix.unlink(\(pyQuote(victim.path)))",
                       "import shutil\nshutil.rmtree(\(pyQuote(dir.path)))",
                       "open('/tmp/nanochat-sandbox-escape.txt', 'w').write('x')"] {
            let r = try run(attack)
            XCTAssertFalse(r.success, "this should have failed: \(attack)")
        }
        XCTAssertEqual(try String(contentsOf: victim, encoding: .utf8), "precious")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/nanochat-sandbox-escape.txt"))
        // inside its own directory it may write and read back
        let local = try run("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'")
        XCTAssertTrue(local.success, local.stderr)
    }

    func testNoNetwork() throws {
        // a real listener on this machine (the download tests' server): the sandboxed code must not reach it
        let server = try LocalHTTPServer { _ in (200, Array("reached".utf8), nil) }
        defer { server.stop() }
        let port = server.port
        let viaSocket = try run("import socket\nsocket.create_connection(('127.0.0.1', \(port)), timeout=1)")
        XCTAssertFalse(viaSocket.success)
        let viaModule = try run("""
        import _socket
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.settimeout(1)
        s.connect(('127.0.0.1', \(port)))
        """)
        XCTAssertFalse(viaModule.success, "raw _socket reached the host: isolation is \(Sandbox.networkIsolation)")
    }

    func testKillingItsParentFails() throws {
        let viaOS = try run("import os\nos.kill(os.getppid(), 9)")
        XCTAssertFalse(viaOS.success)
        // through ctypes only the operating system can refuse: it does once the child has dropped to `nobody`,
        // which it can only do when we run as root (unprivileged, the sandbox shares our user id)
        guard geteuid() == 0 else { throw XCTSkip("not root: the sandboxed child keeps our user id, so a ctypes kill is not refused") }
        let viaCtypes = try run("import ctypes, os\nassert ctypes.CDLL(None).kill(os.getppid(), 9) == 0, 'kill refused'")
        XCTAssertFalse(viaCtypes.success)
        XCTAssertTrue(try run("pass").success)  // we are still here
    }

    func testGigabytesOfOutputAreCut() throws {
        let start = Date()
        let r = try run("import sys\nwhile True:\n    sys.stdout.write('x' * 1000000)")
        XCTAssertFalse(r.success)
        XCTAssertLessThanOrEqual(r.stdout.utf8.count, limits.outputBytes)
        XCTAssertLessThan(Date().timeIntervalSince(start), 6)
    }

    func testMissingPythonIsAClearError() throws {
        setenv("NANOCHAT_PYTHON", "/nonexistent/python3", 1)
        defer { unsetenv("NANOCHAT_PYTHON") }
        XCTAssertThrowsError(try run("pass")) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/python3"), "\(error)")
        }
    }

    func pyQuote(_ s: String) -> String { "'" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'") + "'" }
}
