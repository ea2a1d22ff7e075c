import Foundation
import NanoChat

/// The data path's throughput (`nanochat bench data`).
public enum DataBench {
    /// Decoding every text column of a parquet shard on one thread: (MB of text, MB/s), the best of runs over at least
    /// two seconds.
    public static func parquetDecode(_ url: URL) throws -> (megabytes: Double, megabytesPerSecond: Double) {
        var bytes = 0
        let best = try bestSeconds {
            let pf = try ParquetFile(url: url)
            bytes = 0
            for rg in 0..<pf.rowGroups.count {
                for d in try pf.strings("text", rowGroup: rg) { bytes += d?.count ?? 0 }
            }
        }
        return (Double(bytes) / 1e6, Double(bytes) / best / 1e6)
    }

    /// Tokens/s the best-fit loader (B=8, T=512) delivers over three seconds, tokenizing on one thread.
    public static func loaderTokensPerSecond(tokenizer: Tokenizer, shards: ShardSet) throws -> Double {
        let loader = try BestFitLoader(tokenizer: tokenizer, shards: shards, batch: 8, seqLen: 512)
        loader.parallelTokenization = false
        let t0 = DispatchTime.now().uptimeNanoseconds
        var tokens = 0
        while Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 < 3 {
            tokens += try loader.next().inputs.count
        }
        return Double(tokens) / (Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
    }
}
