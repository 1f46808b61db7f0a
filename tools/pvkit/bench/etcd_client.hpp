// A small client of etcd's HTTP/JSON gateway (the grpc-gateway in front of
// etcd's gRPC API: POST /v3/kv/range, /v3/kv/put, /v3/watch with base64
// keys and values), used as the baseline of `pvkit bench store`.
//
// Each object owns one TCP connection to 127.0.0.1 that stays open
// (HTTP/1.1 keep-alive) and one request at a time in flight, like a
// synchronous pvkit StoreClient. Boost.Beast stays inside the .cpp file.
// Not thread-safe: one object per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace pvkit::bench {

// Standard base64 with padding, as the gateway expects for bytes fields.
[[nodiscard]] std::string base64_encode(std::string_view bytes);

// The range end that selects every key starting with `prefix` (etcd's
// "prefix + 1": the last byte below 0xff incremented, the rest cut off).
[[nodiscard]] std::string prefix_range_end(std::string_view prefix);

class EtcdConnection {
public:
    // Connects to 127.0.0.1:port. Every later call fails (throws) if it
    // takes longer than `timeout`.
    EtcdConnection(std::uint16_t port, std::chrono::milliseconds timeout);
    EtcdConnection(const EtcdConnection&) = delete;
    EtcdConnection& operator=(const EtcdConnection&) = delete;
    ~EtcdConnection();

    // POST `target` with a JSON body; returns the response body. Throws on
    // a transport error or an HTTP status other than 200 (the gateway maps
    // gRPC errors to 4xx/5xx with a JSON error body, quoted in the message).
    std::string post(std::string_view target, std::string body);
    std::string get(std::string_view target);

    // PUT of one key (both arguments already base64).
    void put(std::string_view key_b64, std::string_view value_b64);
    // Range of one key; throws unless the reply holds exactly `value_b64`.
    void get_expect(std::string_view key_b64, std::string_view value_b64);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

// A watch over POST /v3/watch: the gateway answers with one chunked HTTP
// response that carries one JSON object per line, each a WatchResponse
// with zero or more events.
class EtcdWatchStream {
public:
    // Opens the stream for keys in [key_b64, range_end_b64) and waits for
    // its "created" message.
    EtcdWatchStream(std::uint16_t port, std::string_view key_b64, std::string_view range_end_b64,
                    std::chrono::milliseconds timeout);
    EtcdWatchStream(const EtcdWatchStream&) = delete;
    EtcdWatchStream& operator=(const EtcdWatchStream&) = delete;
    ~EtcdWatchStream();

    // Waits up to `timeout` for watch messages; returns how many events
    // they carried (0 if none came in time). Throws if the stream ends, the
    // watch is canceled or the gateway reports an error.
    std::uint64_t wait_events(std::chrono::milliseconds timeout);

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace pvkit::bench
