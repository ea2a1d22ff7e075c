import CNanoABI
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A C library nanochat loads at run time with `dlopen` rather than links (the CUDA library, the MPI shim), so that
/// `swift build` needs neither CUDA nor MPI and a machine without them gets a reason instead of a link error. Its
/// functions are called through a typed table (`Sources/CNanoABI`: the types come from the library's own header).
/// Where a library is looked for: `$<environment key>`, beside the executable, then `.build/<folder>/` under the
/// current folder (where its build script writes it).
public final class DynamicLibrary {
    public let path: String
    let handle: UnsafeMutableRawPointer

    /// The places `open` tries, in order.
    public static func candidates(fileName: String, environmentKey: String, buildFolder: String) -> [String] {
        var out: [String] = []
        if let p = ProcessInfo.processInfo.environment[environmentKey], !p.isEmpty { out.append(p) }
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath().deletingLastPathComponent()
        out.append(exe.appendingPathComponent(fileName).path)
        out.append(URL(fileURLWithPath: ".build/\(buildFolder)/" + fileName).path)
        return out
    }

    /// Opens the first of `candidates` that exists. `global`: its symbols serve libraries loaded after it (Open MPI's
    /// plugins look up libmpi's there). `rebuild` says how to make the library, for the errors.
    public init(candidates: [String], global: Bool, rebuild: String) throws {
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            let name = URL(fileURLWithPath: candidates.last ?? "").lastPathComponent
            throw DeviceError("no \(name) (looked at \(candidates.joined(separator: ", "))); \(rebuild)")
        }
        guard let handle = dlopen(found, RTLD_NOW | (global ? RTLD_GLOBAL : RTLD_LOCAL)) else {
            throw DeviceError("cannot load \(found): \(String(cString: dlerror())); \(rebuild)")
        }
        path = found
        self.handle = handle
    }

    /// The library's function table, filled by `load` (a CNanoABI loader such as `nc_cuda_api_load`). A missing
    /// function means the library was built from other sources than this nanochat.
    public func table<Table>(_ load: (UnsafeMutableRawPointer, UnsafeMutablePointer<UnsafePointer<CChar>?>) -> UnsafePointer<Table>?,
                             rebuild: String) throws -> UnsafePointer<Table> {
        var missing: UnsafePointer<CChar>? = nil
        guard let table = load(handle, &missing) else {
            throw DeviceError("\(path) has no \(missing.map { String(cString: $0) } ?? "function table"): it was built from other sources than this nanochat; \(rebuild)")
        }
        return table
    }

    // Not closed: the tables point into it for as long as the process runs, and unloading CUDA or MPI mid-process is
    // not something either supports.
}

/// Why a device or a run-time library cannot be used, or a device call that failed: what was tried, what to do.
public struct DeviceError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
