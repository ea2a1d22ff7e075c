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
        """
    )

    @OptionGroup var options: BaseTrainOptions

    func run() throws {
        try runReportingErrors {
            _ = try baseTrain(options) { print($0); fflush(stdout) }
        }
    }
}
