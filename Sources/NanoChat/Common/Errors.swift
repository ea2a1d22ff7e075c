/// An error a user can act on: it says what was expected, what was found, and (where it helps) what to do.
/// The executable prints `description` and exits non-zero.
public struct NanoChatError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
