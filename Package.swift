// swift-tools-version:6.1
import PackageDescription

// Layers, one import direction only: nanochat (executable) -> NanoChatServer, NanoChatBench -> NanoChat -> NanoTensor
// -> CBLAS, CKernels, CNanoABI. NanoTensor: tensors on a device, autograd and every op (the fused ones the model needs
// included) with its CPU body and its GPU body (Device/: the CUDA library loaded with dlopen), plus in Support/ the one
// threading policy, Mutex and RNG. NanoChat: the language-model pipeline (tokenizer, model,
// optimizer, data, checkpoints, engine, training). NanoChatServer: HTTP. NanoChatBench: what `nanochat bench` runs.
let package = Package(
    name: "nanochat",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "nanochat", targets: ["nanochat"]),
        .library(name: "NanoTensor", targets: ["NanoTensor"]),
        .library(name: "NanoChat", targets: ["NanoChat"]),
        .library(name: "NanoChatServer", targets: ["NanoChatServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    ],
    targets: [
        // OpenBLAS on Linux (installed by scripts/bootstrap); macOS uses Accelerate instead.
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev", "pkgconf"])]
        ),
        // Parquet codecs (installed by scripts/bootstrap: libzstd-dev, zlib1g-dev).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Our own C kernels where Swift cannot reach the instructions (AVX2/FMA, chosen at run time).
        .target(name: "CKernels"),
        // The typed function tables of the libraries loaded at run time (the CUDA library, the MPI shim), from their
        // own headers (cuda/nanochat_cuda.h, mpi/nanochat_mpi.h).
        .target(name: "CNanoABI"),
        .target(
            name: "NanoTensor",
            dependencies: ["CKernels", "CNanoABI", .target(name: "CBLAS", condition: .when(platforms: [.linux]))]
        ),
        .target(
            name: "NanoChat",
            // ArgumentParser: each command's options struct is the one its library code reads (BaseTrainOptions)
            dependencies: ["NanoTensor", "CNanoABI", "CZstd", "CZlib", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(
            name: "NanoChatServer",
            dependencies: ["NanoChat", "NanoTensor", .product(name: "Hummingbird", package: "hummingbird")],
            resources: [.copy("ui.html")]
        ),
        // What `nanochat bench` measures with: the training throughput bench and the server load test.
        .target(name: "NanoChatBench", dependencies: ["NanoChat", "NanoTensor"]),
        .executableTarget(
            name: "nanochat",
            dependencies: [
                "NanoChat", "NanoChatServer", "NanoChatBench", "NanoTensor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "NanoTensorTests", dependencies: ["NanoTensor"]),
        .testTarget(name: "NanoChatTests", dependencies: ["NanoChat", "NanoTensor"]),
        .testTarget(
            name: "NanoChatServerTests",
            dependencies: ["NanoChatServer", "NanoChatBench", "NanoChat", "NanoTensor", .product(name: "HummingbirdTesting", package: "hummingbird")]
        ),
    ],
    // Swift 5 mode: the kernels hand raw buffers to worker threads on purpose (one writer per range);
    // Swift 6's strict Sendable checking would demand wrappers around every such pointer.
    swiftLanguageModes: [.v5]
)
