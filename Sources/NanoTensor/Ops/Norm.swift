import Foundation

/// RMSNorm eps: float32 machine epsilon, as PyTorch's F.rms_norm default used by upstream.
public let rmsNormEps: Float = Float.ulpOfOne

/// Parameter-free RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps).
public func rmsNorm(_ x: Tensor) -> Tensor {
    let c = x.shape.last!
    let rows = x.count / c
    let out = Tensor(shape: x.shape, zeroed: false)
    let rstd = Tensor(shape: [rows], zeroed: false)
    let px = x.data, po = out.data, pr = rstd.data
    for r in 0..<rows {
        let xr = px + r * c, yr = po + r * c
        let inv = 1 / (dot(xr, xr, c) / Float(c) + rmsNormEps).squareRoot()
        pr[r] = inv
        for j in 0..<c { yr[j] = xr[j] * inv }
    }
    Tensor.record(out, [x], op: "rmsNorm") { out in
        let g = out.grad!.data, y = out.data
        let pr = rstd.data  // captures rstd: the saved statistics must outlive the forward call
        let gx = x.gradData()
        for r in 0..<rows {
            let gr = g + r * c, yr = y + r * c, dst = gx + r * c
            let m = dot(gr, yr, c) / Float(c)
            let inv = pr[r]
            for j in 0..<c { dst[j] += inv * (gr[j] - yr[j] * m) }
        }
    }
    return out
}

/// Rotary embedding tables for positions 0..<length: cos and sin, each [length, headDim/2], float32 as upstream
/// (inv_freq = 1/base^(2j/D), angle = t * inv_freq).
public func rotaryTables(length: Int, headDim: Int, base: Float = 100_000) -> (cos: Tensor, sin: Tensor) {
    let half = headDim / 2
    let cosT = Tensor(shape: [length, half], zeroed: false), sinT = Tensor(shape: [length, half], zeroed: false)
    for j in 0..<half {
        let inv = 1 / powf(base, Float(2 * j) / Float(headDim))
        for t in 0..<length {
            let angle = Float(t) * inv
            cosT.data[t * half + j] = cosf(angle)
            sinT.data[t * half + j] = sinf(angle)
        }
    }
    return (cosT, sinT)
}

/// Rotary embedding followed by RMSNorm over the head dimension and a constant gain (upstream's QK-norm with
/// its 1.2 scale), fused: x is [B, T, H, D]; position t uses row `positionOffset + t` of the tables.
/// Rotation (half-split layout): y1 = x1 cos + x2 sin, y2 = -x1 sin + x2 cos.
public func rotaryNorm(_ x: Tensor, cos: Tensor, sin: Tensor, gain: Float, positionOffset: Int = 0,
                       rowOffsets: [Int]? = nil) -> Tensor {
    let (b, t, h, d) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let half = d / 2
    // each batch row starts at its own position when `rowOffsets` is given (rows decoded at different lengths)
    let offsets = rowOffsets ?? [Int](repeating: positionOffset, count: b)
    precondition(offsets.count == b && cos.shape[1] == half && (offsets.max() ?? 0) + t <= cos.shape[0], "rotary tables too short")
    let rows = b * t * h
    let out = Tensor(shape: x.shape, zeroed: false)
    let rstd = Tensor(shape: [rows], zeroed: false)
    let px = x.data, po = out.data, pr = rstd.data, pc = cos.data, ps = sin.data
    for r in 0..<rows {
        let pos = offsets[r / (t * h)] + (r / h) % t
        let xr = px + r * d, yr = po + r * d
        let cr = pc + pos * half, sr = ps + pos * half
        var ss: Float = 0
        for j in 0..<half {
            let x1 = xr[j], x2 = xr[j + half]
            let y1 = x1 * cr[j] + x2 * sr[j]
            let y2 = -x1 * sr[j] + x2 * cr[j]
            yr[j] = y1
            yr[j + half] = y2
            ss += y1 * y1 + y2 * y2
        }
        let inv = 1 / (ss / Float(d) + rmsNormEps).squareRoot()
        pr[r] = inv
        let k = inv * gain
        for j in 0..<d { yr[j] *= k }
    }
    Tensor.record(out, [x], op: "rotaryNorm") { out in
        let g = out.grad!.data, o = out.data
        let pr = rstd.data  // captures rstd
        let gx = x.gradData()
        var dy = [Float](repeating: 0, count: d)
        for r in 0..<rows {
            let pos = offsets[r / (t * h)] + (r / h) % t
            let gr = g + r * d, orow = o + r * d, dst = gx + r * d
            let cr = pc + pos * half, sr = ps + pos * half
            let inv = pr[r]
            // out = gain * yhat, yhat = y * inv: dy = inv * (gain*g - yhat * mean(gain*g . yhat))
            // with yhat = orow / gain: mean((gain g) . yhat) = mean(g . orow)
            let m = dot(gr, orow, d) / Float(d)
            for j in 0..<d { dy[j] = inv * (gain * gr[j] - orow[j] / gain * m) }
            for j in 0..<half {
                let d1 = dy[j], d2 = dy[j + half]
                dst[j] += d1 * cr[j] - d2 * sr[j]
                dst[j + half] += d1 * sr[j] + d2 * cr[j]
            }
        }
    }
    return out
}
