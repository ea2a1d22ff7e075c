import XCTest
import NanoChat

/// Expected values printed by CPython 3.11's `random.Random` (the commands are in each comment).
final class PythonRandomTests: XCTestCase {
    func testDrawsMatchCPython() {
        // Random(1337).getrandbits(32) x3
        var r = PythonRandom(seed: 1337)
        XCTAssertEqual((0..<3).map { _ in r.getrandbits(32) }, [2653228291, 3975144315, 2290358181])
        // x = list(range(20)); Random(42).shuffle(x)
        r = PythonRandom(seed: 42)
        var x = Array(0..<20)
        r.shuffle(&x)
        XCTAssertEqual(x, [19, 5, 14, 4, 9, 13, 15, 18, 6, 12, 17, 10, 1, 11, 2, 16, 7, 8, 0, 3])
        // Random(1241).sample([i for i in range(100) if i != 7], 10): the rejection-set method (n > setsize)
        r = PythonRandom(seed: 1234 + 7)
        XCTAssertEqual(r.sample((0..<100).filter { $0 != 7 }, 10), [78, 64, 98, 28, 37, 33, 25, 92, 63, 71])
        // Random(1237).sample(list(range(12)), 5): the pool method
        r = PythonRandom(seed: 1234 + 3)
        XCTAssertEqual(r.sample(Array(0..<12), 5), [2, 6, 4, 3, 8])
        // r = Random(10000005); r.random(), r.choice('abcdefghij'), r._randbelow(1000)
        r = PythonRandom(seed: 10_000_000 + 5)
        XCTAssertEqual(r.random(), 0.6619838156278426)
        XCTAssertEqual(r.choice(Array("abcdefghij")), "d")
        XCTAssertEqual(r.randbelow(1000), 707)
        // a seed wider than 32 bits: Random(2**40 + 3).getrandbits(32)
        r = PythonRandom(seed: (1 << 40) + 3)
        XCTAssertEqual(r.getrandbits(32), 943978446)
    }
}

/// Expected values printed by NumPy 2 (`np.random.default_rng(42)`), the shuffle behind HuggingFace's `ds.shuffle(seed=42)`.
final class NumpyRandomTests: XCTestCase {
    func testDefaultRngMatchesNumPy() {
        var g = NumpyRandom(seed: 42)
        XCTAssertEqual([g.next64(), g.next64()], [14276969152011380360, 8095878257575067585])  // bit_generator.random_raw(2)
        g = NumpyRandom(seed: 42)
        XCTAssertEqual(g.permutation(20), [15, 9, 14, 7, 12, 10, 6, 19, 3, 0, 16, 5, 11, 18, 2, 4, 17, 1, 13, 8])
        g = NumpyRandom(seed: 42)
        XCTAssertEqual(Array(g.permutation(2376).prefix(8)), [658, 1619, 1811, 47, 1494, 1273, 1203, 2293])  // ARC-Easy test
        g = NumpyRandom(seed: 42)
        XCTAssertEqual(Array(g.permutation(14042).prefix(8)), [1469, 122, 5555, 7550, 10165, 13363, 1796, 7277])  // MMLU test
    }
}
