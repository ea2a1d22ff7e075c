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
            var conversation = [tok.bosID]
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
                if text.lowercased() == "clear" { conversation = [tok.bosID]; print("(new conversation)"); continue }
                if text.isEmpty { continue }
                conversation += [userStart] + tok.encode(text) + [userEnd, asstStart]
                print("\nAssistant: ", terminator: ""); fflush(stdout)
                var response: [Int] = []
                var decoder = StreamingDecoder(tokenizer: tok)
                interruptRequested = 0
                generating = 1
                defer { generating = 0 }
                do {
                try engine.generate(conversation, numSamples: 1, maxTokens: maxTokens, temperature: temperature,
                                topK: topK > 0 ? topK : nil, seed: UInt64.random(in: 0...UInt64.max)) { col, _ in
                    response.append(col[0])
                    let piece = decoder.push(col[0])
                    print(piece, terminator: ""); fflush(stdout)
                    return interruptRequested == 0
                }
                } catch let e as NanoChatError {
                    conversation.removeLast(tok.encode(text).count + 3)  // drop the turn that did not fit
                    print("\n(\(e.description); type 'clear')")
                    if prompt != nil { throw e }
                    continue
                }
                generating = 0
                print(decoder.flush())
                if interruptRequested != 0 { print("(stopped)") }
                conversation += response
                if response.last != asstEnd { conversation.append(asstEnd) }
                if prompt != nil { break }
            }
        }
    }
}
