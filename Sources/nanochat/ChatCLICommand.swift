import ArgumentParser
import Foundation
import NanoChat

/// Set by SIGINT while an answer streams: stop that answer, keep the program.
nonisolated(unsafe) var interruptRequested: Int32 = 0
nonisolated(unsafe) var generating: Int32 = 0

struct ChatCLICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-cli",
        abstract: "Chat with a model in the terminal (upstream's chat_cli).",
        discussion: """
        Type a message and press Enter; the answer streams as it is generated. 'clear' starts a new conversation, \\
        'quit' or 'exit' leaves. Ctrl-C stops the current answer (a second Ctrl-C at the prompt exits).
        """,
        aliases: ["chat_cli"]
    )
    @OptionGroup var model: ModelSource
    @Option(name: [.customShort("p"), .long], help: "One prompt: answer it and exit.") var prompt: String?
    @Option(name: [.customShort("t"), .long], parsing: .unconditional, help: "Temperature (0 = greedy).") var temperature: Float = 0.6
    @Option(name: [.customShort("k"), .long], parsing: .unconditional, help: "Top-k sampling (0 = off).") var topK = 50
    @Option(name: [.customShort("m"), .long], parsing: .unconditional, help: "Longest answer in tokens.") var maxTokens = 256
    @Option(parsing: .unconditional, help: "Nucleus sampling: draw from the most likely tokens whose probabilities reach this (1 = off).") var topP: Float = 1
    @Option(parsing: .unconditional, help: "Lower a token's logit by this times the times the answer has produced it (-2 to 2).") var frequencyPenalty: Float = 0
    @Option(parsing: .unconditional, help: "Lower a token's logit by this once the answer has produced it (-2 to 2).") var presencePenalty: Float = 0
    @Option(parsing: .singleValue, help: "End the answer before this text (repeatable, up to 4).") var stop: [String] = []

    func validate() throws {
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be greater than 0 and at most 1, got \(topP)") }
        guard abs(frequencyPenalty) <= 2, abs(presencePenalty) <= 2 else { throw ValidationError("--frequency-penalty and --presence-penalty must be between -2 and 2") }
        guard stop.count <= 4, stop.allSatisfy({ !$0.isEmpty }) else { throw ValidationError("--stop: up to 4 non-empty sequences") }
    }

    func run() throws {
        try runReportingErrors {
            let loaded = try model.load()
            let engine = Engine(model: loaded.model, tokenizer: loaded.tokenizer), label = loaded.label
            let tok = engine.tokenizer
            signal(SIGINT) { _ in
                if generating != 0 { interruptRequested = 1 } else { _exit(130) }
            }
            guard let userStart = tok.specialID("<|user_start|>"), let userEnd = tok.specialID("<|user_end|>"),
                  let asstStart = tok.specialID("<|assistant_start|>"), let asstEnd = tok.specialID("<|assistant_end|>") else {
                throw NanoChatError("the tokenizer lacks nanochat's chat special tokens")
            }
            // the exchanges so far, oldest first (each: user turn, then the answer up to <|assistant_end|>); the prompt
            // is BOS, the exchanges, the new user turn and <|assistant_start|>, the oldest exchanges left out when it
            // would not leave room for the answer in the model's context
            var exchanges: [[Int]] = []
            let sampling = SamplingOptions(temperature: temperature, topK: topK > 0 ? topK : nil, topP: topP < 1 ? topP : nil,
                                           frequencyPenalty: frequencyPenalty, presencePenalty: presencePenalty)
            let budget = ChatPrompt.budget(loaded.model.config, maxTokens: maxTokens)
            if prompt == nil {
                print("nanochat chat (\(label)). 'clear' for a new conversation, 'quit' to leave, Ctrl-C stops an answer.")
            }
            while true {
                let text: String
                if let prompt { text = prompt } else {
                    print("\nUser: ", terminator: ""); fflush(stdout)
                    guard let line = readLine() else { break }
                    text = line.trimmingCharacters(in: .whitespaces)
                }
                if ["quit", "exit"].contains(text.lowercased()) { break }
                if text.lowercased() == "clear" { exchanges = []; print("(new conversation)"); continue }
                if text.isEmpty { continue }
                let turn = [userStart] + tok.encode(text) + [userEnd]
                var dropped = 0
                while !exchanges.isEmpty && 1 + exchanges.reduce(0, { $0 + $1.count }) + turn.count + 1 > budget {
                    exchanges.removeFirst()
                    dropped += 1
                }
                if dropped > 0 {
                    print("(the \(dropped) oldest exchange\(dropped == 1 ? "" : "s") no longer fit\(dropped == 1 ? "s" : "") the model's \(loaded.model.config.sequence_len)-token context with room for the answer: left out)")
                }
                let conversation = [tok.bosID] + exchanges.joined() + turn + [asstStart]
                print("\nAssistant: ", terminator: ""); fflush(stdout)
                var response: [Int] = []
                var decoder = StreamingDecoder(tokenizer: tok)
                var stops = StopMatcher(stop)
                interruptRequested = 0
                generating = 1
                defer { generating = 0 }
                do {
                if conversation.count > budget {
                    throw NanoChatError("this message alone is \(turn.count + 2) prompt tokens; with room for the answer (--max-tokens \(maxTokens)) the model's context holds \(budget)")
                }
                try engine.generate(conversation, numSamples: 1, maxTokens: maxTokens, sampling: sampling,
                                    seed: UInt64.random(in: 0...UInt64.max)) { col, _ in
                    response.append(col[0])
                    let piece = stops.push(decoder.push(col[0]))
                    print(piece, terminator: ""); fflush(stdout)
                    return interruptRequested == 0 && !stops.stopped
                }
                } catch let e as NanoChatError {
                    print("\n(\(e.description))")
                    if prompt != nil { throw e }
                    continue
                }
                generating = 0
                print(stops.stopped ? "" : stops.push(decoder.flush()) + stops.flush())
                if interruptRequested != 0 { print("(stopped)") }
                if response.last != asstEnd { response.append(asstEnd) }
                exchanges.append(turn + [asstStart] + response)
                if prompt != nil { break }
            }
        }
    }
}
