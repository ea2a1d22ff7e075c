import ArgumentParser
import Foundation
import NanoChat

struct BaseTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "base-train",
        abstract: "Pretrain the GPT (upstream's base_train): every hyperparameter follows from --depth.",
        discussion: """
        Reads the pretraining shards in $NANOCHAT_BASE_DIR/base_data_climbmix (all but the last for training, the \
        last for validation) and the tokenizer in $NANOCHAT_BASE_DIR/tokenizer. Writes checkpoints and a JSON Lines \
        metrics log to $NANOCHAT_BASE_DIR/base_checkpoints/<model-tag>/.
        Data-parallel over MPI: `mpirun -np N nanochat base-train ...` (rank 0 logs and writes the model; each rank \
        writes its optimizer shard).
        """,
        aliases: ["base_train"]
    )

    @OptionGroup var options: BaseTrainOptions

    func run() throws {
        try runDistributed { comm in
            _ = try baseTrain(options, comm: comm) {
                print($0); fflush(stdout)
            }
        }
    }
}
