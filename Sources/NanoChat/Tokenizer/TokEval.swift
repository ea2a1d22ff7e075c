import Foundation

/// Upstream's tok_eval compression report: bytes per token of our tokenizer against baselines,
/// on fixed sample texts of different kinds plus the first documents of the train and val shards.
public enum TokEval {
    /// Fixed samples of different kinds of text (our own, in the spirit of upstream's five).
    public static let samples: [(name: String, text: String)] = [
        ("news", """
        WASHINGTON, March 4 — The Department of Agriculture announced on Tuesday a $1.2 billion program to help \
        farmers in drought-stricken counties replant cover crops and repair irrigation systems damaged during the \
        2025 growing season. "Producers across the Plains have faced three consecutive years of below-average \
        rainfall," the Secretary said at a briefing. "This assistance is designed to reach them before spring \
        planting begins." Eligible operations may apply through local Farm Service Agency offices until May 30. \
        Payments will be calculated per acre, with a cap of $125,000 per producer, and priority given to \
        beginning, veteran and limited-resource farmers.

        Officials estimated that roughly 48,000 farms in 11 states could qualify. Critics in Congress argued the \
        program does too little for livestock producers, who have sold off herds as hay prices climbed 37 percent \
        since 2023.
        """),
        ("korean", """
        대한민국의 수도는 서울특별시이며, 인구는 약 5천만 명이다. 한국어는 한글이라는 고유한 문자로 표기하는데, \
        한글은 1443년 세종대왕이 창제하여 1446년에 훈민정음이라는 이름으로 반포하였다. 한글은 자음 14자와 \
        모음 10자를 조합하여 음절을 이루는 과학적인 문자 체계로 널리 알려져 있다. 오늘날 한국은 반도체, 자동차, \
        조선 산업 등에서 세계적인 경쟁력을 갖추고 있으며, 대중음악과 드라마를 비롯한 문화 콘텐츠도 전 세계에서 \
        큰 인기를 얻고 있다.
        """),
        ("code", """
        class BytePairEncoder:
            \"\"\"A tiny byte-level BPE: learn merges from text, then encode with them.\"\"\"

            def __init__(self):
                self.merges = {}  # (int, int) -> int

            def train(self, text, vocab_size):
                ids = list(text.encode("utf-8"))
                for new_id in range(256, vocab_size):
                    counts = {}
                    for pair in zip(ids, ids[1:]):
                        counts[pair] = counts.get(pair, 0) + 1
                    if not counts:
                        break
                    best = max(counts, key=counts.get)
                    ids = self._merge(ids, best, new_id)
                    self.merges[best] = new_id

            @staticmethod
            def _merge(ids, pair, new_id):
                out, i = [], 0
                while i < len(ids):
                    if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                        out.append(new_id)
                        i += 2
                    else:
                        out.append(ids[i])
                        i += 1
                return out
        """),
        ("math", """
        \\documentclass{article}
        \\usepackage{amsmath,amssymb}
        \\begin{document}
        \\begin{theorem}
        For every integer $n \\geq 1$, $\\sum_{k=1}^{n} k^3 = \\left(\\frac{n(n+1)}{2}\\right)^2$.
        \\end{theorem}
        \\begin{proof}
        We argue by induction on $n$. For $n = 1$ both sides equal $1$. Suppose the identity holds for some
        $n \\geq 1$. Then
        \\begin{align*}
        \\sum_{k=1}^{n+1} k^3 &= \\left(\\frac{n(n+1)}{2}\\right)^2 + (n+1)^3 \\\\
          &= \\frac{(n+1)^2}{4}\\left(n^2 + 4n + 4\\right) = \\left(\\frac{(n+1)(n+2)}{2}\\right)^2,
        \\end{align*}
        which is the claim for $n+1$. Hence $\\forall n \\in \\mathbb{N}_{>0}$ the formula holds. \\qedhere
        \\end{proof}
        \\end{document}
        """),
        ("science", """
        Photosynthesis converts light energy into chemical energy stored in sugars. In the thylakoid membranes of \
        chloroplasts, chlorophyll a and b absorb mostly blue (430–450 nm) and red (640–680 nm) light. The absorbed \
        energy drives the splitting of water, releasing O2 and supplying electrons to an electron transport chain \
        that pumps protons into the thylakoid lumen. ATP synthase uses the resulting gradient to make ATP, while \
        photosystem I reduces NADP+ to NADPH. In the stroma, the Calvin–Benson cycle fixes CO2 with the enzyme \
        RuBisCO: 6 CO2 + 6 H2O + light → C6H12O6 + 6 O2. Because RuBisCO also reacts with oxygen, C4 and CAM \
        plants have evolved mechanisms that concentrate CO2 around the enzyme, reducing photorespiration in hot, \
        dry climates.
        """),
    ]

    public struct Row {
        public var text: String
        public var bytes: Int
        public var tokens: [Int]  // one per tokenizer
    }

    /// Token counts of every text under every tokenizer; throws if any tokenizer fails to round-trip a text.
    public static func measure(tokenizers: [(String, Tokenizer)], texts: [(String, String)]) throws -> [Row] {
        try texts.map { name, text in
            let counts = try tokenizers.map { tname, tok -> Int in
                let ids = tok.encode(text)
                guard try tok.decode(ids) == text else {
                    throw NanoChatError("tokenizer \(tname) does not round-trip the \(name) text")
                }
                return ids.count
            }
            return Row(text: name, bytes: text.utf8.count, tokens: counts)
        }
    }

    /// Upstream's table: baseline tokens and ratio, ours, the relative difference and which is better.
    public static func table(rows: [Row], baseline: Int, baselineName: String, ours: Int = 0, color: Bool) -> String {
        let green = color ? "\u{1B}[32m" : "", red = color ? "\u{1B}[31m" : "", reset = color ? "\u{1B}[0m" : ""
        func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
            let n = s.unicodeScalars.count
            return n >= w ? s : (left ? s + String(repeating: " ", count: w - n) : String(repeating: " ", count: w - n) + s)
        }
        var out = "Comparison with \(baselineName):\n"
        out += pad("Text Type", 16, left: true) + pad("Bytes", 9) + pad("\(baselineName.prefix(8)) Tok", 14)
            + pad("Ratio", 8) + pad("Ours Tok", 10) + pad("Ratio", 8) + pad("Rel Diff %", 12) + "  Better\n"
        out += String(repeating: "-", count: 89) + "\n"
        for r in rows {
            let bt = r.tokens[baseline], ot = r.tokens[ours]
            let bRatio = Double(r.bytes) / Double(max(bt, 1)), oRatio = Double(r.bytes) / Double(max(ot, 1))
            let rel = bt == 0 ? 0 : Double(bt - ot) / Double(bt) * 100
            let better = oRatio > bRatio ? "Ours" : (oRatio < bRatio ? baselineName : "Tie")
            let c = oRatio > bRatio ? green : (oRatio < bRatio ? red : "")
            out += pad(r.text, 16, left: true) + pad("\(r.bytes)", 9) + pad("\(bt)", 14)
                + pad(String(format: "%.2f", bRatio), 8) + pad("\(ot)", 10) + pad(String(format: "%.2f", oRatio), 8)
                + c + pad(String(format: "%+.1f%%", rel), 12) + reset + "  " + better + "\n"
        }
        return out
    }
}
