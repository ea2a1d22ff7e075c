import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs untrusted Python (HumanEval completions and their tests) in a separate `python3` process, contained:
/// - wall-clock limit (the whole process group is killed), CPU-time limit as a backstop;
/// - address-space, data and stack limits (upstream's 256 MiB): a memory bomb dies with MemoryError;
/// - a process limit (RLIMIT_NPROC, enforced because the child drops to user `nobody` when we are root):
///   a fork bomb gets EAGAIN; `fork`, `kill`, `system` and upstream's other destructive functions are disabled;
/// - a private temporary working directory, deleted afterwards; writes outside it are refused (by the guard, and
///   by file permissions once the child is `nobody`); a file-size limit caps what it can write, stdout included;
/// - no network: a new, empty network namespace (`unshare --net`) where the system allows one, and in every case
///   a guard that refuses to create sockets;
/// - a scrubbed environment (`PATH=/usr/bin:/bin`), stdin from /dev/null, isolated mode (`python3 -I`).
/// Like upstream's it is a guard against accidents and careless code, not a proof against a determined attacker.
public enum Sandbox {
    public struct Limits: Sendable {
        public var timeout: Double
        public var memoryBytes: Int
        public var processes: Int
        public var outputBytes: Int
        public init(timeout: Double = 5, memoryBytes: Int = 256 << 20, processes: Int = 16, outputBytes: Int = 1 << 20) {
            self.timeout = timeout; self.memoryBytes = memoryBytes; self.processes = processes; self.outputBytes = outputBytes
        }
    }

    public struct Result: Sendable, Equatable {
        public var success: Bool
        public var stdout: String
        public var stderr: String
        /// The last non-empty stderr line, "Execution failed", or the timeout message; nil on success.
        public var error: String?
        public var timeout: Bool
        public var memoryExceeded: Bool
    }

    /// The interpreter: $NANOCHAT_PYTHON, else python3 on PATH.
    public static func python() throws -> String {
        if let p = ProcessInfo.processInfo.environment["NANOCHAT_PYTHON"], !p.isEmpty {
            guard access(p, X_OK) == 0 else { throw NanoChatError("NANOCHAT_PYTHON=\(p) is not an executable python3; point it at one, or unset it to use python3 from PATH") }
            return p
        }
        // the system's interpreter first: the child drops to `nobody`, who must be able to read its standard library
        for dir in ["/usr/bin"] + (ProcessInfo.processInfo.environment["PATH"] ?? "/bin").split(separator: ":").map(String.init) {
            let candidate = "\(dir)/python3"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw NanoChatError("running HumanEval's tests needs python3, and none was found on PATH: install it (Debian: apt-get install python3) or set NANOCHAT_PYTHON")
    }

    /// Whether `unshare --net` works here (root, or unprivileged user namespaces); probed once.
    static let networkNamespace: [String]? = {
        for args in [["--net"], ["--net", "--map-root-user"]] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            p.arguments = args + ["/bin/true"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return nil }
            p.waitUntilExit()
            if p.terminationStatus == 0 { return args }
        }
        return nil
    }()

    /// How network access is cut, for logs and tests.
    public static var networkIsolation: String {
        networkNamespace != nil ? "a private network namespace and a socket guard" : "a socket guard (no network namespace available)"
    }

    public static func execute(_ code: String, limits: Limits = Limits()) throws -> Result {
        let python = try python()
        let fm = FileManager.default
        let root = fm.temporaryDirectory.appendingPathComponent("nanochat-sandbox-\(UUID().uuidString)")
        let work = root.appendingPathComponent("work", isDirectory: true)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: root) }
        let nobody: UInt32 = 65534
        if geteuid() == 0 { _ = chown(work.path, nobody, nobody) }  // the child runs as nobody and works here
        let outURL = root.appendingPathComponent("stdout"), errURL = root.appendingPathComponent("stderr")
        _ = fm.createFile(atPath: outURL.path, contents: nil)
        _ = fm.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)

        let p = Process()
        var args = ["-I", "-c", guardProgram(code: code, limits: limits, workDirectory: work.path)]
        if let ns = networkNamespace {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
            args = ns + ["--", python] + args
        } else {
            p.executableURL = URL(fileURLWithPath: python)
        }
        p.arguments = args
        p.currentDirectoryURL = work
        p.environment = ["PATH": "/usr/bin:/bin"]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = err
        do { try p.run() } catch { throw NanoChatError("cannot start \(python): \(error)") }
        let pid = p.processIdentifier
        let deadline = Date().addingTimeInterval(limits.timeout)
        var timedOut = false
        while p.isRunning {
            if Date() >= deadline { timedOut = true; break }
            usleep(2_000)
        }
        if timedOut {
            kill(-pid, SIGKILL)  // the guard made the child a process-group leader: this reaches every descendant
            kill(pid, SIGKILL)
            p.waitUntilExit()
        }
        kill(-pid, SIGKILL)  // whatever it left behind (a forked child) goes too
        try? out.close(); try? err.close()
        func read(_ url: URL) -> String {
            guard let h = try? FileHandle(forReadingFrom: url) else { return "" }
            defer { try? h.close() }
            return String(decoding: (try? h.read(upToCount: limits.outputBytes)) ?? Data(), as: UTF8.self)
        }
        let stdout = read(outURL), stderr = read(errURL)
        if timedOut {
            return Result(success: false, stdout: stdout, stderr: stderr, error: "Execution timed out (process killed)",
                          timeout: true, memoryExceeded: false)
        }
        let success = p.terminationReason == .exit && p.terminationStatus == 0
        let lastLine = stderr.split(whereSeparator: \.isNewline).last(where: { !$0.trimmingCharacters(in: .whitespaces).isEmpty })
        return Result(success: success, stdout: stdout, stderr: stderr,
                      error: success ? nil : lastLine.map(String.init) ?? "Execution failed",
                      timeout: false, memoryExceeded: stderr.contains("MemoryError"))
    }

    /// The Python that runs first: limits, privilege drop, upstream's disabled functions, the socket and file guards,
    /// then the code (base64, so no quoting can break out) in fresh globals.
    static func guardProgram(code: String, limits: Limits, workDirectory: String) -> String {
        let encoded = Data(code.utf8).base64EncodedString()
        let cpu = Int(limits.timeout.rounded(.up)) + 1
        return """
        import os, sys, base64, builtins, io, resource, signal, socket, posix, shutil, subprocess, faulthandler
        try:
            os.setsid()  # a process group of its own, so that the parent can kill every descendant at once
        except OSError:
            pass  # already a group leader
        for r in (resource.RLIMIT_AS, resource.RLIMIT_DATA, resource.RLIMIT_STACK):
            resource.setrlimit(r, (\(limits.memoryBytes), \(limits.memoryBytes)))
        resource.setrlimit(resource.RLIMIT_CPU, (\(cpu), \(cpu)))
        resource.setrlimit(resource.RLIMIT_FSIZE, (\(limits.outputBytes), \(limits.outputBytes)))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (\(limits.processes), \(limits.processes)))
        if os.geteuid() == 0:
            try:
                os.setgroups([]); os.setgid(65534); os.setuid(65534)
            except OSError:
                pass
        _work = os.path.realpath(\(pyString(workDirectory)))
        def _no_network(*a, **k):
            raise PermissionError("network access is disabled in the sandbox")
        socket.socket = _no_network
        socket.create_connection = _no_network
        socket.socketpair = _no_network
        socket.fromfd = _no_network
        _open = builtins.open
        def _guarded_open(file, mode="r", *a, **k):
            if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+"):
                path = os.fsdecode(file)
                path = os.path.realpath(path if os.path.isabs(path) else os.path.join(_work, path))
                if path != _work and not path.startswith(_work + os.sep):
                    raise PermissionError("writing outside the sandbox directory is not allowed: " + path)
            return _open(file, mode, *a, **k)
        builtins.open = _guarded_open
        io.open = _guarded_open
        faulthandler.disable()
        builtins.exit = None
        builtins.quit = None
        builtins.help = None
        os.environ["OMP_NUM_THREADS"] = "1"
        for _name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                      "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                      "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir", "open", "posix_spawn", "posix_spawnp",
                      "execv", "execve", "spawnv", "spawnve", "popen", "symlink", "link"):
            for _m in (os, posix):
                if hasattr(_m, _name):
                    setattr(_m, _name, None)
        shutil.rmtree = None
        shutil.move = None
        shutil.chown = None
        subprocess.Popen = None
        for _mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
            sys.modules[_mod] = None
        del _mod, _m, _name
        _code = base64.b64decode("\(encoded)").decode("utf-8")
        exec(compile(_code, "<llm>", "exec"), {"__name__": "__main__"})
        """
    }

    static func pyString(_ s: String) -> String {
        "\"" + s.unicodeScalars.map { c -> String in
            switch c {
            case "\\": return "\\\\"
            case "\"": return "\\\""
            case _ where c.value < 0x20 || c.value > 0x7e: return String(format: "\\U%08x", c.value)
            default: return String(c)
            }
        }.joined() + "\""
    }
}
