import Foundation

/// Upstream's calculator tool (use_calculator): commas are removed; then either plain arithmetic
/// over `0123456789*+-/.() ` (no `**`) with Python's semantics — integers exact, `/` gives a float, `//`
/// floors, floats printed in Python's shortest repr — or the one string method it allows,
/// `'<text>'.count('<sub>')`. Anything else, or any error, is nil (no output is injected).
public enum Calculator {
    enum Num { case int(Int), float(Double) }

    public static func evaluate(_ raw: String) -> String? {
        let expr = raw.replacingOccurrences(of: ",", with: "")
        let arithmetic = Set("0123456789*+-/.() ")
        if !expr.isEmpty && expr.allSatisfy({ arithmetic.contains($0) }) {
            if expr.contains("**") { return nil }
            var p = Parser(chars: Array(expr))
            guard let v = p.parseExpression(), p.atEnd else { return nil }
            switch v {
            case .int(let i): return String(i)
            case .float(let d): return pythonRepr(d)
            }
        }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'\"()._ ")
        guard expr.allSatisfy({ allowed.contains($0) }) else { return nil }
        let lower = expr.lowercased()
        for bad in ["__", "import", "exec", "eval", "compile", "open", "file", "input", "raw_input", "globals", "locals",
                    "vars", "dir", "getattr", "setattr", "delattr", "hasattr"] where lower.contains(bad) { return nil }
        guard expr.contains(".count(") else { return nil }
        return stringCount(expr.trimmingCharacters(in: .whitespaces))
    }

    /// Python's repr of a float: shortest round-trip digits, always with a decimal point or exponent.
    static func pythonRepr(_ d: Double) -> String? {
        guard d.isFinite else { return d.isNaN ? "nan" : (d > 0 ? "inf" : "-inf") }
        var s = "\(d)"  // Swift prints the shortest round-trip form too
        if s.contains("e") {
            // Swift: 1e+16 / 1e-05 ; Python: 1e+16 / 1e-05 (two-digit exponent)
            let parts = s.split(separator: "e")
            var mant = String(parts[0]); var ex = String(parts[1])
            if mant.hasSuffix(".0") { mant.removeLast(2) }
            let sign = ex.hasPrefix("-") ? "-" : "+"
            ex = ex.trimmingCharacters(in: CharacterSet(charactersIn: "+-"))
            if ex.count < 2 { ex = "0" + ex }
            s = mant + "e" + sign + ex
        }
        return s
    }

    /// `'text'.count('sub')` (either quote style) -> non-overlapping occurrences, as Python's str.count.
    static func stringCount(_ e: String) -> String? {
        let c = Array(e)
        var i = 0
        func literal() -> String? {
            guard i < c.count, c[i] == "'" || c[i] == "\"" else { return nil }
            let q = c[i]; i += 1
            let start = i
            while i < c.count && c[i] != q { i += 1 }
            guard i < c.count else { return nil }
            defer { i += 1 }
            return String(c[start..<i])
        }
        guard let text = literal() else { return nil }
        let dotCount = Array(".count(")
        guard i + dotCount.count <= c.count, Array(c[i..<(i + dotCount.count)]) == dotCount else { return nil }
        i += dotCount.count
        guard let sub = literal(), i < c.count, c[i] == ")", i + 1 == c.count else { return nil }
        if sub.isEmpty { return String(text.count + 1) }
        return String(text.components(separatedBy: sub).count - 1)
    }

    /// Recursive descent over Python's grammar for these tokens: expr := term (('+'|'-') term)*,
    /// term := factor (('*'|'/'|'//') factor)*, factor := ('+'|'-') factor | number | '(' expr ')'.
    struct Parser {
        let chars: [Character]
        var i = 0
        var atEnd: Bool { mutating get { skip(); return i == chars.count } }

        mutating func skip() { while i < chars.count && chars[i] == " " { i += 1 } }

        mutating func parseExpression() -> Num? {
            guard var left = parseTerm() else { return nil }
            while true {
                skip()
                guard i < chars.count, chars[i] == "+" || chars[i] == "-" else { return left }
                let op = chars[i]; i += 1
                guard let right = parseTerm(), let r = Self.apply(op == "+" ? "+" : "-", left, right) else { return nil }
                left = r
            }
        }

        mutating func parseTerm() -> Num? {
            guard var left = parseFactor() else { return nil }
            while true {
                skip()
                guard i < chars.count, chars[i] == "*" || chars[i] == "/" else { return left }
                var op = String(chars[i]); i += 1
                if op == "/" && i < chars.count && chars[i] == "/" { op = "//"; i += 1 }
                guard let right = parseFactor(), let r = Self.apply(op, left, right) else { return nil }
                left = r
            }
        }

        mutating func parseFactor() -> Num? {
            skip()
            guard i < chars.count else { return nil }
            let ch = chars[i]
            if ch == "+" || ch == "-" {
                i += 1
                guard let v = parseFactor() else { return nil }
                if ch == "+" { return v }
                switch v {
                case .int(let x): return x == Int.min ? nil : .int(-x)
                case .float(let d): return .float(-d)
                }
            }
            if ch == "(" {
                i += 1
                guard let v = parseExpression() else { return nil }
                skip()
                guard i < chars.count, chars[i] == ")" else { return nil }
                i += 1
                return followedByCall() ? nil : v
            }
            return parseNumber()
        }

        /// `2(3)` is a call in Python: a TypeError, so nil.
        mutating func followedByCall() -> Bool {
            let save = i
            skip()
            let call = i < chars.count && chars[i] == "("
            i = save
            return call
        }

        mutating func parseNumber() -> Num? {
            let start = i
            while i < chars.count && (chars[i].isNumber || chars[i] == ".") { i += 1 }
            let s = String(chars[start..<i])
            guard !s.isEmpty, s != "." else { return nil }
            if followedByCall() { return nil }
            if s.contains(".") {
                guard s.filter({ $0 == "." }).count == 1, let d = Double(s) else { return nil }
                return .float(d)
            }
            // Python rejects leading zeros in decimal integers ("012"), but allows "0" and "00"
            if s.count > 1 && s.first == "0" && s.contains(where: { $0 != "0" }) { return nil }
            guard let v = Int(s) else { return nil }  // beyond 64 bits: out of this calculator's range
            return .int(v)
        }

        static func asDouble(_ n: Num) -> Double { switch n { case .int(let i): return Double(i); case .float(let d): return d } }

        static func apply(_ op: String, _ a: Num, _ b: Num) -> Num? {
            if case .int(let x) = a, case .int(let y) = b {
                switch op {
                case "+": let (r, o) = x.addingReportingOverflow(y); return o ? nil : .int(r)
                case "-": let (r, o) = x.subtractingReportingOverflow(y); return o ? nil : .int(r)
                case "*": let (r, o) = x.multipliedReportingOverflow(by: y); return o ? nil : .int(r)
                case "//":
                    guard y != 0 else { return nil }
                    var q = x / y
                    if (x % y != 0) && ((x < 0) != (y < 0)) { q -= 1 }
                    return .int(q)
                default:
                    guard y != 0 else { return nil }
                    return .float(Double(x) / Double(y))
                }
            }
            let x = asDouble(a), y = asDouble(b)
            switch op {
            case "+": return .float(x + y)
            case "-": return .float(x - y)
            case "*": return .float(x * y)
            case "//": return y == 0 ? nil : .float((x / y).rounded(.down))
            default: return y == 0 ? nil : .float(x / y)
            }
        }
    }
}
