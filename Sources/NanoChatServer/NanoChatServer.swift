import NanoChat

/// The web layer (Hummingbird 2: chat page, upstream's streaming route, OpenAI-compatible API) lands with
/// the inference engine. It imports NanoChat and nothing imports it but the executable.
public enum NanoChatServer {
    /// Default address the server binds to, as upstream's chat_web.
    public static let defaultHost = "127.0.0.1"
    public static let defaultPort = 8000
}
