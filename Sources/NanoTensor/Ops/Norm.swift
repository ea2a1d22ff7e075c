import CKernels
import Foundation

/// Parameter-free RMSNorm over the last dimension: x / sqrt(mean(x^2) + eps), eps float32's machine epsilon (PyTorch's
/// F.rms_norm default, which upstream uses). The rows go to the C kernels of
/// elementwise.c (AVX-512 or AVX2 where the CPU has them), split over the cores when there are enough of them.
public func rmsNorm(_ x: Tensor) -> Tensor {
    let c = x.shape.last!
    let rows = x.count / c
    let out = Tensor(shape: x.shape, zeroed: false, on: x.gpu)
    let rstd = Tensor(shape: [rows], zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        gpu.run(gpu.api.nc_rmsnorm_forward(gpu.ctx, out.gpuData, rstd.gpuData, x.gpuData, Int64(rows), Int64(c)), "rmsnorm")
        Tensor.record(out, [x], op: "rmsNorm") { out in
            let (gx, fresh) = x.gradForWrite()
            gpu.run(gpu.api.nc_rmsnorm_backward(gpu.ctx, gx, out.grad!.gpuData, out.gpuData, rstd.gpuData, Int64(rows), Int64(c), fresh ? 0 : 1),
                    "rmsnorm backward")
        }
        return out
    }
    let px = x.data, po = out.data, pr = rstd.data
    let parts = rowParts(rows, width: c)
    Threading.parallelFor(parts.count) { p in
        for r in parts[p] { pr[r] = nc_rmsnorm_row(px + r * c, po + r * c, Int32(c)) }
    }
    Tensor.record(out, [x], op: "rmsNorm") { out in
        let g = out.grad!.data, y = out.data
        let pr = rstd.data  // captures rstd: the saved statistics must outlive the forward call
        let gx = x.gradData()
        Threading.parallelFor(parts.count) { p in
            for r in parts[p] { nc_rmsnorm_backward_row(g + r * c, y + r * c, pr[r], Int32(c), gx + r * c) }
        }
    }
    return out
}

/// Row ranges for the threads: one range (this thread) when the rows are too few to repay waking another.
func rowParts(_ rows: Int, width: Int) -> [Range<Int>] {
    Threading.ranges(rows, parts: rows * width >= 1 << 16 ? Threading.workers : 1)
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
    let out = Tensor(shape: x.shape, zeroed: false, on: x.gpu)
    let rstd = Tensor(shape: [rows], zeroed: false, on: x.gpu)
    if let gpu = x.gpu {
        precondition(cos.gpu === gpu && sin.gpu === gpu, "rotaryNorm: the rotary tables are not on the input's GPU")
        // one launch for the batch when its rows share their start, else one per row (decoding rows of different lengths)
        let uniform = Set(offsets).count <= 1
        let launches: [(first: Int, rows: Int, offset: Int)] = uniform ? [(0, b, offsets.first ?? 0)] : (0..<b).map { ($0, 1, offsets[$0]) }
        for l in launches {
            let e = l.first * t * h * d
            gpu.run(gpu.api.nc_rotary_norm_forward(gpu.ctx, out.gpuData + e, rstd.gpuData + l.first * t * h, x.gpuData + e, cos.gpuData, sin.gpuData,
                                                   Int64(l.rows), Int64(t), Int64(h), Int64(d), Int64(l.offset), gain), "rotary+norm")
        }
        Tensor.record(out, [x], op: "rotaryNorm") { out in
            let (gx, fresh) = x.gradForWrite()
            for l in launches {
                let e = l.first * t * h * d
                gpu.run(gpu.api.nc_rotary_norm_backward(gpu.ctx, gx + e, out.grad!.gpuData + e, out.gpuData + e, rstd.gpuData + l.first * t * h,
                                                        cos.gpuData, sin.gpuData, Int64(l.rows), Int64(t), Int64(h), Int64(d), Int64(l.offset),
                                                        gain, fresh ? 0 : 1), "rotary+norm backward")
            }
        }
        return out
    }
    let px = x.data, po = out.data, pr = rstd.data, pc = cos.data, ps = sin.data
    let parts = rowParts(rows, width: d)
    Threading.parallelFor(parts.count) { p in
        for r in parts[p] {
            let pos = offsets[r / (t * h)] + (r / h) % t
            pr[r] = nc_rotary_norm_row(px + r * d, po + r * d, pc + pos * half, ps + pos * half, Int32(d), gain)
        }
    }
    Tensor.record(out, [x], op: "rotaryNorm") { out in
        let g = out.grad!.data, o = out.data
        let pr = rstd.data  // captures rstd
        let gx = x.gradData()
        Threading.parallelFor(parts.count) { p in
            for r in parts[p] {
                let pos = offsets[r / (t * h)] + (r / h) % t
                nc_rotary_norm_backward_row(g + r * d, o + r * d, pc + pos * half, ps + pos * half, pr[r], gain, Int32(d), gx + r * d)
            }
        }
    }
    return out
}
