import Foundation
import NanoTensor

#if canImport(Glibc)
import Glibc
#endif

/// A rank started by torchrun, upstream's launcher (`torchrun --standalone --nproc_per_node=N --no-python nanochat ...`),
/// without MPI. torchrun gives each process RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE and the address of its
/// agent's key-value store (MASTER_ADDR, MASTER_PORT: PyTorch's TCPStore). The rendezvous:
///
/// 1. every rank connects to that store (its wire protocol: a query byte, 8-byte little-endian lengths before keys and
///    values; the client first sends VALIDATE with the store's magic number);
/// 2. rank 0 listens on a free port and publishes `address:port` under a key of this run (TORCHELASTIC_RUN_ID and the
///    restart count, so a restarted job never reads a stale address); the others WAIT for that key, GET it, and
///    connect to rank 0, saying which rank they are.
///
/// The collectives then go through rank 0 (a star): it receives every rank's buffer, sums in rank order and sends the
/// result back. That carries what the host shares (NCCL's id, losses, loader positions, evaluation counts) and, on
/// CPUs, the gradients (correct and deterministic, but rank 0's link carries W times the bytes: MPI is the CPU transport
/// for speed; on GPUs the gradients go through NCCL). A peer that closes its connection (it died) or sends nothing
/// for the collective timeout (it stopped) ends this rank with a message naming that peer; torchrun then stops the job.
public final class TorchrunCommunicator: Communicator {
    public let rank: Int, worldSize: Int, localRank: Int, localSize: Int
    /// Seconds a collective may wait for a peer (`NANOCHAT_COLLECTIVE_TIMEOUT`; 0 = never).
    public let timeout: Double
    /// Rank 0: the socket of each other rank (index = rank; index 0 unused). The others: [the socket to rank 0].
    private var peers: [Int32]
    private var scratch: [UInt8] = []
    /// What the collective under way is, for the message when a peer fails.
    private var operation = ""

    /// Whether this process was started by torchrun as one rank of several.
    public static var launched: Bool {
        let env = ProcessInfo.processInfo.environment
        return (env["WORLD_SIZE"].flatMap(Int.init) ?? 1) > 1 && env["RANK"] != nil && env["MASTER_ADDR"] != nil && env["MASTER_PORT"] != nil
    }

    /// Joins the job: the rendezvous above, within `NANOCHAT_RENDEZVOUS_TIMEOUT` seconds (default 300).
    public static func start() throws -> TorchrunCommunicator {
        let env = ProcessInfo.processInfo.environment
        func number(_ key: String) throws -> Int {
            guard let s = env[key], let v = Int(s) else { throw NanoChatError("torchrun's \(key) is \(env[key].map { "'\($0)'" } ?? "missing"): expected a number") }
            return v
        }
        let rank = try number("RANK"), world = try number("WORLD_SIZE"), localRank = try number("LOCAL_RANK")
        let localSize = env["LOCAL_WORLD_SIZE"].flatMap(Int.init) ?? world
        guard rank >= 0, rank < world, localRank >= 0, localRank < localSize else {
            throw NanoChatError("torchrun's RANK \(rank) / WORLD_SIZE \(world) / LOCAL_RANK \(localRank) / LOCAL_WORLD_SIZE \(localSize) do not fit together")
        }
        let host = env["MASTER_ADDR"]!, port = try number("MASTER_PORT")
        let limit = env["NANOCHAT_RENDEZVOUS_TIMEOUT"].flatMap(Double.init) ?? 300
        let deadline = Date().addingTimeInterval(limit)
        let key = "/nanochat/\(env["TORCHELASTIC_RUN_ID"] ?? "none")/\(env["TORCHELASTIC_RESTART_COUNT"] ?? "0")/rank0"

        let store = try Socket.connect(host: host, port: port, until: deadline,
                                       what: "torchrun's store at \(host):\(port) (MASTER_ADDR, MASTER_PORT)")
        defer { close(store) }
        try Socket.send(store, [0] + le(UInt32(0x3C85_F7CE)), what: "validating with torchrun's store")  // VALIDATE
        var peers: [Int32]
        if rank == 0 {
            let (listener, listenPort) = try Socket.listen()
            defer { close(listener) }
            let me = Socket.localAddress(store) ?? "127.0.0.1"
            let value = Array("\(me.contains(":") ? "[\(me)]" : me):\(listenPort)".utf8)
            try Socket.send(store, [1] + le(UInt64(key.utf8.count)) + Array(key.utf8) + le(UInt64(value.count)) + value, what: "publishing rank 0's address")  // SET
            peers = Array(repeating: -1, count: world)
            for _ in 1..<world {
                let fd = try Socket.accept(listener, until: deadline, what: "the other \(world - 1) ranks to connect to rank 0 (port \(listenPort))")
                var hello = [UInt8](repeating: 0, count: 8)
                try Socket.receive(fd, &hello, until: deadline, what: "a rank's hello")
                let r = Int(UInt64(littleEndian: hello.withUnsafeBytes { $0.load(as: UInt64.self) }))
                guard r > 0, r < world, peers[r] < 0 else { throw NanoChatError("rendezvous: a connection said it was rank \(r) of \(world)") }
                peers[r] = fd
            }
        } else {
            // WAIT for the key, then GET it
            try Socket.send(store, [6] + le(UInt64(1)) + le(UInt64(key.utf8.count)) + Array(key.utf8), what: "waiting on torchrun's store")
            var stop = [UInt8](repeating: 0, count: 1)
            try Socket.receive(store, &stop, until: deadline, what: "rank 0's address in torchrun's store (is rank 0 running?)")
            try Socket.send(store, [3] + le(UInt64(key.utf8.count)) + Array(key.utf8), what: "reading rank 0's address")
            var length = [UInt8](repeating: 0, count: 8)
            try Socket.receive(store, &length, until: deadline, what: "rank 0's address")
            var value = [UInt8](repeating: 0, count: Int(UInt64(littleEndian: length.withUnsafeBytes { $0.load(as: UInt64.self) })))
            try Socket.receive(store, &value, until: deadline, what: "rank 0's address")
            let text = String(decoding: value, as: UTF8.self)
            guard let colon = text.lastIndex(of: ":"), let p = Int(text[text.index(after: colon)...]) else {
                throw NanoChatError("rendezvous: rank 0 published '\(text)', not an address:port")
            }
            let addr = String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            let fd = try Socket.connect(host: addr, port: p, until: deadline, what: "rank 0 at \(text)")
            try Socket.send(fd, le(UInt64(rank)), what: "saying hello to rank 0")
            peers = [fd]
        }
        return TorchrunCommunicator(rank: rank, worldSize: world, localRank: localRank, localSize: localSize, peers: peers,
                                    timeout: Distributed.collectiveTimeout)
    }

    private init(rank: Int, worldSize: Int, localRank: Int, localSize: Int, peers: [Int32], timeout: Double) {
        self.rank = rank; self.worldSize = worldSize; self.localRank = localRank; self.localSize = localSize
        self.peers = peers; self.timeout = timeout
    }

    deinit { finish() }

    // MARK: moving bytes, with the peer named when it fails

    /// A peer failed: say which, then end this rank (torchrun stops the others).
    private func fail(_ peer: Int, _ error: Error) -> Never {
        FileHandle.standardError.write(Data("nanochat: rank \(rank) of \(worldSize): \(operation) with rank \(peer) failed: \(error); ending this rank so that torchrun stops the job\n".utf8))
        exit(75)
    }

    private func send(to peer: Int, _ p: UnsafeRawPointer, _ bytes: Int) {
        do { try Socket.send(rank == 0 ? peers[peer] : peers[0], p, bytes, what: "sending") } catch { fail(peer, error) }
    }

    private func receive(from peer: Int, _ p: UnsafeMutableRawPointer, _ bytes: Int) {
        let deadline = timeout > 0 ? Date().addingTimeInterval(timeout) : .distantFuture
        let what = "waiting more than \(Int(timeout)) s (NANOCHAT_COLLECTIVE_TIMEOUT) for it: it has stopped"
        do { try Socket.receive(rank == 0 ? peers[peer] : peers[0], p, bytes, until: deadline, what: what) } catch { fail(peer, error) }
    }

    private func scratch(_ bytes: Int) -> UnsafeMutableRawPointer {
        if scratch.count < bytes { scratch = [UInt8](repeating: 0, count: bytes) }
        return scratch.withUnsafeMutableBytes { $0.baseAddress! }
    }

    /// Every rank's `count` values into rank 0's `buffer`, combined in rank order (deterministic), then rank 0's
    /// result to every rank.
    private func allReduce<T>(_ buffer: UnsafeMutablePointer<T>, count: Int, _ name: String, combine: (inout T, T) -> Void) {
        operation = name
        let bytes = count * MemoryLayout<T>.stride
        if rank == 0 {
            let other = scratch(bytes).assumingMemoryBound(to: T.self)
            for r in 1..<worldSize {
                receive(from: r, other, bytes)
                for i in 0..<count { combine(&buffer[i], other[i]) }
            }
            for r in 1..<worldSize { send(to: r, buffer, bytes) }
        } else {
            send(to: 0, buffer, bytes)
            receive(from: 0, buffer, bytes)
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) { allReduce(buffer, count: count, "an all-reduce") { $0 += $1 } }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Double>, count: Int) { allReduce(buffer, count: count, "an all-reduce") { $0 += $1 } }
    public func allReduceMax(_ buffer: UnsafeMutablePointer<Double>, count: Int) { allReduce(buffer, count: count, "an all-reduce (max)") { $0 = Swift.max($0, $1) } }

    public func reduceScatterSum(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        operation = "a reduce-scatter"
        let bytes = countPerRank * 4
        if rank == 0 {
            // rank 0 sums every block, then hands each rank its own
            let total = scratch(bytes * worldSize * 2).assumingMemoryBound(to: Float.self), other = total + countPerRank * worldSize
            total.update(from: send, count: countPerRank * worldSize)
            for r in 1..<worldSize {
                receive(from: r, other, bytes * worldSize)
                for i in 0..<(countPerRank * worldSize) { total[i] += other[i] }
            }
            for r in 1..<worldSize { self.send(to: r, total + r * countPerRank, bytes) }
            recv.update(from: total, count: countPerRank)
        } else {
            self.send(to: 0, send, bytes * worldSize)
            receive(from: 0, recv, bytes)
        }
    }

    public func allGather(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        operation = "an all-gather"
        let bytes = countPerRank * 4
        let mine = recv + rank * countPerRank
        if let send, send != UnsafePointer(mine) { mine.update(from: send, count: countPerRank) }
        if rank == 0 {
            for r in 1..<worldSize { receive(from: r, recv + r * countPerRank, bytes) }
            for r in 1..<worldSize { self.send(to: r, recv, bytes * worldSize) }
        } else {
            self.send(to: 0, mine, bytes)
            receive(from: 0, recv, bytes * worldSize)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) {
        operation = "a broadcast"
        // through rank 0: the root's bytes reach it first, then it sends them to every other rank
        if root != 0 {
            if rank == root { send(to: 0, buffer, bytes) } else if rank == 0 { receive(from: root, buffer, bytes) }
        }
        if rank == 0 {
            for r in 1..<worldSize where r != root { send(to: r, buffer, bytes) }
        } else if rank != root {
            receive(from: 0, buffer, bytes)
        }
    }

    /// Every rank's `count` floats summed into `recv` on `root` (the Muon matrices' reduction onto their owner); blocking.
    public func startReduce(_ send: UnsafePointer<Float>, into recv: UnsafeMutablePointer<Float>, count: Int, root: Int) {
        operation = "a reduce"
        let bytes = count * 4
        if rank == 0 {
            let total = scratch(bytes * 2).assumingMemoryBound(to: Float.self), other = total + count
            total.update(from: send, count: count)
            for r in 1..<worldSize {
                receive(from: r, other, bytes)
                for i in 0..<count { total[i] += other[i] }
            }
            if root == 0 { recv.update(from: total, count: count) } else { self.send(to: root, total, bytes) }
        } else {
            self.send(to: 0, send, bytes)
            if rank == root { receive(from: 0, recv, bytes) }
        }
    }

    public func barrier() {
        var x = 0.0
        allReduceMax(&x, count: 1)
    }

    public func abort(code: Int32) -> Never { exit(code) }

    public func finish() {
        for fd in peers where fd >= 0 { close(fd) }
        peers = []
    }
}

/// Under torchrun the gradients of a CPU run go through rank 0 too (blocking: each `start` finishes before it returns).
extension TorchrunCommunicator: GradientTransport {
    public var transportName: String { "TCP (torchrun)" }
    public var reductionAverages: Bool { false }
    public var device: GPU? { nil }
    public func startAllReduce(_ buffer: UnsafeMutablePointer<Float>, count: Int) { allReduceSum(buffer, count: count) }
    public func startReduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, countPerRank: Int) {
        reduceScatterSum(send, recv, countPerRank: countPerRank)
    }
    public func startAllGather(_ buffer: UnsafeMutablePointer<Float>, countPerRank: Int) { allGather(nil, buffer, countPerRank: countPerRank) }
    public func progress() {}
    public func finishCollectives() {}
}

private func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// Blocking TCP sockets with deadlines (poll), for the rendezvous and the collectives above.
enum Socket {
    struct Failure: Error, CustomStringConvertible { let description: String }

    static func connect(host: String, port: Int, until deadline: Date, what: String) throws -> Int32 {
        var lastError = "no address"
        repeat {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, String(port), &hints, &list)
            if rc != 0 {
                lastError = String(cString: gai_strerror(rc))
            } else {
                defer { freeaddrinfo(list) }
                var a = list
                while let ai = a {
                    let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
                    if fd >= 0 {
                        if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 {
                            var one: Int32 = 1
                            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                            return fd
                        }
                        lastError = String(cString: strerror(errno))
                        close(fd)
                    }
                    a = ai.pointee.ai_next
                }
            }
            usleep(200_000)  // the other side may not listen yet
        } while Date() < deadline
        throw NanoChatError("could not connect to \(what): \(lastError)")
    }

    /// A socket listening on every address (IPv6 and IPv4 when the machine has both) and a free port.
    static func listen() throws -> (Int32, Int) {
        for family in [AF_INET6, AF_INET] {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { continue }
            var zero: Int32 = 0, one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var storage = sockaddr_storage()
            var length: socklen_t
            if family == AF_INET6 {
                setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, socklen_t(MemoryLayout<Int32>.size))
                var a = sockaddr_in6()
                a.sin6_family = sa_family_t(AF_INET6)
                a.sin6_addr = in6addr_any
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
                withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            } else {
                var a = sockaddr_in()
                a.sin_family = sa_family_t(AF_INET)
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
                withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
            }
            let bound = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
            guard bound == 0, Glibc.listen(fd, 128) == 0 else { close(fd); continue }
            var got = sockaddr_storage()
            var gotLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
            _ = withUnsafeMutablePointer(to: &got) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &gotLength) } }
            // sin_port and sin6_port both sit at byte 2, in network order
            let port = withUnsafeBytes(of: got) { Int(UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self))) }
            return (fd, port)
        }
        throw NanoChatError("rendezvous: rank 0 could not listen on a TCP port: \(String(cString: strerror(errno)))")
    }

    /// The numeric address this end of a connected socket has (what the other ranks can reach this machine at).
    static func localAddress(_ fd: Int32) -> String? {
        var a = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard withUnsafeMutablePointer(to: &a, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }) == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getnameinfo($0, length, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST)
        } }
        guard rc == 0 else { return nil }
        let text = String(cString: host)
        return text.hasPrefix("::ffff:") ? String(text.dropFirst(7)) : text
    }

    static func accept(_ listener: Int32, until deadline: Date, what: String) throws -> Int32 {
        try wait(listener, events: Int16(POLLIN), until: deadline, what: "waiting for \(what)")
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { throw Failure(description: "accept: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        return fd
    }

    private static func wait(_ fd: Int32, events: Int16, until deadline: Date, what: String) throws {
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { throw Failure(description: what) }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, Int32(min(left, 3600) * 1000))
            if rc > 0 { return }
            if rc < 0 && errno != EINTR { throw Failure(description: "\(what): poll: \(String(cString: strerror(errno)))") }
        }
    }

    static func send(_ fd: Int32, _ bytes: [UInt8], what: String) throws {
        try bytes.withUnsafeBytes { try send(fd, $0.baseAddress!, $0.count, what: what) }
    }

    static func send(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int, what: String) throws {
        var done = 0
        while done < n {
            let k = Glibc.send(fd, p + done, n - done, Int32(MSG_NOSIGNAL))
            if k < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "\(what): the connection is gone (\(String(cString: strerror(errno))))")
            }
            done += k
        }
    }

    static func receive(_ fd: Int32, _ bytes: inout [UInt8], until deadline: Date, what: String) throws {
        let n = bytes.count
        try bytes.withUnsafeMutableBytes { try receive(fd, $0.baseAddress!, n, until: deadline, what: what) }
    }

    static func receive(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int, until deadline: Date, what: String) throws {
        var done = 0
        while done < n {
            try wait(fd, events: Int16(POLLIN), until: deadline, what: what)
            let k = recv(fd, p + done, n - done, 0)
            if k == 0 { throw Failure(description: "its connection closed: the process ended") }
            if k < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw Failure(description: "\(what): \(String(cString: strerror(errno)))")
            }
            done += k
        }
    }
}
