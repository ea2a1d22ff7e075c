import Foundation
import NanoChat
import XCTest

/// Our parquet writer and reader round-trip; damaged files give errors naming the file, never a crash or hang.
final class ParquetTests: XCTestCase {
    func docs(_ n: Int) -> [[UInt8]] {
        (0..<n).map { i in Array("document \(i): \(String(repeating: "héllo wörld 🙂 ", count: i % 7))".utf8) }
    }

    func testShardRoundTrip() throws {
        let url = try temporaryDirectory().appendingPathComponent("shard_00000.parquet")
        let written = docs(2500)
        try ParquetWriter.writeTextShard(written, to: url)
        let pf = try ParquetFile(url: url)
        XCTAssertEqual(pf.numRows, 2500)
        XCTAssertEqual(pf.rowGroups.map(\.numRows), [1024, 1024, 452])
        XCTAssertEqual(pf.fields, ["text"])
        var back: [[UInt8]] = []
        for rg in 0..<pf.rowGroups.count { back += try pf.strings("text", rowGroup: rg).map { $0! } }
        XCTAssertEqual(back, written)
        // the generic path agrees with the fast one
        let generic = try pf.column("text", rowGroup: 2)
        XCTAssertEqual(generic.first, .bytes(written[2048]))
        // TextDocuments and the loader read parquet shards
        var viaDocs: [[UInt8]] = []
        try TextDocuments(paths: [url]).forEach { viaDocs.append($0); return true }
        XCTAssertEqual(viaDocs, written)
        XCTAssertThrowsError(try pf.strings("missing", rowGroup: 0))
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body() } catch let e as NanoChatError { return e.description } catch { return "\(error)" }
        return ""
    }

    func readAll(_ url: URL) throws {
        let pf = try ParquetFile(url: url)
        for rg in 0..<pf.rowGroups.count { for f in pf.fields { _ = try pf.column(f, rowGroup: rg) } }
    }

    func testDamagedFilesGiveErrors() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("good.parquet")
        try ParquetWriter.writeTextShard(docs(300), to: url)
        let good = [UInt8](try Data(contentsOf: url))
        let bad = dir.appendingPathComponent("bad.parquet")
        func check(_ bytes: [UInt8], _ expect: String) throws {
            try Data(bytes).write(to: bad)
            let m = message { try readAll(bad) }
            XCTAssertTrue(m.contains("bad.parquet") && m.contains(expect), "expected '\(expect)': \(m)")
        }
        var b = good; b[0] = 0x51
        try check(b, "magic")
        try check(Array(good.prefix(good.count / 2)), "magic")          // truncated download
        b = good
        let n = good.count
        b[n - 8] = 0xFF; b[n - 7] = 0xFF; b[n - 6] = 0xFF; b[n - 5] = 0x7F
        try check(b, "footer length")
        b = good
        for i in 200..<260 { b[i] ^= 0x5A }                              // inside the first zstd page
        try check(b, "column text")
        let footerLen = Int(good[n - 8]) | Int(good[n - 7]) << 8
        b = good
        b[n - 8 - footerLen] = 0x0F                                       // a thrift field of unknown type
        try check(b, "corrupt footer")
        try check([], "only 0 bytes")
        XCTAssertTrue(message { _ = try ParquetFile(url: dir.appendingPathComponent("nope.parquet")) }.contains("nope.parquet"))
    }

    func testFuzzMutatedFiles() throws {
        let dir = try temporaryDirectory()
        let url = dir.appendingPathComponent("seed.parquet")
        try ParquetWriter.writeTextShard(docs(40), to: url, rowGroupSize: 16)
        let seed = [UInt8](try Data(contentsOf: url))
        let bad = dir.appendingPathComponent("mutant.parquet")
        var rng = SplitMix(seed: 11)
        var errors = 0, survived = 0
        for trial in 0..<400 {
            var b = seed
            switch trial % 4 {
            case 0: for _ in 0..<(1 + Int(rng.next() % 4)) { b[Int(rng.next() % UInt64(b.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1: b = Array(b.prefix(Int(rng.next() % UInt64(b.count))))
            case 2:  // mutate the footer, where a bad thrift field or size hurts most
                let k = b.count - 8 - Int(rng.next() % 120)
                if k > 0 { b[k] = UInt8(truncatingIfNeeded: rng.next()) }
            default:
                let k = Int(rng.next() % UInt64(b.count))
                b.insert(contentsOf: [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: 1 + Int(rng.next() % 9)), at: k)
            }
            try Data(b).write(to: bad)
            do {
                try readAll(bad)
                survived += 1
            } catch let e as NanoChatError {
                XCTAssertTrue(e.description.contains("mutant.parquet"), e.description)
                errors += 1
            }
        }
        XCTAssertGreaterThan(errors, 200)
        print("fuzz: \(errors) clean errors, \(survived) mutants still readable, no crash")
    }
}
