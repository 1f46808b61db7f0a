// Synchronous client of pvkit-stored.
//
// One request at a time: each call sends a request and blocks until its
// reply arrives or the reply timeout passes. Watch events that arrive while
// a call waits for its reply are queued in order, never lost, and handed
// out by wait_for_event() / poll_event(). A client is not thread-safe; use
// one per thread.
//
// The bytes travel through a StoreTransport. connect() makes one over the
// daemon's Unix socket; the guest store ring can provide another, so the
// same client code serves host processes and guests.
#pragma once

#include <pvkit/abi.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "pvkit/store/error.hpp"
#include "pvkit/store/perms.hpp"
#include "pvkit/store/wire.hpp"

namespace pvkit::store {

inline constexpr const char* kDefaultSocketPath = "/run/pvkit/stored.sock";
inline constexpr const char* kSocketEnvVar = "PVKIT_STORE_SOCKET";

using TxId = std::uint32_t;
using Clock = std::chrono::steady_clock;

struct WatchEvent {
    std::string path;
    std::string token;

    friend bool operator==(const WatchEvent&, const WatchEvent&) = default;
};

// A byte stream to the daemon.
class StoreTransport {
public:
    virtual ~StoreTransport() = default;
    // Sends every byte before `deadline`.
    [[nodiscard]] virtual StoreResult<void> send(std::string_view bytes, Clock::time_point deadline) = 0;
    // Receives at least one byte into `buf` before `deadline`; kTimedOut if
    // none came, kNotConn at end of stream.
    [[nodiscard]] virtual StoreResult<std::size_t> receive(std::span<char> buf,
                                                           Clock::time_point deadline) = 0;
    // A descriptor that polls readable when bytes from the daemon wait, or
    // -1 if the transport has none.
    [[nodiscard]] virtual int native_handle() const { return -1; }
};

// `path` if not empty, else $PVKIT_STORE_SOCKET if set and not empty, else
// kDefaultSocketPath.
[[nodiscard]] std::string resolve_socket_path(std::string_view path);

class StoreClient {
public:
    // Connects to the daemon's socket (resolve_socket_path(socket_path)).
    // On failure, `detail` (if given) receives a sentence such as
    // "/run/pvkit/stored.sock: No such file or directory".
    [[nodiscard]] static StoreResult<StoreClient>
    connect(std::string_view socket_path = {},
            std::chrono::milliseconds timeout = std::chrono::seconds(5),
            std::string* detail = nullptr);

    explicit StoreClient(std::unique_ptr<StoreTransport> transport);
    StoreClient(StoreClient&&) noexcept;
    StoreClient& operator=(StoreClient&&) noexcept;
    StoreClient(const StoreClient&) = delete;
    StoreClient& operator=(const StoreClient&) = delete;
    ~StoreClient();

    // How long a call waits for its reply (default 30 s). After a timeout
    // the connection is closed: a late reply would be out of step.
    void set_reply_timeout(std::chrono::milliseconds timeout) { m_reply_timeout = timeout; }

    [[nodiscard]] StoreResult<std::string> read(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<void> write(std::string_view path, std::string_view value, TxId tx = 0);
    [[nodiscard]] StoreResult<void> mkdir(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<void> rm(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<std::vector<std::string>> directory(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<Perms> get_perms(std::string_view path, TxId tx = 0);
    [[nodiscard]] StoreResult<void> set_perms(std::string_view path, const Perms& perms, TxId tx = 0);

    // Sets a watch; its first event (the path itself) follows at once.
    [[nodiscard]] StoreResult<void> watch(std::string_view path, std::string_view token);
    [[nodiscard]] StoreResult<void> unwatch(std::string_view path, std::string_view token);
    // The oldest queued event, or the next one to arrive within `timeout`;
    // kTimedOut if none does.
    [[nodiscard]] StoreResult<WatchEvent> wait_for_event(std::chrono::milliseconds timeout);
    // The oldest queued event without waiting.
    [[nodiscard]] std::optional<WatchEvent> poll_event();
    [[nodiscard]] std::size_t queued_events() const { return m_events.size(); }

    [[nodiscard]] StoreResult<TxId> transaction_start();
    // commit = true: "T" (fails with kAgain on conflict); false: "F" (abort).
    [[nodiscard]] StoreResult<void> transaction_end(TxId tx, bool commit);

    // Makes this connection act as `domid` from now on (irreversible).
    [[nodiscard]] StoreResult<void> restrict(pvkit_domid_t domid);
    [[nodiscard]] StoreResult<std::string> get_domain_path(pvkit_domid_t domid);

    // Sends any request and returns its reply (an ERROR reply becomes its
    // error). For tools and tests that speak the protocol directly.
    [[nodiscard]] StoreResult<Message> request(std::uint32_t type, std::string payload,
                                               std::uint32_t tx_id = 0);

    [[nodiscard]] bool connected() const { return m_transport != nullptr; }

    // For event loops: the transport's descriptor (-1 if none or not
    // connected). Each call decodes everything the daemon has sent so far,
    // so when the descriptor is not readable and queued_events() is 0 there
    // is nothing to do; otherwise call wait_for_event(0ms) until it says
    // kTimedOut.
    [[nodiscard]] int native_handle() const;

private:
    StoreResult<std::string> call(std::uint32_t type, std::string payload, std::uint32_t tx_id);
    StoreResult<void> call_ok(std::uint32_t type, std::string payload, std::uint32_t tx_id);
    // Reads from the transport until a non-event message is decoded or
    // `deadline` passes; events met on the way are queued.
    StoreResult<std::optional<Message>> pump(Clock::time_point deadline, bool want_reply);
    void drop_connection();

    std::unique_ptr<StoreTransport> m_transport;
    FrameDecoder m_decoder;
    std::deque<WatchEvent> m_events;
    std::uint32_t m_next_req = 1;
    std::chrono::milliseconds m_reply_timeout{30000};
};

} // namespace pvkit::store
