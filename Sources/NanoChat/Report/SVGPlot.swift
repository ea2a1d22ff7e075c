import Foundation

/// A small line chart written as SVG (no browser or library needed to make it): one or more series over a shared
/// x axis, nice round ticks on both axes, a legend, and markers where a series has only a few points.
public struct SVGPlot {
    public struct Series {
        public var name: String
        public var points: [(Double, Double)]
        public init(_ name: String, _ points: [(Double, Double)]) { self.name = name; self.points = points }
    }
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var width = 640.0, height = 360.0
    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
    }

    /// Round tick values covering [lo, hi] (about five of them, steps of 1, 2 or 5 times a power of ten).
    static func ticks(_ lo: Double, _ hi: Double) -> [Double] {
        let span = hi - lo
        guard span > 0, span.isFinite else { return [lo] }
        let raw = span / 5
        let mag = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? raw
        var out: [Double] = []
        var v = ceil(lo / step) * step
        while v <= hi + step * 1e-9 { out.append(abs(v) < step * 1e-9 ? 0 : v); v += step }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 10000 { return String(format: "%.0fk", v / 1000) }
        if abs(v) >= 100 || v == v.rounded() { return String(format: "%.0f", v) }
        if abs(v) >= 1 { return String(format: "%.1f", v) }
        return String(format: "%.3g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    public var svg: String {
        let all = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
        let (left, right, top, bottom) = (64.0, 16.0, 36.0, 48.0)
        var xs = (all.map(\.0).min() ?? 0, all.map(\.0).max() ?? 1)
        var ys = (all.map(\.1).min() ?? 0, all.map(\.1).max() ?? 1)
        if xs.1 <= xs.0 { xs = (xs.0 - 1, xs.0 + 1) }
        if ys.1 <= ys.0 { ys = (ys.0 - 0.5, ys.0 + 0.5) }
        let pad = (ys.1 - ys.0) * 0.05
        ys = (ys.0 - pad, ys.1 + pad)
        let pw = width - left - right, ph = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - xs.0) / (xs.1 - xs.0) * pw }
        func py(_ y: Double) -> Double { top + (1 - (y - ys.0) / (ys.1 - ys.0)) * ph }
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="20" text-anchor="middle" font-size="15" font-weight="bold">\(Self.escape(title))</text>

        """
        for t in Self.ticks(ys.0, ys.1) {
            let y = py(t)
            s += "<line x1=\"\(left)\" y1=\"\(y)\" x2=\"\(width - right)\" y2=\"\(y)\" stroke=\"#e5e5e5\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(Self.label(t))</text>\n"
        }
        for t in Self.ticks(xs.0, xs.1) {
            let x = px(t)
            s += "<line x1=\"\(x)\" y1=\"\(top + ph)\" x2=\"\(x)\" y2=\"\(top + ph + 5)\" stroke=\"#333\"/>"
            s += "<text x=\"\(x)\" y=\"\(top + ph + 18)\" text-anchor=\"middle\">\(Self.label(t))</text>\n"
        }
        s += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#333\"/>\n"
        s += "<text x=\"\(left + pw / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>\n"
        s += "<text x=\"14\" y=\"\(top + ph / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(top + ph / 2))\">\(Self.escape(yLabel))</text>\n"
        var legend = ""
        for (i, serie) in series.enumerated() {
            let color = Self.colors[i % Self.colors.count]
            let pts = serie.points.filter { $0.0.isFinite && $0.1.isFinite }
            let path = pts.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
            if pts.count > 1 { s += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"/>\n" }
            if pts.count <= 40 {
                for p in pts { s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%@\"/>", px(p.0), py(p.1), color) }
                s += "\n"
            }
            if series.count > 1 {
                let ly = top + 14 + Double(i) * 16
                legend += "<line x1=\"\(width - right - 150)\" y1=\"\(ly - 4)\" x2=\"\(width - right - 130)\" y2=\"\(ly - 4)\" stroke=\"\(color)\" stroke-width=\"3\"/>"
                legend += "<text x=\"\(width - right - 125)\" y=\"\(ly)\">\(Self.escape(serie.name))</text>\n"
            }
        }
        if series.count > 1 {  // the legend sits on a white card so that curves under it do not hide it
            s += "<rect x=\"\(width - right - 156)\" y=\"\(top + 2)\" width=\"152\" height=\"\(Double(series.count) * 16 + 6)\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n"
        }
        return s + legend + "</svg>\n"
    }
}
