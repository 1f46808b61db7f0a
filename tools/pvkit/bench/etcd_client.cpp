#include "etcd_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <limits>
#include <stdexcept>
#include <utility>

namespace pvkit::bench {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

// Runs the io_context until every started operation has completed. The
// tcp_stream's expiry bounds each operation, so this cannot hang.
void run_all(asio::io_context& ioc) {
    ioc.restart();
    ioc.run();
}

void connect_loopback(asio::io_context& ioc, beast::tcp_stream& stream, std::uint16_t port,
                      std::chrono::milliseconds timeout) {
    error_code result = asio::error::would_block;
    stream.expires_after(timeout);
    stream.async_connect(tcp::endpoint(asio::ip::address_v4::loopback(), port),
                         [&](error_code ec) { result = ec; });
    run_all(ioc);
    if (result)
        throw std::runtime_error("cannot connect to etcd at 127.0.0.1:" + std::to_string(port) +
                                 ": " + result.message());
    // Requests are small and each waits for its reply; Nagle would only
    // add delay (Go's server sets TCP_NODELAY on its side too).
    stream.socket().set_option(tcp::no_delay(true));
}

http::request<http::string_body> make_request(http::verb verb, std::string_view target,
                                              const std::string& host, std::string body) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, host);
    req.set(http::field::content_type, "application/json");
    req.keep_alive(true);
    req.body() = std::move(body);
    req.prepare_payload();
    return req;
}

std::string clip(std::string_view text) {
    constexpr std::size_t kMax = 300;
    return std::string(text.substr(0, kMax)) + (text.size() > kMax ? "..." : "");
}

} // namespace

std::string base64_encode(std::string_view bytes) {
    static constexpr char kAlphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 3 <= bytes.size(); i += 3) {
        auto v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                 static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                 static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += kAlphabet[(v >> 6) & 63];
        out += kAlphabet[v & 63];
    }
    std::size_t rest = bytes.size() - i;
    if (rest > 0) {
        std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
        if (rest == 2)
            v |= static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
        out += kAlphabet[(v >> 18) & 63];
        out += kAlphabet[(v >> 12) & 63];
        out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

std::string prefix_range_end(std::string_view prefix) {
    std::string end(prefix);
    while (!end.empty()) {
        auto last = static_cast<unsigned char>(end.back());
        if (last < 0xff) {
            end.back() = static_cast<char>(last + 1);
            return end;
        }
        end.pop_back();
    }
    // Every byte was 0xff: etcd's convention for "to the end of the keyspace".
    return std::string(1, '\0');
}

// ---- EtcdConnection ---------------------------------------------------------

struct EtcdConnection::Impl {
    Impl(std::uint16_t port, std::chrono::milliseconds t)
        : stream(ioc), timeout(t), host("127.0.0.1:" + std::to_string(port)) {}

    asio::io_context ioc{1}; // one thread runs it: the caller's
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::chrono::milliseconds timeout;
    std::string host;

    std::string exchange(http::verb verb, std::string_view target, std::string body) {
        http::request<http::string_body> req = make_request(verb, target, host, std::move(body));
        http::response<http::string_body> res;
        error_code result = asio::error::would_block;
        stream.expires_after(timeout);
        // Write, then read the reply, in one run of the loop.
        http::async_write(stream, req, [&](error_code wrote, std::size_t) {
            if (wrote) {
                result = wrote;
                return;
            }
            http::async_read(stream, buffer, res, [&](error_code got, std::size_t) { result = got; });
        });
        run_all(ioc);
        if (result)
            throw std::runtime_error("etcd " + std::string(target) + ": " + result.message());
        if (res.result() != http::status::ok)
            throw std::runtime_error("etcd " + std::string(target) + ": HTTP " +
                                     std::to_string(res.result_int()) + ": " + clip(res.body()));
        // A closed keep-alive connection would make every later request pay
        // a reconnect, which is not what this client measures.
        if (!res.keep_alive())
            throw std::runtime_error("etcd " + std::string(target) +
                                     ": the server closed the keep-alive connection");
        return std::move(res.body());
    }
};

EtcdConnection::EtcdConnection(std::uint16_t port, std::chrono::milliseconds timeout)
    : m_impl(std::make_unique<Impl>(port, timeout)) {
    connect_loopback(m_impl->ioc, m_impl->stream, port, timeout);
}

EtcdConnection::~EtcdConnection() = default;

std::string EtcdConnection::post(std::string_view target, std::string body) {
    return m_impl->exchange(http::verb::post, target, std::move(body));
}

std::string EtcdConnection::get(std::string_view target) {
    return m_impl->exchange(http::verb::get, target, {});
}

void EtcdConnection::put(std::string_view key_b64, std::string_view value_b64) {
    std::string body;
    body.reserve(32 + key_b64.size() + value_b64.size());
    body += R"({"key":")";
    body += key_b64;
    body += R"(","value":")";
    body += value_b64;
    body += R"("})";
    (void)post("/v3/kv/put", std::move(body));
}

void EtcdConnection::get_expect(std::string_view key_b64, std::string_view value_b64) {
    std::string body;
    body.reserve(16 + key_b64.size());
    body += R"({"key":")";
    body += key_b64;
    body += R"("})";
    std::string reply = post("/v3/kv/range", std::move(body));
    // A substring check rather than a JSON parse: it proves the value came
    // back (base64 has no quotes, so it cannot match by accident) at a
    // cost comparable to the pvkit client's decoding of its binary reply.
    std::string want = R"("value":")";
    want += value_b64;
    want += '"';
    if (reply.find(want) == std::string::npos)
        throw std::runtime_error("etcd range: reply lacks the expected value: " + clip(reply));
}

// ---- EtcdWatchStream --------------------------------------------------------

struct EtcdWatchStream::Impl {
    explicit Impl(std::chrono::milliseconds t) : stream(ioc), timeout(t) {
        // The stream lives as long as the watch: no size limit on its body.
        parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    }

    asio::io_context ioc{1};
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    std::chrono::milliseconds timeout;
    http::response_parser<http::buffer_body> parser;
    std::array<char, 1 << 16> chunk{};
    std::string lines;     // received body bytes not yet split into lines
    bool reading = false;  // an async_read_some is outstanding
    bool read_done = false;
    error_code read_ec;
    bool created = false;
    std::uint64_t early_events = 0; // arrived with the 'created' message

    ~Impl() {
        // Complete an outstanding read (as aborted) while everything it
        // refers to still exists.
        error_code ignored;
        stream.socket().close(ignored);
        ioc.restart();
        ioc.poll();
    }

    // Waits until `deadline` for more body bytes; false if none came.
    bool receive(Clock::time_point deadline) {
        if (!reading) {
            parser.get().body().data = chunk.data();
            parser.get().body().size = chunk.size();
            read_done = false;
            reading = true;
            http::async_read_some(stream, buffer, parser, [this](error_code ec, std::size_t) {
                read_ec = ec;
                read_done = true;
            });
        }
        // The loop stops itself whenever it runs out of work (after each
        // completed read); the read started above is new work.
        if (ioc.stopped())
            ioc.restart();
        while (!read_done) {
            auto now = Clock::now();
            if (now >= deadline)
                return false; // the read stays outstanding for the next call
            ioc.run_one_for(deadline - now);
        }
        reading = false;
        // need_buffer only says that `chunk` is full.
        if (read_ec && read_ec != http::error::need_buffer)
            throw std::runtime_error("etcd watch stream: " + read_ec.message());
        lines.append(chunk.data(), chunk.size() - parser.get().body().size);
        return true;
    }

    // Consumes every complete line; returns the number of events in them.
    std::uint64_t take_lines() {
        std::uint64_t events = 0;
        std::size_t start = 0;
        for (std::size_t nl; (nl = lines.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string_view line(lines.data() + start, nl - start);
            if (line.find_first_not_of(" \r\t") == std::string_view::npos)
                continue;
            nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_discarded() || !j.is_object())
                throw std::runtime_error("etcd watch stream: not JSON: " + clip(line));
            if (j.contains("error"))
                throw std::runtime_error("etcd watch stream: " + clip(j["error"].dump()));
            auto result = j.find("result");
            if (result == j.end() || !result->is_object())
                throw std::runtime_error("etcd watch stream: no result: " + clip(line));
            if (result->value("canceled", false))
                throw std::runtime_error("etcd canceled the watch: " +
                                         result->value("cancel_reason", std::string("no reason")));
            created = created || result->value("created", false);
            auto ev = result->find("events");
            if (ev != result->end() && ev->is_array())
                events += ev->size();
        }
        lines.erase(0, start);
        return events;
    }
};

EtcdWatchStream::EtcdWatchStream(std::uint16_t port, std::string_view key_b64,
                                 std::string_view range_end_b64, std::chrono::milliseconds timeout)
    : m_impl(std::make_unique<Impl>(timeout)) {
    Impl& s = *m_impl;
    connect_loopback(s.ioc, s.stream, port, timeout);
    std::string body = R"({"create_request":{"key":")" + std::string(key_b64) +
                       R"(","range_end":")" + std::string(range_end_b64) + R"("}})";
    http::request<http::string_body> req = make_request(
        http::verb::post, "/v3/watch", "127.0.0.1:" + std::to_string(port), std::move(body));
    error_code result = asio::error::would_block;
    s.stream.expires_after(timeout);
    http::async_write(s.stream, req, [&](error_code wrote, std::size_t) {
        if (wrote) {
            result = wrote;
            return;
        }
        http::async_read_header(s.stream, s.buffer, s.parser,
                                [&](error_code got, std::size_t) { result = got; });
    });
    run_all(s.ioc);
    if (result)
        throw std::runtime_error("etcd /v3/watch: " + result.message());
    if (s.parser.get().result() != http::status::ok)
        throw std::runtime_error("etcd /v3/watch: HTTP " +
                                 std::to_string(s.parser.get().result_int()));
    // From here on each wait has its own deadline; the stream has none.
    s.stream.expires_never();
    auto deadline = Clock::now() + timeout;
    while (!s.created) {
        if (!s.receive(deadline))
            throw std::runtime_error("etcd /v3/watch: no 'created' message in time");
        s.early_events += s.take_lines();
        if (s.parser.is_done())
            throw std::runtime_error("etcd /v3/watch: the stream ended");
    }
}

EtcdWatchStream::~EtcdWatchStream() = default;

std::uint64_t EtcdWatchStream::wait_events(std::chrono::milliseconds timeout) {
    Impl& s = *m_impl;
    if (s.early_events > 0)
        return std::exchange(s.early_events, 0);
    auto deadline = Clock::now() + timeout;
    for (;;) {
        // Bytes of an incomplete line may be waiting; only a full line counts.
        if (!s.receive(deadline))
            return 0;
        std::uint64_t events = s.take_lines();
        if (s.parser.is_done())
            throw std::runtime_error("etcd /v3/watch: the stream ended");
        if (events > 0)
            return events;
    }
}

} // namespace pvkit::bench
