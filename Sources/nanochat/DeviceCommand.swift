import ArgumentParser
import Foundation
import NanoTensor

struct DeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "device",
        abstract: "The compute devices this machine offers: the CPU (threads, BLAS) and, when its library loads, the GPU.",
        discussion: """
        The CUDA library (cuda/build.sh builds .build/cuda/libnanochat_cuda.so) is loaded at run time; this says \
        where it was found and which GPU it opened, or why it cannot be used. Exits 1 with --require-cuda when the \
        GPU is unavailable.
        """
    )
    @Option(help: "Path of libnanochat_cuda.so (default: $NANOCHAT_CUDA_LIB, beside the executable, .build/cuda/).") var cudaLib: String?
    @Flag(help: "Fail unless the CUDA backend loads and finds a GPU.") var requireCuda = false

    func run() throws {
        print("cpu: \(CPUInfo.current.description)")
        print("cpu kernels: ours \(ourKernelSet) on \(Threading.workers) threads; products through \(OpenBLASCore.description)")
        print("cpu peak: \(CPUPeak.current(threads: Threading.workers).description) (MFU is reported against it)")
        do {
            let gpu = try GPU.load(path: cudaLib)
            print(String(format: "cuda: %@, %d multiprocessors, %.1f GiB (%@)", gpu.name, gpu.multiprocessors,
                         Double(gpu.memoryBytes) / 1_073_741_824, gpu.path))
            print("cuda attention (bf16): \(gpu.attentionBackend)")
        } catch {
            print("cuda: \(error)")
            if requireCuda { throw ExitCode(1) }
        }
    }
}
