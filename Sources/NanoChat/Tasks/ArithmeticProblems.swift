import Foundation

/// Arithmetic word problems in GSM8K's format, generated from a seed: a question, and a worked answer whose
/// computations are calculator spans `<<expr=result>>` followed by `#### answer`. They stand in for GSM8K's train
/// split (which no offline source carries) in SFT and as the offline RL task; GSM8K's test split stays untouched
/// for evaluation. Unlike GSM8K's human-written problems these come from a few dozen templates, so they teach the
/// format and the calculator habit more than reading comprehension.
/// Level 1: one step (add or subtract); level 2: two steps (a product, then a sum or difference);
/// level 3: three steps (two products and a sum). Every result is a whole number, as the calculator prints it.
public enum ArithmeticProblems {
    static let names = ["Ava", "Ben", "Chloe", "Diego", "Emma", "Farah", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena",
                        "Mateo", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vera", "Wes", "Yuki"]
    static let items = [("apple", "apples"), ("marble", "marbles"), ("sticker", "stickers"), ("book", "books"),
                        ("cookie", "cookies"), ("pencil", "pencils"), ("shell", "shells"), ("card", "cards"),
                        ("stamp", "stamps"), ("balloon", "balloons"), ("egg", "eggs"), ("coin", "coins")]  // (singular, plural)
    static let containers = [("box", "boxes"), ("bag", "bags"), ("jar", "jars"), ("basket", "baskets"), ("crate", "crates")]

    public struct Problem: Equatable { public var question: String; public var solution: String; public var answer: Int }

    /// Problem `index` of `level` (1...3), the same for the same (seed, level, index).
    public static func problem(index: Int, level: Int, seed: Int = 0) -> Problem {
        var rng = PythonRandom(seed: seed &* 1_000_003 &+ level &* 100_000_007 &+ index)
        let name = rng.choice(names)
        var other = rng.choice(names)
        while other == name { other = rng.choice(names) }
        let (_, many) = rng.choice(items)
        let (box, boxes) = rng.choice(containers)
        func n(_ lo: Int, _ hi: Int) -> Int { lo + rng.randbelow(hi - lo + 1) }
        switch level {
        case 1:
            let a = n(3, 60), b = n(2, 40)
            if rng.random() < 0.5 {
                let r = a + b
                return Problem(question: "\(name) has \(a) \(many). \(other) gives \(name) \(b) more \(many). How many \(many) does \(name) have now?",
                               solution: "\(name) has \(a) + \(b) = <<\(a)+\(b)=\(r)>>\(r) \(many) now.\n#### \(r)", answer: r)
            }
            let total = a + b, r = total - b
            return Problem(question: "\(name) had \(total) \(many) and gave \(b) of them to \(other). How many \(many) does \(name) have left?",
                           solution: "\(name) has \(total) - \(b) = <<\(total)-\(b)=\(r)>>\(r) \(many) left.\n#### \(r)", answer: r)
        case 2:
            let k = n(2, 12), per = n(2, 15), extra = n(1, 30)
            let product = k * per
            if rng.random() < 0.5 {
                let r = product + extra
                return Problem(question: "\(name) buys \(k) \(boxes) of \(many) with \(per) \(many) in each \(box), and finds \(extra) loose \(many). How many \(many) does \(name) have in all?",
                               solution: "The \(boxes) hold \(k) * \(per) = <<\(k)*\(per)=\(product)>>\(product) \(many).\nWith the loose ones that is \(product) + \(extra) = <<\(product)+\(extra)=\(r)>>\(r) \(many).\n#### \(r)", answer: r)
            }
            let shared = n(2, 9), each = n(2, 20), eaten = n(1, shared * each - 1)
            let total = shared * each, r = total - eaten
            return Problem(question: "\(name) has \(shared) \(boxes) with \(each) \(many) each. \(other) takes \(eaten) of the \(many). How many \(many) are left?",
                           solution: "There are \(shared) * \(each) = <<\(shared)*\(each)=\(total)>>\(total) \(many).\nAfter \(other) takes some, \(total) - \(eaten) = <<\(total)-\(eaten)=\(r)>>\(r) are left.\n#### \(r)", answer: r)
        default:
            let friends = n(2, 8), each = n(2, 12), kept = n(1, 25), price = n(2, 9)
            let given = friends * each, total = given + kept, cost = total * price
            let question = "\(name) buys \(many) at $\(price) each: \(each) for each of \(friends) friends, and \(kept) more to keep. "
                + "How many dollars does \(name) spend?"
            let solution = "For the friends, \(name) needs \(friends) * \(each) = <<\(friends)*\(each)=\(given)>>\(given) \(many).\n"
                + "With the ones to keep, that is \(given) + \(kept) = <<\(given)+\(kept)=\(total)>>\(total) \(many).\n"
                + "They cost \(total) * \(price) = <<\(total)*\(price)=\(cost)>>\(cost) dollars.\n#### \(cost)"
            return Problem(question: question, solution: solution, answer: cost)
        }
    }

    /// `count` problems cycling through levels 1, 2, 3 (so a third of each), as task examples of kind "gsm8k".
    public static func examples(count: Int, seed: Int, idPrefix: String) -> [TaskExample] {
        (0..<count).map { i in
            let p = problem(index: i / 3, level: i % 3 + 1, seed: seed)
            var e = TaskExample(id: "\(idPrefix)-\(i)", kind: "gsm8k")
            e.question = p.question
            e.solution = p.solution
            return e
        }
    }
}
