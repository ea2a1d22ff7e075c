import CKernels

/// The kernel sets this machine can run, narrowest first: 0 portable C, 1 AVX2 + FMA, 2 AVX-512.
let machineKernelLevel = Int(nc_kernel_supported())

/// Runs `body` once per kernel set this machine can run, with every C kernel set to it, and restores the default
/// choice afterwards. The levels this machine cannot run are compiled but not checked here: the tests print which.
func forEachKernelLevel(_ body: (Int) throws -> Void) rethrows {
    defer { nc_kernel_choice = -1 }
    for level in 0...machineKernelLevel {
        nc_kernel_choice = Int32(level)
        try body(level)
    }
    if machineKernelLevel < 2 { print("kernel levels above \(machineKernelLevel) not checked: this CPU cannot run them") }
}
