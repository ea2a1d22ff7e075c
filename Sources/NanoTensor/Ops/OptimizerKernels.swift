import CKernels

/// The optimizer's element-wise updates over raw buffers (MuonAdamW's inner loops), in C (elementwise.c) at the CPU's
/// vector width: Swift compiles for the x86-64 baseline, four floats at a time at best.
public enum OptimizerKernels {
    /// AdamW on n elements: p *= decay; m += (1 - beta1)(g - m); v += (1 - beta2)(g^2 - v);
    /// p -= stepSize m / (sqrt(v) / bias2Sqrt + eps), with g = grad * gradScale (no gradient: zero).
    @inline(__always)
    public static func adamw(_ p: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
                             grad: UnsafePointer<Float>?, count n: Int, gradScale: Float, decay: Float, beta1: Float, beta2: Float,
                             stepSize: Float, bias2Sqrt: Float, eps: Float) {
        nc_adamw_update(p, m, v, grad, n, gradScale, decay, beta1, beta2, stepSize, bias2Sqrt, eps)
    }

    /// Nesterov momentum: m += (1 - mu)(g - m), u = g + mu (m - g), g = grad * gradScale (no gradient: zero).
    @inline(__always)
    public static func muonMomentum(_ m: UnsafeMutablePointer<Float>, grad: UnsafePointer<Float>?, into u: UnsafeMutablePointer<Float>,
                                    count n: Int, gradScale: Float, mu: Float) {
        nc_muon_momentum(m, grad, u, n, gradScale, mu)
    }

    /// The update with cautious weight decay: p -= lr u + (u p >= 0 ? lr wd p : 0).
    @inline(__always)
    public static func muonUpdate(_ p: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, count n: Int, lr: Float, weightDecay: Float) {
        nc_muon_update(p, u, n, lr, weightDecay)
    }
}
