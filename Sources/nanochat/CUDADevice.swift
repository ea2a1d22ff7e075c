import Foundation
import NanoChat
import NanoCUDA

/// Opens the GPU that `--device` asks for: nil for `cpu`, and for `auto` when the CUDA library is missing or
/// finds no GPU (it says so once); `cuda` throws the reason instead.
func openDevice(_ device: ComputeDevice, say: (String) -> Void = { print($0) }) throws -> CUDALibrary? {
    switch device {
    case .cpu: return nil
    case .cuda:
        let lib = try CUDALibrary.load()
        say("device: \(try lib.device().name) (\(lib.path))")
        return lib
    case .auto:
        do {
            let lib = try CUDALibrary.load()
            say("device: \(try lib.device().name) (\(lib.path))")
            return lib
        } catch {
            say("device: cpu (\(error))")
            return nil
        }
    }
}
