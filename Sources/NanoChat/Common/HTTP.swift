import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP request, waited for on the calling thread (tools and downloads run on plain threads, not in async
/// code): the status (0 when there was no response), the body, and the transport error if any.
public func blockingHTTP(_ request: URLRequest, session: URLSession = .shared) -> (status: Int, body: Data, error: Error?) {
    let done = DispatchSemaphore(value: 0)
    nonisolated(unsafe) var result: (Int, Data, Error?) = (0, Data(), nil)  // written once, before the signal
    session.dataTask(with: request) { data, response, error in
        result = ((response as? HTTPURLResponse)?.statusCode ?? 0, data ?? Data(), error)
        done.signal()
    }.resume()
    done.wait()
    return result
}
